"""Keeps environment.yml (for conda users) pinned to exactly the set in requirements.lock.

`python -m brewops.lockfiles write-environment` regenerates it (`make lock` calls this);
the tests compare the two so they cannot drift apart.
"""

from __future__ import annotations

import sys
from pathlib import Path

from packaging.requirements import Requirement

from brewops.paths import repo_root

PYTHON_VERSION = "3.11"
HEADER = """\
# Generated from requirements.lock by `make lock`: the same pinned set, for conda users.
#   conda env create -f environment.yml && conda activate brewops
name: brewops
channels:
  - conda-forge
dependencies:
  - python={python}
  - nodejs=20
  - pip
  - pip:
"""


def lock_pins(lock: Path | None = None, python_version: str = PYTHON_VERSION) -> dict[str, str]:
    """Package -> version from the lock, for the project's Python on Linux."""
    lock = lock or repo_root() / "requirements.lock"
    env = {
        "python_version": python_version,
        "python_full_version": f"{python_version}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "platform_machine": "x86_64",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }
    pins: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "-")):
            continue
        req = Requirement(line)
        if req.marker and not req.marker.evaluate(env):
            continue
        (spec,) = req.specifier
        pins[req.name.lower()] = spec.version
    return pins


def environment_pins(path: Path | None = None) -> dict[str, str]:
    import yaml

    path = path or repo_root() / "environment.yml"
    doc = yaml.safe_load(path.read_text())
    pip_section = next(d["pip"] for d in doc["dependencies"] if isinstance(d, dict))
    pins = {}
    for entry in pip_section:
        if entry.startswith("-"):
            continue
        req = Requirement(entry)
        (spec,) = req.specifier
        pins[req.name.lower()] = spec.version
    return pins


def render_environment(pins: dict[str, str]) -> str:
    lines = [HEADER.format(python=PYTHON_VERSION)]
    lines += [f"      - {name}=={version}\n" for name, version in sorted(pins.items())]
    lines.append("      - -e .\n")
    return "".join(lines)


def main(argv: list[str]) -> int:
    if argv != ["write-environment"]:
        print("usage: python -m brewops.lockfiles write-environment", file=sys.stderr)
        return 2
    target = repo_root() / "environment.yml"
    target.write_text(render_environment(lock_pins()))
    print(target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
