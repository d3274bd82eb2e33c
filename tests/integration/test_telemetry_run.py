"""Telemetry of a real silver run on the embedded lakehouse: the span tree, counts equal to
``ops.runs``, metrics, a real OTLP/HTTP exchange with a loopback receiver, and no customer values
or secrets anywhere in what is exported or logged.

One run serves every test (module fixture): a tenant run costs seconds of Spark time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from support.lakes import make_lake
from support.otel import OtelCapture, OtlpReceiver, start_capture

from cdf_generator.api import generate
from cdf_pipeline import run_record as S
from cdf_pipeline.config import TelemetrySettings
from cdf_pipeline.lakehouse.tables import TableNames
from cdf_pipeline.pipeline.silver import run_tenant
from cdf_pipeline.telemetry import setup as telemetry_setup

pytestmark = [pytest.mark.spark, pytest.mark.slow]

TENANT = "otel"
SECRET = "cdf-test-Secret-Value-71f3c9"  # an env credential that must never be exported
CUSTOMER_COLUMNS = (
    "supplier_id", "supplier_code", "legal_name", "dba_name", "address_line1", "city",
    "contact_email", "contact_phone", "part_id", "part_number", "description", "spec_hash",
)  # fmt: skip


class _Logs(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def traced(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One traced tenant run: in-memory capture plus OTLP/HTTP to a loopback receiver."""
    lake = make_lake(spark, tmp_path_factory.mktemp("otel"))
    generate([TENANT], 200, 200, seed=5, root_uri=lake.root)
    receiver = OtlpReceiver()
    settings = lake.model_copy(
        update={
            "telemetry": TelemetrySettings(
                traces_exporter="otlp",
                metrics_exporter="otlp",
                otlp_endpoint=receiver.url,
                export_timeout_seconds=5,
            )
        }
    )
    old_secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
    os.environ["AWS_SECRET_ACCESS_KEY"] = SECRET
    logs, root_logger, package = _Logs(), logging.getLogger(), logging.getLogger("cdf_pipeline")
    old_levels = root_logger.level, package.level
    root_logger.addHandler(logs)
    root_logger.setLevel(logging.INFO)
    package.setLevel(logging.DEBUG)  # every log line of the package, stage timings included
    try:
        capture = start_capture(settings)
        run = run_tenant(spark, settings, TENANT)
        metric_data = {
            name: capture.points(name)
            for name in ("pipeline.rows", "pipeline.runs", "pipeline.stage.duration")
        }
        shutdown_s = telemetry_setup.shutdown()
    finally:
        telemetry_setup.shutdown()
        root_logger.removeHandler(logs)
        root_logger.setLevel(old_levels[0])
        package.setLevel(old_levels[1])
        if old_secret is None:
            os.environ.pop("AWS_SECRET_ACCESS_KEY", None)
        else:
            os.environ["AWS_SECRET_ACCESS_KEY"] = old_secret
        receiver.stop()
    record = (
        spark.table(TableNames(lake.catalog.name).runs).where(F.col("run_id") == run.run_id).first()
    )
    assert record is not None
    yield {
        "lake": lake,
        "run": run,
        "capture": capture,
        "metrics": metric_data,
        "receiver": receiver,
        "record": record.asDict(recursive=True),
        "shutdown_s": shutdown_s,
        "logs": logs.lines,
    }


def _by_name(capture: OtelCapture) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for s in capture.spans():
        out.setdefault(s.name, []).append(s)
    return out


def _children(capture: OtelCapture, parent: Any) -> list[Any]:
    pid = parent.context.span_id
    return [s for s in capture.spans() if s.parent is not None and s.parent.span_id == pid]


def test_one_trace_per_run_with_a_span_per_stage(traced: dict[str, Any]) -> None:
    capture, run = traced["capture"], traced["run"]
    assert run.status == S.SUCCEEDED, run.message
    spans = _by_name(capture)
    (root,) = spans["cdf.silver_run"]
    assert root.parent is None
    trace_ids = {f"{s.context.trace_id:032x}" for s in capture.spans()}
    assert trace_ids == {run.trace_id} == {traced["record"]["trace_id"]}  # ops.runs -> the trace

    top = sorted(s.name for s in _children(capture, root))
    assert top == [
        "audits", "publish", "record_files", "record_run", "stage_entity", "stage_entity"
    ]  # fmt: skip
    entity_spans = {s.attributes["cdf.entity"]: s for s in spans["stage_entity"]}
    suppliers = {s.name for s in _children(capture, entity_spans["suppliers"])}
    parts = {s.name for s in _children(capture, entity_spans["parts"])}
    assert {"read", "validate", "dedupe", "classify"} <= suppliers
    assert {"read", "validate", "dedupe", "fk_check", "recheck_quarantine", "classify"} <= parts
    for read in spans["read"]:
        assert [s.name for s in _children(capture, read)] == ["normalise"]  # one file per entity
    (publish,) = spans["publish"]
    published = sorted(s.name for s in _children(capture, publish))
    # A first load: no older quarantine row to resolve, so no quarantine_resolve_sent_again.
    assert published == ["append", "append", "journal", "quarantine_write", "quarantine_write"]
    assert all(s.status.status_code.name == "UNSET" for s in capture.spans())

    attrs = root.attributes
    assert attrs["pipeline.name"] == "cdf.silver" and attrs["pipeline.engine.name"] == "spark"
    assert attrs["cdf.tenant"] == TENANT and attrs["pipeline.run.id"] == run.run_id
    for append in spans["append"]:
        assert append.attributes["cdf.table"].endswith(f"silver.{append.attributes['cdf.entity']}")


def test_counts_on_spans_equal_the_ops_runs_record(traced: dict[str, Any]) -> None:
    capture, record = traced["capture"], traced["record"]
    (root,) = _by_name(capture)["cdf.silver_run"]
    attrs = dict(root.attributes)
    assert attrs["pipeline.state"] == record["status"] == S.SUCCEEDED
    for key in S.COUNT_KEYS:
        assert attrs[f"cdf.rows.{key}"] == record[key], key
    assert record["read"] > 0 and record["quarantined"] > 0
    assert attrs["pipeline.quality.pass_rate"] == record["pass_rate"]
    by_reason = {
        k.removeprefix("cdf.quarantined_by_reason."): v
        for k, v in attrs.items()
        if k.startswith("cdf.quarantined_by_reason.")
    }
    assert by_reason == record["violation_counts"]
    after = {
        k.removeprefix("cdf.snapshot.after."): v
        for k, v in attrs.items()
        if k.startswith("cdf.snapshot.after.")
    }
    assert after == record["snapshots_after"]
    assert attrs["pipeline.quality.rules_failed"] == 0
    assert attrs["pipeline.quality.rules_passed"] == len(record["audits"])
    assert set(attrs["pipeline.lineage.destinations"]) == {
        "silver.suppliers", "silver.parts", "quarantine.suppliers", "quarantine.parts",
    }  # fmt: skip
    for span in _by_name(capture)["stage_entity"]:
        entity = span.attributes["cdf.entity"]
        counts = {k: span.attributes[f"cdf.rows.{k}"] for k in S.COUNT_KEYS}
        assert counts == record["entity_counts"][entity], entity


def test_metrics_count_rows_by_tenant_entity_and_outcome(traced: dict[str, Any]) -> None:
    record, metrics = traced["record"], traced["metrics"]
    rows: dict[tuple[str, str], int] = {}
    for attrs, point in metrics["pipeline.rows"]:
        assert attrs["cdf.tenant"] == TENANT and attrs["pipeline.state"] == S.SUCCEEDED
        rows[(attrs["cdf.entity"], attrs["cdf.outcome"])] = point.value
    expected = {
        (entity, outcome): n
        for entity, counts in record["entity_counts"].items()
        for outcome, n in counts.items()
        if n
    }
    assert rows == expected
    ((attrs, runs),) = metrics["pipeline.runs"]
    assert (attrs["pipeline.state"], runs.value) == (S.SUCCEEDED, 1)
    stages = {a["pipeline.task.name"] for a, _ in metrics["pipeline.stage.duration"]}
    assert {"cdf.silver_run", "stage_entity", "validate", "audits", "publish"} <= stages


def test_otlp_http_export_reaches_a_loopback_receiver(traced: dict[str, Any]) -> None:
    receiver, capture = traced["receiver"], traced["capture"]
    assert traced["shutdown_s"] < 5  # the receiver answers: nothing waits for a timeout
    sent = receiver.spans()
    assert sorted(s["name"] for s in sent) == sorted(s.name for s in capture.spans())
    (root,) = [s for s in sent if s["name"] == "cdf.silver_run"]
    assert root["trace_id"] == traced["run"].trace_id and root["parent_id"] is None
    assert root["resource"]["service.name"] == "cdf-pipeline"
    (memory_root,) = _by_name(capture)["cdf.silver_run"]
    wire = {k: tuple(v) if isinstance(v, list) else v for k, v in root["attributes"].items()}
    assert wire == dict(memory_root.attributes)

    points = receiver.metric_points()
    assert {"pipeline.rows", "pipeline.runs", "pipeline.stage.duration"} <= set(points)
    inserted = sum(
        p["value"] for p in points["pipeline.rows"] if p["attributes"]["cdf.outcome"] == "inserted"
    )
    assert inserted == traced["record"]["inserted"]
    assert all(p["count"] >= 1 for p in points["pipeline.stage.duration"])


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *_strings(v))]
    return []


def test_no_customer_values_or_secrets_in_spans_metrics_or_logs(traced: dict[str, Any]) -> None:
    raw = Path(traced["lake"].raw_uri) / f"tenant_id={TENANT}"
    customer: set[str] = set()
    for path in raw.rglob("*.parquet"):
        table = pq.read_table(path)
        for column in CUSTOMER_COLUMNS:
            if column in table.column_names:
                customer.update(
                    v for v in table.column(column).to_pylist() if isinstance(v, str) and len(v) > 5
                )
    assert len(customer) > 1000  # the scan has something to find

    exported: list[str] = []
    for span in traced["receiver"].spans():
        exported += _strings(span["attributes"]) + _strings(span["events"])
        exported += _strings(span["resource"])
    for points in traced["receiver"].metric_points().values():
        exported += [s for p in points for s in _strings(p["attributes"])]
    for span in traced["capture"].spans():
        exported += _strings(dict(span.attributes or {}))
        exported += [s for e in span.events for s in _strings(dict(e.attributes or {}))]
    text = "\n".join(exported + traced["logs"])
    assert exported and traced["logs"]
    assert SECRET not in text
    leaked = sorted(v for v in customer if v in text)
    assert leaked == []
