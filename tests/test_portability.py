"""A checkout works where the README's commands may be run other than on Linux: made by Git
for Windows (CRLF line endings unless the repository says otherwise), on a file system that
ignores case (macOS, Windows), with macOS's own make (GNU make 3.81)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from brewops.paths import repo_root
from fixtures.checkout import git_in

ROOT = repo_root()


def _git(*args: str, cwd: Path = ROOT, stdin: str | None = None) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, input=stdin, capture_output=True, encoding="utf-8", check=True
    ).stdout


def _files() -> list[str]:
    """The files git tracks, and those it would track (new, not ignored)."""
    listed = git_in(ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    listed = listed.stdout.split("\0")
    return [name for name in listed if name and (ROOT / name).is_file()]


def _attributes(names: list[str], *attributes: str) -> dict[str, dict[str, str]]:
    """git check-attr's value of each of `attributes` for each file."""
    fields = _git("check-attr", "-z", "--stdin", *attributes, stdin="\0".join(names))
    fields = fields.split("\0")
    found: dict[str, dict[str, str]] = {}
    for name, attribute, value in zip(fields[0::3], fields[1::3], fields[2::3], strict=False):
        found.setdefault(name, {})[attribute] = value
    return found


def _is_text(path: Path) -> bool:
    """As git's text=auto decides: no NUL byte in the first 8000."""
    with path.open("rb") as file:
        return b"\0" not in file.read(8000)


def test_every_text_file_is_checked_out_with_lf_line_endings():
    """Git for Windows checks text out with CRLF (core.autocrlf=true) unless the repository
    sets eol: .ci/run then stops at its first line (`bash\\r`), and git in WSL or a container
    sees every file changed, so each model card records the code as modified."""
    names = [name for name in _files() if _is_text(ROOT / name)]
    attributes = _attributes(names, "text", "eol")
    not_lf = [name for name in names if attributes[name] != {"text": "auto", "eol": "lf"}]
    assert not_lf == [], "add them to an `eol=lf` rule of .gitattributes"


def test_a_clone_made_with_core_autocrlf_has_lf_line_endings(tmp_path: Path):
    # GIVEN a repository holding .gitattributes, the CI script and the Makefile
    source = tmp_path / "source"
    for name in (".gitattributes", ".ci/run", "Makefile"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    _git("init", "-q", cwd=source)
    _git("add", ".", cwd=source)
    identity = ("-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false")
    _git(*identity, "-c", "core.hooksPath=/dev/null", "commit", "-qm", "files", cwd=source)
    # WHEN it is cloned as Git for Windows does by default
    _git("-c", "core.autocrlf=true", "clone", "-q", str(source), str(tmp_path / "clone"))
    # THEN no line ends with CR
    with_cr = [
        name
        for name in (".ci/run", "Makefile")
        if b"\r\n" in (tmp_path / "clone" / name).read_bytes()
    ]
    assert with_cr == []


def test_no_two_files_differ_only_in_case():
    """On a file system that ignores case (macOS's, Windows') a clone holds one of the two."""
    seen: dict[str, str] = {}
    clashes = set()
    for name in _files():
        for path in [*map(str, reversed(Path(name).parents[:-1])), name]:  # folders too
            other = seen.setdefault(path.casefold(), path)
            if other != path:
                clashes.add((other, path))
    assert sorted(clashes) == []


# What GNU make added after 3.81, the version macOS ships (/usr/bin/make): such a Makefile
# fails there, or does something else, with no word of why
NEWER_THAN_MAKE_3_81 = {
    ".ONESHELL": r"^\.ONESHELL\s*:",
    ".RECIPEPREFIX": r"\.RECIPEPREFIX",
    ".SHELLFLAGS": r"\.SHELLFLAGS",
    ".EXTRA_PREREQS": r"\.EXTRA_PREREQS",
    ".NOTINTERMEDIATE": r"\.NOTINTERMEDIATE",
    "undefine": r"^\s*(override\s+)?undefine\b",
    "private": r"^\s*[^#\t]*\bprivate\s+\S+\s*[:+?]?=",
    "$(file ...)": r"\$[({]file\s",
    "$(guile ...)": r"\$[({]guile\s",
    "$(let ...)": r"\$[({]let\s",
    "$(intcmp ...)": r"\$[({]intcmp\s",
    "!= (shell assignment)": r"^[^#\t=]*[^:#\t=]!=",
    "::= or :::=": r"^[^#\t]*:::?=",
    "&: (grouped targets)": r"^[^#\t]*&:",
    "--output-sync": r"^\s*MAKEFLAGS\b.*(--output-sync|\s-O)",
}


def makefile_features_newer_than_3_81(makefile: str) -> list[str]:
    return [
        feature
        for feature, pattern in NEWER_THAN_MAKE_3_81.items()
        if re.search(pattern, makefile, re.MULTILINE)
    ]


def test_the_makefile_needs_no_make_newer_than_macos_s_3_81():
    assert makefile_features_newer_than_3_81((ROOT / "Makefile").read_text(encoding="utf-8")) == []
    assert "GNU make 3.81" in (ROOT / "README.md").read_text(encoding="utf-8")  # as it says


@pytest.mark.parametrize(
    ("line", "feature"),
    [
        (".ONESHELL:\n", ".ONESHELL"),
        ("MAKEFLAGS += --output-sync=target\n", "--output-sync"),
        ("STAMP != date\n", "!= (shell assignment)"),
        ("VENV ::= .venv\n", "::= or :::="),
        ("a b &: c\n\ttouch a b\n", "&: (grouped targets)"),
        ("x:\n\t$(file >out,text)\n", "$(file ...)"),
        ("undefine PYTHON\n", "undefine"),
    ],
)
def test_a_feature_newer_than_make_3_81_is_found(line: str, feature: str):
    assert makefile_features_newer_than_3_81(line) == [feature]


def test_the_makefiles_own_comparisons_are_not_taken_for_newer_features():
    makefile = "ifneq ($(words $(TARGET)):$(filter a,$(TARGET)),1:$(strip $(TARGET)))\nendif\n"
    assert makefile_features_newer_than_3_81(makefile) == []
