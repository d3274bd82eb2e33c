"""Tracing and metrics hooks, through the OpenTelemetry API only.

Library code calls nothing else: :func:`stage` opens a span per pipeline stage and records its
duration, :func:`set_attributes` and :func:`record_run` put a run's counts on its spans and its
metrics. With no SDK installed (telemetry off, the default) every call is a no-op costing
microseconds. ``cdf_pipeline.telemetry.setup`` installs the SDK at process entry points and hands
its providers to :func:`use_providers`. They are held here rather than registered globally because
OpenTelemetry lets a process set its global providers only once, and tests (and a host application
that brings its own) need to swap them; with none held here, the global ones are used.

Attribute values are counts, rule codes, ids, table names and exception types: never row values,
file contents or credentials (docs/observability.md lists every name). Strings still pass through
:func:`safe_value`, which strips user info from URIs, as a last line of defence.
"""

from __future__ import annotations

import logging
import re
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace import Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from cdf_pipeline.exceptions import CdfError

TRACER_NAME = "cdf_pipeline"
logger = logging.getLogger(__name__)

# Attribute names. ``pipeline.*`` are the names proposed for data pipelines in OpenTelemetry's
# semantic conventions (open-telemetry/semantic-conventions#3762, not yet adopted); ``cdf.*`` are
# this project's. docs/observability.md documents each one.
PIPELINE_NAME = "pipeline.name"
ENGINE = "pipeline.engine.name"
RUN_ID = "pipeline.run.id"
STATE = "pipeline.state"
TASK = "pipeline.task.name"
PASS_RATE = "pipeline.quality.pass_rate"
AUDITS_PASSED = "pipeline.quality.rules_passed"
AUDITS_FAILED = "pipeline.quality.rules_failed"
DESTINATIONS = "pipeline.lineage.destinations"
TENANT = "cdf.tenant"
ENTITY = "cdf.entity"
TABLE = "cdf.table"
OUTCOME = "cdf.outcome"
RULE = "cdf.rule"
FILES = "cdf.files"  # new files read (the read stage: files of its entity)
FILES_FAILED = "cdf.failed_files"
FILES_SKIPPED = "cdf.skipped_files"
FAILED_AUDITS = "cdf.audits.failed"
ROWS_PREFIX = "cdf.rows."  # + a count key: cdf.rows.read, cdf.rows.inserted, ...
BY_REASON_PREFIX = "cdf.quarantined_by_reason."  # + a rule code
SNAPSHOT_BEFORE_PREFIX = "cdf.snapshot.before."  # + namespace.table
SNAPSHOT_AFTER_PREFIX = "cdf.snapshot.after."
ERROR_TYPE = "error.type"

# Metric names (docs/observability.md).
ROWS_METRIC = "pipeline.rows"
REASONS_METRIC = "pipeline.quarantine.rows"
RUNS_METRIC = "pipeline.runs"
DURATION_METRIC = "pipeline.stage.duration"
# Stage durations run from milliseconds (planning a lazy step) to many minutes (a 1M-row stage).
DURATION_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)

MAX_STRING = 1024
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://)[^/\s@]+@")
# Environment variables as context carriers (the OpenTelemetry specification's names).
_ENV_PROPAGATOR = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
ENV_CARRIER_KEYS = ("TRACEPARENT", "TRACESTATE", "BAGGAGE")


@dataclass
class _Instruments:
    rows: metrics.Counter
    reasons: metrics.Counter
    runs: metrics.Counter
    duration: metrics.Histogram


@dataclass
class _State:
    tracer: trace.Tracer | None = None
    meter: metrics.Meter | None = None
    instruments: _Instruments | None = None
    finish: Callable[[], object] | None = None


_state = _State()


def use_providers(
    tracer_provider: trace.TracerProvider | None,
    meter_provider: metrics.MeterProvider | None,
    finish: Callable[[], object] | None = None,
) -> None:
    """Route this module's spans and metrics to these providers (None: the global ones).

    ``finish`` is what :func:`finish` calls: the installer's flush-and-stop.
    """
    _state.tracer = tracer_provider.get_tracer(TRACER_NAME) if tracer_provider else None
    _state.meter = meter_provider.get_meter(TRACER_NAME) if meter_provider else None
    _state.instruments = None
    _state.finish = finish


def finish() -> None:
    """Export what is buffered and stop telemetry for this process (bounded; a no-op when off).

    Commands whose last stdout line is read by machines call this before printing it, so that a
    collector error can only be logged before that line; ``cli.main`` calls it again at exit.
    """
    done, _state.finish = _state.finish, None
    if done is not None:
        done()


def tracer() -> trace.Tracer:
    """The installed provider's tracer, else the global one (a no-op tracer without an SDK)."""
    return _state.tracer or trace.get_tracer(TRACER_NAME)


def _instruments() -> _Instruments:
    if _state.instruments is None:
        meter = _state.meter or metrics.get_meter(TRACER_NAME)
        _state.instruments = _Instruments(
            rows=meter.create_counter(
                ROWS_METRIC, unit="{row}", description="Rows per tenant, entity and outcome"
            ),
            reasons=meter.create_counter(
                REASONS_METRIC, unit="{row}", description="Quarantined rows per rule code"
            ),
            runs=meter.create_counter(
                RUNS_METRIC, unit="{run}", description="Tenant runs per final status"
            ),
            duration=meter.create_histogram(
                DURATION_METRIC,
                unit="s",
                description="Wall time of each pipeline stage",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
            ),
        )
    return _state.instruments


_on_stage: list[Callable[[str, Mapping[str, Any]], None]] = []


def on_stage(listener: Callable[[str, Mapping[str, Any]], None] | None) -> None:
    """Call ``listener(name, attributes)`` as each stage starts (a CLI's progress line); None
    removes it. Errors in the listener are logged, never raised."""
    _on_stage.clear()
    if listener is not None:
        _on_stage.append(listener)


@contextmanager
def stage(name: str, **attributes: Any) -> Iterator[trace.Span]:
    """A span for one pipeline stage, and its duration in the ``pipeline.stage.duration`` histogram.

    An exception leaving the stage sets the span's status to ERROR and is recorded as an event
    (:func:`record_exception`: its message only when it is one of this package's own).
    """
    started = time.perf_counter()
    clean = _clean(attributes)
    for listener in _on_stage:
        try:
            listener(name, clean)
        except Exception:
            logger.debug("stage listener failed", exc_info=True)
    error: BaseException | None = None
    with tracer().start_as_current_span(
        name, attributes=clean, record_exception=False, set_status_on_exception=False
    ) as span:
        try:
            yield span
        except Exception as exc:
            error = exc
            record_exception(span, exc)
            raise
        finally:
            seconds = time.perf_counter() - started
            _record_duration(name, clean, seconds, error)
            logger.debug("stage %s took %.2f s", name, seconds)


def _record_duration(
    name: str, attributes: Mapping[str, Any], seconds: float, error: BaseException | None
) -> None:
    try:
        attrs = {TASK: name, **{k: attributes[k] for k in (TENANT, ENTITY) if k in attributes}}
        if error is not None:
            attrs[ERROR_TYPE] = type(error).__name__
        _instruments().duration.record(seconds, attrs)
    except Exception:  # telemetry never fails a job
        logger.debug("could not record the duration of stage %s", name, exc_info=True)


def safe_value(value: Any) -> Any:
    """An attribute value fit to export: URIs lose their user info, long strings are cut.

    Sequences keep their element type (OpenTelemetry wants homogeneous arrays); anything else
    becomes a string.
    """
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        text = _USERINFO.sub(r"\1***@", value)
        return text if len(text) <= MAX_STRING else text[: MAX_STRING - 3] + "..."
    if isinstance(value, Sequence):
        return [safe_value(v) for v in value]
    return safe_value(str(value))


def _clean(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {k: safe_value(v) for k, v in attributes.items() if v is not None}


def set_attributes(span: trace.Span, attributes: Mapping[str, Any]) -> None:
    """Set attributes through :func:`safe_value`; never raises."""
    try:
        span.set_attributes(_clean(attributes))
    except Exception:
        logger.debug("could not set span attributes", exc_info=True)


def safe_message(exc: BaseException) -> str:
    """The exception's message if this package wrote it, else a placeholder.

    This package's messages hold ids, codes, counts and paths only; a message from Spark, py4j or
    a driver can quote row values (a failed cast shows the value), so it stays in the job log.
    """
    if isinstance(exc, CdfError):
        return str(safe_value(str(exc)))
    return f"{type(exc).__name__} (message withheld: it may quote data; see the job log)"


def _frames(exc: BaseException) -> str:
    """Where the exception passed: file, line and function of each frame, without source lines
    (a line can be a literal) and without the message (:func:`safe_message` decides on that)."""
    frames = traceback.extract_tb(exc.__traceback__)
    text = "\n".join(f'File "{f.filename}", line {f.lineno}, in {f.name}' for f in frames)
    return text[-4 * MAX_STRING :]


def record_exception(span: trace.Span, exc: BaseException) -> None:
    """Mark ``span`` failed and add an ``exception`` event: type, safe message, code frames."""
    try:
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        frames = _frames(exc)
        span.add_event(
            "exception",
            {
                "exception.type": f"{type(exc).__module__}.{type(exc).__qualname__}",
                "exception.message": safe_message(exc),
                "exception.stacktrace": frames,
            },
        )
    except Exception:
        logger.debug("could not record an exception on a span", exc_info=True)


def record_run(
    span: trace.Span,
    attributes: Mapping[str, Any],
    *,
    tenant: str,
    status: str,
    rows: Mapping[str, Mapping[str, int]],
    reasons: Mapping[str, Mapping[str, int]],
) -> None:
    """End-of-run telemetry: ``attributes`` on the run's root span, the counts as metrics.

    ``rows``: per entity, rows per outcome; ``reasons``: per entity, rows per rule code.
    Metrics: ``pipeline.runs`` (+1 per status), ``pipeline.rows`` per entity and outcome,
    ``pipeline.quarantine.rows`` per entity and rule code. Never raises.
    """
    set_attributes(span, attributes)
    try:
        inst = _instruments()
        inst.runs.add(1, {TENANT: tenant, STATE: status})
        for entity, by_outcome in rows.items():
            base = {TENANT: tenant, ENTITY: entity, STATE: status}
            for outcome, n in by_outcome.items():
                if n:
                    inst.rows.add(n, {**base, OUTCOME: outcome})
            for code, n in reasons.get(entity, {}).items():
                inst.reasons.add(n, {**base, RULE: code})
    except Exception:
        logger.debug("could not record run metrics", exc_info=True)


def current_trace_id() -> str | None:
    """The active trace id as 32 hex digits, or None when tracing is off."""
    ctx = trace.get_current_span().get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.is_valid else None


def child_env() -> dict[str, str]:
    """``TRACEPARENT`` (and ``TRACESTATE``, ``BAGGAGE``) of the current span, for a child process.

    A launcher passes them to each child (``env={**os.environ, **child_env()}``); the child's
    ``telemetry.setup.install`` reads them, so its spans join this trace. Empty with tracing off.
    """
    carrier: dict[str, str] = {}
    _ENV_PROPAGATOR.inject(carrier)
    return {k.upper(): v for k, v in carrier.items() if k.upper() in ENV_CARRIER_KEYS}


def context_from_env(environ: Mapping[str, str]) -> Any:
    """The parent context carried by ``TRACEPARENT``/``TRACESTATE``/``BAGGAGE``, or None."""
    carrier = {k.lower(): environ[k] for k in ENV_CARRIER_KEYS if environ.get(k)}
    if "traceparent" not in carrier:
        return None
    ctx = _ENV_PROPAGATOR.extract(carrier)
    if not trace.get_current_span(ctx).get_span_context().is_valid:
        logger.warning("ignoring TRACEPARENT: not a valid W3C traceparent header")
        return None
    return ctx
