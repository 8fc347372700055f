"""`brewops stream`: produce beers, run the schedule, deliver (local Firehose), reconcile."""

from __future__ import annotations

import json
import sys
import threading
from collections import Counter
from collections.abc import Collection
from pathlib import Path
from typing import Any

import click

from brewops import paths
from brewops.errors import ActionableError
from brewops.jsontext import parse_json
from brewops.progress_option import PROGRESS_OPTION
from brewops.punkapi import API_VERSIONS

TARGET_OPTION = click.option(
    "--target",
    type=click.Choice(["local", "aws"]),
    default="local",
    show_default=True,
    envvar="BREWOPS_TARGET",
    show_envvar=True,
    help="Where the stack runs.",
)


def use_target(name: str) -> Any:
    """The deployed target (its Outputs, session and Punk API URL)."""
    from brewops import target as targets

    return targets.use(name)


def produced_ids_file(target: str) -> Path:
    """Ids the backfill and the ticks sent, for `reconcile`: every id as often as it was
    sent, over all runs into one stack (a beer sent twice must arrive twice), with the ids
    of each notebook run also by run; and the objects delivered before the first of them,
    which `reconcile` leaves out."""
    return paths.build_dir() / "streaming" / f"produced-ids-{target}.json"


class ProducedIdsUnreadable(RuntimeError, ActionableError):
    """The file of the ids this stack was sent is damaged."""


def read_remembered(target: str, stack_id: str | None) -> tuple[dict[str, Any] | None, str]:
    """(what `remember_produced` kept for this stack, where it comes from); None when
    nothing was kept, or for another stack (a deleted one, an earlier `local up`). Raises
    ProducedIdsUnreadable when the file is damaged, before anything relies on it."""
    path = produced_ids_file(target)
    if not path.exists():
        return None, f"{path} (not found)"
    try:
        remembered = parse_json(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise _unreadable(path, f"not JSON: {error}") from error
    if not isinstance(remembered, dict) or remembered.get("stack_id") != stack_id:
        return None, f"{path} (another stack's, ignored)"
    ids = remembered.get("ids", [])
    if not isinstance(ids, list) or not all(type(i) is int for i in ids):
        raise _unreadable(path, "its ids are not a list of integers")
    keys = remembered.get("delivered_before", [])
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise _unreadable(path, "its delivered_before is not a list of object keys")
    runs = remembered.get("runs", {})
    if not isinstance(runs, dict) or not all(
        isinstance(run_ids, list) and all(type(i) is int for i in run_ids)
        for run_ids in runs.values()
    ):
        raise _unreadable(path, "its runs are not lists of integer ids by run")
    return {"ids": ids, "delivered_before": frozenset(keys), "runs": runs}, str(path)


def read_produced(target: str, stack_id: str | None) -> tuple[list[int] | None, str]:
    """(ids, where they come from) remembered for this stack; None when there are none, or
    when they were produced into another stack. Raises ProducedIdsUnreadable when the file
    is damaged."""
    remembered, source = read_remembered(target, stack_id)
    return (remembered["ids"] if remembered else None), source


def delivered_before_producing(target: str, tgt: Any) -> frozenset[str] | None:
    """Before a command sends beers: the objects already delivered, when this stack has no
    ids remembered yet (None when it has: the list then started earlier). Says a damaged
    record of the ids before anything is sent."""
    if read_produced(target, tgt.stack_id)[0] is not None:
        return None
    from brewops.reconcile import delivered_keys

    return delivered_keys(tgt.outputs, session=tgt.session)


def _unreadable(path: Path, problem: str) -> ProducedIdsUnreadable:
    return ProducedIdsUnreadable(
        f"{path}, where `brewops stream backfill` and `tick` record the ids they send, is "
        f"damaged ({problem}). Delete it: what this stack was sent is then unknown, and "
        "`brewops stream reconcile` checks the ids found in raw instead."
    )


def remember_produced(
    target: str,
    ids: list[int],
    stack_id: str | None,
    delivered_before: Collection[str] | None = None,
    run: str | None = None,
) -> Path:
    """Add `ids` to what this stack was sent. `delivered_before` (what
    `delivered_before_producing` listed) is kept only with the stack's first ids. With
    `run`, `ids` are all that run has sent so far: they replace what was recorded for the
    same run, so recording a run again (notebook 03's cell run twice) counts its beers once.
    One writer at a time: `stream run --with-scheduler` may tick beside a `stream tick` or
    a backfill."""
    from brewops.files import exclusive, write_atomically

    path = produced_ids_file(target)
    with exclusive(path.with_suffix(".lock")):
        known, _ = read_remembered(target, stack_id)
        runs = dict(known["runs"]) if known is not None else {}
        added = list(ids)
        if run is not None:
            runs[run] = sorted(added)
        if known is not None:  # the objects listed before the stack's first ids stay
            earlier = Counter(known["ids"]) - Counter(known["runs"].get(run, []))
            ids, delivered_before = [*earlier.elements(), *added], known["delivered_before"]
        remembered = {
            "stack_id": stack_id,
            "ids": sorted(ids),
            "delivered_before": sorted(delivered_before or ()),
            **({"runs": runs} if runs else {}),
        }
        write_atomically(path, json.dumps(remembered))
    return path


def _ids_from_file(path: Path) -> tuple[list[int], list[str]]:
    """(ids, objects delivered before them) from a JSON list of ids, or from the file
    `remember_produced` writes."""
    try:
        data = parse_json(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise click.BadParameter(f"{path} is not JSON: {error}", param_hint="--ids-file") from error
    ids = data.get("ids") if isinstance(data, dict) else data
    if not isinstance(ids, list) or not all(type(i) is int for i in ids):  # true is no id
        raise click.BadParameter(f"{path} holds no list of integer ids", param_hint="--ids-file")
    before = data.get("delivered_before", []) if isinstance(data, dict) else []
    if not isinstance(before, list) or not all(isinstance(k, str) for k in before):
        raise click.BadParameter(
            f"{path}: delivered_before is not a list of object keys", param_hint="--ids-file"
        )
    return ids, before


def _echo_ticks(ticks: list[Any], file: Any = None) -> None:
    """One line per tick: what the producer answered, or why it failed, whole; to `file`,
    else stdout."""
    for item in ticks:
        outcome = json.dumps(item.result, default=str) if item.ok else item.error
        click.echo(f"tick {item.number}: {'ok' if item.ok else 'failed'}: {outcome}", file=file)


def _echo_not_sent(report: Any, limit: int = 10) -> None:
    """Each beer the stream did not accept, with its reason (the first `limit`)."""
    reasons = [
        f"{f.partition_key or '(no id)'}: {f.error_code}: {f.error_message}" for f in report.failed
    ]
    reasons += [f"{key}: over the 1 MiB Kinesis record limit" for key in report.oversize]
    for reason in reasons[:limit]:
        click.echo(f"not sent: beer {reason}", err=True)
    if len(reasons) > limit:
        click.echo(f"not sent: {len(reasons) - limit} more beers", err=True)


def _local_only(tgt: Any, what: str) -> None:
    if tgt.name != "local":
        raise click.ClickException(
            f"{what} runs Firehose locally; on AWS, Firehose delivers by itself "
            "(use `brewops stream reconcile --target aws` to check what arrived)"
        )


@click.group(
    help="Produce beers, run the scheduler, deliver through Firehose (locally), reconcile."
)
def stream() -> None:
    pass


@stream.command(help="Put the whole catalogue into the Kinesis stream (PutRecords in batches).")
@TARGET_OPTION
@click.option(
    "--catalog",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Put the beers of this catalogue file instead of crawling the Punk API.",
)
@click.option("--api-url", help="Punk API base URL with version. Default: the target's.")
@click.option(
    "--api-version",
    type=click.Choice(API_VERSIONS, case_sensitive=False),
    help="Punk API version. Default: the target's (on AWS the stack's PunkApiVersion); "
    "for --api-url, the URL's last segment (…/v2 or …/v3), else v2.",
)
@PROGRESS_OPTION
def backfill(
    target: str, catalog: Path | None, api_url: str | None, api_version: str | None, progress: bool
) -> None:
    from brewops.producer import ProduceInterrupted, put_beers
    from brewops.reconcile import sent_ids

    tgt = use_target(target)
    delivered_before = delivered_before_producing(target, tgt)
    if catalog is not None:
        from brewops.catalog import load_catalog

        beers = load_catalog(catalog)
    else:
        from brewops.punkapi.client import PunkApiClient
        from brewops.punkapi.errors import PunkApiUrlError
        from brewops.target import punkapi_endpoint

        url, api_version = punkapi_endpoint(api_url, api_version, tgt)
        if not url:
            raise click.UsageError("no Punk API URL for this target: pass --api-url or --catalog")
        # One beer that fails the schema must not stop the backfill: it is sent, and if the
        # transform cannot clean it, it lands in the error prefix and the function logs why.
        try:
            client = PunkApiClient(url, api_version=api_version, on_invalid="keep")
        except PunkApiUrlError as exc:  # not http(s)://HOST…, or with spaces
            if api_url:
                raise click.BadParameter(str(exc), param_hint="'--api-url'") from exc
            raise click.ClickException(f"the stack's PunkApiUrl: {exc}") from exc
        beers = client.all_beers(progress=progress)
        for problem in client.schema_errors:
            click.echo(f"sent although it fails the schema: {problem}", err=True)
    kinesis = tgt.session.client("kinesis")
    try:
        report = put_beers(beers, tgt.outputs["StreamName"], kinesis, progress=progress)
    except ProduceInterrupted as interrupted:
        # Not recorded: `fill` would take the stack as filled. Unrecorded beers that arrive
        # are only more copies to `reconcile`, which checks the ids of a backfill that ends.
        click.echo(
            f"interrupted: {interrupted.report.sent} of {len(beers)} beers sent, not recorded "
            "for `brewops stream reconcile`; run the command again to send and record them all",
            err=True,
        )
        raise click.Abort from interrupted
    try:
        remember_produced(target, sent_ids(beers, report), tgt.stack_id, delivered_before)
    except OSError:  # a full disk: the beers are in the stream all the same
        click.echo(
            f"{report.sent} of {len(beers)} beers sent, not recorded for `brewops stream "
            "reconcile` (the error below says why)",
            err=True,
        )
        raise
    click.echo(
        f"{report.sent} of {report.records} beers sent in {report.calls} "
        f"call{'' if report.calls == 1 else 's'} "
        f"({report.records_per_second:.0f} records/s); retried {report.retried}, "
        f"failed {len(report.failed)}, oversize {len(report.oversize)}"
    )
    if not report.ok:
        _echo_not_sent(report)
        said = "some beers were not sent; see the reasons above"
        if any(f.error_code == "ProvisionedThroughputExceededException" for f in report.failed):
            from brewops.aws_errors import KINESIS_TOO_SMALL

            said += f". {KINESIS_TOO_SMALL}"
        raise click.ClickException(said)


@stream.command(help="Invoke the producer function as its schedule rule would, N times.")
@TARGET_OPTION
@click.option(
    "--n", "ticks", type=click.IntRange(min=0), default=1, show_default=True, help="Ticks to run."
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds apart.",
)
def tick(target: str, ticks: int, interval: float) -> None:
    from brewops.reconcile import tick_ids
    from brewops.scheduler import Scheduler

    tgt = use_target(target)
    delivered_before = delivered_before_producing(target, tgt)
    scheduler = Scheduler.from_outputs(
        tgt.outputs, session=tgt.session, in_process=tgt.name == "local"
    )
    done = scheduler.run(ticks, interval=interval)
    # recorded before it is said: an output whose reader has gone ends the command
    remember_produced(target, tick_ids(done), tgt.stack_id, delivered_before)
    _echo_ticks(done)
    if len({item.number for item in done}) < ticks:  # Ctrl-C (or SIGTERM) ended the run
        raise click.Abort
    if not all(item.ok for item in done):
        raise click.ClickException("some ticks failed")


@stream.command(help="Deliver everything in the stream now (local Firehose), then stop.")
@TARGET_OPTION
@PROGRESS_OPTION
def drain(target: str, progress: bool) -> None:
    from brewops.firehose_runtime import FirehoseRuntime

    tgt = use_target(target)
    _local_only(tgt, "drain")
    runtime = FirehoseRuntime.from_outputs(tgt.outputs, session=tgt.session, progress=progress)
    try:
        report = runtime.drain()
    except KeyboardInterrupt as interrupted:
        # a delivery caught half-way is read again from its stream's last settled record
        click.echo(
            "interrupted: what was delivered stays delivered; run the command again to "
            "deliver the rest",
            err=True,
        )
        raise click.Abort from interrupted
    click.echo(str(report))


@stream.command(
    help="""Fill the local stack as notebook 03 does: backfill the whole catalogue, unless this
    stack already holds what was produced, then deliver it. Safe to run again; notebooks 04
    and 05 read what it leaves (in Colab, where each runs alone, their cell after the
    parameters runs it)."""
)
@PROGRESS_OPTION
@click.pass_context
def fill(ctx: click.Context, progress: bool) -> None:
    tgt = use_target("local")
    produced, _ = read_produced("local", tgt.stack_id)
    if not produced:  # [] after ticks that all failed: the stack holds no beer yet
        ctx.invoke(backfill, target="local", progress=progress)
    else:
        click.echo(f"{len(produced)} records already produced into this stack: no backfill")
    ctx.invoke(drain, target="local", progress=progress)


@stream.command(help="Deliver continuously, by buffer size and interval, until Ctrl-C.")
@TARGET_OPTION
@click.option(
    "--poll",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Seconds between reads.",
)
@click.option(
    "--with-scheduler",
    is_flag=True,
    help="Also tick the producer at the rule's rate (not when the rule is DISABLED).",
)
def run(target: str, poll: float, with_scheduler: bool) -> None:
    from brewops.firehose_runtime import FirehoseRuntime

    tgt = use_target(target)
    _local_only(tgt, "run")
    runtime = FirehoseRuntime.from_outputs(tgt.outputs, session=tgt.session)
    stop = threading.Event()
    ticker = None
    ticker_failure: list[BaseException] = []
    # while a function runs, the process's stdout and stderr are its log (functions.py): the
    # producer's during a tick, the transform's during a delivery, whichever thread writes
    output, console = sys.stdout, sys.stderr
    if with_scheduler:
        from brewops.reconcile import tick_ids
        from brewops.scheduler import CRON_INTERVAL_SECONDS, Scheduler

        scheduler = Scheduler.from_outputs(tgt.outputs, session=tgt.session)
        stack_id = tgt.stack_id
        delivered_before = delivered_before_producing(target, tgt)

        def remember(fired: list[Any]) -> None:
            remember_produced(target, tick_ids(fired), stack_id, delivered_before)
            _echo_ticks(fired, output)

        def tick_until_stopped() -> None:
            try:
                scheduler.run(stop=stop, on_tick=remember)
            except BaseException as error:  # ends the run too: delivery without ticks is not it
                ticker_failure.append(error)
                stop.set()

        if not scheduler.enabled:  # as on AWS, where a DISABLED rule fires nothing
            click.echo(
                f"the schedule rule {tgt.outputs.get('ScheduleRuleName')} is DISABLED (the "
                "template's ScheduleState): delivering without ticks; `brewops stream tick` "
                "invokes the producer by hand",
                err=True,
            )
        else:
            if scheduler.interval_seconds is None:
                click.echo(
                    f"the rule's schedule {scheduler.schedule} is no rate(...): ticking every "
                    f"{CRON_INTERVAL_SECONDS:.0f} s instead of at its times",
                    err=True,
                )
            ticker = threading.Thread(target=tick_until_stopped, daemon=True)
    click.echo("delivering; Ctrl-C to stop")
    if ticker is not None:  # after saying so: its first tick holds the output at once
        ticker.start()
    try:
        report = runtime.run(stop, poll_seconds=poll, flush_on_exit=ticker is None)
    finally:
        stop.set()
        if ticker is not None:
            _await_running_tick(ticker, scheduler, console)
    if ticker is not None:
        # The last ticks' beers may not have been read when delivery stopped, or were sent
        # after: deliver them too, or `reconcile` finds the beers just sent missing.
        report.seconds += runtime.drain().seconds
    click.echo(str(report))
    if ticker_failure:
        (error,) = ticker_failure
        raise click.ClickException(f"the scheduler stopped: {error}") from error


def _await_running_tick(ticker: threading.Thread, scheduler: Any, console: Any) -> None:
    """Once stopped, the scheduler starts no tick, but one running may still send its beer:
    the final drain waits for it, as long as the tick's functions may run."""
    ticker.join(timeout=1)
    if ticker.is_alive():
        most = scheduler.tick_timeout + 5  # and the time to record what it sent
        click.echo(
            f"waiting for the running tick to end (at most {most:.0f} s; "
            "Ctrl-C again stops at once, leaving what was sent undelivered)",
            file=console,
        )
        ticker.join(timeout=most)


@stream.command(
    help="""Send the records the transform failed (errors/cleaned/processing-failed/) through
    the pipeline again, once their cause is fixed; the records sent move to
    errors/redriven/, so they are sent once."""
)
@TARGET_OPTION
@click.option(
    "--apply",
    is_flag=True,
    help="Put the records back into the stream and move them out of the error prefix. "
    "Without it, a dry run: only what would be re-driven is listed.",
)
@click.option(
    "--all",
    "include_refused",
    is_flag=True,
    help="Also the records the transform refused (not a beer); unchanged, they fail again "
    "unless the transform now takes them. Default: only the records the function failed "
    "(an error, a timeout, a throttle).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print what was found, sent and moved as JSON (`brewops schema redrive` prints its "
    "JSON Schema).",
)
@PROGRESS_OPTION
def redrive(target: str, apply: bool, include_refused: bool, as_json: bool, progress: bool) -> None:
    from brewops.producer import ProduceInterrupted
    from brewops.redrive import redrive as send_again

    tgt = use_target(target)
    try:
        result = send_again(
            tgt.outputs,
            session=tgt.session,
            apply=apply,
            include_refused=include_refused,
            progress=progress,
        )
    except ProduceInterrupted as interrupted:
        click.echo(
            f"interrupted: {interrupted.report.sent} records sent, none moved out of the "
            "error prefix; run the command again (what was sent then arrives twice, a copy "
            "readers dedupe)",
            err=True,
        )
        raise click.Abort from interrupted
    click.echo(json.dumps(result.figures()) if as_json else str(result))
    if result.produce is not None and result.produce.sent:
        deliver = (
            "`brewops stream drain` delivers what was sent"
            if tgt.name == "local"
            else "Firehose delivers what was sent within a few minutes"
        )
        click.echo(
            f"{deliver}; then `brewops stream reconcile` finds it in cleaned, or in the "
            "error prefix again if the cause is not fixed",
            err=True,
        )
    if not result.ok:
        raise click.ClickException(result.what_to_do())


@stream.command(help="Check every produced beer is in raw, and in cleaned or in the errors.")
@TARGET_OPTION
@click.option(
    "--ids-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Produced ids: a JSON list, or a file backfill and tick wrote. Default: what they "
    "recorded for this stack.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the counts and `nothing_lost` as JSON, records lost too (`brewops schema "
    "reconciliation` prints its JSON Schema).",
)
def reconcile(target: str, ids_file: Path | None, as_json: bool) -> None:
    from brewops.reconcile import reconcile as compare

    tgt = use_target(target)
    produced: list[int] | None
    if ids_file is not None:
        produced, delivered_before = _ids_from_file(ids_file)
    else:
        remembered, source = read_remembered(target, tgt.stack_id)
        produced = remembered["ids"] if remembered else None
        delivered_before = remembered["delivered_before"] if remembered else frozenset()
        if produced is None:  # on stderr: with --json, stdout is the JSON alone
            click.echo(
                f"no produced ids in {source}: reconciling with the ids found in raw", err=True
            )
    result = compare(produced, tgt.outputs, session=tgt.session, delivered_before=delivered_before)
    click.echo(json.dumps(result.figures()) if as_json else str(result))
    if not result.produced:
        raise click.ClickException(
            "nothing to reconcile: no records were produced into this stack "
            "(`brewops stream backfill`, `tick` or `fill` produce them)"
        )
    if not result.ok and result.unread:
        raise click.ClickException(
            f"{len(result.unreadable)} delivered object(s) could not be read, so whether "
            "records were lost is not known: the UNREADABLE lines say why (AccessDenied "
            "needs s3:GetObject on the bucket; a SlowDown, a 5xx or a timeout passes: "
            "reconcile again in a minute)"
        )
    if not result.ok:
        raise click.ClickException(
            "records were lost, or are not delivered yet: "
            + (
                "`brewops stream drain` delivers what the stream holds, then reconcile again"
                if tgt.name == "local"
                else "Firehose delivers within a few minutes, then reconcile again"
            )
        )
