"""The SAM template as data: lint it, list its resources, draw its data flow, deploy it.

The diagram is derived from the references inside the template, so it cannot drift from
what is deployed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brewops import plotstyle
from brewops.errors import ActionableError
from brewops.local.state import check_stack_name, default_stack_name
from brewops.paths import repo_root, template_path

if TYPE_CHECKING:
    import networkx as nx
    import pandas as pd
    from matplotlib.figure import Figure

# Resource types that carry data, in the order data meets them.
DATA_FLOW_TYPES = {
    "AWS::Serverless::Function": "Lambda",
    "AWS::Kinesis::Stream": "Kinesis stream",
    "AWS::KinesisFirehose::DeliveryStream": "Firehose",
    "AWS::S3::Bucket": "S3 bucket",
    "AWS::Glue::Table": "Glue table",
    "AWS::Glue::Database": "Glue database",
    "AWS::Athena::WorkGroup": "Athena workgroup",
}

# (type that holds the reference, type referenced) -> (edge label, data flows from the
# referenced resource to the holder?)
FLOW_RULES: dict[tuple[str, str], tuple[str, bool]] = {
    ("AWS::Serverless::Function", "AWS::Kinesis::Stream"): ("PutRecords", False),
    ("AWS::KinesisFirehose::DeliveryStream", "AWS::Kinesis::Stream"): ("reads shards", True),
    ("AWS::KinesisFirehose::DeliveryStream", "AWS::Serverless::Function"): ("transform", False),
    ("AWS::KinesisFirehose::DeliveryStream", "AWS::S3::Bucket"): ("delivers", False),
    ("AWS::KinesisFirehose::DeliveryStream", "AWS::Glue::Table"): ("Parquet schema", False),
    ("AWS::Glue::Table", "AWS::S3::Bucket"): ("catalogues", True),
    ("AWS::Glue::Table", "AWS::Glue::Database"): ("in", False),
    ("AWS::Athena::WorkGroup", "AWS::S3::Bucket"): ("queried by", True),
}


def load_template(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The template with its short-form intrinsics (!Ref, !Sub...) decoded as cfn-lint does."""
    from cfnlint.decode import decode

    template, matches = decode(str(path or template_path()))
    if matches or template is None:
        raise ValueError(f"cannot parse {path or template_path()}: {matches}")
    return template


def lint(path: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """cfn-lint findings (errors, warnings, informational) as a table; empty when clean."""
    import pandas as pd
    from cfnlint.api import lint_file

    matches = lint_file(Path(path or template_path()))
    rows = [
        {
            "rule": m.rule.id,
            "level": m.rule.severity,
            "line": m.linenumber,
            "message": m.message,
        }
        for m in matches
    ]
    return pd.DataFrame(rows, columns=["rule", "level", "line", "message"])


# cfn-lint's rules on the Lambda runtime's lifecycle: its findings (the runtime deprecated,
# then AWS creating, then updating no function on it) come with the date, not the template
RUNTIME_LIFECYCLE_RULES = frozenset({"W2531", "E2531", "E2533"})


def lint_errors(findings: pd.DataFrame, target: str) -> pd.DataFrame:
    """The errors among `findings` that stop a deploy to `target`. Locally the runtime's
    lifecycle is none of them: the handlers run in this Python, whatever the template's
    runtime, and the local target would otherwise stop working on the day AWS retires it."""
    errors = findings[findings["level"] == "error"]
    if target == "aws":
        return errors
    return errors[~errors["rule"].isin(RUNTIME_LIFECYCLE_RULES)]


def resources_table(template: dict[str, Any] | None = None) -> pd.DataFrame:
    """One row per resource of the template (the project's by default): logical id, type,
    group (the service), name and the resources it references."""
    import pandas as pd

    template = template or load_template()
    rows = []
    for logical_id, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        rows.append(
            {
                "logical id": logical_id,
                "type": resource["Type"],
                "group": resource["Type"].split("::")[1],
                "name": _readable(props, logical_id),
                "references": ", ".join(sorted(references(props, template))),
            }
        )
    return pd.DataFrame(rows).sort_values(["group", "logical id"], ignore_index=True)


def _readable(props: dict[str, Any], logical_id: str) -> str:
    for key in (
        "FunctionName",
        "Name",
        "DeliveryStreamName",
        "RoleName",
        "LogGroupName",
        "AlarmName",
        "TopicName",
    ):
        if key in props:
            return _render(props[key])
    for nested in ("TableInput", "DatabaseInput"):
        if nested in props:
            return _render(props[nested].get("Name", logical_id))
    return ""


def _render(value: Any) -> str:
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return sub if isinstance(sub, str) else sub[0]
    if isinstance(value, dict) and "Fn::Join" in value:
        delimiter, parts = value["Fn::Join"]
        if isinstance(parts, dict) and "Fn::Split" in parts:
            split_at, source = parts["Fn::Split"]
            return f"{_render(source)} with {split_at} as {delimiter}"
        return delimiter.join(_render(part) for part in parts)
    if isinstance(value, dict) and "Ref" in value:
        return "${" + value["Ref"] + "}"
    return str(value)


def references(node: Any, template: dict[str, Any]) -> set[str]:
    """Logical ids of the resources that `node` refers to (Ref, GetAtt, Sub)."""
    resources = template["Resources"]
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str) and value in resources:
                found.add(value)
            elif key == "Fn::GetAtt":
                target = value[0] if isinstance(value, list) else str(value).split(".")[0]
                if target in resources:
                    found.add(target)
            elif key == "Fn::Sub":
                text = value if isinstance(value, str) else value[0]
                for name in re.findall(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z]+)?\}", text):
                    if name in resources:
                        found.add(name)
                if not isinstance(value, str):
                    found |= references(value[1], template)
            else:
                found |= references(value, template)
    elif isinstance(node, list):
        for item in node:
            found |= references(item, template)
    return found


def data_flow_graph(template: dict[str, Any] | None = None) -> nx.DiGraph:
    """Resources that carry data and the direction data moves between them."""
    import networkx as nx

    template = template or load_template()
    resources = template["Resources"]
    graph = nx.DiGraph()
    for logical_id, resource in resources.items():
        if resource["Type"] in DATA_FLOW_TYPES:
            graph.add_node(logical_id, kind=DATA_FLOW_TYPES[resource["Type"]])
    for logical_id, resource in resources.items():
        if logical_id not in graph:
            continue
        props = resource.get("Properties", {})
        for event_name, event in props.get("Events", {}).items():
            if event.get("Type") == "Schedule":
                node = f"{logical_id}{event_name}"
                graph.add_node(node, kind="EventBridge schedule")
                graph.add_edge(node, logical_id, label="invokes")
        for target in sorted(references(props, template)):  # a set: sorted, same figure each run
            rule = FLOW_RULES.get((resource["Type"], resources[target]["Type"]))
            if rule is None:
                continue
            label, inbound = rule
            source, sink = (target, logical_id) if inbound else (logical_id, target)
            graph.add_edge(source, sink, label=label)
    return graph


def _layers(graph: nx.DiGraph) -> dict[int, list[str]]:
    """One layer per step, after its inputs; in a layer, nodes in the order of their inputs'
    places (then by name), so the edges cross little and every run draws the same."""
    import networkx as nx

    layer: dict[str, int] = {}
    for node in nx.topological_sort(graph):
        layer[node] = max((layer[p] + 1 for p in graph.predecessors(node)), default=0)
    layers: dict[int, list[str]] = {}
    place: dict[str, float] = {}
    for number in sorted(set(layer.values())):
        nodes = [node for node in layer if layer[node] == number]

        def inputs_place(node: str) -> tuple[float, str]:
            places = [place[p] for p in graph.predecessors(node)]
            return (sum(places) / len(places) if places else 0.0, node)

        layers[number] = sorted(nodes, key=inputs_place)
        middle = (len(nodes) - 1) / 2  # the diagram centres each layer
        place.update({node: index - middle for index, node in enumerate(layers[number])})
    return layers


def plot_data_flow(template: dict[str, Any] | None = None) -> Figure:
    """A top-to-bottom diagram of `data_flow_graph`, one row per step: the steps outnumber
    the resources of any one step, so rows fit a notebook's column where columns did not."""
    import matplotlib.pyplot as plt

    graph = data_flow_graph(template)
    layers = _layers(graph)
    layer_of = {node: number for number, nodes in layers.items() for node in nodes}
    # Positions in inches, near enough (the bare axes fill the figure): a row's pitch holds
    # a box and a labelled gap; the outer boxes of the widest row stand an inch from the edge.
    width, pitch = plotstyle.MAX_WIDTH, 0.9
    spacing = (width - 2) / max(max(len(nodes) for nodes in layers.values()) - 1, 1)
    pos = {
        node: (width / 2 + (index - (len(nodes) - 1) / 2) * spacing, -number * pitch)
        for number, nodes in layers.items()
        for index, node in enumerate(nodes)
    }
    fig, ax = plt.subplots(figsize=(width, pitch * len(layers) + 0.5))
    palette = {  # one colour per kind; a Glue table and its database share one
        "EventBridge schedule": plotstyle.RED,
        "Lambda": plotstyle.ORANGE,
        "Kinesis stream": plotstyle.BLUE,
        "Firehose": plotstyle.CYAN,
        "S3 bucket": plotstyle.PURPLE,
        "Glue table": plotstyle.BROWN,
        "Glue database": plotstyle.BROWN,
        "Athena workgroup": plotstyle.GREY,
    }
    boxes = {}
    for node, (x, y) in pos.items():
        kind = graph.nodes[node]["kind"]
        color = palette.get(kind, "white")
        boxes[node] = ax.text(
            x,
            y,
            f"{node}\n({kind})",
            ha="center",
            va="center",
            fontsize=plotstyle.MIN_FONT_SIZE,
            color=plotstyle.text_color_on(color),
            bbox={"boxstyle": "round,pad=0.4", "fc": color, "ec": "#555"},
        )
    # Arrows end at the boxes' borders (patchA/patchB), not under them, and are drawn above
    # them, after the boxes have moved into place. They are straight, so each label sits on
    # its arrow (on a white patch) in the gap above the sink: between two rows, off the boxes.
    for source, sink, label in graph.edges(data="label"):
        ax.annotate(
            "",
            xy=pos[sink],
            xytext=pos[source],
            zorder=4,
            arrowprops={
                "arrowstyle": "-|>",
                "color": "#888",
                "mutation_scale": 14,
                "shrinkA": 2,
                "shrinkB": 2,
                "patchA": boxes[source].get_bbox_patch(),
                "patchB": boxes[sink].get_bbox_patch(),
            },
        )
        along = 1 - 0.5 / (layer_of[sink] - layer_of[source])
        (x0, y0), (x1, y1) = pos[source], pos[sink]
        ax.text(
            x0 + (x1 - x0) * along,
            y0 + (y1 - y0) * along,
            label,
            fontsize=plotstyle.MIN_FONT_SIZE,
            ha="center",
            va="center",
            zorder=5,
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
        )
    ax.set_xlim(0, width)
    ax.set_ylim(-pitch * (len(layers) - 0.5), pitch / 2)
    ax.set_title("Data flow derived from infra/template.yaml")
    ax.axis("off")
    fig.tight_layout()
    return fig


def _samconfig(config: Path | None) -> tuple[Path, dict[str, Any]]:
    import tomllib

    path = config or repo_root() / "samconfig.toml"
    return path, tomllib.loads(path.read_text(encoding="utf-8"))


# The samconfig.toml environment a stack that no environment names deploys with
DEFAULT_CONFIG_ENV = "default"


def sam_config_env(stack_name: str, config: Path | None = None) -> str:
    """The samconfig.toml environment that deploys `stack_name`: the one that names it, whose
    Stage, tags and S3 prefix come with it; else the default one, for a stack of one's own
    (`BREWOPS_STACK_NAME=brewops-alice`), with its own S3 prefix (sam_own_s3_prefix)."""
    path, settings = _samconfig(config)
    stacks = _stacks_by_environment(settings)
    for env, name in stacks.items():
        if name == stack_name:
            return env
    if DEFAULT_CONFIG_ENV in stacks:
        return DEFAULT_CONFIG_ENV
    known = ", ".join(sorted(name for name in stacks.values() if name))
    raise ValueError(
        f"no environment in {path.name} deploys the stack {stack_name!r}, and it has no "
        f"{DEFAULT_CONFIG_ENV} environment to deploy it with: set BREWOPS_STACK_NAME to one "
        f"of {known}, or add an environment that deploys it"
    )


def sam_own_s3_prefix(stack_name: str, config: Path | None = None) -> str | None:
    """The S3 prefix of its own (its name) that a stack no samconfig.toml environment names
    deploys under, as `sam delete` removes the whole prefix of the stack it deletes: sharing
    the default environment's would remove the default stack's artifacts too. None for a
    stack an environment names (its environment's s3_prefix)."""
    _, settings = _samconfig(config)
    config_env = sam_config_env(stack_name, config)
    return None if _stacks_by_environment(settings)[config_env] == stack_name else stack_name


def _stacks_by_environment(settings: dict[str, Any]) -> dict[str, str | None]:
    """samconfig.toml environment -> the stack it names (None: it names none)."""
    return {
        env: section.get("global", {}).get("parameters", {}).get("stack_name")
        for env, section in settings.items()
        if isinstance(section, dict)
    }


# CloudFormation's long form of one parameter, which `sam deploy` reads too
_LONG_FORM_PARAMETER = re.compile(r"ParameterKey=([^,]+),ParameterValue=(.*)", re.DOTALL)


def sam_config_parameters(config_env: str, config: Path | None = None) -> dict[str, str]:
    """The template parameters the samconfig.toml environment sets (`parameter_overrides`):
    a string of pairs, or a list of one pair each, read by parse_parameter_overrides."""
    path, settings = _samconfig(config)
    section = settings.get(config_env, {}).get("deploy", {}).get("parameters", {})
    overrides = section.get("parameter_overrides", [])
    where = f"parameter_overrides of [{config_env}.deploy.parameters] in {path.name}"
    if isinstance(overrides, str):
        return parse_parameter_overrides([overrides], where)
    return parse_parameter_overrides(list(overrides), where, split=False)


def parse_parameter_overrides(
    texts: list[str] | tuple[str, ...], where: str, split: bool = True
) -> dict[str, str]:
    """Template parameters as `sam deploy --parameter-overrides` reads them: each text a
    string of pairs split at the spaces outside quotes (`split`), else one pair; a pair is
    `Key=Value` or `ParameterKey=Key,ParameterValue=Value`, a later pair of a key winning.
    One string that mixes the two forms is refused: `sam deploy` would read its long-form
    pairs alone. `where` names the texts in the ValueError."""
    import shlex

    parameters: dict[str, str] = {}
    for text in texts:
        try:
            pairs = shlex.split(text) if split else [text]
        except ValueError as error:  # an unclosed quote
            raise ValueError(f"{where}: {text!r} cannot be read ({error})") from None
        long_form, short_form = [], []
        for pair in pairs:
            if match := _LONG_FORM_PARAMETER.fullmatch(pair):
                long_form.append(pair)
                parameters[match[1]] = match[2]
            elif not pair.startswith("=") and "=" in pair:  # the value may be empty
                short_form.append(pair)
                key, value = pair.split("=", 1)
                parameters[key] = value
            else:
                raise ValueError(
                    f"{where}: {pair!r} is not a parameter; write Key=Value, or "
                    "ParameterKey=Key,ParameterValue=Value, with a value holding spaces in "
                    'quotes (Key="a b")'
                )
        if split and long_form and short_form:
            raise ValueError(
                f"{where} mixes Key=Value with ParameterKey=Key,ParameterValue=Value in one "
                f"string, which `sam deploy` reads as the second form alone (it would leave "
                f"out {', '.join(short_form)}): write every pair in one form"
            )
    return parameters


class SamCommandError(RuntimeError, ActionableError):
    """A `sam` command failed or the SAM CLI is missing; the message says what to do next."""


# What to do when the output of a failed `sam build`, `sam deploy` or `sam delete` holds a
# pattern ({stack}: the stack's name).
SAM_NEXT_STEPS: dict[str, tuple[tuple[str, str], ...]] = {
    "build": (
        (
            r"did not satisfy constraints for runtime",
            "put the Python that SAM names above (the functions' runtime) on the PATH; or, "
            "with Docker, build in a Lambda image and deploy yourself (`sam build "
            "--use-container && sam deploy`), then run notebook 02 with deploy = False "
            "(`brewops run --target aws -p deploy false`)",
        ),
    ),
    "deploy": (
        (
            r"(?<![A-Z_])ROLLBACK_(?:COMPLETE|FAILED)",
            "the stack's first deploy failed and CloudFormation rolled it back, which leaves "
            "a stack that can never be updated: fix the cause above, delete the stack (`sam "
            "delete --stack-name {stack} --no-prompts`, or brewops.infra.teardown('aws')) and "
            "deploy again",
        ),
        (
            r"UPDATE_ROLLBACK_FAILED",
            "an update could not be rolled back: fix the cause above, run `aws cloudformation "
            "continue-update-rollback --stack-name {stack}` and deploy again once it is "
            "UPDATE_ROLLBACK_COMPLETE",
        ),
        (
            r"DELETE_FAILED",
            "the stack's deletion stopped part-way, which leaves a stack that can never be "
            "updated: `aws cloudformation describe-stack-events --stack-name {stack}` names the "
            "resource that could not be deleted; remove what holds it, delete the stack (`sam "
            "delete --stack-name {stack} --no-prompts`) and deploy again",
        ),
    ),
    "delete": (
        (
            r"DELETE_FAILED",
            "`aws cloudformation describe-stack-events --stack-name {stack}` names the resource "
            "that could not be deleted: remove what holds it, then delete the stack again",
        ),
    ),
}
STACK_BUSY = r"is in \w+_IN_PROGRESS state"


def _run_sam(command: list[str], stack_name: str) -> None:
    """Run `command`, echoing its output through sys.stdout (a notebook shows it in the
    cell); a failure raises SamCommandError with SAM's own error and the next step."""
    seen: list[str] = []  # the whole output: a rollback state may be far from the end
    with subprocess.Popen(
        command,
        cwd=repo_root(),
        # sam is Python: unbuffered, its lines reach the cell as they come, not in chunks
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        encoding="locale",  # sam is Python: it writes in the locale's encoding, as sys.stdout does
        errors="replace",
        start_new_session=True,  # its own process group: sam and the builders it starts
    ) as process:
        try:
            for line in process.stdout or ():
                sys.stdout.write(line)
                sys.stdout.flush()
                seen.append(line.rstrip())
        except BaseException:  # an interrupted cell stops sam and its children too
            with contextlib.suppress(ProcessLookupError):  # all of them may have ended
                os.killpg(process.pid, signal.SIGKILL)
            raise
    if process.returncode == 0:
        return
    output = "\n".join(seen)
    errors = [line for line in seen if line.startswith("Error")] or seen[-3:]
    steps = (
        *SAM_NEXT_STEPS.get(command[1], ()),
        (STACK_BUSY, "another operation on the stack is still running: wait until it ends"),
    )
    next_step = next(
        (step for pattern, step in steps if re.search(pattern, output)),
        "the output above shows why",
    )
    raise SamCommandError(
        f"`sam {command[1]}` failed (exit {process.returncode}) for stack {stack_name}: "
        f"{' '.join(errors).strip() or 'no output'}. Next: {next_step.format(stack=stack_name)}."
    )


def undeclared_parameters(
    parameters: dict[str, str], declared: dict[str, Any], why: str = ""
) -> str | None:
    """What to say of the `parameters` a template that declares `declared` does not
    declare (CloudFormation refuses them; `sam deploy` drops them), or None."""
    unknown = sorted(set(parameters) - set(declared))
    if not unknown:
        return None
    return (
        f"the template declares no parameter {', '.join(unknown)}{why}; it declares "
        f"{', '.join(declared) or 'none'}"
    )


class TemplateParameterError(ValueError, ActionableError):
    """A template parameter the template does not declare, or a value it refuses."""


def check_template_parameters(
    parameters: dict[str, str], template: dict[str, Any] | None = None
) -> None:
    """Refuse, before `sam build` runs, a parameter the template does not declare, which
    `sam deploy` leaves out without a word (a misspelt name deploys the old value), and a
    value CloudFormation would refuse once the build is done. Parameters not given keep
    their earlier values on AWS, so only the given ones are checked."""
    from brewops.local.deploy import DeployError, check_parameter_values

    template = load_template() if template is None else template
    declared = template.get("Parameters") or {}
    if said := undeclared_parameters(parameters, declared, " (`sam deploy` would leave it out)"):
        raise TemplateParameterError(said)
    given = {name: d for name, d in declared.items() if name in parameters}
    try:
        check_parameter_values({**template, "Parameters": given}, parameters)
    except DeployError as error:
        raise TemplateParameterError(str(error)) from None


def _parameter_override(key: str, value: str) -> str:
    """`key=value` as `sam --parameter-overrides` reads it: SAM splits the list at spaces
    and drops an empty value, so such values go in double quotes. A backslash before a
    space or a quote, or at the end, SAM reads as an escape, with no way to keep it: such a
    value is refused rather than deployed changed."""
    if re.search(r"\\(?=[ \"']|$)", value):
        raise ValueError(
            f"the value of the template parameter {key} ({value!r}) has a backslash before a "
            "space or a quote, or at its end, which `sam deploy` reads as an escape and changes"
        )
    if value and not re.search(r"[\s\"']", value):
        return f"{key}={value}"
    escaped = value.replace('"', '\\"')
    return f'{key}="{escaped}"'


def _ready_for_aws() -> None:
    """`sam` inherits this process's environment: after targets.use("local") it holds the
    emulator's endpoint and dummy keys, which would send the deploy there. An endpoint on
    this machine exported in the shell would too, and is refused. So are AWS settings
    without a region or credentials, which `sam deploy` would find only after the build."""
    from brewops import target as targets

    aws = targets.use("aws")
    targets.check_not_routed_to_this_machine()
    targets.check_session(aws.session)


def sam_cli() -> str:
    """The SAM CLI on the PATH, else the one `make sam-validate` (or `make test`) installs
    in .venv-sam."""
    sam = shutil.which("sam") or shutil.which(str(repo_root() / ".venv-sam" / "bin" / "sam"))
    if sam is None:
        raise SamCommandError(
            "the AWS SAM CLI is not installed: install it (see README, 'Deploy to AWS') "
            "or run `make sam-validate` once to get it in .venv-sam"
        )
    return sam


def sam_deploy(stack_name: str, parameter_overrides: dict[str, str] | None = None) -> None:
    """`sam build` then `sam deploy` for the aws target, with the settings of the
    samconfig.toml environment that deploys `stack_name` (sam_config_env)."""
    check_stack_name(stack_name)  # before sam builds for 20 s, and CloudFormation half-way
    sam = sam_cli()
    config_env = sam_config_env(stack_name)
    own_s3_prefix = sam_own_s3_prefix(stack_name)
    parameters = {**sam_config_parameters(config_env), **(parameter_overrides or {})}
    check_template_parameters(parameters)
    # --parameter-overrides replaces the environment's own (its Stage) instead of adding to
    # them, so both go on the command line, the caller's winning
    overrides = (
        [_parameter_override(k, str(v)) for k, v in parameters.items()]
        if parameter_overrides
        else []
    )
    _ready_for_aws()
    if own_s3_prefix:  # the Stage and tags are the default stack's: say which
        stage = parameters.get("Stage") or load_template()["Parameters"]["Stage"]["Default"]
        print(
            f"No samconfig.toml environment names the stack {stack_name}: it deploys with "
            f"the {config_env} environment's settings (Stage {stage}) and the S3 prefix "
            f"{own_s3_prefix}."
        )
    _run_sam([sam, "build", "--config-env", config_env], stack_name)
    deploy = [
        sam,
        "deploy",
        "--config-env",
        config_env,
        "--stack-name",
        stack_name,
        "--no-confirm-changeset",
        "--no-fail-on-empty-changeset",
    ]
    if own_s3_prefix:
        deploy += ["--s3-prefix", own_s3_prefix]
    if overrides:
        deploy += ["--parameter-overrides", *overrides]
    _run_sam(deploy, stack_name)


def sam_delete(stack_name: str) -> None:
    sam = sam_cli()
    _ready_for_aws()
    _run_sam([sam, "delete", "--stack-name", stack_name, "--no-prompts"], stack_name)


def output_names(template: dict[str, Any] | None = None) -> list[str]:
    """The Outputs the template promises: the contract notebooks and tests read."""
    return sorted((template or load_template())["Outputs"])


# The address subscribed to the alarm topic (the AlarmEmail parameter) on AWS, for deploys
# that go through notebook 02 (`make run TARGET=aws`, `brewops run`), which take no
# template parameters. A deploy without it keeps the address the stack has.
ALARM_EMAIL_ENV = "BREWOPS_ALARM_EMAIL"


def deploy(target: str, stack_name: str | None = None, **parameters: str) -> None:
    """Deploy the template to `target`: the embedded emulator, or AWS through SAM, with
    the template `parameters` given (`sam deploy --parameter-overrides`'s; on the local
    target as `brewops local up --parameter-overrides` takes them). The stack is
    BREWOPS_STACK_NAME's (brewops-dev by default), the one every notebook and command
    reads; on AWS, AlarmEmail is BREWOPS_ALARM_EMAIL's unless given."""
    stack_name = stack_name or default_stack_name()
    if target == "local":
        from brewops import local
        from brewops.local.runtime import kept_parameters_note, taken_over_note

        state = local.up(stack_name=stack_name, parameters=parameters)
        if note := taken_over_note(state):
            print(note)
        if not parameters and (note := kept_parameters_note(state)):
            print(note)
    elif target == "aws":
        if alarm_email := os.environ.get(ALARM_EMAIL_ENV):
            parameters = {"AlarmEmail": alarm_email, **parameters}
        sam_deploy(stack_name, parameters)
    else:
        raise _unknown_target(target)


def reads_stack(deploy: bool, cleanup: bool) -> bool:
    """Whether notebook 02 reads the deployed stack: not when it runs only to delete it
    (deploy False, cleanup True), which must delete a stack that has nothing to read too,
    one whose first deploy rolled back (ROLLBACK_COMPLETE, no Outputs) or whose deletion
    stopped part-way (DELETE_FAILED), and take down a local target that does not answer."""
    return deploy or not cleanup


def _unknown_target(target: str) -> Exception:
    from brewops.target import UnknownTarget

    return UnknownTarget(f"unknown target {target!r}: use 'local' or 'aws'")


def teardown(target: str, stack_name: str | None = None) -> None:
    """Undo `deploy`: stop the local target (emulator and all), or delete the stack on AWS
    through SAM. Another target name raises UnknownTarget."""
    stack_name = stack_name or default_stack_name()
    if target == "local":
        from brewops import local

        local.down()
    elif target == "aws":
        sam_delete(stack_name)
    else:
        raise _unknown_target(target)


def delivery_streams_table(session: Any, outputs: dict[str, str]) -> pd.DataFrame:
    """What each deployed Firehose stream does, read back from the service."""
    import pandas as pd

    from brewops.firehose_runtime.functions import split_function_arn

    firehose = session.client("firehose")
    rows = []
    for key in ("RawDeliveryStreamName", "CleanedDeliveryStreamName"):
        described = firehose.describe_delivery_stream(DeliveryStreamName=outputs[key])
        stream = described["DeliveryStreamDescription"]
        destination = stream["Destinations"][0]["ExtendedS3DestinationDescription"]
        # processors kept but switched off transform nothing; a conversion configuration
        # converts unless switched off (the API's default, and the Firehose runtime's)
        processing = destination.get("ProcessingConfiguration") or {}
        processors = [] if processing.get("Enabled") is False else processing.get("Processors", [])
        conversion = destination.get("DataFormatConversionConfiguration")
        rows.append(
            {
                "delivery stream": stream["DeliveryStreamName"],
                "source": stream.get("Source", {})
                .get("KinesisStreamSourceDescription", {})
                .get("KinesisStreamARN", "")
                .split("/")[-1],
                "prefix": destination.get("Prefix"),
                "error prefix": destination.get("ErrorOutputPrefix"),
                "compression": destination.get("CompressionFormat"),
                "buffer": "{SizeInMBs} MiB / {IntervalInSeconds} s".format(
                    **destination.get(
                        "BufferingHints", {"SizeInMBs": "?", "IntervalInSeconds": "?"}
                    )
                ),
                "transform": ", ".join(
                    split_function_arn(p["ParameterValue"])[0]
                    for proc in processors
                    for p in proc.get("Parameters", [])
                    if p["ParameterName"] == "LambdaArn"
                ),
                "format": "Parquet"
                if conversion and conversion.get("Enabled") is not False
                else "as received",
            }
        )
    return pd.DataFrame(rows)
