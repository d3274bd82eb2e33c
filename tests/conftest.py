"""Shared fixtures: one session-scoped SparkSession, a moto S3 server on loopback, tmp lakehouses.

In CI (``CI=true``) a test may not skip for missing infrastructure: :func:`require` fails instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import class_archive

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
_ARCHIVE_BUILDER = pytest.StashKey["class_archive.ArchiveBuilder"]()


def _price_lists() -> Any:
    from cdf_pipeline.contracts import Entity, Field, ForeignKey, Format, Kind

    return Entity(
        name="price_lists",
        doc="Test-only: what a supplier charges for a part.",
        primary_key="price_id",
        fields=(
            Field("price_id", Kind.STRING, "Price key", required=True),
            Field("tenant_id", Kind.STRING, "Owning tenant", required=True, fmt=Format.TENANT),
            Field("part_id", Kind.STRING, "The part (FK to parts)", required=True),
            Field("supplier_id", Kind.STRING, "The supplier (FK to suppliers)", required=True),
            Field("unit_price", Kind.DECIMAL, "Price per unit", required=True, minimum=0),
            Field("currency", Kind.STRING, "ISO-4217 code", enum=("EUR", "USD")),
            Field(
                "source_timestamp", Kind.TIMESTAMP, "Last change", required=True, not_future=True
            ),
        ),
        foreign_keys=(ForeignKey("part_id", "parts"), ForeignKey("supplier_id", "suppliers")),
    )


#: A test-only third entity with keys into two parents (parts and suppliers): what adding an
#: entity looks like. Not registered anywhere; tests that need it in the run register it.
PRICE_LISTS = _price_lists()


#: The JIT's first tier only, for every child JVM the tests start (drivers, and the cluster test's
#: executors): their runs are small and short, and the optimising tier's compilations were most of
#: their CPU (a 120-row cold run took 31 s instead of 88 s on a loaded 2-core machine). Behaviour
#: is the same either way. With C1 only, the JVM's code cache shrinks to 48 MB, which a driver that
#: runs many tenants filled ("Out of space in CodeCache"): it gets the tiered default's 240 MB
#: back. The serial collector suits their small heaps: a cold 120-row run took ~10% less CPU (31-32
#: s against 28-29 s). A class-data-sharing archive, when the session has one
#: (``servers/class_archive.py``), cuts a cold child's CPU by a fifth.
BASE_JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=240m -XX:+UseSerialGC"
#: The folder this process made for the archive (None in xdist workers, which inherit its name
#: from the controller, or when the caller named a ready-made archive).
_OWN_ARCHIVE_DIR: Path | None = None
if class_archive.ENV not in os.environ and "PYTEST_XDIST_WORKER" not in os.environ:
    _OWN_ARCHIVE_DIR = Path(tempfile.mkdtemp(prefix="cdf-test-classes-"))
    os.environ[class_archive.ENV] = str(_OWN_ARCHIVE_DIR / "classes.jsa")
TEST_JVM_OPTIONS = BASE_JVM_OPTIONS + class_archive.archive_options(
    os.environ.get(class_archive.ENV)
)
#: The options of each test worker's own session, which lives for the whole run and runs
#: hundreds of tenant runs: the JIT's optimising tier is kept there. Measured in one session on a
#: quiet machine, six runs of 300 + 300 rows: the runs after the first took 9-11 s instead of
#: 12-16 s, and the JVM spent 115 CPU-seconds on the six against 89 (compiling up front).
SESSION_JVM_OPTIONS = "-XX:+UseSerialGC"


def pytest_configure(config: pytest.Config) -> None:
    """The controller starts building the class archive for the JVMs the tests start (not for a
    run that leaves the slow tests out: few of the others start a JVM)."""
    if _OWN_ARCHIVE_DIR is None or "not slow" in (config.getoption("markexpr") or ""):
        return
    path = Path(os.environ[class_archive.ENV])
    builder = class_archive.ArchiveBuilder(path, cli_env(), BASE_JVM_OPTIONS)
    config.stash[_ARCHIVE_BUILDER] = builder
    builder.start()


def pytest_unconfigure(config: pytest.Config) -> None:
    builder = config.stash.get(_ARCHIVE_BUILDER, None)
    if builder is not None:
        builder.stop()
    if _OWN_ARCHIVE_DIR is not None:
        shutil.rmtree(_OWN_ARCHIVE_DIR, ignore_errors=True)


def cli_env(**overrides: str) -> dict[str, str]:
    """The environment of a ``cdf`` child process: none of the caller's CDF/AWS/PG settings,
    Spark on loopback with this venv's Python, no telemetry export (the aws and docker profiles
    would export to a collector on localhost)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CDF_", "AWS_", "PG"))}
    env.update(
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        SPARK_LOCAL_IP="127.0.0.1",
        OTEL_TRACES_EXPORTER="none",
        OTEL_METRICS_EXPORTER="none",
        CDF__SPARK__DRIVER_MEMORY="1g",
        CDF__SPARK__DRIVER_JAVA_OPTIONS=TEST_JVM_OPTIONS,
        AWS_EC2_METADATA_DISABLED="true",
    )
    env.update(overrides)
    return env


def require(condition: bool, reason: str) -> None:
    """Skip locally when infrastructure is missing; fail in CI, where everything must run."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI=true and required infrastructure is missing: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The one SparkSession of the test run, built by the library's own factory.

    Its Iceberg catalog points at a session-wide warehouse; tests that need isolation use
    their own table namespace or their own tenant ids.
    """
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    from cdf_pipeline.config import load_settings
    from cdf_pipeline.spark import build_session

    root = tmp_path_factory.mktemp("lakehouse")
    settings = load_settings(
        "local",
        overrides={
            "root": str(root),
            "spark": {
                "shuffle_partitions": 2,
                # 3g, not 2g: in one full run a worker's session JVM died (connection reset, no
                # message) during the hostile corpus's 50 MB CSV field, after the tests before it
                # had filled its heap; Spark ends a local-mode JVM on an OOM in a task.
                "driver_memory": "3g",
                "driver_java_options": SESSION_JVM_OPTIONS,
            },
        },
    )
    session = build_session(settings, app_name="cdf-tests")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real moto S3 server in this process, listening on a free loopback port."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:  # pragma: no cover - dev extra missing
        require(False, "moto[server] is not installed (pip install -e '.[dev]')")
        raise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    old = {
        k: os.environ.get(k)
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    }
    # moto accepts any credentials; these are throwaway test values, not secrets.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One throwaway PostgreSQL for the test session (``servers/postgres.py``); each test keeps
    to its own schemas, catalogs or databases on it."""
    from servers.postgres import start_postgres, stop_postgres

    try:
        server = start_postgres(tmp_path_factory.mktemp("pg"))
    except (RuntimeError, OSError) as exc:
        require(False, f"a throwaway PostgreSQL could not start: {exc}")
        raise
    try:
        yield server
    finally:
        stop_postgres(server)


def make_lake(spark: Any, root: Path, *, tenant: str | None = None, **catalog: Any) -> Any:
    """Settings of a fresh lakehouse under ``root`` with its own Iceberg catalog on ``spark``.

    The catalog is registered at runtime under a unique name, with the options a job would
    build it with (the embedded default: a SQLite catalog in ``root/catalog.db``), so tests never
    see each other's tables while sharing one session. ``catalog`` overrides catalog settings.
    """
    from cdf_pipeline.config import load_settings
    from cdf_pipeline.lakehouse.sqlite_catalog import ensure_catalog_file
    from cdf_pipeline.spark import catalog_options

    name = f"t{uuid.uuid4().hex[:12]}"
    settings = load_settings(
        "local", tenant=tenant, overrides={"root": str(root), "catalog": {"name": name, **catalog}}
    )
    if settings.sqlite_catalog_path is not None:  # as build_session does for its own catalog
        ensure_catalog_file(settings.sqlite_catalog_path)
    for key, value in catalog_options(settings).items():
        spark.conf.set(key, value)
    return settings


@pytest.fixture
def lake(spark: Any, tmp_path: Path) -> Any:
    """A fresh lakehouse (own root, own catalog) for one test."""
    return make_lake(spark, tmp_path / "lake")


@pytest.fixture
def another_lake(spark: Any, tmp_path: Path) -> Any:
    """A second fresh lakehouse, for tests that compare two runs side by side."""
    return make_lake(spark, tmp_path / "other")


@pytest.fixture
def lakehouse(tmp_path: Path) -> Path:
    """An empty local root directory for one test."""
    root = tmp_path / "lakehouse"
    root.mkdir()
    return root


# --- OpenTelemetry: in-memory capture and a real OTLP/HTTP receiver on loopback -----------------


class OtelCapture:
    """Spans and metrics captured in memory from an install of ``telemetry_setup``."""

    def __init__(self, spans: Any, reader: Any) -> None:
        self.exporter = spans
        self.reader = reader

    def spans(self) -> list[Any]:
        return list(self.exporter.get_finished_spans())

    def points(self, metric: str) -> list[tuple[dict[str, Any], Any]]:
        """(attributes, data point) of every point of ``metric`` collected so far."""
        data = self.reader.get_metrics_data()
        out = []
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == metric:
                        out += [(dict(p.attributes or {}), p) for p in m.data.data_points]
        return out


def start_capture(settings: Any, **install_kw: Any) -> OtelCapture:
    """Install telemetry for ``settings`` plus an in-memory span exporter and metric reader."""
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from cdf_pipeline.telemetry import setup as telemetry_setup

    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    install_kw.setdefault("environ", {})
    installed = telemetry_setup.install(
        settings,
        span_processors=[SimpleSpanProcessor(spans)],
        metric_readers=[reader],
        **install_kw,
    )
    assert installed is not None
    return OtelCapture(spans, reader)


@pytest.fixture
def otel(tmp_path: Path) -> Iterator[OtelCapture]:
    """Telemetry on for one test (local profile, no exporter but in-memory ones), then off."""
    from cdf_pipeline.config import load_settings
    from cdf_pipeline.telemetry import setup as telemetry_setup

    capture = start_capture(load_settings("local", overrides={"root": str(tmp_path)}))
    try:
        yield capture
    finally:
        telemetry_setup.shutdown()


def any_value(value: Any) -> Any:
    """An OTLP ``AnyValue`` as a Python value (arrays as lists)."""
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind) if kind else None


def attributes_of(key_values: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in key_values}


class OtlpReceiver:
    """A minimal OTLP/HTTP collector on loopback: decodes every protobuf request it receives.

    ``POST /v1/traces`` and ``/v1/metrics`` are parsed with opentelemetry-proto's
    ``ExportTraceServiceRequest`` / ``ExportMetricsServiceRequest``, so a test sees exactly what
    crossed the wire.
    """

    def __init__(self) -> None:
        import gzip
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
            ExportMetricsServiceRequest,
            ExportMetricsServiceResponse,
        )
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        self.traces: list[Any] = []
        self.metrics: list[Any] = []
        receiver = self
        kinds = {
            "/v1/traces": (ExportTraceServiceRequest, ExportTraceServiceResponse, self.traces),
            "/v1/metrics": (
                ExportMetricsServiceRequest,
                ExportMetricsServiceResponse,
                self.metrics,
            ),
        }

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                kind = kinds.get(self.path)
                if kind is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                request_type, response_type, sink = kind
                with receiver.lock:
                    sink.append(request_type.FromString(body))
                payload = response_type().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the test reads what arrived, not an access log."""

        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def spans(self) -> list[dict[str, Any]]:
        """Every span received: name, ids (hex), attributes, events, resource attributes."""
        out = []
        for request in self.traces:
            for rs in request.resource_spans:
                resource = attributes_of(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        out.append(
                            {
                                "name": s.name,
                                "trace_id": s.trace_id.hex(),
                                "span_id": s.span_id.hex(),
                                "parent_id": s.parent_span_id.hex() or None,
                                "attributes": attributes_of(s.attributes),
                                "events": [attributes_of(e.attributes) for e in s.events],
                                "status": s.status.code,
                                "resource": resource,
                            }
                        )
        return out

    def metric_points(self) -> dict[str, list[dict[str, Any]]]:
        """Metric name -> data points (attributes plus ``value``/``count``/``sum``)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for request in self.metrics:
            for rm in request.resource_metrics:
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        kind = m.WhichOneof("data")
                        for p in getattr(m, kind).data_points:
                            point: dict[str, Any] = {"attributes": attributes_of(p.attributes)}
                            if kind == "histogram":
                                point.update(count=p.count, sum=p.sum)
                            else:
                                point["value"] = p.as_int or p.as_double
                            out.setdefault(m.name, []).append(point)
        return out


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    try:
        yield receiver
    finally:
        receiver.stop()
