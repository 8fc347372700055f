"""`brewops local up | down | status`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from brewops import paths
from brewops.local.state import (
    CREDENTIALS,
    LocalState,
    RunProcess,
    UnreadableStateError,
    state_file,
)


def _exports(state: LocalState) -> str:
    return (
        f"export AWS_ENDPOINT_URL={state.endpoint_url} "
        f"AWS_ACCESS_KEY_ID={CREDENTIALS['aws_access_key_id']} "
        f"AWS_SECRET_ACCESS_KEY={CREDENTIALS['aws_secret_access_key']} "
        f"AWS_DEFAULT_REGION={state.region}"
    )


def _describe(state: LocalState) -> str:
    lines = [f"  AWS emulator  {state.endpoint_url}  (region {state.region})"]
    if state.punkapi_url:
        lines.append(f"  Punk API      {state.punkapi_url}")
    if state.deployed:
        lines.append(f"  Stack         {state.stack_name}")
        width = max((len(k) for k in state.outputs), default=0)
        lines += [f"    {key:<{width}}  {value}" for key, value in sorted(state.outputs.items())]
        lines.append(f"  Parameters    {_parameters(state)}")
    else:
        lines.append(f"  Stack         {state.stack_name} (not deployed)")
    processes = ", ".join(f"{name} pid {s.pid}" for name, s in state.services.items())
    lines.append(f"  Processes     {processes}")
    if state.run is not None:
        lines.append(f"  Stopped by    {_stopping_run(state.run)}")
    lines += [
        f"  State         {state_file()}",
        f"  Logs          {paths.local_log_dir()}  (NAME.log per function: one JSON line each)",
        "",
        'Python: brewops.target.use("local") routes boto3 and awswrangler here. A shell:',
        f"  {_exports(state)}",
    ]
    return "\n".join(lines)


def _stopping_run(run: RunProcess) -> str:
    from brewops.local import processes

    if processes.is_running(run):
        return f"the `brewops run` in charge of it (pid {run.pid}), when done"
    return (
        f"nothing: the `brewops run` in charge of it (pid {run.pid}) ended without stopping "
        "it. `brewops local down` stops it; the next `brewops run` takes it over and stops "
        "it when done, as does one using it now, when it ends"
    )


def _parameters(state: LocalState) -> str:
    from brewops.local.runtime import parameter_pair

    if not state.parameter_overrides:
        return "the template's Defaults"
    given = " ".join(parameter_pair(k, v) for k, v in state.parameter_overrides.items())
    return f"{given} (the others: the template's Defaults)"


def _damaged_state() -> bool:
    """Whether the recorded state is damaged: `down` stops what it names, and returns None."""
    try:
        LocalState.load()
    except UnreadableStateError:
        return True
    return False


@click.group(help="The embedded AWS: a moto server and a Punk API server on 127.0.0.1.")
def local() -> None:
    pass


@local.command(
    help="""Start the emulator and the Punk API server, and deploy the stack.

    Each template parameter takes the value given with the option below, else its
    Default; PunkApiUrl and PunkApiVersion are the local Punk API server's.
    samconfig.toml is not read (its parameter_overrides are the AWS environments'): give
    its values here to deploy them locally. Harmless when already running: the stack
    keeps the values it was deployed with, and other values are refused until `brewops
    local down`. The servers keep running after this command exits, until `brewops local
    down`.
    """
)
@click.option("--no-deploy", is_flag=True, help="Start the servers without deploying the stack.")
@click.option(
    "--catalog",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Punk API catalogue to serve (default: the pinned punkapi-db, fetched if missing).",
)
@click.option(
    "--template",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="SAM template to deploy (default: infra/template.yaml). A running target keeps "
    "the one it deployed: run `brewops local down` first to deploy another.",
)
@click.option(
    "--parameter-overrides",
    "overrides",
    multiple=True,
    metavar='"KEY=VALUE ..."',
    help="Template parameters, as `sam deploy --parameter-overrides` takes them: "
    '"ShardCount=3 StreamMode=ON_DEMAND", ScheduleRate="rate(2 minutes)" (or '
    "ParameterKey=K,ParameterValue=V); repeatable. The others take their Default.",
)
def up(
    no_deploy: bool, catalog: Path | None, template: Path | None, overrides: tuple[str, ...]
) -> None:
    from brewops.infra import parse_parameter_overrides
    from brewops.local import runtime

    try:
        parameters = parse_parameter_overrides(overrides, "--parameter-overrides")
    except ValueError as error:
        raise click.UsageError(str(error)) from error
    started = time.perf_counter()
    state = runtime.up(
        deploy=not no_deploy, catalog=catalog, template=template, parameters=parameters
    )
    seconds = time.perf_counter() - started
    headline = "Already running" if state.already_running else f"Ready in {seconds:.1f} s"
    click.echo(f"{headline}:\n{_describe(state)}")
    if note := runtime.taken_over_note(state):
        click.echo(f"\n{note}")
    if not parameters and (note := runtime.kept_parameters_note(state)):
        click.echo(f"\n{note}")


@local.command(help="Delete the stack, stop the servers and remove the state.")
def down() -> None:
    from brewops.local import runtime

    started = time.perf_counter()
    damaged = _damaged_state()
    state = runtime.down()
    if state is None and not damaged:
        click.echo("Nothing to stop: the local target is not running.")
    else:
        click.echo(f"Stopped in {time.perf_counter() - started:.1f} s.")


@local.command(
    help="Show what is running. Exits with status 1 when the local target is not running."
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print `running` and the recorded state as JSON; only `running` (false) when not "
    "running (`brewops schema local_status` prints its JSON Schema).",
)
def status(as_json: bool) -> None:
    from brewops.local import runtime

    state = runtime.status()
    if as_json:
        click.echo(
            json.dumps(
                {"running": state is not None, **(state.to_dict() if state else {})}, indent=2
            )
        )
    elif state is None:
        click.echo("Not running. Start it with `brewops local up`.")
    else:
        click.echo(f"Running since {state.started_at}:\n{_describe(state)}")
    if state is None:
        raise SystemExit(1)
