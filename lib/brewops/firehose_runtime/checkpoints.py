"""Where each delivery stream stands in each shard, kept across runs.

One JSON file per delivery stream. ``shards`` maps a shard id to the sequence number of the
last record delivered to S3. A flush first records where it will end (``pending``), then
writes to S3, then commits: object keys are derived from the flushed range, so a run that
died between the S3 write and the commit replays exactly that range onto the same keys
instead of delivering it twice.

A checkpoint belongs to one incarnation of the streams: when the delivery stream or its
source stream was re-created (a fresh emulator), the old positions mean nothing and are
discarded.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from brewops.errors import ActionableError
from brewops.files import exclusive, write_atomically
from brewops.firehose_runtime.config import instant_text
from brewops.jsontext import parse_json

logger = logging.getLogger(__name__)


class CheckpointUnreadable(RuntimeError, ActionableError):
    """A checkpoint file that is not one the runtime wrote."""


@dataclass
class Checkpoint:
    delivery_stream_arn: str
    delivery_stream_created: str
    source_stream_arn: str
    source_stream_created: str
    shards: dict[str, str] = field(default_factory=dict)
    pending: dict[str, str] | None = None

    def identity(self) -> tuple[str, str, str, str]:
        return (
            self.delivery_stream_arn,
            _instant(self.delivery_stream_created),
            self.source_stream_arn,
            _instant(self.source_stream_created),
        )


def _instant(created: str) -> str:
    """A creation time as the runtime writes it now, in UTC: a checkpoint written by an
    earlier version holds it in the zone of the shell that drained."""
    try:
        moment = datetime.fromisoformat(created)
    except ValueError:
        return created
    return instant_text(moment) if moment.tzinfo is not None else created


class CheckpointStore:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path(self, delivery_stream_name: str) -> Path:
        return self.directory / f"{delivery_stream_name}.json"

    def read(self, delivery_stream_name: str) -> Checkpoint | None:
        """The stored checkpoint as it is, or None."""
        path = self.path(delivery_stream_name)
        if not path.exists():
            return None
        try:
            stored: dict[str, Any] = parse_json(path.read_text(encoding="utf-8"))
            return Checkpoint(**stored)
        except (ValueError, TypeError) as error:  # not JSON, or not a checkpoint's fields
            raise CheckpointUnreadable(
                f"{path}, where the local Firehose records how far it has delivered, is "
                f"damaged ({error}). Delete it: delivery then starts again from when the "
                "delivery stream was created, and what was delivered is delivered again."
            ) from error

    def lock(self, delivery_stream_name: str) -> contextlib.AbstractContextManager[None]:
        """One delivery at a time per delivery stream, across processes."""
        return exclusive(self.directory / f"{delivery_stream_name}.lock")

    def load(self, fresh: Checkpoint, delivery_stream_name: str) -> Checkpoint:
        """The stored checkpoint if it belongs to the same streams as `fresh`, else `fresh`."""
        checkpoint = self.read(delivery_stream_name)
        if checkpoint is None:
            return fresh
        if checkpoint.identity() != fresh.identity():
            logger.warning(
                "%s: checkpoint is for streams that no longer exist; starting from when the "
                "delivery stream was created",
                delivery_stream_name,
            )
            return fresh
        return checkpoint

    def save(self, checkpoint: Checkpoint, delivery_stream_name: str) -> None:
        text = json.dumps(asdict(checkpoint), indent=2, sort_keys=True)
        write_atomically(self.path(delivery_stream_name), text)
