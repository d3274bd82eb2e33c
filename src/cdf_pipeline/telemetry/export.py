"""The JSON-lines span exporter: a run's spans in a local file, to read offline without a collector.

One JSON object per span and line (``trace_id``, ``span_id``, ``parent_id``, ``name``, ``kind``,
``start``, ``end``, ``duration_ms``, ``status``, ``attributes``, ``events``, ``resource``),
appended, so successive runs (and parallel tenant jobs, one ``write`` per batch) share one file.
Imported only when the SDK is installed (it needs ``opentelemetry-sdk``).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

logger = logging.getLogger(__name__)


def _iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).isoformat(timespec="microseconds")


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """One span as a plain JSON-ready dict (ids as lowercase hex, times as ISO-8601 UTC)."""
    ctx = span.get_span_context()
    parent = span.parent
    start, end = span.start_time, span.end_time
    return {
        "trace_id": f"{ctx.trace_id:032x}" if ctx else None,
        "span_id": f"{ctx.span_id:016x}" if ctx else None,
        "parent_id": f"{parent.span_id:016x}" if parent else None,
        "name": span.name,
        "kind": span.kind.name,
        "start": _iso(start),
        "end": _iso(end),
        "duration_ms": round((end - start) / 1e6, 3) if start and end else None,
        "status": {"code": span.status.status_code.name, "description": span.status.description},
        "attributes": dict(span.attributes or {}),
        "events": [
            {"name": e.name, "time": _iso(e.timestamp), "attributes": dict(e.attributes or {})}
            for e in span.events
        ],
        "resource": dict(span.resource.attributes),
    }


class JsonLinesSpanExporter(SpanExporter):
    """Append each exported span to ``path`` as one JSON line (the folder is created if needed)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._warned = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        text = "".join(json.dumps(span_record(s), default=str) + "\n" for s in spans)
        try:
            with self._lock:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(text)
        except OSError as exc:
            if not self._warned:  # once: a full disk must not flood the job log
                logger.warning("cannot write spans to %s: %s", self.path, exc.strerror)
                self._warned = True
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Nothing to release: the file is opened per batch."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def read_spans(path: str | Path) -> list[dict[str, Any]]:
    """Every span of a JSON-lines file, in file order (for tests and offline inspection)."""
    with Path(path).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
