"""Checks of the notebooks' parameters that several notebooks share.

`brewops run` refuses a value of the wrong type before a notebook starts; papermill, and a
value typed into the parameters cell, do not, so the notebooks check again themselves."""

from __future__ import annotations

from typing import Any


def checked_flags(**flags: Any) -> None:
    """Refuse each flag that is not True or False, naming it. papermill's `-p` reads only
    `True` and `False` as booleans: `-p cleanup false` gives the string "false", which
    `if cleanup:` takes as true, and notebook 02 would delete the stack it was told to keep."""
    wrong = {name: value for name, value in flags.items() if not isinstance(value, bool)}
    if wrong:
        said = [f"{name} must be True or False, not {value!r}" for name, value in wrong.items()]
        raise ValueError(
            "; ".join(said) + " (papermill's -p reads True and False, capitalised, as "
            f"booleans; its -y reads YAML: -y '{next(iter(wrong))}: false')"
        )
