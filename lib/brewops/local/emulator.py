"""The embedded AWS: a moto server taught the CloudFormation resource types the template
needs. It runs as its own process because the models must be registered inside the
process that serves the requests:

    python -m brewops.local.emulator --port 5000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

# Requests reach the emulator on the loopback interface only, which stands in for TLS: a
# bucket policy that denies insecure transport must not deny them, as it does not deny
# HTTPS requests on AWS.
REQUEST_CONTEXT = {"aws:securetransport": "true"}

_EQUALS = {"Bool", "StringEquals", "StringEqualsIgnoreCase"}
_NOT_EQUALS = {"StringNotEquals", "StringNotEqualsIgnoreCase"}


def condition_holds(
    condition: dict[str, Any], context: dict[str, str] | None = None
) -> bool | None:
    """Whether a policy statement's Condition block holds for a request with `context`
    (keys in lower case); None when it tests something this evaluator does not know."""
    context = REQUEST_CONTEXT if context is None else context
    unknown = False
    for operator, tests in condition.items():
        base = operator.removesuffix("IfExists")
        for key, expected in tests.items():
            actual = context.get(key.lower())
            if actual is None or base not in _EQUALS | _NOT_EQUALS:
                unknown = True  # every test must hold: one that fails decides, wherever it is
                continue
            values = expected if isinstance(expected, list) else [expected]
            matches = actual.lower() in {str(v).lower() for v in values}
            if matches != (base in _EQUALS):
                return False
    return None if unknown else True


def applicable_statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    """The statements of `policy` that apply to a request on the emulator, their known
    conditions evaluated and removed. moto ignores all but StringEquals conditions and
    applies a conditional Deny to every request."""
    statements = policy.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    applicable = []
    for statement in statements:
        condition = statement.get("Condition")
        if condition and condition_holds(condition) is False:
            continue
        if condition and condition_holds(condition):
            statement = {k: v for k, v in statement.items() if k != "Condition"}
        applicable.append(statement)
    return applicable


def evaluate_bucket_policy_conditions() -> None:
    """Make moto's S3 evaluate bucket policy conditions against `REQUEST_CONTEXT`."""
    from moto.iam.access_control import IAMPolicy, PermissionResult
    from moto.s3.models import FakeBucket

    def get_permission(bucket: FakeBucket, action: str, resource: str) -> Any:
        if bucket.policy is None:
            return PermissionResult.NEUTRAL
        policy = json.loads(bucket.policy)
        policy["Statement"] = applicable_statements(policy)
        return IAMPolicy(json.dumps(policy)).is_action_permitted(action, resource)

    FakeBucket.get_permission = get_permission  # type: ignore[method-assign, assignment]


def make_kinesis_shards_thread_safe() -> None:
    """Make moto's Kinesis shards safe to write from concurrent requests, and make a
    write or a read cost the same however many records a shard holds.

    moto numbers a record as "the shard's last sequence number + 1", read by copying all
    the shard's keys: two PutRecords served at once can take the same number, and the
    later record silently replaces the earlier one. GetRecords scans the shard from its
    first record. Here one lock orders writes and reads, the last number is read from the
    end of the ordered dict, and a read starts at the record after the iterator's
    position (a shard's numbers are consecutive, as moto only ever appends last + 1).
    """
    from moto.kinesis.models import Record, Shard

    lock = threading.Lock()
    scan_records = Shard.get_records

    def put_record(shard: Shard, partition_key: str, data: str, explicit_hash_key: str) -> str:
        with lock:
            sequence_number = next(reversed(shard.records), 0) + 1
            shard.records[sequence_number] = Record(
                partition_key, data, sequence_number, explicit_hash_key
            )
        return str(sequence_number)

    def get_records(
        shard: Shard, last_sequence_id: str, limit: int | None
    ) -> tuple[list[Record], int, int]:
        with lock:
            records = shard.records
            if not records or (limit is not None and limit < 1):
                return scan_records(shard, last_sequence_id, limit)
            first, newest = next(iter(records)), next(reversed(records))
            if newest - first + 1 != len(records):  # not consecutive: moto's own scan
                return scan_records(shard, last_sequence_id, limit)
            start = max(int(last_sequence_id) + 1, first)
            stop = newest if limit is None else min(newest, start + limit - 1)
            found = [records[number] for number in range(start, stop + 1)]
            if not found:
                return [], int(last_sequence_id), 0
            behind = records[newest].created_at - found[-1].created_at
            return found, found[-1].sequence_number, int(behind * 1000)

    Shard.put_record = put_record  # type: ignore[method-assign, assignment]
    Shard.get_records = get_records  # type: ignore[method-assign, assignment]


def reshard_as_kinesis_does() -> None:
    """Make moto's resharding keep records where Kinesis keeps them, and send new ones
    where Kinesis sends them.

    On Kinesis a split or a merge closes the parent shards with their records (readable
    until the retention period ends) and the child shards take only what is put later;
    GetRecords at the end of a closed shard answers no next iterator. moto moves a split
    parent's records and copies merged parents' into the child (a reader of every shard
    reads them twice), puts later records into the closed parent (the first shard whose
    hash range holds the key), and takes an UpdateShardCount past double or below half
    of the open shards, which Kinesis refuses, ending with a count other than asked for.
    """
    from moto.core.exceptions import JsonRESTError
    from moto.kinesis import models
    from moto.utilities.utils import md5_hash

    moto_split, moto_merge = models.Stream.split_shard, models.Stream.merge_shards
    moto_shard_for_key = models.Stream.get_shard_for_key
    moto_update = models.Stream.update_shard_count
    moto_get_records = models.KinesisBackend.get_records

    @contextlib.contextmanager
    def records_kept(*shards: Any) -> Iterator[None]:
        """moto's reshard of `shards` with nothing in them to move, then their records back."""
        kept = [shard.records for shard in shards]
        for shard in shards:
            shard.records = OrderedDict()
        try:
            yield
        finally:
            for shard, records in zip(shards, kept, strict=True):
                shard.records = records

    def split_shard(stream: Any, shard_to_split: str, new_starting_hash_key: str) -> None:
        with records_kept(stream.shards[shard_to_split]):
            moto_split(stream, shard_to_split, new_starting_hash_key)

    def merge_shards(stream: Any, shard_to_merge: str, adjacent_shard_to_merge: str) -> None:
        with records_kept(stream.shards[shard_to_merge], stream.shards[adjacent_shard_to_merge]):
            moto_merge(stream, shard_to_merge, adjacent_shard_to_merge)

    def get_shard_for_key(stream: Any, partition_key: str, explicit_hash_key: str) -> Any:
        shard = moto_shard_for_key(stream, partition_key, explicit_hash_key)  # validates
        if shard is not None and shard.is_open:
            return shard
        key = (
            int(explicit_hash_key)
            if explicit_hash_key
            else int(md5_hash(partition_key.encode("utf-8")).hexdigest(), 16)
        )
        return next(
            (
                s
                for s in stream.shards.values()
                if s.is_open and s.starting_hash <= key <= s.ending_hash
            ),
            None,
        )

    def update_shard_count(stream: Any, target_shard_count: int) -> None:
        target = int(target_shard_count)
        open_shards = sum(1 for shard in stream.shards.values() if shard.is_open)
        if target > 2 * open_shards or 2 * target < open_shards:
            raise JsonRESTError(
                "LimitExceededException",
                f"UpdateShardCount scales a stream to between half and double its open shards "
                f"({open_shards} now), not to {target}: scale in steps",
            )
        moto_update(stream, target)

    def get_records(
        backend: Any, stream_arn: str | None, shard_iterator: str, limit: int | None
    ) -> tuple[str | None, list[Any], int]:
        next_iterator, records, behind = moto_get_records(
            backend, stream_arn, shard_iterator, limit
        )
        stream_name, shard_id, position = models.decompose_shard_iterator(next_iterator)
        stream = backend.describe_stream(stream_arn=stream_arn, stream_name=stream_name)
        shard = stream.get_shard(shard_id)
        if not shard.is_open and int(position) >= shard.get_max_sequence_number():
            return None, records, behind  # read to its end: there is no more to come
        return next_iterator, records, behind

    models.Stream.split_shard = split_shard  # type: ignore[method-assign, assignment]
    models.Stream.merge_shards = merge_shards  # type: ignore[method-assign, assignment]
    models.Stream.get_shard_for_key = get_shard_for_key  # type: ignore[method-assign, assignment]
    models.Stream.update_shard_count = update_shard_count  # type: ignore[method-assign, assignment]
    models.KinesisBackend.get_records = get_records  # type: ignore[method-assign, assignment]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m brewops.local.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--fd", type=int, help="Serve on this inherited socket, listening on --port already."
    )
    parser.add_argument("--log-requests", action="store_true", help="Log every request.")
    args = parser.parse_args(argv)
    if not args.log_requests:
        # one line per request would grow the log by megabytes while streaming
        logging.getLogger("werkzeug").setLevel(logging.WARNING)

    # jsonschema, imported by the API Gateway models that moto's CloudFormation imports,
    # compiles an RFC 3987 grammar when rfc3987-syntax is installed: about 2 s of the
    # emulator's start, for a format check the emulator never makes.
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    from brewops.local import cfn_models

    cfn_models.register()
    evaluate_bucket_policy_conditions()
    make_kinesis_shards_thread_safe()
    reshard_as_kinesis_does()

    # All state is in memory and goes with the process: on SIGTERM there is nothing to
    # flush, and skipping the interpreter's teardown of moto's modules saves seconds.
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(0))
    os.environ.setdefault("MOTO_PORT", str(args.port))  # moto builds some URLs from it
    print(f"AWS emulator (moto) starting on http://{args.host}:{args.port}", flush=True)
    # what `moto_server` runs, without its reloader and SSL options
    make_server(
        args.host,
        args.port,
        DomainDispatcherApplication(create_backend_app),
        threaded=True,
        request_handler=MotoRequestHandler,
        fd=args.fd,
    ).serve_forever()


if __name__ == "__main__":
    main()
