"""Telemetry without Spark: settings and OTEL_* resolution, spans, failures, propagation, JSONL,
safety of attribute values, and a dead collector costing at most the export timeout."""

from __future__ import annotations

import json
import logging
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from support.environment import free_port
from support.otel import OtelCapture, OtlpReceiver, start_capture

from cdf_pipeline import run_record as S
from cdf_pipeline import telemetry
from cdf_pipeline.config import load_settings
from cdf_pipeline.exceptions import CdfError
from cdf_pipeline.telemetry import setup as telemetry_setup
from cdf_pipeline.telemetry.export import read_spans

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE}-{PARENT}-01"


def local(tmp_path: Path, **telemetry_conf: Any) -> Any:
    over: dict[str, Any] = {"root": str(tmp_path)}
    if telemetry_conf:
        over["telemetry"] = telemetry_conf
    return load_settings("local", overrides=over, environ={})


@pytest.fixture(autouse=True)
def _telemetry_off_after() -> Any:
    yield
    telemetry_setup.shutdown()


# --- what gets installed -----------------------------------------------------------------------


def test_profiles_default_off_locally_and_otlp_in_docker() -> None:
    plan = telemetry_setup.make_plan(load_settings("local", environ={}), {})
    assert (plan.traces, plan.metrics, plan.enabled) == ((), (), False)
    assert telemetry_setup.install(load_settings("local", environ={}), environ={}) is None

    docker = telemetry_setup.make_plan(load_settings("docker", environ={}), {})
    assert (docker.traces, docker.metrics) == (("otlp",), ("otlp",))
    assert docker.traces_endpoint == "http://otel-collector:4318/v1/traces"
    assert docker.metrics_endpoint == "http://otel-collector:4318/v1/metrics"
    assert docker.timeout_s == 5.0


def test_otel_variables_win_over_the_profile(tmp_path: Path) -> None:
    settings = load_settings("docker", overrides={"root": str(tmp_path)}, environ={})
    plan = telemetry_setup.make_plan(
        settings,
        {
            "OTEL_TRACES_EXPORTER": "console, jsonl",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector.example:4318/",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "2000",
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "250",
        },
    )
    assert plan.traces == ("console", "jsonl")
    assert plan.metrics == ()
    # An endpoint variable set: the profile's URL is not passed, the exporter reads the variable.
    assert (plan.traces_endpoint, plan.metrics_endpoint) == (None, None)
    assert (plan.traces_timeout_s, plan.metrics_timeout_s) == (0.25, 2.0)
    assert plan.jsonl_path == str(tmp_path / "telemetry" / "spans.jsonl")  # {root} expanded


def test_otlp_timeouts_are_milliseconds_as_the_specification_says(
    caplog: pytest.LogCaptureFixture,
) -> None:
    docker = load_settings("docker", environ={})
    plan = telemetry_setup.make_plan(docker, {"OTEL_EXPORTER_OTLP_TIMEOUT": "10"})
    assert plan.timeout_s == 0.01  # 10 ms (the Python exporter alone would read 10 s)
    with caplog.at_level(logging.WARNING):
        plan = telemetry_setup.make_plan(docker, {"OTEL_EXPORTER_OTLP_METRICS_TIMEOUT": "5s"})
    assert plan.metrics_timeout_s == 5.0  # the profile's export_timeout_seconds
    assert "is not a positive number of milliseconds" in caplog.text


def test_sdk_disabled_and_unknown_exporters(caplog: pytest.LogCaptureFixture) -> None:
    docker = load_settings("docker", environ={})
    assert not telemetry_setup.make_plan(docker, {"OTEL_SDK_DISABLED": "true"}).enabled
    with caplog.at_level(logging.WARNING):
        plan = telemetry_setup.make_plan(docker, {"OTEL_TRACES_EXPORTER": "zipkin,otlp"})
    assert plan.traces == ("otlp",)
    assert "'zipkin' is not available" in caplog.text


def test_a_remote_jsonl_path_turns_the_jsonl_exporter_off(caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(
        "docker", overrides={"telemetry": {"traces_exporter": "jsonl"}}, environ={}
    )
    with caplog.at_level(logging.WARNING):
        plan = telemetry_setup.make_plan(settings, {})
    assert plan.traces == () and plan.jsonl_path is None
    assert "must be a local file" in caplog.text


def test_service_name_and_resource_attributes_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def resource_of_a_span() -> dict[str, Any]:
        capture = start_capture(local(tmp_path))
        with telemetry.stage("s"):
            pass
        return dict(capture.spans()[0].resource.attributes)

    resource = resource_of_a_span()
    assert resource["service.name"] == "cdf-pipeline"
    assert resource["cdf.profile"] == "local"

    monkeypatch.setenv("OTEL_SERVICE_NAME", "nightly-cdf")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test,team=data")
    resource = resource_of_a_span()
    assert resource["service.name"] == "nightly-cdf"
    assert resource["team"] == "data"


def test_the_sampler_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")  # read by the SDK's TracerProvider
    capture = start_capture(local(tmp_path))
    with telemetry.stage("s"):
        pass
    assert capture.spans() == []


# --- spans and metrics -------------------------------------------------------------------------


def test_stages_nest_and_their_durations_are_a_histogram(otel: OtelCapture) -> None:
    with (
        telemetry.stage("outer", **{telemetry.TENANT: "acme", "skipped": None}) as outer,
        telemetry.stage("inner", **{telemetry.TENANT: "acme", telemetry.ENTITY: "parts"}),
    ):
        assert telemetry.current_trace_id() == f"{outer.get_span_context().trace_id:032x}"
    inner, outer_span = otel.spans()
    assert (inner.name, outer_span.name) == ("inner", "outer")
    assert inner.parent is not None and inner.parent.span_id == outer_span.context.span_id
    assert dict(outer_span.attributes or {}) == {"cdf.tenant": "acme"}  # None values dropped

    points = {a[telemetry.TASK]: (a, p) for a, p in otel.points(telemetry.DURATION_METRIC)}
    attrs, point = points["inner"]
    assert attrs == {"pipeline.task.name": "inner", "cdf.tenant": "acme", "cdf.entity": "parts"}
    assert point.count == 1 and point.sum > 0
    assert telemetry.current_trace_id() is None  # no span open any more


def test_a_failure_sets_the_status_and_keeps_foreign_messages_out(otel: OtelCapture) -> None:
    with pytest.raises(ValueError), telemetry.stage("cast"):
        raise ValueError("cannot cast 'jane.doe@example.com' to INT")
    with pytest.raises(CdfError), telemetry.stage("ours"):
        raise CdfError("silver run r1 for tenant acme failed: ValueError during the run")
    foreign, ours = otel.spans()
    assert foreign.status.status_code.name == "ERROR"
    assert foreign.status.description == "ValueError"
    (event,) = foreign.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "builtins.ValueError"
    assert "jane.doe" not in json.dumps(dict(event.attributes))
    assert "test_telemetry.py" in event.attributes["exception.stacktrace"]
    assert ours.events[0].attributes["exception.message"].startswith("silver run r1")
    errors = {
        a[telemetry.TASK]: a.get("error.type") for a, _ in otel.points("pipeline.stage.duration")
    }
    assert errors == {"cast": "ValueError", "ours": "CdfError"}


def test_attribute_values_lose_credentials_and_length() -> None:
    assert telemetry.safe_value("s3://AKIAXX:s3cr3t@bucket/raw") == "s3://***@bucket/raw"
    assert telemetry.safe_value("http://user:pw@collector:4318 x") == "http://***@collector:4318 x"
    assert telemetry.safe_value(["jdbc:postgresql://u:p@db/x"]) == ["jdbc:postgresql://***@db/x"]
    assert telemetry.safe_value(Path("/data/lake")) == "/data/lake"
    assert len(telemetry.safe_value("x" * 5000)) == telemetry.MAX_STRING
    assert telemetry.safe_value(3) == 3 and telemetry.safe_value(True) is True


def test_run_attributes_and_metrics_carry_the_summary_counts(otel: OtelCapture) -> None:
    run = S.RunSummary(tenant="acme", run_id="r1", status=S.SUCCEEDED)
    run.entities = {
        "suppliers": S.EntityCounts(read=10, inserted=7, quarantined=2, duplicates_dropped=1,
                                    violations={"contact_email.format": 2}),
        "parts": S.EntityCounts(read=5, inserted=4, quarantined=1, violations={"x.fk": 1}),
    }  # fmt: skip
    run.snapshots_before = {"silver.parts": 1}
    run.snapshots_after = {"silver.parts": 2, "silver.suppliers": 3}
    run.audits = [S.Audit("pass_rate", True, ""), S.Audit("parts.count_invariant", False, "")]
    with telemetry.stage("cdf.silver_run") as span:
        S.trace_run(span, run)
    attrs = dict(otel.spans()[0].attributes or {})
    assert attrs["pipeline.state"] == "SUCCEEDED"
    assert attrs["cdf.rows.read"] == 15 and attrs["cdf.rows.quarantined"] == 3
    assert attrs["cdf.quarantined_by_reason.contact_email.format"] == 2
    assert attrs["pipeline.quality.pass_rate"] == run.pass_rate
    assert attrs["cdf.snapshot.after.silver.suppliers"] == 3
    assert attrs["pipeline.lineage.destinations"] == ("silver.parts", "silver.suppliers")
    assert attrs["pipeline.quality.rules_failed"] == 1
    assert attrs["cdf.audits.failed"] == ("parts.count_invariant",)

    rows = {(a["cdf.entity"], a["cdf.outcome"]): p.value for a, p in otel.points("pipeline.rows")}
    assert rows == {
        ("suppliers", "read"): 10, ("suppliers", "inserted"): 7,
        ("suppliers", "quarantined"): 2, ("suppliers", "duplicates_dropped"): 1,
        ("parts", "read"): 5, ("parts", "inserted"): 4, ("parts", "quarantined"): 1,
    }  # fmt: skip
    ((runs_attrs, runs),) = otel.points("pipeline.runs")
    assert runs_attrs == {"cdf.tenant": "acme", "pipeline.state": "SUCCEEDED"}
    assert runs.value == 1
    reasons = {a["cdf.rule"]: p.value for a, p in otel.points("pipeline.quarantine.rows")}
    assert reasons == {"contact_email.format": 2, "x.fk": 1}


# --- propagation -------------------------------------------------------------------------------


def test_traceparent_in_the_environment_is_the_parent_of_every_span(tmp_path: Path) -> None:
    capture = start_capture(local(tmp_path), environ={"TRACEPARENT": TRACEPARENT})
    with telemetry.stage("cdf.silver_run") as span:
        assert telemetry.current_trace_id() == TRACE
        child = telemetry.child_env()
    (recorded,) = capture.spans()
    assert f"{recorded.context.trace_id:032x}" == TRACE
    assert recorded.parent is not None and recorded.parent.is_remote
    assert f"{recorded.parent.span_id:016x}" == PARENT
    # What this process passes on: the same trace, this span as the parent.
    assert child["TRACEPARENT"] == f"00-{TRACE}-{span.get_span_context().span_id:016x}-01"
    telemetry_setup.shutdown()
    assert telemetry.current_trace_id() is None  # the parent context is detached again


def test_traceparent_alone_still_puts_the_trace_id_on_the_run(tmp_path: Path) -> None:
    installed = telemetry_setup.install(local(tmp_path), environ={"TRACEPARENT": TRACEPARENT})
    assert installed is not None and installed.plan.enabled is False
    with telemetry.stage("cdf.silver_run"):
        assert telemetry.current_trace_id() == TRACE


def test_an_invalid_traceparent_is_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        installed = telemetry_setup.install(local(tmp_path), environ={"TRACEPARENT": "00-zz-1-01"})
    assert installed is None
    assert "not a valid W3C traceparent" in caplog.text
    assert telemetry.child_env() == {}


# --- exporters ---------------------------------------------------------------------------------


def test_jsonl_exporter_writes_one_object_per_span(tmp_path: Path) -> None:
    settings = local(tmp_path, traces_exporter="jsonl")
    assert telemetry_setup.install(settings, environ={}) is not None
    with telemetry.stage("outer", **{telemetry.TENANT: "acme"}), telemetry.stage("inner"):
        pass
    telemetry_setup.shutdown()
    inner, outer = read_spans(tmp_path / "telemetry" / "spans.jsonl")
    assert (inner["name"], outer["name"]) == ("inner", "outer")
    assert inner["trace_id"] == outer["trace_id"] and len(inner["trace_id"]) == 32
    assert inner["parent_id"] == outer["span_id"] and outer["parent_id"] is None
    assert outer["attributes"] == {"cdf.tenant": "acme"}
    assert outer["status"]["code"] == "UNSET" and outer["duration_ms"] >= 0
    assert outer["start"] <= inner["start"] <= inner["end"] <= outer["end"]
    assert outer["resource"]["service.name"] == "cdf-pipeline"


@pytest.mark.parametrize("per_signal", [False, True], ids=["base-url", "per-signal-urls"])
def test_the_otlp_exporters_read_their_endpoints_from_the_environment(
    per_signal: bool, tmp_path: Path, otlp_receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The profile names a closed port, the variables the receiver: the SDK's exporters (given no
    endpoint of ours when a variable is set) send to the receiver."""
    settings = local(
        tmp_path,
        traces_exporter="otlp",
        metrics_exporter="otlp",
        otlp_endpoint=f"http://127.0.0.1:{free_port()}",
        export_timeout_seconds=2,
    )
    if per_signal:
        for signal in ("traces", "metrics"):
            url = f"{otlp_receiver.url}/v1/{signal}"
            monkeypatch.setenv(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT", url)
    else:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_receiver.url)
    assert telemetry_setup.install(settings) is not None
    with telemetry.stage("probe"):
        pass
    telemetry_setup.shutdown()
    assert [s["name"] for s in otlp_receiver.spans()] == ["probe"]
    assert telemetry.DURATION_METRIC in otlp_receiver.metric_points()


def test_the_otlp_exporter_gives_up_after_the_timeout_in_milliseconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A collector that accepts connections and never answers: a flush returns after
    ``OTEL_EXPORTER_OTLP_TIMEOUT`` milliseconds (the exporter alone would read 300 s)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        monkeypatch.setenv(
            "OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{silent.getsockname()[1]}"
        )
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "300")
        installed = telemetry_setup.install(local(tmp_path, traces_exporter="otlp"))
        assert installed is not None and installed.tracer_provider is not None
        assert installed.plan.timeout_s == 0.3
        with telemetry.stage("probe"):
            pass
        started = time.perf_counter()
        installed.tracer_provider.force_flush(timeout_millis=20_000)
        assert time.perf_counter() - started < 3
        telemetry_setup.shutdown()


def test_a_dead_collector_costs_at_most_the_export_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``cdf generate`` with OTLP pointed at a closed loopback port: the job succeeds and the
    telemetry shutdown (the only place an export can block the job) stays within the timeout."""
    from cdf_pipeline.cli.main import main

    timeout_s = 1.0
    spent: list[float] = []
    real_shutdown = telemetry_setup.shutdown

    def timed_shutdown() -> float:
        seconds = real_shutdown()
        spent.append(seconds)
        return seconds

    monkeypatch.setattr(telemetry_setup, "shutdown", timed_shutdown)
    args = ["generate", "--tenants", "acme", "--suppliers", "200", "--parts", "200"]

    started = time.perf_counter()
    assert main([*args, "--root", str(tmp_path / "off")]) == 0
    untraced = time.perf_counter() - started

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", str(int(timeout_s * 1000)))  # milliseconds
    started = time.perf_counter()
    assert main([*args, "--root", str(tmp_path / "on")]) == 0
    traced = time.perf_counter() - started

    assert spent, "telemetry was not installed"
    assert spent[0] <= timeout_s + telemetry_setup.SHUTDOWN_MARGIN_S
    assert traced - untraced <= timeout_s + 1.0, (traced, untraced)
    assert telemetry_setup.active() is None


def test_stage_listener_sees_each_stage_start_and_never_breaks_a_stage() -> None:
    """What ``cdf run`` shows on a terminal: each stage's name and tenant/entity as it starts."""
    seen: list[tuple[str, dict[str, Any]]] = []
    telemetry.on_stage(lambda name, attrs: seen.append((name, dict(attrs))))
    try:
        with (
            telemetry.stage("outer", **{telemetry.TENANT: "acme"}),
            telemetry.stage("inner", **{telemetry.ENTITY: "parts"}),
        ):
            pass
        telemetry.on_stage(lambda name, attrs: 1 / 0)  # a broken listener
        with telemetry.stage("still runs"):
            pass
    finally:
        telemetry.on_stage(None)
    assert seen == [("outer", {"cdf.tenant": "acme"}), ("inner", {"cdf.entity": "parts"})]
