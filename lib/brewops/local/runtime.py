"""Bring the local target up and down: the AWS emulator process, the Punk API server
process and the stack deployed on the emulator."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brewops import paths
from brewops.environ import bypass_proxy_for_loopback, proxy_bypassed_for_loopback
from brewops.errors import ActionableError
from brewops.files import exclusive
from brewops.interrupts import in_background
from brewops.local import processes
from brewops.local.state import (
    REGION,
    LocalState,
    RunProcess,
    Service,
    UnreadableStateError,
    chosen_stack_name,
    default_stack_name,
)

if TYPE_CHECKING:
    from brewops.local.deploy import PreparedStack

log = logging.getLogger(__name__)

START_TIMEOUT = 120.0  # seconds; the emulator imports much of moto before it listens
PUNKAPI_VERSION = "v2"
# /beers/random draws from this seed: the scheduled ticks of every local run put the same
# beers, so two runs of the notebooks leave the same data
PUNKAPI_RANDOM_SEED = 0
NAMES = {"emulator": "AWS emulator", "punkapi": "Punk API server"}


class LocalTargetBroken(RuntimeError, ActionableError):
    """A server of the local target has exited while the emulator, and its data, lives on."""


class LocalTargetConflict(RuntimeError, ActionableError):
    """`up` asked for something other than what the running target was started with."""


class TemplateMissing(FileNotFoundError, ActionableError):
    """The SAM template to deploy is not there."""


def _no_template(template: Path, given: bool) -> str:
    said = f"no SAM template at {template}"
    if not given and os.environ.get("BREWOPS_HOME"):
        said += (
            f": BREWOPS_HOME={os.environ['BREWOPS_HOME']} must be the project's checkout (the "
            "folder of infra/template.yaml); set it to that, or unset it"
        )
    return said


class ParameterOverrideError(ValueError, ActionableError):
    """A template parameter `up` was given that the local target cannot deploy."""


# whether this thread holds the state lock: taken again in it, it is already held
_holding = threading.local()


@contextlib.contextmanager
def _exclusive() -> Iterator[None]:
    """One `up` or `down` at a time, across processes and threads; within a block holding
    it already, held as it is (`exclusively`)."""
    if getattr(_holding, "lock", False):
        yield
        return
    with exclusive(paths.local_state_dir() / ".lock"):
        _holding.lock = True
        try:
            yield
        finally:
            _holding.lock = False


def exclusively() -> contextlib.AbstractContextManager[None]:
    """Hold the state lock across the block, `up`, `down` and the checks called in it
    included: what the block found still holds when it acts on it."""
    return _exclusive()


def _alive(state: LocalState) -> bool:
    return not _exited(state)


def _exited(state: LocalState) -> list[str]:
    """The services that are no longer running (by pid and start time only: a busy
    emulator slow to answer is still alive)."""
    return [name for name, s in state.services.items() if not processes.is_running(s)]


def _stop_all(state: LocalState) -> None:
    processes.stop(*state.services.values())


def _current() -> LocalState | None:
    """`status()` for a caller holding the lock. A target whose emulator has exited is
    cleaned up (survivors stopped, state removed): its data went with it. One whose
    emulator still runs is returned as it is, even with a server down, so nothing
    destroys the emulator's data but `down`."""
    state = LocalState.load()
    if state is None or "emulator" not in _exited(state):
        return state
    log.warning("local target recorded in %s is not running; cleaning up", paths.local_state_dir())
    _stop_all(state)
    LocalState.remove()
    return None


def status() -> LocalState | None:
    """The running local target, or None. Raises LocalTargetBroken when a server has
    exited but the emulator runs on (`up` restarts it). Waits for an `up` or `down` in
    progress."""
    state = _running_state()
    if state is not None:  # what reads the target next talks to 127.0.0.1
        bypass_proxy_for_loopback()
    return state


def _running_state() -> LocalState | None:
    state = LocalState.load()
    if state is not None and _alive(state) and state.deployed:
        return state
    with _exclusive():
        state = _current()
    if state is not None and not _alive(state):
        raise LocalTargetBroken(_exited_message(state))
    return state


def _exited_message(state: LocalState) -> str:
    exited = [
        f"the {NAMES.get(name, name)} (pid {state.services[name].pid}, log "
        f"{state.services[name].log})"
        for name in _exited(state)
    ]
    return (
        f"The local target is only partly running: {', '.join(exited)} has exited. Run "
        "`brewops local up` to restart it (the emulator and its data are kept), or "
        "`brewops local down` to stop everything."
    )


def code_digest() -> str:
    """What the package's code says, as a sha256: a server keeps running the code it was
    started from, after a `git pull` too."""
    package = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for source in sorted(package.rglob("*.py")):
        digest.update(f"{source.relative_to(package).as_posix()}\0".encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()


def _start_emulator(log_dir: Path) -> tuple[subprocess.Popen[bytes], Service]:
    log_file = log_dir / "emulator.log"
    command = [sys.executable, "-m", "brewops.local.emulator"]
    process, port = processes.spawn_server(command, log_file)
    url = f"http://{processes.HOST}:{port}"
    return process, processes.service(process, port, url, log_file)


def _start_punkapi(
    log_dir: Path, catalog: Path, port: int = 0
) -> tuple[subprocess.Popen[bytes], Service]:
    from brewops.cli import STARTED_BY_BREWOPS

    log_file = log_dir / "punkapi.log"
    command = [
        sys.executable, "-m", "brewops.cli", STARTED_BY_BREWOPS, "api", "serve",
        "--catalog", str(catalog), "--api-version", PUNKAPI_VERSION,
        "--random-seed", str(PUNKAPI_RANDOM_SEED),
    ]  # fmt: skip
    process, port = processes.spawn_server(command, log_file, port)
    url = f"http://{processes.HOST}:{port}/{PUNKAPI_VERSION}"
    return process, processes.service(process, port, url, log_file)


def _parameters(state: LocalState) -> dict[str, str]:
    return {"PunkApiUrl": str(state.punkapi_url), "PunkApiVersion": PUNKAPI_VERSION}


# the parameters _parameters sets: the local target's own, never overridden
OWN_PARAMETERS = ("PunkApiUrl", "PunkApiVersion")


def _check_overrides(template: dict[str, Any], overrides: dict[str, str]) -> None:
    """Refuse, before anything starts or is deployed, an override of a parameter the
    template does not declare (CloudFormation refuses it too), of the local target's own
    Punk API parameters, or of a value CloudFormation would refuse."""
    from brewops.infra import undeclared_parameters
    from brewops.local import deploy as deployment

    own = [name for name in OWN_PARAMETERS if name in overrides]
    if own:
        raise ParameterOverrideError(
            f"{' and '.join(own)} cannot be overridden on the local target: its stack reads "
            f"the Punk API server `brewops local up` starts with it ({PUNKAPI_VERSION}, on "
            "127.0.0.1), which serves the pinned catalogue with a seeded random, so every "
            "local run reads the same beers. Serve another catalogue with `--catalog`; set "
            "these parameters on target 'aws'"
        )
    declared = template.get("Parameters") or {}
    if said := undeclared_parameters(overrides, declared):
        raise ParameterOverrideError(said)
    # the own parameters get their values (the server's URL) at deploy, checked there
    others = {name: d for name, d in declared.items() if name not in OWN_PARAMETERS}
    deployment.check_parameter_values({**template, "Parameters": others}, overrides)


def _deployed_parameters(state: LocalState, names: list[str]) -> dict[str, str | None]:
    """The values of `names` the running stack was deployed with: its overrides, else
    the Defaults of its template (unchanged since: _check_template_unchanged), None when
    that template can no longer be read."""
    import yaml

    from brewops.local import deploy as deployment

    try:
        declared = deployment.load_template(Path(str(state.template))).get("Parameters") or {}
    except (OSError, yaml.YAMLError):  # gone: the recorded overrides alone are known
        declared = {}
    defaults = {name: d.get("Default") for name, d in declared.items() if isinstance(d, dict)}
    return {
        name: state.parameter_overrides.get(
            name, None if defaults.get(name) is None else str(defaults[name])
        )
        for name in names
    }


def _check_same_parameters(state: LocalState, overrides: dict[str, str]) -> None:
    """The running stack keeps the values it was deployed with, and the parameters `up`
    is not given keep theirs (as `sam deploy` keeps a stack's earlier values). Another
    value asked for must not pass as deployed: the local target creates a stack, it does
    not update one."""
    running = _deployed_parameters(state, list(overrides))
    differ = [
        f"{name} {'(value no longer known)' if was is None else was}"
        + ("" if name in state.parameter_overrides or was is None else " (its Default)")
        + f", not {value}"
        for name, value in overrides.items()
        if (was := running[name]) != value
    ]
    if differ:
        # what a `sam deploy` with these would deploy: the others keep their values
        wanted = {**state.parameter_overrides, **overrides}
        pairs = " ".join(parameter_pair(name, value) for name, value in wanted.items())
        raise LocalTargetConflict(
            f"The local target's stack {state.stack_name} was deployed with other values: "
            f"{'; '.join(differ)}. The local target creates a stack, it does not update "
            f"one: run `brewops local down`, then `brewops local up --parameter-overrides "
            f"{shlex.quote(pairs)}` to deploy with them (the emulator's data goes with the "
            "old stack)."
        )


def parameter_pair(name: str, value: str) -> str:
    """`name=value` as `--parameter-overrides` reads it back: a value with spaces or
    quotes, or an empty one, in double quotes."""
    if value and not re.search(r"[\s\"'\\]", value):
        return f"{name}={value}"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'{name}="{escaped}"'


def kept_parameters_note(state: LocalState) -> str | None:
    """What to say when an `up` given no parameters finds a stack deployed with some."""
    if not (state.already_running and state.deployed and state.parameter_overrides):
        return None
    return (
        "The stack keeps the parameter values it was deployed with (as `sam deploy` keeps a "
        "stack's earlier values): to deploy the template's Defaults instead, run "
        "`brewops local down`, then `brewops local up`."
    )


def _template(template: str | Path | None) -> Path:
    return Path(template).resolve() if template else paths.template_path()


def _create(
    state: LocalState, prepared: PreparedStack, template: Path, overrides: dict[str, str]
) -> None:
    from brewops.local import deploy as deployment

    state.outputs = deployment.create_stack(state.session(), state.endpoint_url, prepared)
    state.deployed = True
    state.template = str(template)
    state.template_digest = prepared.source_digest
    state.parameter_overrides = dict(overrides)


def up(
    deploy: bool = True,
    catalog: str | Path | None = None,
    template: str | Path | None = None,
    stack_name: str | None = None,
    parameters: Mapping[str, object] | None = None,
    for_run: bool = False,
) -> LocalState:
    """Start the emulator and the Punk API server and deploy the template (unless
    `deploy` is False), with the template `parameters` given (`sam deploy
    --parameter-overrides`'s; the others take their Default). Harmless when already
    running: returns the running target with `already_running` set (and deploys the
    stack if it was started without); a deployed stack keeps its parameter values, and
    one asked to have others is refused (LocalTargetConflict).

    `for_run`: for this process, a `brewops run`, which stops the target when done. A
    running target whose run has ended without stopping it (killed) is taken over: by
    this run, or with `for_run` False kept running until `brewops local down`; the
    state's `left_by` names that run."""
    overrides = {str(name): str(value) for name, value in (parameters or {}).items()}
    if overrides and not deploy:
        raise ParameterOverrideError(
            f"parameters ({', '.join(overrides)}) are given to the stack's deploy, and "
            "--no-deploy (deploy=False) deploys none: give them to the `brewops local up` "
            "that deploys it"
        )
    with proxy_bypassed_for_loopback():  # and the servers, started from here, inherit it
        return _up(deploy, catalog, template, stack_name, overrides, for_run)


def _up(
    deploy: bool,
    catalog: str | Path | None,
    template: str | Path | None,
    stack_name: str | None,
    overrides: dict[str, str],
    for_run: bool = False,
) -> LocalState:
    from brewops.local import deploy as deployment

    requested_template = template
    template = _template(template)
    if deploy and not template.is_file():
        raise TemplateMissing(_no_template(template, given=requested_template is not None))
    with _exclusive():
        state = _current()
        if state is None:
            if overrides:  # refused before the servers take their seconds to start
                _check_overrides(deployment.load_template(template), overrides)
            return _start(
                deploy,
                _catalog(catalog),
                template,
                stack_name or default_stack_name(),
                overrides,
                processes.this_run() if for_run else None,
            )
        # BREWOPS_STACK_NAME asks for its stack as much as `stack_name` does
        asked_stack = stack_name or chosen_stack_name()
        _check_started_with(state, catalog, asked_stack, requested_template)
        _check_template_unchanged(state)
        if overrides:
            deployed_from = Path(state.template) if state.deployed and state.template else None
            source = deployed_from if deployed_from and deployed_from.is_file() else template
            _check_overrides(deployment.load_template(source), overrides)
            if state.deployed:
                _check_same_parameters(state, overrides)
        state.already_running = True
        _take_over_if_left(state, for_run)
        if "punkapi" in _exited(state):
            _restart_punkapi(state)
        elif state.punkapi_code_digest != code_digest():
            # it holds no data: restarted, it serves as this code does (its seeded random)
            _restart_punkapi(state, exited=False)
        if not state.deployed:  # the `up` that started them may have died before they answered
            _wait_answering(state)
        if deploy and not state.deployed:
            prepared = deployment.prepare(
                template, state.stack_name, {**overrides, **_parameters(state)}, REGION
            )
            # an earlier deploy that was interrupted may have left its stack behind
            deployment.delete_if_exists(state.session(), state.endpoint_url, state.stack_name)
            _create(state, prepared, template, overrides)
            state.save()
        return state


def _take_over_if_left(state: LocalState, for_run: bool) -> None:
    """A target whose `brewops run` has ended without stopping it (killed) would run on,
    every later run leaving it to that one: this `up` takes it over."""
    if state.run is None or processes.is_running(state.run):
        return
    state.left_by = state.run
    state.run = processes.this_run() if for_run else None
    state.save()


def take_over_if_left() -> RunProcess | None:
    """For a `brewops run` ending that found the target started by another run, going on
    then: takes the target over if that run has since ended without stopping it (killed),
    and gives that run. None while it goes on, or when the target is no longer a run's to
    stop (`brewops local up` took it over, `down` stopped it)."""
    with _exclusive():
        try:
            state = _current()
        except UnreadableStateError:
            return None  # `brewops local down` clears it: not this run's to read
        if state is None:
            return None
        _take_over_if_left(state, for_run=True)
        return state.left_by


def started_anew_meanwhile() -> bool:
    """For a `brewops run` ending that started the target or took it over: whether the
    target running now is another's, `brewops local down` then `up` having started it while
    this run used it (a user's `up`, which runs until `local down`, or another run's, which
    stops it). A damaged state names no owner: False, and `down` stops what it names."""
    with _exclusive():
        try:
            state = LocalState.load()
        except UnreadableStateError:
            return False
    return state is not None and (state.run is None or state.run.pid != os.getpid())


def taken_over_note(state: LocalState) -> str | None:
    """What to say when an `up` not for a run took the target over from a run that ended
    without stopping it."""
    if state.left_by is None or state.run is not None:
        return None
    return (
        f"It was left running by a `brewops run` (pid {state.left_by.pid}) that ended without "
        "stopping it; it now runs until `brewops local down`."
    )


def _check_started_with(
    state: LocalState,
    catalog: str | Path | None,
    stack_name: str | None,
    template: str | Path | None = None,
) -> None:
    """A running target keeps its catalogue, stack and deployed template: asking for
    others must not pass silently."""
    wanted = []
    if catalog is not None and str(Path(catalog).resolve()) != state.catalog:
        wanted.append(f"the catalogue {catalog} (it serves {state.catalog})")
    if stack_name is not None and stack_name != state.stack_name:
        wanted.append(f"the stack {stack_name} (it runs {state.stack_name})")
    deployed_from = state.template if state.deployed else None
    if template is not None and deployed_from and str(_template(template)) != deployed_from:
        wanted.append(f"the template {template} (it deployed {deployed_from})")
    if wanted:
        raise LocalTargetConflict(
            f"The local target is already running, not with {' and '.join(wanted)}. "
            "Run `brewops local down` first to start it with those."
        )


def _check_template_unchanged(state: LocalState) -> None:
    """The running stack is what its template said when deployed: an edit made since (a
    Parameter's default, a column of a table) must not pass as deployed."""
    if not (state.deployed and state.template and state.template_digest):
        return
    import yaml

    from brewops.local import deploy as deployment

    try:
        now = deployment.template_digest(deployment.load_template(Path(state.template)))
    except FileNotFoundError:
        return  # nothing to compare with; the running stack stands
    except yaml.YAMLError:
        now = None
    if now != state.template_digest:
        raise LocalTargetConflict(
            f"The local target runs the stack {state.stack_name} as {state.template} was when "
            "it was deployed, and that file has changed since. Run `brewops local down`, then "
            "`brewops local up` to deploy the change (the emulator's data goes with the old "
            "stack)."
        )


def _punkapi_answers(service: Service) -> bool:
    return processes.answers(f"{service.url}/beers?per_page=1")


def _emulator_answers(service: Service) -> bool:
    return processes.answers(f"{service.url}/moto-api/config")


def _wait_answering(state: LocalState) -> None:
    answering = {"punkapi": _punkapi_answers, "emulator": _emulator_answers}
    for name, service in state.services.items():
        processes.wait_ready(
            NAMES[name],
            service,
            partial(answering[name], service),
            Path(service.log),
            START_TIMEOUT,
        )


def _restart_punkapi(state: LocalState, exited: bool = True) -> None:
    """Start the Punk API server again on its old port: the stack's producer has its URL.
    `exited` False: it runs, started from other code than this checkout's; it is stopped."""
    started_code = code_digest()  # read first: a server started cannot go unrecorded
    old = state.services["punkapi"]
    if not exited:
        processes.stop(old)
    kept = Path(old.log).with_suffix(".log.1")
    if Path(old.log).exists():
        Path(old.log).replace(kept)  # it says why the server died: keep it
    if exited:
        log.warning("the Punk API server (pid %d) had exited, see %s; restarting it", old.pid, kept)
    else:
        log.warning(
            "the Punk API server (pid %d) was started from other code than this checkout's; "
            "restarting it",
            old.pid,
        )
    try:
        process, service = _start_punkapi(Path(old.log).parent, Path(str(state.catalog)), old.port)
    except OSError as error:
        raise processes.ServiceError(
            f"Cannot restart the Punk API server on its port {old.port}: {error.strerror}. "
            "The stack's producer has its URL: stop the program that took the port and run "
            "`brewops local up` again, or `brewops local down` and `brewops local up` to "
            "start afresh."
        ) from error
    state.services["punkapi"] = service
    state.punkapi_code_digest = started_code
    try:
        state.save()  # recorded at once, so `down` finds it even if it never gets ready
    except BaseException:
        processes.stop(service)  # not recorded (a full disk, say): `down` would not find it
        processes.let_go(process)
        raise
    try:
        processes.wait_ready(
            NAMES["punkapi"],
            process,
            lambda: _punkapi_answers(service),
            Path(service.log),
            START_TIMEOUT,
        )
    finally:
        processes.let_go(process)  # recorded: the state and `down` have it from here


def _catalog(catalog: str | Path | None) -> Path:
    if catalog is None:
        from brewops.catalog import default_catalog_path

        catalog = default_catalog_path()
    path = Path(catalog).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no Punk API catalogue at {path}")
    return path


def _forget_stream_positions() -> None:
    """The local Firehose's positions belong to the emulator's streams, which end with it:
    a new emulator (after a `down`, or after one that died) starts without them."""
    shutil.rmtree(paths.firehose_checkpoints_dir(), ignore_errors=True)


def _start(
    deploy: bool,
    catalog: Path,
    template: Path,
    stack_name: str,
    overrides: dict[str, str],
    run: RunProcess | None = None,
) -> LocalState:
    from brewops.local import deploy as deployment  # loads boto3: not for `status`

    _forget_stream_positions()
    log_dir = paths.local_log_dir()
    started_code = code_digest()  # read first: a server started cannot go unrecorded
    emulator, emulator_service = _start_emulator(log_dir)
    try:
        punkapi, punkapi_service = _start_punkapi(log_dir, catalog)
    except BaseException:
        processes.stop(emulator_service)  # not recorded yet: `down` could not find it
        processes.let_go(emulator)
        raise
    state = LocalState(
        endpoint_url=emulator_service.url,
        region=REGION,
        stack_name=stack_name,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        services={"emulator": emulator_service, "punkapi": punkapi_service},
        punkapi_url=punkapi_service.url,
        punkapi_code_digest=started_code,
        catalog=str(catalog),
        run=run,
    )
    try:
        state.save()  # recorded at once: should this process die now, `down` finds them
        # the translation needs no emulator: it runs while the servers start. It writes
        # nothing: Ctrl-C, or a server that failed, stops the servers without waiting for it
        prepared = (
            in_background(
                deployment.prepare,
                template,
                stack_name,
                {**overrides, **_parameters(state)},
                REGION,
            )
            if deploy
            else None
        )
        processes.wait_ready(
            NAMES["punkapi"],
            punkapi,
            lambda: _punkapi_answers(punkapi_service),
            Path(punkapi_service.log),
            START_TIMEOUT,
        )
        processes.wait_ready(
            NAMES["emulator"],
            emulator,
            lambda: _emulator_answers(emulator_service),
            Path(emulator_service.log),
            START_TIMEOUT,
        )
        if prepared is not None:
            _create(state, prepared.result(), template, overrides)
            state.save()
    except BaseException:
        _stop_all(state)
        LocalState.remove()
        raise
    finally:
        processes.let_go(emulator, punkapi)  # recorded: the state and `down` have them
    return state


def down() -> LocalState | None:
    """Delete the stack, stop both processes and remove the state. Returns what was
    stopped, or None if nothing was recorded."""
    with _exclusive():
        try:
            state = LocalState.load()
        except UnreadableStateError:
            recorded = LocalState.recorded_services()
            processes.stop(*recorded)  # each checked by pid and start time first
            LocalState.remove()
            log.warning(
                "the local state was damaged: stopped the %d server(s) it still named and "
                "removed it (any it no longer named show in `pgrep -af brewops`)",
                len(recorded),
            )
            return None
        if state is None:
            return None
        if state.deployed and "emulator" not in _exited(state):
            from brewops.local import deploy as deployment

            bypass_proxy_for_loopback()  # all that down asks of 127.0.0.1
            try:
                deployment.delete(
                    state.session(), state.endpoint_url, state.stack_name, patient=False
                )
            except Exception as error:  # the processes must stop all the same
                log.warning("could not delete stack %s: %s", state.stack_name, error)
        _stop_all(state)
        LocalState.remove()
        _forget_stream_positions()
        return state
