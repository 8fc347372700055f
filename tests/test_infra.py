"""The template as data: lint table, resources, the derived data-flow diagram."""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from matplotlib import colors
from matplotlib.path import Path as Polyline

from brewops import infra, plotstyle
from brewops import target as targets
from brewops.errors import ActionableError
from brewops.paths import repo_root, template_path
from fixtures.figures import legibility_problems
from fixtures.local import exited


def _broken_template(directory, old: str, new: str):
    """A copy of the template with one line changed."""
    text = template_path().read_text(encoding="utf-8")
    assert old in text
    broken = directory / "template.yaml"
    broken.write_text(text.replace(old, new), encoding="utf-8")
    return broken


def test_the_template_lints_clean():
    findings = infra.lint()
    # the runtime's lifecycle comes with the date: a lint on the day AWS retires the
    # runtime must not fail on every clone made before
    dated = findings["rule"].isin(infra.RUNTIME_LIFECYCLE_RULES)
    assert findings[~dated].empty, findings.to_string()


def test_a_retired_runtime_stops_a_deploy_to_aws_not_the_local_target(runtime_retired):
    findings = infra.lint()

    assert findings["message"].str.contains(f"Runtime {runtime_retired!r}").any()
    assert infra.lint_errors(findings, "local").empty
    assert infra.lint_errors(findings, "aws")["rule"].tolist() == ["E2533"]


def test_other_errors_stop_the_local_target_too(tmp_path):
    broken = _broken_template(tmp_path, "Type: AWS::Kinesis::Stream", "Type: AWS::Kinesis::Strem")
    errors = infra.lint_errors(infra.lint(broken), "local")
    assert errors["message"].str.contains("Strem").any()


def test_lint_reports_a_broken_template_as_rows(tmp_path):
    broken = _broken_template(tmp_path, "Type: AWS::Kinesis::Stream", "Type: AWS::Kinesis::Strem")
    findings = infra.lint(broken)
    assert (findings["level"] == "error").any()
    assert findings["message"].str.contains("Strem").any()
    [line] = [
        n
        for n, text in enumerate(broken.read_text(encoding="utf-8").splitlines(), 1)
        if "Strem" in text
    ]
    assert line in set(findings.loc[findings["message"].str.contains("Strem"), "line"])


def test_a_template_that_cannot_be_parsed_is_refused_with_its_path(tmp_path):
    broken = _broken_template(tmp_path, "Resources:", "Resources: [")
    with pytest.raises(ValueError, match=f"cannot parse {broken}"):
        infra.load_template(broken)


def test_every_resource_is_listed_with_its_references():
    table = infra.resources_table().set_index("logical id")
    assert set(table.index) == set(infra.load_template()["Resources"])
    assert "Stream" in table.loc["ProducerRole", "references"]
    assert table.loc["CleanedTable", "name"] == "beers_cleaned"
    assert table.loc["ProducerErrorsAlarm", "name"] == "${AWS::StackName}-producer-errors"
    assert table.loc["AlarmTopic", "name"] == "${AWS::StackName}-alarms"
    assert table.loc["GlueDatabase", "name"] == "${AWS::StackName} with - as _"
    assert (table.loc["Bucket", "group"], table.loc["ProducerFunction", "group"]) == (
        "S3",
        "Serverless",
    )


def test_resource_names_are_shown_as_the_template_writes_them():
    sub_with_variables = {"Fn::Sub": ["brewops-${S}-role", {"S": {"Ref": "Stage"}}]}
    joined = {"Fn::Join": ["-", ["brewops", {"Ref": "N"}]]}
    template = {
        "Resources": {
            "Role": {"Type": "AWS::IAM::Role", "Properties": {"RoleName": sub_with_variables}},
            "Logs": {"Type": "AWS::Logs::LogGroup", "Properties": {"LogGroupName": {"Ref": "N"}}},
            "Topic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": joined}},
        }
    }
    names = infra.resources_table(template).set_index("logical id")["name"].to_dict()
    assert names == {"Role": "brewops-${S}-role", "Logs": "${N}", "Topic": "brewops-${N}"}


def test_the_data_flow_follows_the_records():
    graph = infra.data_flow_graph()
    path = [
        "ProducerFunctionTick",
        "ProducerFunction",
        "Stream",
        "CleanedDeliveryStream",
        "Bucket",
        "CleanedTable",
        "GlueDatabase",
    ]
    for source, sink in itertools.pairwise(path):
        assert graph.has_edge(source, sink), (source, sink)
    assert graph.has_edge("Stream", "RawDeliveryStream")
    assert graph.has_edge("CleanedDeliveryStream", "TransformFunction")
    assert not any("Role" in node or "Log" in node for node in graph)  # plumbing is left out


def test_the_diagram_is_drawn_from_the_graph():
    fig = infra.plot_data_flow()
    labels = {t.get_text().split("\n")[0] for t in fig.axes[0].texts}
    assert set(infra.data_flow_graph()) <= labels
    # each arrow runs from its source's box to its sink's, ending at their borders
    named = {t.get_bbox_patch(): t.get_text().split("\n")[0] for t in fig.axes[0].texts}
    arrows = [t.arrow_patch for t in fig.axes[0].texts if getattr(t, "arrow_patch", None)]
    drawn = [(named[arrow.patchA], named[arrow.patchB]) for arrow in arrows]
    assert sorted(drawn) == sorted(infra.data_flow_graph().edges)


def test_the_diagram_is_legible_at_the_width_notebooks_show():
    # seven steps side by side made it 14 in wide, shrunk to about 6 px text in a notebook
    assert not legibility_problems(infra.plot_data_flow())


def test_the_diagram_colours_each_kind_from_the_shared_palette():
    graph = infra.data_flow_graph()
    ax = infra.plot_data_flow().axes[0]
    kinds_by_colour: dict[str, set[str]] = {}
    for box in (t for t in ax.texts if "\n" in t.get_text()):
        node = box.get_text().split("\n")[0]
        face = colors.to_hex(box.get_bbox_patch().get_facecolor())
        assert face in plotstyle.PALETTE, (node, face)
        assert plotstyle.contrast_ratio(box.get_color(), face) >= 4.5, node
        kinds_by_colour.setdefault(face, set()).add(graph.nodes[node]["kind"])
    shared = [kinds for kinds in kinds_by_colour.values() if len(kinds) > 1]
    assert shared == [{"Glue table", "Glue database"}]  # the one pair of one service


def test_the_diagrams_boxes_labels_and_arrows_do_not_overlap():
    fig = infra.plot_data_flow()
    fig.canvas.draw()  # puts the boxes and the arrows' ends in place
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    extents = {t: t.get_bbox_patch().get_window_extent(renderer) for t in ax.texts if t.get_text()}
    for (first, one), (second, other) in itertools.combinations(extents.items(), 2):
        assert not one.overlaps(other), (first.get_text(), second.get_text())
    # an arrow crosses no box or label but those of its own edge
    text_of = {t.get_bbox_patch(): t for t in extents}
    labels = [t for t in extents if "\n" not in t.get_text()]  # one per edge, in turn
    arrows = [t.arrow_patch for t in ax.texts if getattr(t, "arrow_patch", None)]
    for arrow, label in zip(arrows, labels, strict=True):
        shape = arrow.get_transform().transform_path(arrow.get_path())
        strokes = [Polyline(points) for points in shape.to_polygons(closed_only=False)]
        crossed = {
            text
            for text, extent in extents.items()
            if any(stroke.intersects_bbox(extent, filled=False) for stroke in strokes)
        }
        own = {text_of[arrow.patchA], text_of[arrow.patchB], label}
        assert crossed <= own, [t.get_text() for t in crossed - own]


def test_the_diagram_is_laid_out_the_same_in_every_process():
    """Laid out and drawn from sets of names, the figure came in hash order: another each run."""
    code = (
        "from brewops import infra\n"
        "ax = infra.plot_data_flow().axes[0]\n"
        "print([(t.get_text(), t.get_position()) for t in ax.texts])\n"  # as drawn, in order
    )
    # the three processes at once: each spends seconds importing cfn-lint and matplotlib
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed, "MPLBACKEND": "Agg"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            encoding="locale",
        )
        for seed in ("0", "1", "2")
    ]
    try:
        outputs = [process.communicate(timeout=120) for process in processes]
    finally:
        for process in processes:
            process.kill()  # any still running after a timeout
            process.wait()
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr
    layouts = {stdout for stdout, _ in outputs}
    assert len(layouts) == 1


@pytest.mark.parametrize(
    ("edges", "layers"),
    [
        # in the order of their inputs' places, not of their names or of the edges
        ([("b", "y"), ("a", "z")], {0: ["a", "b"], 1: ["z", "y"]}),
        # places counted from each layer's middle, as the diagram centres it: zp's inputs, a
        # (place -1) and m (place 0), come before r's, m; counted from the start both are at 0
        (
            [("b", "m"), ("c", "m"), ("m", "r"), ("m", "zp"), ("a", "zp")],
            {0: ["a", "b", "c"], 1: ["m"], 2: ["zp", "r"]},
        ),
    ],
    ids=["inputs-order", "centred-layers"],
)
def test_the_diagram_puts_each_step_beside_its_inputs(edges, layers):
    import networkx as nx

    assert infra._layers(nx.DiGraph(edges)) == layers


def test_the_output_contract_is_read_from_the_template():
    names = infra.output_names()
    assert {"BucketName", "StreamName", "CleanedTableName", "ModelRegistryUri"} <= set(names)


@pytest.mark.parametrize("act", [infra.deploy, infra.teardown])
def test_deploying_to_aws_without_the_sam_cli_says_what_to_do(monkeypatch, act):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    try:
        act("aws", "brewops-test")
    except RuntimeError as error:
        assert "SAM CLI" in str(error)
    else:
        raise AssertionError("expected a RuntimeError")


def test_without_sam_on_the_path_the_one_make_sam_validate_installs_is_used(tmp_path, monkeypatch):
    # the message for a missing SAM CLI offers `make sam-validate`, which puts it in .venv-sam
    calls = tmp_path / "calls"
    venv_sam = tmp_path / ".venv-sam" / "bin"
    venv_sam.mkdir(parents=True)
    _fake_sam(venv_sam, monkeypatch, f'echo "$@" >> {calls}')
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    monkeypatch.setenv("BREWOPS_HOME", str(tmp_path))

    infra.teardown("aws", "brewops-dev")

    assert calls.read_text(encoding="utf-8").splitlines() == [
        "delete --stack-name brewops-dev --no-prompts"
    ]


@pytest.mark.parametrize(
    ("deploy", "cleanup", "reads"),
    [(True, False, True), (True, True, True), (False, False, True), (False, True, False)],
)
def test_notebook_02_reads_the_stack_unless_it_runs_only_to_delete_it(deploy, cleanup, reads):
    # a first deploy that rolled back leaves a stack with no Outputs, which only a run
    # that reads none of it can delete
    assert infra.reads_stack(deploy, cleanup) is reads


def test_each_stack_deploys_with_its_own_samconfig_environment():
    assert infra.sam_config_env("brewops-dev") == "default"
    assert infra.sam_config_env("brewops-prod") == "prod"
    assert infra.sam_own_s3_prefix("brewops-dev") is None  # the environment's s3_prefix
    assert infra.sam_own_s3_prefix("brewops-prod") is None


def test_a_stack_no_environment_names_deploys_with_the_default_one_and_a_prefix_of_its_own():
    # its Glue database and every other name come from the stack name, so it may share the
    # account with brewops-dev; not its S3 prefix, which `sam delete` removes whole
    assert infra.sam_config_env("brewops-alice") == "default"
    assert infra.sam_own_s3_prefix("brewops-alice") == "brewops-alice"


def test_a_samconfig_environment_without_a_stack_is_not_offered(tmp_path):
    # with no default environment, a stack no environment names has no settings to take
    config = tmp_path / "samconfig.toml"
    config.write_text(
        'version = 0.1\n[prod.global.parameters]\nstack_name = "brewops-prod"\n'
        "[ci.validate.parameters]\nlint = true\n",
        encoding="utf-8",
    )
    with pytest.raises(
        ValueError, match=r"no default environment .* to one of brewops-prod, or add"
    ):
        infra.sam_config_env("brewops-mine", config)


def test_sam_deploys_and_deletes_a_stack_of_ones_own_with_the_default_stage(
    tmp_path, monkeypatch, capsys
):
    calls = tmp_path / "calls"
    _fake_sam(tmp_path, monkeypatch, f'echo "$@" >> {calls}')
    monkeypatch.setenv("BREWOPS_STACK_NAME", "brewops-alice")

    infra.deploy("aws")  # as notebook 02 does

    said = capsys.readouterr().out.splitlines()
    assert said[0] == (
        "No samconfig.toml environment names the stack brewops-alice: it deploys with the "
        "default environment's settings (Stage dev) and the S3 prefix brewops-alice."
    )
    assert calls.read_text(encoding="utf-8").splitlines() == [
        "build --config-env default",
        "deploy --config-env default --stack-name brewops-alice "
        "--no-confirm-changeset --no-fail-on-empty-changeset --s3-prefix brewops-alice",
    ]

    calls.unlink()
    infra.deploy("aws", ScheduleState="DISABLED")
    # the default environment's Stage stays, as for brewops-dev
    assert (
        calls.read_text(encoding="utf-8")
        .splitlines()[-1]
        .endswith(
            "--s3-prefix brewops-alice --parameter-overrides Stage=dev ScheduleState=DISABLED"
        )
    )

    infra.teardown("aws")
    assert (
        calls.read_text(encoding="utf-8").splitlines()[-1]
        == "delete --stack-name brewops-alice --no-prompts"
    )


def test_a_stack_name_given_in_code_that_the_template_cannot_deploy_is_refused_before_sam(
    tmp_path, monkeypatch
):
    calls = tmp_path / "calls"
    _fake_sam(tmp_path, monkeypatch, f'echo "$@" >> {calls}')

    # Glue folds it into brewops-alice's database
    with pytest.raises(ActionableError, match=r"^'Brewops-Alice' is not a stack name brewops"):
        infra.deploy("aws", stack_name="Brewops-Alice")
    assert not calls.exists()


def test_sam_deploy_builds_and_deploys_with_the_stacks_environment(tmp_path, monkeypatch, capsys):
    # The real SAM CLI needs an AWS account to deploy: a stand-in records the commands.
    calls = tmp_path / "calls"
    _fake_sam(tmp_path, monkeypatch, f'echo "$@" >> {calls}')
    monkeypatch.setenv("BREWOPS_STACK_NAME", "brewops-prod")

    infra.deploy("aws")

    assert capsys.readouterr().out == ""  # its environment names it: its own Stage and prefix
    assert calls.read_text(encoding="utf-8").splitlines() == [
        "build --config-env prod",
        "deploy --config-env prod --stack-name brewops-prod "
        "--no-confirm-changeset --no-fail-on-empty-changeset",
    ]

    calls.unlink()
    infra.deploy("aws", ScheduleState="DISABLED")

    # the command line replaces samconfig's parameter_overrides: the prod Stage must stay
    assert (
        calls.read_text(encoding="utf-8")
        .splitlines()[-1]
        .endswith("--parameter-overrides Stage=prod ScheduleState=DISABLED")
    )

    infra.teardown("aws")
    assert (
        calls.read_text(encoding="utf-8").splitlines()[-1]
        == "delete --stack-name brewops-prod --no-prompts"
    )


def test_the_alarm_address_reaches_the_aws_deploy_from_the_environment(tmp_path, monkeypatch):
    calls = tmp_path / "calls"
    _fake_sam(tmp_path, monkeypatch, f'echo "$@" >> {calls}')
    monkeypatch.delenv("BREWOPS_STACK_NAME", raising=False)
    monkeypatch.setenv("BREWOPS_ALARM_EMAIL", "ops@example.com")

    infra.deploy("aws")  # as notebook 02 does, with no parameters of its own
    infra.deploy("aws", AlarmEmail="")  # the caller's own value wins: here, no address

    deploys = [
        line for line in calls.read_text(encoding="utf-8").splitlines() if line.startswith("deploy")
    ]
    assert deploys[0].endswith("--parameter-overrides Stage=dev AlarmEmail=ops@example.com")
    assert deploys[1].endswith('--parameter-overrides Stage=dev AlarmEmail=""')
    # a parameter of the template, so the README's `AlarmEmail=` and this agree
    assert "AlarmEmail" in infra.load_template()["Parameters"]


def _fake_sam(directory, monkeypatch, script: str):
    """A stand-in `sam` on PATH running `script` (sh), the real one needing an AWS account,
    and the region and credentials of a user who deploys."""
    fake = directory / "sam"
    fake.write_text(f"#!/bin/sh\n{script}\n", encoding="utf-8")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUSERKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-key")  # pragma: allowlist secret


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        (("AWS_DEFAULT_REGION",), targets.NO_REGION),
        (("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"), targets.NO_CREDENTIALS),
    ],
    ids=["no region", "no credentials"],
)
def test_deploying_without_a_region_or_credentials_stops_before_sam_builds(
    no_aws_settings, tmp_path, monkeypatch, missing, message
):
    # sam build takes 20 s or more; sam deploy would be the first to find the settings missing
    calls = tmp_path / "calls"
    _fake_sam(tmp_path, monkeypatch, f'echo "$@" >> {calls}')
    for name in missing:
        monkeypatch.delenv(name)

    with pytest.raises(targets.TargetNotReady) as raised:
        infra.deploy("aws", "brewops-dev")

    assert str(raised.value) == message
    assert not calls.exists(), "sam never ran"


@pytest.mark.parametrize(
    "values",
    [
        {
            "ScheduleRate": "rate(1 hour)",
            "PunkApiUrl": 'https://punk.example/say "hi"',
            "AlarmEmail": "'ops@example.com'",  # SAM would strip bare single quotes
        },
        {"AlarmEmail": ""},  # SAM would drop an empty value
    ],
    ids=["spaces and quotes", "empty"],
)
def test_parameter_values_with_spaces_or_quotes_reach_sam_whole(values, tmp_path, monkeypatch):
    args = tmp_path / "args"
    _fake_sam(tmp_path, monkeypatch, f"printf '%s\\n' \"$@\" > {args}")

    infra.deploy("aws", "brewops-dev", **values)

    recorded = args.read_text(encoding="utf-8").splitlines()
    overrides = recorded[recorded.index("--parameter-overrides") + 1 :]
    # SAM's own parser of the option splits unquoted values at spaces: rate(1 hour) -> rate(1
    parse = (
        "import json, sys; from samcli.cli.types import CfnParameterOverridesType; "
        "print(json.dumps(CfnParameterOverridesType().convert(tuple(sys.argv[1:]), None, None)))"
    )
    assert SAM.exists(), "the SAM CLI is installed by `make test` (or `make sam-validate`)"
    parsed = subprocess.run(
        [SAM.parent / "python", "-c", parse, *overrides],
        capture_output=True,
        encoding="locale",
        check=True,
        env={**os.environ, "SAM_CLI_TELEMETRY": "0"},
    )
    assert json.loads(parsed.stdout) == {"Stage": "dev", **values}


@pytest.mark.parametrize("value", ["C:\\logs\\", "a\\ b", 'x\\"y', "it\\'s"])
def test_a_parameter_value_sam_would_change_is_refused_before_sam_runs(
    value, tmp_path, monkeypatch
):
    # SAM reads a backslash before a space or a quote, or at the end, as an escape
    calls = tmp_path / "calls"
    _fake_sam(tmp_path, monkeypatch, f'echo "$@" >> {calls}')

    url = f"https://punk.example/{value}"
    with pytest.raises(ValueError, match=r"PunkApiUrl .* has a backslash before a space"):
        infra.deploy("aws", "brewops-dev", PunkApiUrl=url)
    assert not calls.exists(), "sam never ran"


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        # sam deploy leaves an undeclared parameter out: the stack keeps its old value
        (
            {"ShardCont": "2"},
            r"^the template declares no parameter ShardCont \(`sam deploy` would leave it "
            r"out\); it declares Stage, PunkApiUrl, .*, AlarmEmail, RoleBoundaryArn$",
        ),
        # CloudFormation would refuse these once sam build had run
        ({"ShardCount": "0"}, r"ShardCount='0' is less than its MinValue 1"),
        ({"StreamMode": "BOGUS"}, r"StreamMode='BOGUS' is not one of its AllowedValues"),
        ({"ScheduleRate": "rate(5 minute)"}, r"ScheduleRate='rate\(5 minute\)' does not match"),
    ],
    ids=["undeclared", "below MinValue", "not allowed", "pattern"],
)
def test_a_parameter_the_template_would_not_take_is_refused_before_sam_builds(
    parameters, message, tmp_path, monkeypatch
):
    calls = tmp_path / "calls"
    _fake_sam(tmp_path, monkeypatch, f'echo "$@" >> {calls}')

    with pytest.raises(infra.TemplateParameterError, match=message):
        infra.deploy("aws", "brewops-dev", **parameters)
    assert not calls.exists(), "sam never ran"


def test_a_samconfig_parameter_the_template_does_not_declare_is_refused_before_sam_builds(
    tmp_path, monkeypatch
):
    config = tmp_path / "samconfig.toml"
    config.write_text(
        'version = 0.1\n[default.global.parameters]\nstack_name = "brewops-dev"\n'
        '[default.deploy.parameters]\nparameter_overrides = "Stage=dev Shards=2"\n',
        encoding="utf-8",
    )
    with pytest.raises(infra.TemplateParameterError, match="no parameter Shards"):
        infra.check_template_parameters(infra.sam_config_parameters("default", config))


ROLLED_BACK_ON_CREATE = (
    "Error: Failed to create changeset for the stack: brewops-dev, An error occurred "
    "(ValidationError) when calling the CreateChangeSet operation: Stack:arn:aws:"
    "cloudformation:eu-west-1:123456789012:stack/brewops-dev/1 is in ROLLBACK_COMPLETE "
    "state and can not be updated."
)


@pytest.mark.parametrize(
    ("command", "sam_says", "next_step"),
    [
        pytest.param(
            "deploy",
            ROLLED_BACK_ON_CREATE,
            "sam delete --stack-name brewops-dev",
            id="first-deploy-rolled-back",
        ),
        pytest.param(
            "deploy",
            ROLLED_BACK_ON_CREATE.replace("ROLLBACK_COMPLETE", "UPDATE_ROLLBACK_FAILED"),
            "continue-update-rollback --stack-name brewops-dev",
            id="update-rollback-failed",
        ),
        pytest.param(
            "deploy",
            ROLLED_BACK_ON_CREATE.replace("ROLLBACK_COMPLETE", "DELETE_FAILED"),
            "delete the stack (`sam delete --stack-name brewops-dev --no-prompts`) and deploy",
            id="deletion-failed-before",
        ),
        # an update that rolled back leaves a stack that takes the next deploy as it is
        pytest.param(
            "deploy",
            "UPDATE_ROLLBACK_COMPLETE\nError: Failed to create/update the stack: brewops-dev",
            "the output above shows why",
            id="update-rolled-back",
        ),
        pytest.param(
            "deploy",
            "Error: Failed to create changeset for the stack: brewops-dev, An error occurred "
            "(ValidationError): Stack:arn:aws:cloudformation:eu-west-1:123456789012:stack/"
            "brewops-dev/1 is in UPDATE_IN_PROGRESS state and can not be updated.",
            "another operation on the stack is still running: wait until it ends",
            id="stack-busy",
        ),
        pytest.param(
            "build",
            "Build Failed\nError: PythonPipBuilder:Validation - Binary validation failed for "
            "python, searched for python in following locations  : /usr/bin/python3 which did "
            "not satisfy constraints for runtime: python3.13. Do you have python for runtime: "
            "python3.13 on your PATH?",
            "sam build --use-container && sam deploy",
            id="build-without-the-runtimes-python",
        ),
        pytest.param(
            "delete",
            "Error: Stack brewops-dev could not be deleted as it encountered DELETE_FAILED",
            "describe-stack-events --stack-name brewops-dev",
            id="delete-failed",
        ),
    ],
)
def test_a_failed_sam_command_shows_its_output_and_says_what_to_do(
    tmp_path, monkeypatch, capsys, command, sam_says, next_step
):
    # the other sam commands succeed; this one fails as SAM reports it, on stderr
    _fake_sam(
        tmp_path,
        monkeypatch,
        f'[ "$1" != {command} ] && exit 0\necho "working on it"\nprintf \'%s\\n\' "{sam_says}" >&2\nexit 1',
    )
    act = infra.teardown if command == "delete" else infra.deploy

    with pytest.raises(infra.SamCommandError) as raised:
        act("aws", "brewops-dev")

    assert isinstance(raised.value, ActionableError)
    message = str(raised.value)
    assert f"`sam {command}` failed (exit 1) for stack brewops-dev" in message
    assert sam_says.splitlines()[-1] in message
    assert "working on it" not in message  # SAM's Error lines, not all it said
    assert next_step in message
    # the output goes through sys.stdout, where a notebook cell shows it
    assert "working on it" in capsys.readouterr().out


def test_sam_runs_unbuffered_so_a_cell_shows_its_lines_as_they_come(tmp_path, monkeypatch):
    seen = tmp_path / "unbuffered"
    _fake_sam(tmp_path, monkeypatch, f'echo "$PYTHONUNBUFFERED" >> {seen}')

    infra.teardown("aws", "brewops-dev")

    assert seen.read_text(encoding="utf-8").splitlines() == ["1"]


def test_sam_runs_in_the_repository_whatever_the_current_directory(tmp_path, monkeypatch):
    seen = tmp_path / "cwd"
    _fake_sam(tmp_path, monkeypatch, f"pwd > {seen}")
    monkeypatch.chdir(tmp_path)  # a notebook runs in notebooks/

    infra.teardown("aws", "brewops-dev")

    assert Path(seen.read_text(encoding="utf-8").strip()).resolve() == repo_root().resolve()


def test_an_interrupted_sam_command_stops_with_the_processes_it_started(tmp_path, monkeypatch):
    child = tmp_path / "child.pid"
    _fake_sam(tmp_path, monkeypatch, f"sleep 60 & echo $! > {child}; echo building; wait")

    class InterruptedCell(io.StringIO):
        def write(self, text: str) -> int:
            raise KeyboardInterrupt  # Ctrl-C while sam runs

    monkeypatch.setattr(sys, "stdout", InterruptedCell())
    with pytest.raises(KeyboardInterrupt):
        infra.teardown("aws", "brewops-dev")

    builder = int(child.read_text(encoding="utf-8"))
    deadline = time.monotonic() + 5  # the kill is delivered, not waited for
    while not exited(builder) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert exited(builder), "the process sam started is still running"


def test_sam_never_inherits_the_local_targets_endpoint(tmp_path, monkeypatch):
    # what targets.use("local") leaves in the environment of this process
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setattr(targets, "_saved_environment", {"AWS_ENDPOINT_URL": None})
    seen = tmp_path / "endpoint"
    _fake_sam(tmp_path, monkeypatch, f'echo "[$AWS_ENDPOINT_URL]" >> {seen}')

    infra.deploy("aws", "brewops-dev")
    infra.teardown("aws", "brewops-dev")

    assert seen.read_text(encoding="utf-8").splitlines() == [
        "[]",
        "[]",
        "[]",
    ]  # build, deploy, delete


def test_sam_refuses_an_emulator_endpoint_exported_in_the_shell(tmp_path, monkeypatch):
    # the line `brewops local up` prints for shells, then a deploy from that shell
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    monkeypatch.setattr(targets, "_saved_environment", None)
    ran = tmp_path / "ran"
    _fake_sam(tmp_path, monkeypatch, f"echo ran >> {ran}")

    with pytest.raises(targets.TargetNotReady, match="unset AWS_ENDPOINT_URL"):
        infra.deploy("aws", "brewops-dev")
    with pytest.raises(targets.TargetNotReady, match="unset AWS_ENDPOINT_URL"):
        infra.teardown("aws", "brewops-dev")
    assert not ran.exists()


SAM = repo_root() / ".venv-sam" / "bin" / "sam"


def _sam_validate(template) -> subprocess.CompletedProcess:
    assert SAM.exists(), "the SAM CLI is installed by `make test` (or `make sam-validate`)"
    return subprocess.run(
        [SAM, "validate", "--lint", "--template", str(template), "--region", "us-east-1"],
        capture_output=True,
        encoding="locale",
        env={**os.environ, "SAM_CLI_TELEMETRY": "0"},
    )


def _sam_accepts(result: subprocess.CompletedProcess) -> bool:
    """sam validate --lint passed, or failed only on the runtime's lifecycle, which comes
    with the date (see test_the_template_lints_clean)."""
    output = result.stdout + result.stderr
    if result.returncode == 0:
        return "is a valid SAM Template" in output
    rules = set(re.findall(r"^\[\[(\w+):", output, re.MULTILINE))
    return bool(rules) and rules <= infra.RUNTIME_LIFECYCLE_RULES


def test_sam_validate_lint_accepts_the_template():
    result = _sam_validate(template_path())
    assert _sam_accepts(result), result.stdout + result.stderr


def test_sam_validate_lint_on_a_retired_runtime_fails_on_the_date_alone(tmp_path):
    runtime = infra.load_template()["Globals"]["Function"]["Runtime"]
    retired = _broken_template(tmp_path, f"Runtime: {runtime}", "Runtime: python3.7")
    result = _sam_validate(retired)
    assert result.returncode != 0, "python3.7 is past its lifecycle"
    assert _sam_accepts(result), result.stdout + result.stderr


def test_sam_validate_lint_rejects_a_broken_function(tmp_path):
    broken = _broken_template(
        tmp_path, "Role: !GetAtt ProducerRole.Arn", "Role: !GetAtt MissingRole.Arn"
    )
    assert _sam_validate(broken).returncode != 0


def _a_local_state(**fields):
    from brewops.local.state import LocalState

    return LocalState(
        endpoint_url="http://127.0.0.1:1",
        region="us-east-1",
        stack_name="brewops-dev",
        started_at="2024-01-01T00:00:00+00:00",
        services={},
        **fields,
    )


def test_parameters_for_the_local_target_go_where_local_up_takes_them(monkeypatch):
    from brewops import local

    asked = []
    monkeypatch.setattr(local, "up", lambda **kwargs: asked.append(kwargs) or _a_local_state())

    infra.deploy("local", ScheduleState="DISABLED", ShardCount=2)

    assert asked == [
        {"stack_name": "brewops-dev", "parameters": {"ScheduleState": "DISABLED", "ShardCount": 2}}
    ]


def test_parameters_for_the_local_target_are_checked_as_the_command_line_checks_them(
    monkeypatch, tmp_path
):
    from brewops.local import runtime

    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(runtime, "_start", lambda *args: pytest.fail("nothing must start"))

    with pytest.raises(runtime.ParameterOverrideError, match="declares no parameter Shards;"):
        infra.deploy("local", Shards=2)


def test_a_local_deploy_given_no_parameters_says_the_stack_keeps_its_own(monkeypatch, capsys):
    from brewops import local

    kept = _a_local_state(deployed=True, already_running=True, parameter_overrides={"A": "1"})
    monkeypatch.setattr(local, "up", lambda **kwargs: kept)

    infra.deploy("local")

    assert "keeps the parameter values it was deployed with" in capsys.readouterr().out


def test_the_local_target_deploys_the_stack_named_and_tears_it_down(monkeypatch):
    from brewops import local

    calls = []
    monkeypatch.setattr(
        local, "up", lambda **kwargs: calls.append(("up", kwargs)) or _a_local_state()
    )
    monkeypatch.setattr(local, "down", lambda: calls.append(("down", {})))

    infra.deploy("local", "brewops-mine")
    infra.teardown("local", "brewops-mine")

    assert calls == [("up", {"stack_name": "brewops-mine", "parameters": {}}), ("down", {})]


@pytest.mark.parametrize("act", [infra.deploy, infra.teardown])
def test_an_unknown_target_is_refused(act):
    # an ActionableError, as targets.use's: notebook 02 calls deploy before use
    with pytest.raises(ActionableError, match="unknown target 'staging': use 'local' or 'aws'"):
        act("staging", "brewops-dev")


def test_references_are_found_in_every_form_cloudformation_allows():
    # the long forms an author may write: GetAtt as "Name.Attribute", Sub with a variable
    # map, and an attribute inside ${}; each must draw its edge like the short forms
    template = {"Resources": {"Stream": {}, "Bucket": {}, "Role": {}}}
    assert infra.references({"Fn::GetAtt": "Stream.Arn"}, template) == {"Stream"}
    assert infra.references({"Fn::Sub": "${Stream.Arn}/*"}, template) == {"Stream"}
    assert infra.references(
        {"Fn::Sub": ["arn:aws:s3:::${Name}/*", {"Name": {"Ref": "Bucket"}}]}, template
    ) == {"Bucket"}
    assert infra.references({"Fn::Sub": "${AWS::Region}-${Missing}"}, template) == set()


@pytest.mark.parametrize(
    ("sam_says", "exit_code", "shown"),
    [
        (
            'echo "Uploading to brewops-dev"\necho "Waiting for changeset"\necho "Killed" >&2',
            137,
            "Uploading to brewops-dev Waiting for changeset Killed",
        ),
        ("", 1, "no output"),
    ],
)
def test_a_sam_failure_without_an_error_line_shows_its_last_lines(
    tmp_path, monkeypatch, sam_says, exit_code, shown
):
    _fake_sam(tmp_path, monkeypatch, f'[ "$1" = build ] && exit 0\n{sam_says}\nexit {exit_code}')

    with pytest.raises(infra.SamCommandError) as raised:
        infra.deploy("aws", "brewops-dev")

    message = str(raised.value)
    assert f"`sam deploy` failed (exit {exit_code}) for stack brewops-dev: {shown}." in message
    assert "Next: the output above shows why." in message


@pytest.mark.parametrize(
    "overrides",
    [
        '\'Stage=dev ScheduleRate="rate(1 hour)" Filter="a=b"\'',
        # samconfig.toml may hold them as a list too
        '["Stage=dev", "ScheduleRate=rate(1 hour)", "Filter=a=b"]',
    ],
)
def test_samconfig_parameter_overrides_keep_quoted_values_whole(tmp_path, overrides):
    config = tmp_path / "samconfig.toml"
    config.write_text(
        'version = 0.1\n[default.global.parameters]\nstack_name = "brewops-dev"\n'
        f"[default.deploy.parameters]\nparameter_overrides = {overrides}\n",
        encoding="utf-8",
    )

    assert infra.sam_config_parameters("default", config) == {
        "Stage": "dev",
        "ScheduleRate": "rate(1 hour)",
        "Filter": "a=b",
    }


def _samconfig_overrides(tmp_path, overrides: str):
    config = tmp_path / "samconfig.toml"
    config.write_text(
        'version = 0.1\n[prod.global.parameters]\nstack_name = "brewops-prod"\n'
        f"[prod.deploy.parameters]\nparameter_overrides = {overrides}\n",
        encoding="utf-8",
    )
    return config


@pytest.mark.parametrize(
    "overrides",
    [
        # CloudFormation's long form, which `sam deploy` accepts as well
        "'ParameterKey=Stage,ParameterValue=prod "
        'ParameterKey=ScheduleRate,ParameterValue="rate(1 hour)" '
        "ParameterKey=PunkApiUrl,ParameterValue=https://x/v2?a=b,c=d'",
        # in a list, each item may take either form
        '["ParameterKey=Stage,ParameterValue=prod", "ScheduleRate=rate(1 hour)", '
        '"PunkApiUrl=https://x/v2?a=b,c=d"]',
    ],
)
def test_samconfig_parameter_overrides_in_the_long_form_are_read_as_sam_reads_them(
    tmp_path, overrides
):
    config = _samconfig_overrides(tmp_path, overrides)

    assert infra.sam_config_parameters("prod", config) == {
        "Stage": "prod",
        "ScheduleRate": "rate(1 hour)",
        "PunkApiUrl": "https://x/v2?a=b,c=d",
    }


def test_a_long_form_parameter_value_may_span_lines(tmp_path):
    config = _samconfig_overrides(tmp_path, '["ParameterKey=Note,ParameterValue=two\\nlines"]')

    assert infra.sam_config_parameters("prod", config) == {"Note": "two\nlines"}


@pytest.mark.parametrize(
    ("overrides", "refusal"),
    [
        # sam deploy would read the long-form pair alone and leave the Stage out
        (
            '"PunkApiVersion=v2 ParameterKey=Stage,ParameterValue=prod"',
            r"mixes Key=Value with .* leave out PunkApiVersion=v2\): write every pair",
        ),
        ('"Stage=prod v2"', r"'v2' is not a parameter; write Key=Value, or ParameterKey="),
        ('"Stage=prod =v2"', r"'=v2' is not a parameter"),  # a value without its key
    ],
)
def test_samconfig_parameter_overrides_sam_would_misread_are_refused(tmp_path, overrides, refusal):
    config = _samconfig_overrides(tmp_path, overrides)

    where = r"parameter_overrides of \[prod.deploy.parameters\] in samconfig.toml"
    with pytest.raises(ValueError, match=where):
        infra.sam_config_parameters("prod", config)
    with pytest.raises(ValueError, match=refusal):
        infra.sam_config_parameters("prod", config)


def test_a_deploy_with_parameters_keeps_the_long_form_stage_of_samconfig(tmp_path, monkeypatch):
    # GIVEN samconfig.toml's prod environment in the long form
    config = _samconfig_overrides(
        tmp_path,
        '"ParameterKey=Stage,ParameterValue=prod ParameterKey=PunkApiVersion,ParameterValue=v2"',
    )
    read = infra._samconfig
    monkeypatch.setattr(infra, "_samconfig", lambda _default: read(config))
    calls = tmp_path / "calls"
    _fake_sam(tmp_path, monkeypatch, f'echo "$@" >> {calls}')

    # WHEN a deploy adds a parameter of its own
    infra.deploy("aws", "brewops-prod", ScheduleState="DISABLED")

    # THEN the command line, which replaces samconfig's overrides, still holds them all
    assert (
        calls.read_text(encoding="utf-8")
        .splitlines()[-1]
        .endswith("--parameter-overrides Stage=prod PunkApiVersion=v2 ScheduleState=DISABLED")
    )


def _firehose_session(destination: dict) -> object:
    """A session whose Firehose describes one stream, "cleaned", with `destination`."""
    described = {
        "DeliveryStreamDescription": {
            "DeliveryStreamName": "cleaned",
            "Destinations": [{"ExtendedS3DestinationDescription": destination}],
        }
    }
    firehose = type("Firehose", (), {})()
    firehose.describe_delivery_stream = lambda DeliveryStreamName: described
    return type("Session", (), {"client": lambda self, service: firehose})()


def _lambda_processing(arn: str, enabled: bool) -> dict:
    parameters = [{"ParameterName": "LambdaArn", "ParameterValue": arn}]
    return {"Enabled": enabled, "Processors": [{"Type": "Lambda", "Parameters": parameters}]}


@pytest.mark.parametrize(
    ("destination", "transform", "format_"),
    [
        # the API's default: a conversion configuration without Enabled converts
        ({"DataFormatConversionConfiguration": {"SchemaConfiguration": {}}}, "", "Parquet"),
        # a conversion configuration kept but switched off converts nothing
        ({"DataFormatConversionConfiguration": {"Enabled": False}}, "", "as received"),
        # a processor kept but switched off transforms nothing
        (
            {"ProcessingConfiguration": _lambda_processing("arn:aws:lambda:r:1:function:t", False)},
            "",
            "as received",
        ),
        # a qualified ARN names the function, not its version
        (
            {
                "ProcessingConfiguration": _lambda_processing(
                    "arn:aws:lambda:r:1:function:brewops-transform:$LATEST", True
                )
            },
            "brewops-transform",
            "as received",
        ),
    ],
)
def test_the_delivery_streams_table_says_what_the_stream_does(destination, transform, format_):
    outputs = {"RawDeliveryStreamName": "cleaned", "CleanedDeliveryStreamName": "cleaned"}

    table = infra.delivery_streams_table(_firehose_session(destination), outputs)

    assert table.loc[0, ["transform", "format"]].tolist() == [transform, format_]


def test_the_delivery_streams_table_tells_parquet_from_records_as_received():
    def described(name: str, destination: dict) -> dict:
        return {
            "DeliveryStreamDescription": {
                "DeliveryStreamName": name,
                "Source": {
                    "KinesisStreamSourceDescription": {
                        "KinesisStreamARN": "arn:aws:kinesis:eu-west-1:1:stream/brewops-beers-dev"
                    }
                },
                "Destinations": [{"ExtendedS3DestinationDescription": destination}],
            }
        }

    transform = {
        "Processors": [
            {
                "Type": "Lambda",
                "Parameters": [
                    {
                        "ParameterName": "LambdaArn",
                        "ParameterValue": "arn:aws:lambda:eu-west-1:1:function:brewops-transform",
                    }
                ],
            }
        ]
    }
    streams = {
        "raw": described(
            "raw",
            {"Prefix": "raw/", "ErrorOutputPrefix": "errors/raw/", "CompressionFormat": "GZIP"},
        ),
        "cleaned": described(
            "cleaned",
            {
                "Prefix": "cleaned/",
                "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 60},
                "ProcessingConfiguration": transform,
                "DataFormatConversionConfiguration": {"Enabled": True},
            },
        ),
    }
    firehose = type("Firehose", (), {})()
    firehose.describe_delivery_stream = lambda DeliveryStreamName: streams[DeliveryStreamName]
    session = type("Session", (), {"client": lambda self, service: firehose})()

    table = infra.delivery_streams_table(
        session, {"RawDeliveryStreamName": "raw", "CleanedDeliveryStreamName": "cleaned"}
    ).set_index("delivery stream")

    assert table.loc["raw", "format"] == "as received"
    assert table.loc["cleaned", "format"] == "Parquet"
    assert table.loc["cleaned", "transform"] == "brewops-transform"
    assert table.loc["raw", "transform"] == ""
    assert table.loc["cleaned", "buffer"] == "64 MiB / 60 s"
    assert table.loc["raw", "source"] == "brewops-beers-dev"
    assert table.loc["raw", ["prefix", "error prefix", "compression"]].tolist() == [
        "raw/",
        "errors/raw/",
        "GZIP",
    ]
    assert table.loc["raw", "buffer"] == "? MiB / ? s"  # the service did not say
