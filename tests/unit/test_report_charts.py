"""The report's pure parts: chart specs (valid Vega-Lite, a data value per mark), the rules that
moved, the masking of samples, and the page's escaping."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from cdf_pipeline.dq_report import charts, page
from cdf_pipeline.dq_report.facts import MASK, VALUE_CHARS, Run, TenantFacts, redact


@pytest.fixture(autouse=True)
def validated() -> Iterator[None]:
    """Every spec built here is checked against the Vega-Lite schema (off in production)."""
    charts.VALIDATE = True
    yield
    charts.VALIDATE = False


def run(i: int, status: str = "SUCCEEDED", read: int = 100, **violations: int) -> Run:
    return Run(
        tenant="acme", run_id=f"2026120{i}T000000Z-0000000{i}", trace_id=None, status=status,
        message="", started_at=datetime(2026, 12, 1) + timedelta(days=i), duration_s=12.5,
        read=read, inserted=read - sum(violations.values()), updated=0,
        quarantined=sum(violations.values()), promoted=0,
        pass_rate=1 - sum(violations.values()) / read if read else None,
        violations=violations,
        files=[{"entity": "parts", "file": "a.parquet", "status": "INGESTED"}] if read else [],
    )  # fmt: skip


def facts() -> TenantFacts:
    t = TenantFacts("acme", 0.9)
    t.runs = [
        run(1, a_enum=5, b_range=1),
        run(2, status="AUDIT_FAILED", a_enum=30),
        run(3, status="FAILED", read=0),
        run(4, a_enum=2, c_fk=4),
    ]
    t.quarantine = {("parts", "OPEN"): (7, None), ("parts", "RESOLVED"): (3, None)}
    return t


def values(spec: dict) -> list[dict]:
    """The inline data of a spec and its layers (``data.values``, or top-level ``datasets``)."""
    found = [v for data in spec.get("datasets", {}).values() for v in data]
    found += spec.get("data", {}).get("values", [])
    for layer in spec.get("layer", []):
        found += values(layer)
    return found


def test_each_chart_is_valid_vega_lite_with_a_value_per_mark() -> None:
    t = facts()
    pass_rate = charts.pass_rate(t)
    assert pass_rate is not None
    # Three runs staged rows (the FAILED one read nothing), and the gate.
    points = [v for v in values(pass_rate) if "pass_rate" in v]
    assert [p["status"] for p in points] == ["SUCCEEDED", "AUDIT_FAILED", "SUCCEEDED"]
    assert {"threshold": 0.9} in values(pass_rate)
    rules = charts.rules_per_run(t)
    assert rules is not None and len(values(rules)) == 5  # (run, rule) pairs above zero
    state = charts.quarantine_state(t)
    assert state is not None and len(values(state)) == 2
    durations = charts.durations(t)
    assert durations is not None and len(values(durations)) == 4
    files = charts.file_outcomes(t)
    assert files is not None and len(values(files)) == 3
    for build in (charts.compare_pass_rates, charts.compare_open, charts.compare_statuses):
        assert build([t, TenantFacts("globex", 0.5)]) is not None


def test_charts_with_nothing_to_draw_are_none() -> None:
    empty = TenantFacts("acme", 0.5)
    for build in (charts.pass_rate, charts.rules_per_run, charts.quarantine_state,
                  charts.file_outcomes, charts.durations):  # fmt: skip
        assert build(empty) is None


def test_rules_that_moved_most_compare_the_last_two_runs_that_staged_rows() -> None:
    # Run 3 read nothing: run 4 is compared with run 2.
    assert facts().rule_moves() == [("a_enum", 30, 2), ("c_fk", 0, 4)]
    assert TenantFacts("x", 0.5).rule_moves() == []


def test_samples_mask_credentials_and_cut_long_values() -> None:
    sent = {"part_id": "p1", "api_key": "sk-live-123", "Password": "hunter2", "notes": "x" * 500}
    shown = json.loads(redact(json.dumps(sent)))
    assert shown["api_key"] == shown["Password"] == MASK
    assert shown["part_id"] == "p1"
    assert len(shown["notes"]) == VALUE_CHARS + 1  # and an ellipsis
    cut = '{"part_id":"p1","db_password":"hunter2","notes":"xxxx'  # cut short: not JSON
    assert "hunter2" not in redact(cut) and MASK in redact(cut)


def test_page_escapes_values_as_sent_and_spec_text() -> None:
    t = facts()
    t.samples = [
        {"rule": "a_enum", "entity": "parts", "key": "k<1>", "file": "f", "run_id": "r",
         "quarantined_at": None, "reasons": [{"rule": "a_enum", "column": "a", "value": "<b>"}],
         "original": '{"a": "</script><script>alert(1)</script>"}', "n": 1},
    ]  # fmt: skip
    t.runs[0] = run(1, **{"a</script>": 3})
    html = page.render([t], title="t", catalog="c", generated_at="now", since=None)
    assert "<script>alert(1)" not in html
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in html
    assert html.count("</script>") == html.count("<script")  # no script closed early
