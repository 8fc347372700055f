"""What the producer's report says was sent, as ids to reconcile."""

from __future__ import annotations

from brewops.producer import FailedRecord, ProduceReport
from brewops.reconcile import sent_ids


def test_sent_ids_leave_out_failed_oversize_and_unkeyed_beers():
    beers = [{"id": 1}, {"id": 2}, {"id": 3}, {"name": "no id"}, None, {"id": "abc"}, {"id": 1}]
    report = ProduceReport(
        failed=[FailedRecord("2", "ProvisionedThroughputExceededException", "slow down")],
        oversize=["3"],
    )

    assert sent_ids(beers, report) == [1, 1]
