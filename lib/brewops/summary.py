"""Key figures a notebook records for `build/run-summary.json`.

The runner tells each notebook where to write through BREWOPS_FIGURES_FILE; a notebook
run by hand writes `figures/<its name>.json` in the build directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from brewops.files import SHARED, write_atomically
from brewops.paths import build_dir

FIGURES_ENV = "BREWOPS_FIGURES_FILE"


def figures_file(notebook: str | None = None) -> Path:
    env = os.environ.get(FIGURES_ENV)
    if env:
        return Path(env)
    return build_dir() / "figures" / f"{notebook or 'interactive'}.json"


def record(notebook: str | None = None, **figures: Any) -> dict[str, Any]:
    """Merge `figures` into this notebook's figures file and return everything recorded so far."""
    path = figures_file(notebook)
    earlier = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    # in the order given, then what only earlier calls recorded: a cell run again shows
    # its figures as it did the first time, not in the file's sorted order
    current = {**figures, **{key: value for key, value in earlier.items() if key not in figures}}
    # whole or not at all: a full disk must not leave a file the run summary cannot read
    write_atomically(path, strict_json_text(current, sort_keys=True), mode=SHARED)
    return current


def strict_json_text(value: Any, **dumps_options: Any) -> str:
    """`value` as indented JSON text that strict readers (jq, a browser) accept: NaN and
    infinities (R² of a single beer, `-p delivery_timeout .inf`) as null, numpy numbers as
    numbers, anything else JSON has no type for as its text."""
    plain = json.loads(json.dumps(value, default=_as_json), parse_constant=lambda _: None)
    return json.dumps(plain, indent=2, allow_nan=False, **dumps_options)


def _as_json(value: Any) -> Any:
    """A numpy number or flag (what pandas counts and comparisons give) as the Python one,
    which JSON has a type for; anything else JSON has none for (a time, a path) as its text."""
    numeric = getattr(getattr(value, "dtype", None), "kind", None) in ("b", "i", "u", "f")
    if type(value).__module__ == "numpy" and numeric and getattr(value, "shape", None) == ():
        return value.item()
    return str(value)


def read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
