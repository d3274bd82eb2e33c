"""The listener's totals count messages, not deliveries: a retried message is one message."""

from __future__ import annotations

from cdf_pipeline.landing.listen_report import BatchReport, ListenSummary


def test_a_message_received_again_is_counted_once_and_each_receive_apart() -> None:
    summary = ListenSummary()
    summary.add(BatchReport(1, messages=2, message_ids=["a", "poison"], deleted=1, retried=1))
    summary.add(BatchReport(2, messages=1, message_ids=["poison"], retried=1))
    summary.add(BatchReport(3, messages=1, message_ids=["poison"], dead_lettered=1))
    totals = summary.to_dict()
    assert (totals["messages"], totals["receives"], totals["batches"]) == (2, 4, 3)
    assert (totals["deleted"], totals["retried"], totals["dead_lettered"]) == (1, 2, 1)
    assert "_seen" not in totals
    assert "2 message(s) (4 receive(s)) in 3 batch(es)" in summary.format()
