"""Environment variables applied for the duration of a block (a Lambda's configuration, the
runner's per-notebook settings), then put back as they were."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def applied_environment(variables: dict[str, Any]) -> Iterator[None]:
    """Set `variables` for the duration (as strings, as Lambda passes them), then restore."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update({name: str(value) for name, value in variables.items()})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
