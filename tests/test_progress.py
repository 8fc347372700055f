"""Progress bars: one rule for every command that draws them, and in executed notebooks,
what viewers without widgets show."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import nbformat
import pytest

from brewops.cli import main
from brewops.progress_option import PROGRESS_HELP
from brewops.runner import discover, execute

WIDGET = "application/vnd.jupyter.widget-view+json"


def test_an_executed_notebook_shows_each_bar_at_its_final_count(tmp_path: Path):
    """GitHub, and the HTML rendering read offline, show the text saved beside a bar's
    widget: the count the bar ended at, not the 0 it started from."""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "from brewops.progress import ProgressBar\n\n"
            "for _ in ProgressBar(range(25), desc='folds'):\n"
            "    pass\n"
            "with ProgressBar(desc='drain', unit=' records') as bar:  # no total\n"
            "    bar.update(7)\n"
            "for _ in ProgressBar(range(3), desc='quiet', disable=True):  # no widget at all\n"
            "    pass"
        )
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, notebooks / "01_bars.ipynb")

    run = execute(discover(notebooks), target="aws", out_dir=tmp_path / "build", progress=False)

    [result] = run.notebooks
    assert result.status == "ok", result.error
    [cell] = nbformat.read(result.executed, as_version=4).cells[-1:]
    shown = [out.data["text/plain"] for out in cell.outputs if WIDGET in out.get("data", {})]
    assert len(shown) == 2, "one widget per bar shown, none for the disabled one"
    assert "25/25" in shown[0] and "0/25" not in shown[0]
    assert shown[1].startswith("drain: 7 records")


def _every_command(
    group: click.Group = main, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, click.Command]]:
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        assert command is not None, name
        if isinstance(command, click.Group):
            yield from _every_command(command, (*path, name))
        else:
            yield " ".join((*path, name)), command


def _progress_options() -> dict[str, click.Option]:
    """Each command's option that speaks of progress, found by walking the command line."""
    found = {}
    for name, command in _every_command():
        for param in command.params:
            if any("progress" in flag for flag in (*param.opts, *param.secondary_opts)):
                assert name not in found, f"{name}: two progress options"
                assert isinstance(param, click.Option)
                found[name] = param
    return found


class _Stderr(io.StringIO):
    def __init__(self, terminal: bool) -> None:
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


# (arguments, stderr is a terminal) -> bars drawn: as tqdm and click's own bars do, on a
# terminal only, unless told
RULE = [
    ([], True, True),
    ([], False, False),
    (["--progress"], False, True),
    (["--progress"], True, True),
    (["--no-progress"], True, False),
    (["--no-progress"], False, False),
]


@pytest.mark.parametrize(("args", "terminal", "drawn"), RULE)
def test_every_command_with_progress_bars_follows_one_rule(
    args: list[str], terminal: bool, drawn: bool, monkeypatch: pytest.MonkeyPatch
):
    options = _progress_options()
    # the walk finds them: a new command with bars joins this list by itself
    assert {
        "data crawl",
        "stream backfill",
        "stream drain",
        "stream fill",
        "model train",
        "model evaluate",
        "model predict",
        "run",
    } <= set(options)
    monkeypatch.setattr(sys, "stderr", _Stderr(terminal))
    help_records, chosen = {}, {}
    for name, option in options.items():
        probe = click.Command("probe", params=[option], callback=lambda **values: values)
        help_records[name] = option.get_help_record(click.Context(probe))
        chosen[name] = probe.main(args, standalone_mode=False)[option.name]
    assert help_records == dict.fromkeys(options, ("--progress / --no-progress", PROGRESS_HELP))
    assert chosen == dict.fromkeys(options, drawn)
