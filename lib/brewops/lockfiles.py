"""Keeps environment.yml (for conda users) and constraints.txt (for pip, as in Colab) pinned
to exactly the set in requirements.lock.

The lock carries a hash for every file of each pinned version, which `make setup` requires.
pip applies the hashes of a constraints file to the whole install, and then refuses the
project's own folder, which has none: constraints.txt is the lock without its hashes.
`python -m brewops.lockfiles write-environment` and `... write-constraints` regenerate them
(`make lock` calls both); the tests compare them with the lock so they cannot drift apart.
"""

from __future__ import annotations

import sys
from pathlib import Path

from packaging.requirements import Requirement

from brewops.paths import repo_root

PYTHON_VERSION = "3.11"
# the Node.js of the conda environment, for npm (`make setup`'s tools, the catalogue's fetch)
NODE_VERSION = "20"
# Where the pinned set is installed (the markers' values): the lock is universal, and pins
# some packages for one platform only (appnope on macOS, pywin32 on Windows)
PLATFORMS = {
    "linux": {
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "platform_machine": "x86_64",
    },
    "darwin": {
        "sys_platform": "darwin",
        "platform_system": "Darwin",
        "os_name": "posix",
        "platform_machine": "arm64",
    },
    "win32": {
        "sys_platform": "win32",
        "platform_system": "Windows",
        "os_name": "nt",
        "platform_machine": "AMD64",
    },
}
HEADER = """\
# Generated from requirements.lock by `make lock`: the same pinned set, for conda users.
#   conda env create -f environment.yml && conda activate brewops
# Each pin keeps the lock's markers: pip skips those for another platform.
name: brewops
channels:
  - conda-forge
dependencies:
  - python={python}
  - nodejs={node}
  - pip
  - pip:
"""


CONSTRAINTS_HEADER = """\
# Generated from requirements.lock by `make lock`: its pins without their hashes, for
#   pip install -c constraints.txt .
"""


def lock_requirements(lock: Path | None = None) -> list[str]:
    """The lock's requirement lines (pins and markers), without the hashes and comments."""
    lock = lock or repo_root() / "requirements.lock"
    # `name==version ; marker \` continues on `--hash=...` lines
    text = lock.read_text(encoding="utf-8").replace("\\\n", " ")
    requirements = []
    for line in text.splitlines():
        line = line.split(" --hash=")[0].strip()
        if line and not line.startswith(("#", "-")):
            requirements.append(line)
    return requirements


def lock_pins(
    lock: Path | None = None, python_version: str = PYTHON_VERSION, platform: str = "linux"
) -> dict[str, str]:
    """Package -> version from the lock, for the project's Python on one of PLATFORMS."""
    return _pins(lock_requirements(lock), python_version, platform)


def environment_pins(path: Path | None = None, platform: str = "linux") -> dict[str, str]:
    """Package -> version that environment.yml's pip step installs on one of PLATFORMS."""
    import yaml

    path = path or repo_root() / "environment.yml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    pip_section = next(d["pip"] for d in doc["dependencies"] if isinstance(d, dict))
    requirements = [entry for entry in pip_section if not entry.startswith("-")]  # not `-e .`
    return _pins(requirements, PYTHON_VERSION, platform)


def _applies(req: Requirement, python_version: str, platform: str) -> bool:
    env = {
        "python_version": python_version,
        "python_full_version": f"{python_version}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
        **PLATFORMS[platform],
    }
    return not req.marker or req.marker.evaluate(env)


def _pins(requirements: list[str], python_version: str, platform: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in requirements:
        req = Requirement(line)
        if not _applies(req, python_version, platform):
            continue
        (spec,) = req.specifier
        pins[req.name.lower()] = spec.version
    return pins


def render_environment(requirements: list[str]) -> str:
    """The lock's lines for the environment's Python on any platform, with their markers:
    pip, in conda's pip step, leaves out those for another platform."""
    lines = [HEADER.format(python=PYTHON_VERSION, node=NODE_VERSION)]
    lines += [
        f"      - {line}\n"
        for line in requirements
        if any(_applies(Requirement(line), PYTHON_VERSION, platform) for platform in PLATFORMS)
    ]
    lines.append("      - -e .\n")
    return "".join(lines)


def render_constraints(requirements: list[str]) -> str:
    return CONSTRAINTS_HEADER + "".join(f"{line}\n" for line in requirements)


def main(argv: list[str]) -> int:
    writers = {
        "write-environment": ("environment.yml", lambda: render_environment(lock_requirements())),
        "write-constraints": ("constraints.txt", lambda: render_constraints(lock_requirements())),
    }
    if len(argv) != 1 or argv[0] not in writers:
        print(f"usage: python -m brewops.lockfiles {{{'|'.join(writers)}}}", file=sys.stderr)
        return 2
    name, render = writers[argv[0]]
    target = repo_root() / name
    target.write_text(render(), encoding="utf-8")
    print(target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
