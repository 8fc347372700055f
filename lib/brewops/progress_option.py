"""`--progress/--no-progress`: one rule for every command that draws progress bars.

As tqdm and click's own bars do, a bar is drawn when stderr is a terminal and left out of a
log or a pipe; `--progress` draws it there too, `--no-progress` never. Kept apart from
`brewops.progress`, which imports tqdm, so that reading the options costs no import.
"""

from __future__ import annotations

import sys

import click

PROGRESS_HELP = (
    "Progress bars on stderr. Default: only when stderr is a terminal; --progress draws "
    "them in a log too, --no-progress never."
)


def _drawn_by_default(ctx: click.Context, param: click.Parameter, value: bool | None) -> bool:
    return sys.stderr.isatty() if value is None else value


PROGRESS_OPTION = click.option(
    "--progress/--no-progress", default=None, callback=_drawn_by_default, help=PROGRESS_HELP
)
