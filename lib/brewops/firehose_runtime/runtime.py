"""What Firehose does between a Kinesis stream and S3, for one delivery stream.

Records flow shard -> (Lambda transformation) -> destination buffer -> S3. A record is
*settled* once its fate is known (in the buffer, dropped, or failed); the buffer is
delivered when the next record would take it past the configured size, when its oldest
record has waited the configured interval, or when a drain ends. Only settled records
count towards the checkpoint, which is committed after the S3 writes.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import io
import json
import logging
import random
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from brewops.errors import ActionableError
from brewops.firehose_runtime.checkpoints import Checkpoint, CheckpointStore
from brewops.firehose_runtime.config import (
    DeliveryStreamConfig,
    FormatConversion,
    instant_text,
)
from brewops.firehose_runtime.conversion import (
    ConversionError,
    HiveJsonDeserializer,
    ParquetBuffer,
    read_table_schema,
)
from brewops.firehose_runtime.functions import LocalFunction
from brewops.firehose_runtime.prefixes import (
    effective_error_prefix,
    effective_prefix,
    evaluate_prefix,
    object_name,
)
from brewops.firehose_runtime.processing import (
    FORMAT_CONVERSION_FAILED,
    LAMBDA_PAYLOAD_LIMIT,
    Failure,
    LambdaStage,
    SourceRecord,
    event_bytes,
    event_record_bytes,
    now_ms,
)

logger = logging.getLogger(__name__)

KEY_NAMESPACE = uuid.UUID("6f1c3f9e-44a5-4a8e-9a7e-5b0f0d7c1e21")
MAX_RECORDS_PER_CALL = 10_000  # the GetRecords limit


def _instant(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


class DeliveryOvertaken(RuntimeError, ActionableError):
    """Another runtime delivered the same delivery stream meanwhile."""


@dataclass
class DeliveryStats:
    """What one delivery stream did in a run."""

    name: str
    read: int = 0
    delivered: int = 0  # rows (Parquet) or records (raw) in delivered objects
    dropped: int = 0
    failed: int = 0  # records written to the error prefix
    invocations: int = 0
    flushes: int = 0
    bytes_written: int = 0
    seconds: float = 0.0
    keys: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "delivery_stream": self.name,
            "read": self.read,
            "delivered": self.delivered,
            "dropped": self.dropped,
            "failed": self.failed,
            "objects": len(self.keys),
            "bytes_written": self.bytes_written,
            "seconds": round(self.seconds, 2),
        }


def _millis(moment: Any) -> int:
    if isinstance(moment, datetime):
        return int(moment.timestamp() * 1000)
    return int(moment)


def _sequence(value: str) -> int:
    return int(value)


class ShardReader:
    """Reads one shard forward from a position: after `position`, else from the first record
    that arrived at or after `start_at`, else from the oldest record."""

    def __init__(
        self,
        kinesis: Any,
        stream_name: str,
        shard_id: str,
        position: str | None,
        start_at: datetime | None = None,
    ):
        self.kinesis = kinesis
        self.stream_name = stream_name
        self.shard_id = shard_id
        self.position = position  # last sequence number read
        self.start_at = start_at
        self.iterator: str | None = None
        self.closed = False
        self.caught_up = False

    def restart_at(self, position: str | None) -> None:
        self.position, self.iterator, self.closed, self.caught_up = position, None, False, False

    def _new_iterator(self) -> str:
        request: dict[str, Any] = {"StreamName": self.stream_name, "ShardId": self.shard_id}
        if self.position is None and self.start_at is not None:
            request["ShardIteratorType"] = "AT_TIMESTAMP"
            request["Timestamp"] = self.start_at
        elif self.position is None:
            request["ShardIteratorType"] = "TRIM_HORIZON"
        else:
            request["ShardIteratorType"] = "AFTER_SEQUENCE_NUMBER"
            request["StartingSequenceNumber"] = self.position
        return self.kinesis.get_shard_iterator(**request)["ShardIterator"]

    def read(self, limit: int) -> list[SourceRecord]:
        if self.closed:
            return []
        if self.iterator is None:
            self.iterator = self._new_iterator()
        try:
            response = self.kinesis.get_records(ShardIterator=self.iterator, Limit=limit)
        except self.kinesis.exceptions.ExpiredIteratorException:
            self.iterator = self._new_iterator()
            response = self.kinesis.get_records(ShardIterator=self.iterator, Limit=limit)
        self.iterator = response.get("NextShardIterator")
        self.closed = self.iterator is None
        records = [
            SourceRecord(
                shard_id=self.shard_id,
                sequence_number=r["SequenceNumber"],
                partition_key=r.get("PartitionKey", ""),
                data=r["Data"],
                arrival_ms=_millis(r["ApproximateArrivalTimestamp"]),
            )
            for r in response.get("Records", [])
        ]
        if records:
            self.position = records[-1].sequence_number
        self.caught_up = self.closed or (not records and not response.get("MillisBehindLatest", 0))
        return records


@dataclass(slots=True)
class _Object:
    key: str
    body: bytes
    records: int
    error: bool


class _Buffer:
    """The destination buffer: settled records waiting to be written as one object."""

    def __init__(self, config: DeliveryStreamConfig, schema: Any) -> None:
        self.config = config
        self.size = 0  # bytes as Firehose counts them: the (transformed) record data
        self.records = 0
        self.oldest_arrival_ms: int | None = None
        self.failures: list[Failure] = []
        # `is not None`: an Arrow schema without columns (a Glue table without any) is falsy
        self.parquet = (
            ParquetBuffer(schema, config.conversion.compression)
            if schema is not None and config.conversion
            else None
        )
        self._raw = io.BytesIO()
        self._compressed = config.compression == "GZIP" and schema is None
        self._gzip: Any = None  # the gzip member being written, until body() finishes it

    def add_data(self, data: bytes) -> None:
        if self.config.append_delimiter:
            data += b"\n"
        if self._compressed and self._gzip is None:
            self._gzip = zlib.compressobj(wbits=31)
        self._raw.write(self._gzip.compress(data) if self._gzip else data)
        self.records += 1

    def add_rows(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:  # rows come from the deserializer, made with the ParquetBuffer's schema
            self.parquet.add(row)  # type: ignore[union-attr]
        self.records += len(rows)

    def account(self, record: SourceRecord, size: int) -> None:
        self.size += size
        if self.oldest_arrival_ms is None or record.arrival_ms < self.oldest_arrival_ms:
            self.oldest_arrival_ms = record.arrival_ms

    def body(self) -> bytes:
        if self.parquet is not None:
            return self.parquet.to_bytes()
        if self._gzip:  # finished once: a write interrupted by Ctrl-C asks for the body again
            self._raw.write(self._gzip.flush())
            self._gzip = None
        return self._raw.getvalue()


class DeliveryStreamRuntime:
    """Delivers one delivery stream from its source stream to S3."""

    def __init__(
        self,
        config: DeliveryStreamConfig,
        *,
        kinesis: Any,
        s3: Any,
        glue: Any,
        lambda_client: Any,
        store: CheckpointStore,
        logs: Any = None,
        function_environment: dict[str, str] | None = None,
        function_log_dir: Any = None,
        clock: Callable[[], float] = time.monotonic,
        read_limit: int = MAX_RECORDS_PER_CALL,
    ) -> None:
        self.config = config
        self.kinesis, self.s3 = kinesis, s3
        self.store = store
        self.clock = clock
        self.read_limit = read_limit
        self.stats = DeliveryStats(config.name)
        self.schema = read_table_schema(glue, config.conversion) if config.conversion else None
        self.deserializer = (
            HiveJsonDeserializer(self.schema, config.conversion.timestamp_formats)
            if config.conversion
            else None
        )
        self.stage: LambdaStage | None = None
        if config.processor:
            function = LocalFunction.lookup(
                config.processor.function_arn,
                lambda_client,
                environment=function_environment,
                log_dir=function_log_dir,
                logs_client=logs,
            )
            self.stage = LambdaStage(config, function)
        self.checkpoint = self._load_checkpoint()
        self.readers: dict[str, ShardReader] = {}
        self.refresh_shards()
        self.positions = dict(self.checkpoint.shards)  # settled, not yet committed
        self.replay_until: dict[str, str] | None = self.checkpoint.pending
        self.buffer = _Buffer(config, self.schema)
        self.buffer_started: float | None = None
        self.pending: list[SourceRecord] = []
        self.pending_size = 0
        self.request_size = self.empty_request_size = event_bytes(config)
        self.pending_started: float | None = None
        if self.replay_until:
            logger.warning(
                "%s: the previous run stopped between writing to S3 and saving its position; "
                "replaying that flush onto the same object keys",
                config.name,
            )

    # ------------------------------------------------------------------ set-up

    def _check_not_overtaken(self) -> None:
        """Another runtime (a `stream run` beside a drain) that committed since this one
        read the checkpoint has delivered these records already: writing them again would
        duplicate them."""
        stored = self.store.read(self.config.name)
        if stored is not None and stored.identity() != self.checkpoint.identity():
            stored = None  # left by streams that no longer exist: this one started afresh
        known = (self.checkpoint.identity(), self.checkpoint.shards, self.checkpoint.pending)
        if stored is None:
            overtaken = bool(self.checkpoint.shards or self.checkpoint.pending)
        else:
            overtaken = (stored.identity(), stored.shards, stored.pending) != known
        if overtaken:
            raise DeliveryOvertaken(
                f"{self.config.name}: another Firehose runtime delivered this stream since this "
                "one started (a `brewops stream run` or a drain elsewhere). Stopped without "
                "writing, so nothing is delivered twice: run the drain again."
            )

    def _load_checkpoint(self) -> Checkpoint:
        source = self.kinesis.describe_stream_summary(StreamName=self.config.source_stream_name)
        created = source["StreamDescriptionSummary"]["StreamCreationTimestamp"]
        fresh = Checkpoint(
            delivery_stream_arn=self.config.arn,
            delivery_stream_created=self.config.created,
            source_stream_arn=self.config.source_stream_arn,
            source_stream_created=instant_text(created),
        )
        return self.store.load(fresh, self.config.name)

    def refresh_shards(self) -> None:
        """Pick up every shard of the source stream (new ones after a reshard too)."""
        request: dict[str, Any] = {"StreamName": self.config.source_stream_name}
        while True:
            response = self.kinesis.list_shards(**request)
            for shard in response["Shards"]:
                shard_id = shard["ShardId"]
                if shard_id not in self.readers:
                    self.readers[shard_id] = ShardReader(
                        self.kinesis,
                        self.config.source_stream_name,
                        shard_id,
                        self.checkpoint.shards.get(shard_id),
                        # as Firehose: from LATEST when the delivery stream was created
                        start_at=_instant(self.config.created),
                    )
            if not response.get("NextToken"):
                break
            request = {"NextToken": response["NextToken"]}

    # ------------------------------------------------------------------ reading

    @property
    def caught_up(self) -> bool:
        return all(r.caught_up for r in self.readers.values()) and not self._replay_pending()

    def _replay_pending(self) -> bool:
        if not self.replay_until:
            return False
        return any(
            _sequence(self.positions.get(shard, "0") or "0") < _sequence(until)
            and not self.readers[shard].caught_up
            for shard, until in self.replay_until.items()
            if shard in self.readers
        )

    def poll(self) -> int:
        """One GetRecords call per shard; returns how many records were read."""
        total = 0
        for shard_id, reader in self.readers.items():
            if self.replay_until is not None:
                last = self.replay_until.get(shard_id)
                if last is None or (
                    reader.position is not None and _sequence(reader.position) >= _sequence(last)
                ):
                    reader.caught_up = True
                    continue
            with self._unsettled_read_again():
                records = reader.read(self.read_limit)
                if self.replay_until is not None and shard_id in self.replay_until:
                    until = _sequence(self.replay_until[shard_id])
                    kept = [r for r in records if _sequence(r.sequence_number) <= until]
                    if len(kept) < len(records) or (
                        reader.position and _sequence(reader.position) >= until
                    ):
                        reader.caught_up = True
                    records = kept
                for record in records:
                    self.feed(record)
            total += len(records)
        self.stats.read += total
        if self.replay_until is not None and not self._replay_pending():
            self._finish_replay()
        return total

    def _finish_replay(self) -> None:
        self.flush()
        for shard_id, reader in self.readers.items():
            reader.restart_at(self.positions.get(shard_id))
        self.replay_until = None

    # ------------------------------------------------------------------ buffering

    def feed(self, record: SourceRecord) -> None:
        if self.stage is None:
            self._settle_data(record, record.data)
            return
        # A call holds at most the processor's buffer size of data, and its event at most
        # what Lambda takes in a request: many small records grow the event past the data.
        size, request = len(record.data), event_record_bytes(record)
        if self.pending and (
            self.pending_size + size > self.stage.processor.buffer_bytes
            or self.request_size + request > LAMBDA_PAYLOAD_LIMIT
        ):
            self._transform_pending()
        if not self.pending:
            self.pending_started = self.clock()
        self.pending.append(record)
        self.pending_size += size
        self.request_size += request

    def _transform_pending(self) -> None:
        if not self.pending or self.stage is None:
            return
        batch = self.stage.process(self.pending)
        self.stats.invocations += batch.attempts
        self.pending, self.pending_size, self.pending_started = [], 0, None
        self.request_size = self.empty_request_size
        for outcome in batch.outcomes:
            if outcome.failure is not None:
                self._settle_failure(outcome.failure)
            elif outcome.data is None:
                self.stats.dropped += 1
                self._settled(outcome.record)
            else:
                self._settle_data(outcome.record, outcome.data)

    @contextlib.contextmanager
    def _unsettled_read_again(self) -> Iterator[None]:
        """A reader is past the page it returns before its records are settled: a page fed
        half-way (Ctrl-C in a Lambda call) would be skipped by the next read. What is not
        settled is then read again, from the last record settled."""
        try:
            yield
        except BaseException:
            self.pending, self.pending_size, self.pending_started = [], 0, None
            self.request_size = self.empty_request_size
            for shard_id, reader in self.readers.items():
                reader.restart_at(self.positions.get(shard_id))
            raise

    @contextlib.contextmanager
    def _whole_or_read_again(self) -> Iterator[None]:
        """A change of the buffer and of the positions it covers, stopped half-way (Ctrl-C
        between two statements), leaves a record in one and not the other: delivered, it
        would be read and delivered again. Everything since the last commit is then
        forgotten, to be read again from there: the flush that follows Ctrl-C writes nothing."""
        with self._unsettled_read_again():
            try:
                yield
            except BaseException:
                self.buffer, self.buffer_started = _Buffer(self.config, self.schema), None
                self.positions = dict(self.checkpoint.shards)
                raise

    def _settled(self, record: SourceRecord) -> None:
        self.positions[record.shard_id] = record.sequence_number

    def _settle_failure(self, failure: Failure) -> None:
        if self.buffer_started is None:
            self.buffer_started = self.clock()
        with self._whole_or_read_again():
            self.buffer.failures.append(failure)
            self._settled(failure.record)

    def _settle_data(self, record: SourceRecord, data: bytes) -> None:
        size = len(data)
        if (
            self.replay_until is None
            and self.buffer.size
            and self.buffer.size + size > self.config.buffer_bytes
        ):
            self._deliver()
        if self.buffer_started is None:
            self.buffer_started = self.clock()
        rows = None
        if self.deserializer is not None:
            try:
                rows = self.deserializer.rows(data)
            except ConversionError as error:
                self._settle_failure(self._conversion_failure(record, data, error))
                return
        with self._whole_or_read_again():
            if rows is not None:
                self.buffer.add_rows(rows)
            else:
                self.buffer.add_data(data)
            self.buffer.account(record, size)
            self._settled(record)
        if self.replay_until is None and self.buffer.size >= self.config.buffer_bytes:
            self._deliver()

    def _conversion_failure(
        self, record: SourceRecord, data: bytes, error: ConversionError
    ) -> Failure:
        conversion = cast(FormatConversion, self.config.conversion)  # it failed: there is one
        return Failure(
            record,
            FORMAT_CONVERSION_FAILED,
            {
                "attemptsMade": 1,
                "arrivalTimestamp": record.arrival_ms,
                "lastErrorCode": error.code,
                "lastErrorMessage": str(error),
                "attemptEndingTimestamp": now_ms(),
                "rawData": base64.b64encode(data).decode("ascii"),
                "sequenceNumber": record.sequence_number,
                "subSequenceNumber": None,
                "dataCatalogTable": {
                    "catalogId": conversion.catalog_id,
                    "databaseName": conversion.database,
                    "tableName": conversion.table,
                    "region": conversion.region,
                    "versionId": conversion.table_version,
                    "roleArn": conversion.role_arn,
                },
            },
        )

    # ------------------------------------------------------------------ delivery

    def tick(self) -> None:
        """Deliver what has waited its interval (continuous mode)."""
        now = self.clock()
        if (
            self.pending
            and self.stage is not None
            and self.pending_started is not None
            and now - self.pending_started >= self.stage.processor.interval_seconds
        ):
            self._transform_pending()
        if (
            self.replay_until is None
            and self.buffer_started is not None
            and now - self.buffer_started >= self.config.interval_seconds
        ):
            self.flush()

    def flush(self) -> None:
        """Deliver everything read so far."""
        if self.stage is not None:
            self._transform_pending()
        self._deliver()

    def _flush_id(self, start: dict[str, str], end: dict[str, str]) -> str:
        text = json.dumps([self.config.arn, self.config.created, start, end], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def _objects(self, flush_id: str) -> list[_Object]:
        """Every object this flush writes: the data, then one per error output type."""
        objects = []
        buffer, config = self.buffer, self.config
        if buffer.records:
            oldest = cast(int, buffer.oldest_arrival_ms)  # set by the first record buffered
            key = self._key(flush_id, "data", oldest, None)
            objects.append(_Object(key, buffer.body(), buffer.records, error=False))
        by_type: dict[str, list[Failure]] = {}
        for failure in buffer.failures:
            by_type.setdefault(failure.output_type, []).append(failure)
        for output_type, failures in sorted(by_type.items()):
            lines = b"".join(
                json.dumps(f.document, separators=(",", ":")).encode() + b"\n" for f in failures
            )
            if config.compression == "GZIP" and not config.conversion:
                lines = gzip.compress(lines, mtime=0)
            oldest = min(f.record.arrival_ms for f in failures)
            key = self._key(flush_id, output_type, oldest, output_type)
            objects.append(_Object(key, lines, len(failures), error=True))
        return objects

    def _key(self, flush_id: str, kind: str, oldest_ms: int, output_type: str | None) -> str:
        moment = datetime.fromtimestamp(oldest_ms / 1000, tz=UTC)
        seed = f"{flush_id}:{kind}"
        template = (
            effective_error_prefix(self.config.error_prefix)
            if output_type
            else effective_prefix(self.config.prefix)
        )
        prefix = evaluate_prefix(
            template, moment, error_output_type=output_type, rng=random.Random(seed)
        )
        uid = str(uuid.uuid5(KEY_NAMESPACE, seed))
        name = object_name(
            self.config.name, self.config.version_id, moment, uid, self.config.extension
        )
        return prefix + name

    def _deliver(self) -> None:
        """Write the buffer to S3, then commit the positions it covers."""
        start = dict(self.checkpoint.shards)
        end = dict(self.positions)
        if end == start:
            return
        flush_id = self._flush_id(start, end)
        with self._whole_or_read_again():  # Parquet seals its last rows into the body
            objects = self._objects(flush_id)
        with self.store.lock(self.config.name):
            self._check_not_overtaken()
            try:
                if objects:
                    self.checkpoint.pending = end
                    self.store.save(self.checkpoint, self.config.name)
                    for item in objects:
                        self.s3.put_object(Bucket=self.config.bucket, Key=item.key, Body=item.body)
                self.checkpoint.shards, self.checkpoint.pending = end, None
                self.store.save(self.checkpoint, self.config.name)
            except BaseException:
                # stopped part-way (Ctrl-C, a full disk): this runtime stands where its own
                # writes left the store, so that a flush after Ctrl-C is not taken for another's
                self._stand_as_stored(start)
                if self.checkpoint.shards == end:  # committed before it was stopped
                    self._delivered(objects)
                raise
        self._delivered(objects)

    def _stand_as_stored(self, start: dict[str, str]) -> None:
        """Take the position the store holds; called with its lock held, so that only this
        runtime's own writes since `start` can have changed it."""
        stored = self.store.read(self.config.name)
        if stored is None or stored.identity() != self.checkpoint.identity():
            self.checkpoint.shards, self.checkpoint.pending = start, None  # nothing was saved
        else:
            self.checkpoint.shards, self.checkpoint.pending = stored.shards, stored.pending

    def _delivered(self, objects: list[_Object]) -> None:
        for item in objects:
            self.stats.keys.append(item.key)
            self.stats.bytes_written += len(item.body)
            if item.error:
                self.stats.failed += item.records
            else:
                self.stats.delivered += item.records
        self.stats.flushes += 1
        self.buffer = _Buffer(self.config, self.schema)
        self.buffer_started = None
