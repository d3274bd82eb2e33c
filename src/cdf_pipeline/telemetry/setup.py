"""Install the OpenTelemetry SDK for one process: profile settings, OTEL_* variables winning.

Process entry points call :func:`install` (``cli.main``, which also serves ``jobs/*.py`` under
spark-submit) and :func:`shutdown` at exit; library code uses only :mod:`cdf_pipeline.telemetry`.
What :func:`install` sets up, when anything is enabled:

- traces: a ``BatchSpanProcessor`` per exporter: ``otlp`` (OTLP over HTTP/protobuf), ``console``
  (stderr, so stdout stays machine-readable) or ``jsonl`` (a local file, see
  :mod:`cdf_pipeline.telemetry.export`);
- metrics: a ``PeriodicExportingMetricReader`` per exporter: ``otlp`` or ``console``;
- a resource with ``service.name`` ``cdf-pipeline``, ``service.version`` and ``cdf.profile``, which
  ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` override;
- the parent context carried by ``TRACEPARENT``/``TRACESTATE`` (a launcher's trace, see
  :func:`cdf_pipeline.telemetry.child_env`), attached for the process so every span joins it. A
  ``TRACEPARENT`` alone (exporters off) still installs a non-exporting tracer, so the run's
  ``ops.runs.trace_id`` names the launcher's trace.

The SDK reads the standard variables itself: the OTLP exporters their endpoints, headers,
compression and certificates; the resource ``OTEL_SERVICE_NAME``/``OTEL_RESOURCE_ATTRIBUTES``; the
tracer provider the sampler; the processors ``OTEL_BSP_*`` and ``OTEL_METRIC_EXPORT_*``. This module
reads only what the SDK leaves to its (global, set-once) auto-configuration or gets wrong: which
exporters (``OTEL_TRACES_EXPORTER``, ``OTEL_METRICS_EXPORTER``, ``OTEL_SDK_DISABLED``), the
profile's defaults when no such variable is set, and the OTLP timeout, which the specification
gives in milliseconds (the Python exporter would read seconds).

Telemetry never fails a job and never slows it beyond a bound: a setup error is one warning and
the job runs untraced; each OTLP request gives up after the export timeout; :func:`shutdown` waits
at most that timeout plus :data:`SHUTDOWN_MARGIN_S` in total, then abandons what is left.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdf_pipeline import __version__, telemetry
from cdf_pipeline.config import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

logger = logging.getLogger(__name__)

SERVICE_NAME = "cdf-pipeline"
TRACES_EXPORTERS = ("otlp", "console", "jsonl")
METRICS_EXPORTERS = ("otlp", "console")
#: Slack on top of the export timeout for :func:`shutdown` (thread start-up, exporter shutdown).
SHUTDOWN_MARGIN_S = 0.5


@dataclass(frozen=True)
class Plan:
    """What to install, resolved from the settings and the environment (no SDK needed)."""

    traces: tuple[str, ...]
    metrics: tuple[str, ...]
    #: The profile's OTLP URL of each signal; None when an ``OTEL_EXPORTER_OTLP_*ENDPOINT``
    #: variable is set or the profile has none: the exporter then resolves it (default
    #: ``http://localhost:4318/v1/<signal>``).
    traces_endpoint: str | None
    metrics_endpoint: str | None
    traces_timeout_s: float
    metrics_timeout_s: float
    jsonl_path: str | None
    profile: str

    @property
    def enabled(self) -> bool:
        return bool(self.traces or self.metrics)

    @property
    def timeout_s(self) -> float:
        """The longest export timeout among the installed exporters (bounds :func:`shutdown`)."""
        used = [self.traces_timeout_s] if self.traces else []
        used += [self.metrics_timeout_s] if self.metrics else []
        return max(used, default=self.traces_timeout_s)


def _exporters(
    environ: Mapping[str, str], var: str, default: str, supported: Sequence[str]
) -> tuple[str, ...]:
    names = [n.strip().lower() for n in (environ.get(var, "").strip() or default).split(",")]
    for name in names:
        if name not in (*supported, "none", ""):
            logger.warning(
                "%s: exporter %r is not available here (choose from %s); ignored",
                var,
                name,
                ", ".join(supported),
            )
    return tuple(dict.fromkeys(n for n in names if n in supported))


def _profile_endpoint(environ: Mapping[str, str], signal: str, base: str | None) -> str | None:
    """The profile's URL for ``signal``, unless a variable names one (the exporter reads it)."""
    variables = ("OTEL_EXPORTER_OTLP_ENDPOINT", f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    if base is None or any(environ.get(v, "").strip() for v in variables):
        return None
    return f"{base.rstrip('/')}/v1/{signal}"


def _timeout_s(environ: Mapping[str, str], signal: str, default_s: float) -> float:
    """``OTEL_EXPORTER_OTLP_<SIGNAL>_TIMEOUT``, else ``OTEL_EXPORTER_OTLP_TIMEOUT``, in
    milliseconds as the specification has it, else the profile's seconds."""
    for var in (f"OTEL_EXPORTER_OTLP_{signal.upper()}_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"):
        raw = environ.get(var, "").strip()
        if not raw:
            continue
        try:
            millis = float(raw)
        except ValueError:
            millis = 0.0
        if millis > 0:
            return millis / 1000
        logger.warning("%s=%r is not a positive number of milliseconds; ignored", var, raw)
    return default_s


def _check_protocol(environ: Mapping[str, str], signal: str) -> None:
    for var in (f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        value = environ.get(var, "").strip()
        if value and value != "http/protobuf":
            logger.warning("%s=%s: only http/protobuf is installed; using it", var, value)
            return


def make_plan(settings: Settings, environ: Mapping[str, str] | None = None) -> Plan:
    """Resolve exporters, the profile's endpoints, timeouts and the JSON-lines file."""
    env = os.environ if environ is None else environ
    conf = settings.telemetry
    traces: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() != "true":
        traces = _exporters(env, "OTEL_TRACES_EXPORTER", conf.traces_exporter, TRACES_EXPORTERS)
        metrics = _exporters(env, "OTEL_METRICS_EXPORTER", conf.metrics_exporter, METRICS_EXPORTERS)
    for signal, names in (("traces", traces), ("metrics", metrics)):
        if "otlp" in names:
            _check_protocol(env, signal)
    jsonl_path: str | None = None
    if "jsonl" in traces:
        path = settings.path(conf.jsonl_path).removeprefix("file://")
        if "://" in path:
            logger.warning(
                "telemetry.jsonl_path must be a local file, not %s; jsonl exporter off",
                telemetry.safe_value(path),
            )
            traces = tuple(t for t in traces if t != "jsonl")
        else:
            jsonl_path = str(Path(path).absolute())
    return Plan(
        traces=traces,
        metrics=metrics,
        traces_endpoint=_profile_endpoint(env, "traces", conf.otlp_endpoint),
        metrics_endpoint=_profile_endpoint(env, "metrics", conf.otlp_endpoint),
        traces_timeout_s=_timeout_s(env, "traces", conf.export_timeout_seconds),
        metrics_timeout_s=_timeout_s(env, "metrics", conf.export_timeout_seconds),
        jsonl_path=jsonl_path,
        profile=settings.profile,
    )


@dataclass
class Installed:
    """What :func:`install` set up (tests reach the providers through it)."""

    plan: Plan
    tracer_provider: TracerProvider | None
    meter_provider: MeterProvider | None
    context_token: object | None


_active: Installed | None = None
_lock = threading.Lock()
_atexit_registered = False


def install(
    settings: Settings,
    *,
    environ: Mapping[str, str] | None = None,
    span_processors: Sequence[SpanProcessor] = (),
    metric_readers: Sequence[MetricReader] = (),
) -> Installed | None:
    """Install tracing and metrics for this process as ``settings`` and the environment say.

    Returns None when everything is off (the SDK is not even imported then, and an earlier
    install stays as it is). Otherwise an earlier install is shut down and replaced.
    ``span_processors`` and ``metric_readers`` are added to the configured ones (tests pass
    in-memory ones). Never raises.
    """
    global _active, _atexit_registered
    env = os.environ if environ is None else environ
    try:
        plan = make_plan(settings, env)
        parent = telemetry.context_from_env(env)
        if not (plan.enabled or span_processors or metric_readers or parent is not None):
            return None
        shutdown()
        installed = _build(plan, parent, span_processors, metric_readers)
    except Exception as exc:
        logger.warning(
            "telemetry off: setup failed (%s: %s)",
            type(exc).__name__,
            telemetry.safe_value(str(exc)),
        )
        return None
    with _lock:
        _active = installed
        if not _atexit_registered:
            atexit.register(shutdown)
            _atexit_registered = True
    logger.debug(
        "telemetry on: traces %s -> %s, metrics %s -> %s, timeout %.1f s%s",
        ",".join(plan.traces) or "none",
        telemetry.safe_value(plan.jsonl_path or plan.traces_endpoint or "OTEL_EXPORTER_OTLP_*"),
        ",".join(plan.metrics) or "none",
        telemetry.safe_value(plan.metrics_endpoint or "OTEL_EXPORTER_OTLP_*"),
        plan.timeout_s,
        ", parent from TRACEPARENT" if parent is not None else "",
    )
    return installed


def _build(
    plan: Plan,
    parent: Any,
    span_processors: Sequence[SpanProcessor],
    metric_readers: Sequence[MetricReader],
) -> Installed:
    from opentelemetry import context
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource
    from opentelemetry.sdk.trace import TracerProvider

    resource = Resource.create(
        {"service.name": SERVICE_NAME, "service.version": __version__, "cdf.profile": plan.profile}
    ).merge(OTELResourceDetector().detect())  # OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES win

    tracer_provider = None
    if plan.traces or span_processors or parent is not None:
        tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        for processor in [*_span_processors(plan), *span_processors]:
            tracer_provider.add_span_processor(processor)
    meter_provider = None
    readers = [*_metric_readers(plan), *metric_readers]
    if readers:
        meter_provider = MeterProvider(
            metric_readers=readers, resource=resource, shutdown_on_exit=False
        )
    telemetry.use_providers(tracer_provider, meter_provider, finish=shutdown)
    token = context.attach(parent) if parent is not None else None
    return Installed(plan, tracer_provider, meter_provider, token)


def _span_processors(plan: Plan) -> list[SpanProcessor]:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    out: list[SpanProcessor] = []
    for name in plan.traces:
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter: Any = OTLPSpanExporter(
                endpoint=plan.traces_endpoint, timeout=plan.traces_timeout_s
            )
        elif name == "console":
            exporter = ConsoleSpanExporter(out=sys.stderr)
        else:
            from cdf_pipeline.telemetry.export import JsonLinesSpanExporter

            assert plan.jsonl_path is not None
            exporter = JsonLinesSpanExporter(plan.jsonl_path)
        out.append(BatchSpanProcessor(exporter))
    return out


def _metric_readers(plan: Plan) -> list[MetricReader]:
    from opentelemetry.sdk.metrics.export import (
        ConsoleMetricExporter,
        PeriodicExportingMetricReader,
    )

    out: list[MetricReader] = []
    for name in plan.metrics:
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

            exporter: Any = OTLPMetricExporter(
                endpoint=plan.metrics_endpoint, timeout=plan.metrics_timeout_s
            )
        else:
            exporter = ConsoleMetricExporter(out=sys.stderr)
        out.append(PeriodicExportingMetricReader(exporter))  # OTEL_METRIC_EXPORT_*: the SDK's
    return out


def active() -> Installed | None:
    """What :func:`install` set up and :func:`shutdown` has not stopped yet."""
    return _active


def shutdown() -> float:
    """Export what is buffered and stop; returns the seconds it took. Idempotent, never raises.

    Traces and metrics shut down in parallel, and the wait is bounded by the export timeout plus
    :data:`SHUTDOWN_MARGIN_S`: with the collector down, the job loses its telemetry, not its time.
    """
    global _active
    with _lock:
        installed, _active = _active, None
    if installed is None:
        return 0.0
    telemetry.use_providers(None, None)
    if installed.context_token is not None:
        from opentelemetry import context

        try:
            context.detach(installed.context_token)  # type: ignore[arg-type]
        except Exception:
            logger.debug("could not detach the parent context", exc_info=True)
    started = time.perf_counter()
    timeout_s = installed.plan.timeout_s
    deadline = started + timeout_s + SHUTDOWN_MARGIN_S
    jobs: list[tuple[str, Callable[[], object]]] = []
    if installed.tracer_provider is not None:
        jobs.append(("traces", installed.tracer_provider.shutdown))
    if (mp := installed.meter_provider) is not None:
        jobs.append(("metrics", lambda: mp.shutdown(timeout_millis=timeout_s * 1000)))
    threads = [
        threading.Thread(target=_quietly, args=(fn,), name=f"cdf-{name}-shutdown", daemon=True)
        for name, fn in jobs
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.perf_counter()))
    left = [t.name for t in threads if t.is_alive()]
    if left:
        logger.warning(
            "telemetry: export not finished after %.1f s (%s); abandoned",
            time.perf_counter() - started,
            ", ".join(left),
        )
    return time.perf_counter() - started


def _quietly(fn: Callable[[], object]) -> None:
    try:
        fn()
    except Exception:
        logger.debug("telemetry shutdown step failed", exc_info=True)
