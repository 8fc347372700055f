"""Cutting a stream of items into the calls an AWS API takes (PutRecords, PutLogEvents)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

Item = TypeVar("Item")


def within_limits(
    items: Iterable[Item], size_of: Callable[[Item], int], *, most_items: int, most_bytes: int
) -> Iterator[list[Item]]:
    """Consecutive batches of `items`, in order, each at most `most_items` long and at most
    `most_bytes` in all by `size_of`; lazy, as the items may be a generator. An item larger
    than `most_bytes` would be a batch of its own: callers leave such items out first."""
    batch: list[Item] = []
    size = 0
    for item in items:
        item_size = size_of(item)
        if batch and (len(batch) == most_items or size + item_size > most_bytes):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += item_size
    if batch:
        yield batch
