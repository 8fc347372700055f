"""Shell completion (`_BREWOPS_COMPLETE`, as the README's Shell completion enables it): the
commands, their options and the values those take complete, and a Tab loads only what the
words typed so far need."""

from __future__ import annotations

import os
import sys

import pytest
from click.shell_completion import BashComplete

from brewops.cli import COMMANDS, main
from brewops.json_schemas import NAMES
from fixtures.commands import run_in_group


def _completed(words: str) -> list[tuple[str, str]]:
    """(type, value) of what Tab offers after `words`, the last one the word being typed."""
    args = words.split()[1:]
    incomplete = "" if words.endswith(" ") else args.pop()
    complete = BashComplete(main, {}, "brewops", "_BREWOPS_COMPLETE")
    return [(item.type, item.value) for item in complete.get_completions(args, incomplete)]


def _values(words: str) -> list[str]:
    return [value for _, value in _completed(words)]


@pytest.mark.parametrize(
    ("words", "offered"),
    [
        ("brewops ", sorted(COMMANDS)),
        ("brewops mo", ["model"]),
        ("brewops --", ["--version", "--help"]),  # not the hidden option of the servers
        ("brewops model ", ["evaluate", "predict", "train", "versions"]),
        ("brewops stream backfill --target ", ["local", "aws"]),
        ("brewops api serve --api-version ", ["v2", "v3"]),
        ("brewops validate run --table ", ["cleaned", "raw"]),
        ("brewops schema ", list(NAMES)),
        ("brewops model predict --model s3://bucket/", []),
    ],
)
def test_tab_offers_the_commands_options_and_their_values(words, offered):
    assert _values(words) == offered


def test_only_offers_the_numbers_of_the_notebooks_there_are(tmp_path, monkeypatch):
    """Found in notebooks/ as `brewops run` finds them: a notebook added is offered."""
    (tmp_path / "notebooks").mkdir()
    for name in ("01_explore_api", "06_batch_predict", "12_more_beers", "notes"):
        (tmp_path / "notebooks" / f"{name}.ipynb").touch()
    monkeypatch.setenv("BREWOPS_HOME", str(tmp_path))
    complete = BashComplete(main, {}, "brewops", "_BREWOPS_COMPLETE")

    offered = complete.get_completions(["run", "--only"], "")
    assert [(item.value, item.help) for item in offered] == [
        ("01", "explore api"),
        ("06", "batch predict"),
        ("12", "more beers"),
    ]
    assert _values("brewops run --only 0") == ["01", "06"]


@pytest.mark.parametrize(
    ("words", "kind"),
    [
        ("brewops model train --catalog ", "file"),
        ("brewops model train --out ", "dir"),
        ("brewops model predict --model ", "dir"),  # a folder, unless it is a registry URI
        ("brewops model evaluate --model ", "dir"),
    ],
)
def test_a_path_is_left_to_the_shell_s_own_completion(words, kind):
    assert [item_type for item_type, _ in _completed(words)] == [kind]


def test_the_commands_offered_say_what_they_do():
    complete = BashComplete(main, {}, "brewops", "_BREWOPS_COMPLETE")
    helps = {item.value: item.help for item in complete.get_completions([], "")}

    assert helps == {name: said for name, (_, said) in COMMANDS.items()}


# What a Tab must not wait for: the command modules and the libraries they bring
HEAVY = ("requests", "psutil", "boto3", "botocore", "pandas", "sklearn", "moto", "papermill")


def _imported_on_tab(words: str) -> tuple[list[str], set[str]]:
    """What `brewops` prints for a Tab after `words` (in a fresh process, as the shell runs
    it) and the modules it imported to do so."""
    script = (
        "import atexit, sys\n"
        "atexit.register(lambda: print(*sys.modules, file=sys.stderr))\n"
        "from brewops.cli import main\n"
        "main(prog_name='brewops')\n"
    )
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    result = run_in_group(
        [sys.executable, "-c", script],
        env={
            **os.environ,
            "_BREWOPS_COMPLETE": "bash_complete",
            "COMP_WORDS": words,
            "COMP_CWORD": str(cword),
        },
        capture_output=True,
        encoding="locale",
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines(), set(result.stderr.split())


def test_a_tab_after_brewops_imports_no_command():
    offered, imported = _imported_on_tab("brewops ")

    assert offered == [f"plain,{name}" for name in sorted(COMMANDS)]
    modules = {target.split(":")[0] for target, _ in COMMANDS.values()}
    assert sorted(modules & imported) == []
    assert sorted(imported & set(HEAVY)) == []


def test_a_tab_after_a_group_imports_that_group_only():
    # `brewops local`'s commands start servers: their runtime is imported when one runs
    offered, imported = _imported_on_tab("brewops local ")

    assert offered == ["plain,down", "plain,status", "plain,up"]
    assert "brewops.local.runtime" not in imported
    assert sorted(imported & set(HEAVY)) == []
