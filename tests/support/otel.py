"""OpenTelemetry for tests: spans and metrics captured in memory, and a real OTLP/HTTP receiver on
loopback that decodes what crosses the wire."""

from __future__ import annotations

from typing import Any


class OtelCapture:
    """Spans and metrics captured in memory from an install of ``cdf_pipeline.telemetry.setup``."""

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
        kinds: dict[str, tuple[Any, Any, list[Any]]] = {
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
