"""Tracing hooks. Spans go through the OpenTelemetry API: without an SDK configured they cost
nothing; ``cdf_pipeline.telemetry_setup`` (when configured) installs exporters."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace

TRACER_NAME = "cdf_pipeline"
logger = logging.getLogger(__name__)


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


@contextmanager
def stage(name: str, **attributes: Any) -> Iterator[trace.Span]:
    """A span for one pipeline stage; exceptions are recorded and set the span's status."""
    started = time.perf_counter()
    with tracer().start_as_current_span(name, attributes=_clean(attributes)) as span:
        try:
            yield span
        finally:
            logger.debug("stage %s took %.2f s", name, time.perf_counter() - started)


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if v is not None}


def current_trace_id() -> str | None:
    """The active trace id as 32 hex digits, or None when tracing is off."""
    ctx = trace.get_current_span().get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.is_valid else None
