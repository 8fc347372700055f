"""Batches within an API's limits on items and bytes per call."""

from __future__ import annotations

import pytest

from brewops.batching import within_limits


@pytest.mark.parametrize(
    ("sizes", "most_items", "most_bytes", "batches"),
    [
        ([], 3, 10, []),
        ([4, 3, 3], 3, 10, [[4, 3, 3]]),  # exactly at both limits: one call
        ([4, 3, 3, 1], 3, 10, [[4, 3, 3], [1]]),  # a fourth item: another
        ([4, 3, 4], 5, 10, [[4, 3], [4]]),  # one byte over: another
        ([1] * 5, 2, 100, [[1, 1], [1, 1], [1]]),
        ([12, 1], 5, 10, [[12], [1]]),  # an item past the limit alone, never with others
        ([6, 6, 3, 3], 5, 10, [[6], [6, 3], [3]]),  # each call counts its own bytes
        ([10, 6, 4], 5, 10, [[10], [6, 4]]),  # a later call fills to exactly the limit too
    ],
)
def test_batches_keep_order_and_stay_within_both_limits(sizes, most_items, most_bytes, batches):
    assert list(within_limits(sizes, int, most_items=most_items, most_bytes=most_bytes)) == batches


def test_items_are_read_as_the_batches_are_taken():
    read = []

    def items():
        for n in range(4):
            read.append(n)
            yield n

    batches = within_limits(items(), lambda _: 1, most_items=2, most_bytes=100)
    assert next(batches) == [0, 1]
    assert read == [0, 1, 2]  # the item that ends a batch, not the whole input
