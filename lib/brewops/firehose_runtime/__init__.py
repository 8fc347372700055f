"""The local Firehose: Kinesis shards -> buffer -> transform -> Parquet / NDJSON-gz -> S3.

On AWS, Firehose does all of this and nothing here runs. On the local target the emulator
stores the delivery streams but delivers nothing, so this runtime reads their configuration
back (describe_delivery_stream, the Lambda function configuration, the Glue table) and
does what the configuration says:

    from brewops.firehose_runtime import FirehoseRuntime
    report = FirehoseRuntime.from_outputs(target.outputs).drain()

Positions are checkpointed under ``paths.firehose_checkpoints_dir()``, so draining
twice delivers each record once.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brewops import paths
from brewops.firehose_runtime.checkpoints import CheckpointStore
from brewops.firehose_runtime.config import DeliveryStreamConfig, UnsupportedConfiguration
from brewops.firehose_runtime.runtime import (
    MAX_RECORDS_PER_CALL,
    DeliveryStats,
    DeliveryStreamRuntime,
)

__all__ = [
    "DeliveryStats",
    "DeliveryStreamConfig",
    "DrainReport",
    "FirehoseRuntime",
    "UnsupportedConfiguration",
    "describe",
]

OUTPUT_NAMES = ("RawDeliveryStreamName", "CleanedDeliveryStreamName")
SHARD_REFRESH_SECONDS = 30.0


def _client(session: Any, service: str) -> Any:
    """A client with the bounds of every other (`AWS_CLIENT_CONFIG`), whatever the session:
    11 attempts of 20 s held a drain 4 minutes on a hung emulator, which throttles nothing
    that more retries would ride out."""
    from brewops.target import AWS_CLIENT_CONFIG

    return session.client(service, config=AWS_CLIENT_CONFIG)


def kinesis_sourced_delivery_streams(firehose: Any) -> list[str]:
    """Every delivery stream that reads a Kinesis stream, over as many pages as it takes."""
    names: list[str] = []
    while True:
        after = {"ExclusiveStartDeliveryStreamName": names[-1]} if names else {}
        page = firehose.list_delivery_streams(DeliveryStreamType="KinesisStreamAsSource", **after)
        names += page["DeliveryStreamNames"]
        if not page.get("HasMoreDeliveryStreams") or not page["DeliveryStreamNames"]:
            return names


def describe(firehose: Any, name: str) -> DeliveryStreamConfig:
    """A delivery stream's configuration, as the service returns it."""
    description = firehose.describe_delivery_stream(DeliveryStreamName=name)
    return DeliveryStreamConfig.from_description(description["DeliveryStreamDescription"])


@dataclass
class DrainReport:
    """What `drain` delivered: one `DeliveryStats` per delivery stream (`rows` as a table)."""

    streams: list[DeliveryStats] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def read(self) -> int:
        return sum(s.read for s in self.streams)

    def rows(self) -> list[dict[str, Any]]:
        return [s.as_dict() for s in self.streams]

    def __str__(self) -> str:
        lines = [
            f"{s.name}: read {s.read}, delivered {s.delivered}, dropped {s.dropped}, "
            f"failed {s.failed}, {len(s.keys)} object{'' if len(s.keys) == 1 else 's'}"
            for s in self.streams
        ]
        return "\n".join([*lines, f"({self.seconds:.1f} s)"])


class FirehoseRuntime:
    """Every Kinesis-sourced delivery stream (or those named, if a list), delivered locally."""

    def __init__(
        self,
        delivery_streams: list[str] | None = None,
        *,
        session: Any = None,
        state_dir: str | os.PathLike[str] | None = None,
        progress: bool | None = None,
        read_limit: int = MAX_RECORDS_PER_CALL,
        function_environment: dict[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from brewops.target import aws_session

        session = session or aws_session()
        firehose = _client(session, "firehose")
        if delivery_streams is None:  # [], as from Outputs naming none, is none of them
            delivery_streams = kinesis_sourced_delivery_streams(firehose)
        state = Path(state_dir) if state_dir else paths.local_state_dir()
        store = CheckpointStore(paths.firehose_checkpoints_dir(state))
        clients = {
            "kinesis": _client(session, "kinesis"),
            "s3": _client(session, "s3"),
            "glue": _client(session, "glue"),
            "lambda_client": _client(session, "lambda"),
            "logs": _client(session, "logs"),
        }
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.clock = clock
        self.streams = [
            DeliveryStreamRuntime(
                describe(firehose, name),
                store=store,
                function_environment=function_environment,
                function_log_dir=paths.local_log_dir(state),
                clock=clock,
                read_limit=read_limit,
                **clients,
            )
            for name in delivery_streams
        ]

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, str], **kwargs: Any) -> FirehoseRuntime:
        """The raw and cleaned delivery streams named by the stack Outputs."""
        return cls([outputs[name] for name in OUTPUT_NAMES if outputs.get(name)], **kwargs)

    def drain(self) -> DrainReport:
        """Deliver everything the source streams hold now, then return."""
        from brewops.progress import ProgressBar

        started = time.monotonic()
        report = DrainReport()
        for stream in self.streams:
            stream_started = time.monotonic()
            with ProgressBar(
                desc=f"drain {stream.config.name}",
                unit=" records",
                disable=not self.progress,
                leave=True,
            ) as bar:
                while True:
                    bar.update(stream.poll())
                    if stream.caught_up:
                        break
                stream.flush()
            stream.stats.seconds += time.monotonic() - stream_started
            report.streams.append(stream.stats)
        report.seconds = time.monotonic() - started
        return report

    def run(
        self,
        stop: threading.Event | None = None,
        *,
        poll_seconds: float = 1.0,
        max_seconds: float | None = None,
        flush_on_exit: bool = True,
    ) -> DrainReport:
        """Deliver continuously, by size and interval, until `stop` is set (or Ctrl-C)."""
        stop = stop or threading.Event()
        started = time.monotonic()
        refreshed = started
        try:
            while not stop.is_set():
                read = 0
                for stream in self.streams:
                    read += stream.poll()
                    stream.tick()
                now = time.monotonic()
                if max_seconds is not None and now - started >= max_seconds:
                    break
                if now - refreshed >= SHARD_REFRESH_SECONDS:
                    for stream in self.streams:
                        stream.refresh_shards()
                    refreshed = now
                if not read:
                    stop.wait(poll_seconds)
        except KeyboardInterrupt:
            # Ctrl-C ends the run like `stop`: what was read is still delivered, but for
            # what Ctrl-C caught half-way, which the next delivery reads again
            pass
        if flush_on_exit:
            for stream in self.streams:
                stream.flush()
        return DrainReport([s.stats for s in self.streams], time.monotonic() - started)
