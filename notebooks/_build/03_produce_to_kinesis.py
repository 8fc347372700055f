"""Notebook 03: backfill the catalogue into Kinesis, tick the schedule, deliver, reconcile."""

from common import build, code, md

build(
    "03_produce_to_kinesis",
    "Produce beers into Kinesis and deliver them to S3",
    overview="""
Fills the pipeline and proves nothing was lost on the way:

1. **backfill**: the whole catalogue, page by page from the Punk API, put into the Kinesis
   stream with `PutRecords` in batches (partition key = beer id; failed entries retried);
2. **schedule**: a few ticks of the producer function, invoked the way its EventBridge rule
   invokes it (each puts one random beer);
3. **delivery**: on the local target the emulator stores the two Firehose delivery streams
   but does not run them, so the package's Firehose runtime does what their configuration
   says (read the shards, call the transform Lambda, convert to Parquet with the Glue
   table's schema, write GZIP NDJSON, evaluate the prefixes). On AWS, Firehose does it and
   the notebook waits for the objects;
4. **reconciliation**: every produced id must be in `raw/`, and in `cleaned/` or in
   `errors/`, with the reason the transform function logged for it. Only the objects this
   run delivered count: what an earlier run left in the bucket cannot stand in for a beer
   this run lost.
""",
    needs="""
The stack deployed (notebook 02). Locally, nothing else. With `target = "aws"`: AWS
credentials allowed to put records, invoke the producer function, read the bucket and
filter the transform function's log events (for the reasons of failed records); the Punk API the stack was deployed with (`BREWOPS_PUNKAPI_URL` or the `PunkApiUrl` parameter).
""",
    costs="""
None locally. On AWS: one Kinesis record per beer of the stack's Punk API (415 on the
default community v3 service, 325 from `brewops api serve`) plus one record and one Lambda
invocation per tick (fractions of a cent), Firehose ingestion and format conversion for
about 1 MB, S3 requests; Firehose delivers after its 60 s buffer interval, so allow a few
minutes.
""",
    parameters="""
from typing import Optional  # papermill reads `Optional[int]`, not `int | None`

target = "local"  # "local" (embedded emulator) or "aws"
api_url: Optional[str] = None  # None: the Punk API of the target
api_version: Optional[str] = None  # "v2"/"v3"; None: api_url's, else the target's (PunkApiVersion)
ticks = 3  # scheduled producer invocations after the backfill
progress = True  # progress bars
delivery_timeout = 900.0  # aws: seconds to wait for Firehose to deliver everything
cleanup = False  # delete the delivered objects at the end (later notebooks read them)
""",
    cells=[
        code("""
import pandas as pd

from brewops import summary
from brewops import target as targets
from brewops.firehose_runtime import FirehoseRuntime
from brewops.parameters import checked_flags
from brewops.producer import put_beers
from brewops.punkapi.client import PunkApiClient
from brewops.reconcile import (
    checked_timeout,
    delete_delivered,
    delivered_keys,
    object_counts,
    reconcile,
    sent_ids,
    tick_ids,
    wait_for_delivery,
)
from brewops.scheduler import Scheduler, checked_ticks
from brewops.streaming_cli import remember_produced

pd.set_option("display.max_colwidth", None)  # S3 URIs and ARNs in full, not cut at 50
# refused here, before anything is sent, when a value cannot run
ticks = checked_ticks(ticks)
checked_flags(progress=progress, cleanup=cleanup)
delivery_timeout = checked_timeout(delivery_timeout, "delivery_timeout")
tgt = targets.use(target)
is_local = tgt.name == "local"
base_url, api_version = targets.punkapi_endpoint(api_url, api_version, tgt)
stream_name = tgt.outputs["StreamName"]
pd.Series({"Punk API": base_url, "stream": stream_name, "bucket": tgt.outputs["BucketName"]})
"""),
        md("""
## 1. Backfill the whole catalogue

The client pages through `/beers` (80 per page, retrying server errors with backoff); the
producer packs the beers into `PutRecords` calls of at most 500 records and 5 MiB, and
re-sends only the entries Kinesis rejected. The report says what was sent, retried, failed.
First the cell lists the objects already in the bucket: earlier runs', which the
reconciliation leaves out.
A beer that does not match the API's schema is still sent, with a note: the transform decides
whether it can be cleaned, and if not Firehose puts it in the error prefix while the function
logs why.
"""),
        code("""
# A beer that fails the schema is sent anyway: the transform judges it (see section 5). A new
# client each run of this cell, so its requests and schema errors are this crawl's alone.
delivered_before = delivered_keys(tgt.outputs, session=tgt.session)
api = PunkApiClient(base_url, api_version=api_version, on_invalid="keep")
beers = api.all_beers(progress=progress)
report = put_beers(beers, stream_name, tgt.client("kinesis"), progress=progress)
print(f"{len(beers)} beers from the Punk API in {api.requests_made} requests")
for problem in api.schema_errors:
    print(f"sent although it fails the schema: {problem}")
# what this run has produced so far: a backfill run again starts a new run, whose
# reconciliation must not look for the earlier run's ticks among its own objects; its ids
# are recorded under its name, once however often the recording cell runs
produced_ids, records_sent = sent_ids(beers, report), report.sent
produced_run = f"notebook 03 at {pd.Timestamp.now(tz='UTC').isoformat()}"
pd.Series(report.as_dict()).drop(["failed", "oversize"]).to_frame("backfill")
"""),
        code("""
assert report.ok, f"not sent: {report.failed[:5]} oversize: {report.oversize[:5]}"
assert report.sent == len(beers) == len(set(produced_ids))  # one record per id
"""),
        md("""
## 2. Scheduled ticks

The rule, its schedule and its target are read back from EventBridge; each tick sends the
producer function the `Scheduled Event` the rule would send (locally the handler runs in
this process with the function's environment; on AWS the deployed function is invoked).
A tick sends one random beer (the template's `BeersPerTick`), one the backfill has already
sent: ticks add records but no new beers, so from here on there are more records than ids.
"""),
        code("""
scheduler = Scheduler.from_outputs(tgt.outputs, session=tgt.session, in_process=is_local)
done = scheduler.run(ticks)
print(f"rule {scheduler.rule_arn}, schedule {scheduler.schedule}")
pd.DataFrame(
    [
        {"tick": t.number, "ok": t.ok, "ids": (t.result or {}).get("ids"), "error": t.error}
        for t in done
    ]
)
"""),
        code("""
assert all(t.ok for t in done), [t.error for t in done if not t.ok]
produced_ids = sent_ids(beers, report) + tick_ids(done)
records_sent = report.sent + sum(t.result["sent"] for t in done)
print(f"{records_sent} records sent, {len(set(produced_ids))} distinct beer ids")
if not cleanup:  # for `brewops stream reconcile`; and `stream fill` won't send them again
    recorded = remember_produced(
        tgt.name, produced_ids, tgt.stack_id, delivered_before, run=produced_run
    )
    print(f"recorded in {recorded}")
"""),
        md("""
## 3. Delivery

Locally the Firehose runtime drains both delivery streams now (its positions are
checkpointed, so running this cell again delivers nothing twice). On AWS, Firehose
delivers by itself after its buffer interval; the cell polls S3 until every produced id has
arrived or the timeout passes. The stream keeps a record 24 hours: on AWS a delivery stream
stopped for longer loses the older ones (reconciliation below names them; a backfill puts
them again), while the local emulator keeps every record however long the drain waits.
"""),
        code("""
if is_local:
    runtime = FirehoseRuntime.from_outputs(tgt.outputs, session=tgt.session, progress=progress)
    delivery = runtime.drain()
    display(pd.DataFrame(delivery.rows()))
    result = reconcile(
        produced_ids, tgt.outputs, session=tgt.session, delivered_before=delivered_before
    )
else:
    result = wait_for_delivery(
        produced_ids,
        tgt.outputs,
        timeout=delivery_timeout,
        session=tgt.session,
        delivered_before=delivered_before,
    )
"""),
        md("""
## 4. What landed where

Objects under each prefix the delivery streams write: `raw/` (GZIP NDJSON), `cleaned/`
(Parquet, partitioned by `ingest_date`), and the error prefixes (`processing-failed/` for
records the transform rejected, `format-conversion-failed/` for records the table's schema
rejected).
"""),
        code("""
pd.DataFrame(object_counts(tgt.outputs, session=tgt.session))
"""),
        md("""
## 5. Reconciliation

Every produced record must be in `raw/`, and in `cleaned/` or in the errors, among the
objects delivered since this run's backfill began (those of earlier runs are left out). An
error record says only that the function failed it ("ProcessingFailed status set for
record"), on AWS as locally; the reason is in the function's CloudWatch Logs group, and the
table below joins it by beer id. Records are counted by beer id, so a beer the ticks
produced twice must arrive twice. The ids sent were also recorded (section 2) where the
commands record theirs: `brewops stream reconcile` checks this stack again from the shell,
and `brewops stream fill` does not send them a second time.
"""),
        code("""
print(result)
pd.DataFrame(
    [{"beer id": e.beer_id, "reason": e.reason, "object": e.key} for e in result.errors],
    columns=["beer id", "reason", "object"],
)
"""),
        code("""
assert result.ok, str(result)
assert result.produced == len(produced_ids) == records_sent
# on AWS the schedule keeps producing beside this run: raw may hold more records, and ids
# this run did not produce
assert result.raw_records >= records_sent
if result.unexpected_ids:
    print(f"{len(result.unexpected_ids)} ids delivered meanwhile, not produced by this run")
figures = summary.record(
    notebook="03_produce_to_kinesis",
    stack_id=tgt.stack_id,  # notebook 04 reconciles only the stack these records went to
    produced=result.produced,
    records_sent=records_sent,
    ids_sent=sorted(set(produced_ids)),
    raw=result.raw_records,
    raw_unique_ids=result.raw_unique_ids,
    cleaned_unique_ids=result.cleaned_unique_ids,
    errors=len(result.errors),
    nothing_lost=result.ok,
)
pd.Series({key: value for key, value in figures.items() if key != "ids_sent"}, name="recorded")
"""),
        md("""
## Clean-up

The stream and the delivered objects stay for the next notebooks. With `cleanup = True`
the objects the delivery streams wrote are deleted (the stack stays; notebook 02 removes it).
"""),
        code("""
if cleanup:
    print(f"deleted {delete_delivered(tgt.outputs, session=tgt.session)} objects")
"""),
    ],
)
