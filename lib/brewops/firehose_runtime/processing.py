"""The Lambda data-transformation step, with the contract Firehose enforces on the answer.

Per record: ``Ok`` (deliver the returned data), ``Dropped`` (deliver nothing) or
``ProcessingFailed`` (write the original record to the error prefix). A handler exception
is retried NumberOfRetries times, then fails the whole batch; an answer with a different
number of records fails the whole batch too, as it does on AWS.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from brewops.firehose_runtime.config import DeliveryStreamConfig
from brewops.firehose_runtime.functions import Invocation, LocalFunction

PROCESSING_FAILED = "processing-failed"
FORMAT_CONVERSION_FAILED = "format-conversion-failed"

FUNCTION_ERROR = "The Lambda function was successfully invoked but it returned an error result."
MISSING_RECORD_ID = (
    "One or more record Ids were not returned. Ensure that the Lambda function returns all "
    "received record Ids."
)
DUPLICATED_RECORD_ID = (
    "Multiple records were returned with the same record Id. Ensure that the Lambda function "
    "returns a unique record Id for each record."
)
PROCESSING_FAILED_STATUS = "ProcessingFailed status set for record"
LAMBDA_PAYLOAD_LIMIT = 6 * 1024 * 1024  # bytes, each way (Lambda's synchronous limit)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class SourceRecord:
    """One Kinesis record as Firehose reads it from a shard."""

    shard_id: str
    sequence_number: str
    partition_key: str
    data: bytes
    arrival_ms: int


@dataclass(slots=True)
class Failure:
    """A record bound for the error prefix, with the error document Firehose writes."""

    record: SourceRecord
    output_type: str
    document: dict[str, Any]


@dataclass(slots=True)
class Outcome:
    """What the transformation made of one record: data to deliver, a failure, or neither."""

    record: SourceRecord
    data: bytes | None = None
    failure: Failure | None = None

    @property
    def dropped(self) -> bool:
        return self.data is None and self.failure is None


@dataclass
class ProcessedBatch:
    outcomes: list[Outcome]  # one per input record, in input order
    attempts: int


def firehose_record_id(record: SourceRecord, position: int) -> str:
    # Sequence numbers are unique per shard only (in the emulator, small integers), so
    # the position in the batch makes the id unique, in the shape Firehose uses.
    return f"{record.sequence_number}{position:012d}"


def _event_record(record: SourceRecord, record_id: str, data: str) -> dict[str, Any]:
    return {
        "recordId": record_id,
        "approximateArrivalTimestamp": record.arrival_ms,
        "data": data,
        "kinesisRecordMetadata": {
            "shardId": record.shard_id,
            "partitionKey": record.partition_key,
            "approximateArrivalTimestamp": record.arrival_ms,
            "sequenceNumber": record.sequence_number,
            "subsequenceNumber": "",  # not a KPL-aggregated record
        },
    }


def firehose_event(
    config: DeliveryStreamConfig, records: list[SourceRecord], record_ids: list[str]
) -> dict[str, Any]:
    """The event Firehose sends a transformation Lambda for a Kinesis-stream source."""
    return {
        "invocationId": str(uuid.uuid4()),
        "deliveryStreamArn": config.arn,
        "sourceKinesisStreamArn": config.source_stream_arn,
        "region": config.region,
        "records": [
            _event_record(record, record_id, base64.b64encode(record.data).decode("ascii"))
            for record, record_id in zip(records, record_ids, strict=True)
        ],
    }


def event_bytes(config: DeliveryStreamConfig) -> int:
    """The serialised size of an event with no records, as Lambda counts a request."""
    return len(json.dumps(firehose_event(config, [], [])).encode())


def event_record_bytes(record: SourceRecord) -> int:
    """What one record adds to the serialised event, its separator included. Base64 needs
    no escaping, so its length is added rather than the data encoded twice."""
    entry = _event_record(record, firehose_record_id(record, 0), "")
    return len(json.dumps(entry).encode()) + 4 * -(-len(record.data) // 3) + len(", ")


def _refuse_oversized_response(invocation: Invocation) -> None:
    """Lambda fails a call whose response is over its payload limit, as Firehose sees it."""
    if invocation.failed:
        return
    size = len(json.dumps(invocation.result, default=str).encode())
    if size > LAMBDA_PAYLOAD_LIMIT:
        invocation.error = (
            f"Function.ResponseSizeTooLarge: Response payload size ({size} bytes) exceeded "
            f"maximum allowed payload size ({LAMBDA_PAYLOAD_LIMIT} bytes)."
        )


class LambdaStage:
    """Calls the configured transformation function on batches of source records."""

    def __init__(self, config: DeliveryStreamConfig, function: LocalFunction) -> None:
        if config.processor is None:
            raise ValueError(f"{config.name} has no Lambda processor")
        self.config = config
        self.processor = config.processor
        self.function = function

    def _failure(self, record: SourceRecord, code: str, message: str, attempts: int) -> Failure:
        return Failure(
            record,
            PROCESSING_FAILED,
            {
                "attemptsMade": attempts,
                "arrivalTimestamp": record.arrival_ms,
                "errorCode": code,
                "errorMessage": message,
                "attemptEndingTimestamp": now_ms(),
                "rawData": base64.b64encode(record.data).decode("ascii"),
                "lambdaArn": self.processor.function_arn,
            },
        )

    def process(self, records: list[SourceRecord]) -> ProcessedBatch:
        record_ids = [firehose_record_id(r, i) for i, r in enumerate(records)]
        event = firehose_event(self.config, records, record_ids)
        attempts = 0
        for attempts in range(1, self.processor.retries + 2):  # noqa: B007
            invocation = self.function.invoke(event)
            _refuse_oversized_response(invocation)
            if not invocation.failed:
                break
        if invocation.failed:
            message = f"{FUNCTION_ERROR} {invocation.error}"
            return self._all_failed(records, "Lambda.FunctionError", message, attempts)

        answer = invocation.result
        answered = answer.get("records") if isinstance(answer, dict) else None
        if not isinstance(answered, list) or len(answered) != len(records):
            count = len(answered) if isinstance(answered, list) else 0
            code, message = (
                ("Lambda.DuplicatedRecordId", DUPLICATED_RECORD_ID)
                if count > len(records)
                else ("Lambda.MissingRecordId", MISSING_RECORD_ID)
            )
            return self._all_failed(records, code, message, attempts)

        by_id: dict[str, dict[str, Any]] = {}
        duplicated: set[str] = set()
        for item in answered:
            record_id = str(item.get("recordId")) if isinstance(item, dict) else None
            if record_id in by_id:
                duplicated.add(record_id)
            elif record_id is not None:
                by_id[record_id] = item
        outcomes = [
            self._outcome(record, by_id.get(record_id), record_id in duplicated, attempts)
            for record, record_id in zip(records, record_ids, strict=True)
        ]
        return ProcessedBatch(outcomes, attempts)

    def _all_failed(
        self, records: list[SourceRecord], code: str, message: str, attempts: int
    ) -> ProcessedBatch:
        return ProcessedBatch(
            [Outcome(r, failure=self._failure(r, code, message, attempts)) for r in records],
            attempts,
        )

    def _outcome(
        self,
        record: SourceRecord,
        item: dict[str, Any] | None,
        duplicated: bool,
        attempts: int,
    ) -> Outcome:
        def failed(code: str, message: str) -> Outcome:
            return Outcome(record, failure=self._failure(record, code, message, attempts))

        if duplicated:
            return failed("Lambda.DuplicatedRecordId", DUPLICATED_RECORD_ID)
        if item is None:
            return failed("Lambda.MissingRecordId", MISSING_RECORD_ID)
        result = item.get("result")
        if result == "Dropped":
            return Outcome(record)
        if result == "ProcessingFailed":
            # As on AWS, the error record does not say why: the function logs the reason
            return failed("Lambda.ProcessingFailedStatus", PROCESSING_FAILED_STATUS)
        if result != "Ok":
            return failed(
                "Lambda.InvalidReturnFormat",
                f"The result field must be Ok, Dropped or ProcessingFailed, got {result!r}.",
            )
        try:  # Firehose requires the data of every record: None is a TypeError here
            return Outcome(record, data=base64.b64decode(item.get("data"), validate=True))  # type: ignore[arg-type]
        except (binascii.Error, ValueError, TypeError):
            return failed("Lambda.InvalidReturnFormat", "The data field must be base64 encoded.")
