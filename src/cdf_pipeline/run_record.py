"""What a run did: the one run record.

:data:`RUN_RECORD` declares each field of a run once; the ``ops.runs`` DDL, the rows written to
it, the ``--json`` summary and the run span's attributes all derive from it (the printed table
reads the same counts). A field may be stored only, printed only, or both, under one name each.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from cdf_pipeline import telemetry as T
from cdf_pipeline.exit_codes import EXIT_BUSY, EXIT_FAILED, EXIT_OK, EXIT_USAGE

COUNT_KEYS = (
    "read",
    "inserted",
    "updated",
    "unchanged",
    "stale",
    "quarantined",
    "duplicates_dropped",
    "promoted",
)

SUCCEEDED = "SUCCEEDED"
PARTIAL = "SUCCEEDED_WITH_ERRORS"  # some files failed; the others were published
AUDIT_FAILED = "AUDIT_FAILED"
NOTHING_NEW = "NOTHING_NEW"
UNKNOWN_TENANT = "UNKNOWN_TENANT"
BUSY = "BUSY"  # another run held the tenant's lease: nothing was read or written
FAILED = "FAILED"
#: A run's record while it publishes: written before its first publish write, replaced by its
#: final record once its files are in the manifest. One left behind is a run that was killed;
#: the tenant's next run finishes it (pipeline/silver.py). Never summed as a success.
PUBLISHING = "PUBLISHING"


@dataclass
class EntityCounts:
    """Row counts of one entity in one run."""

    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    stale: int = 0
    quarantined: int = 0
    duplicates_dropped: int = 0
    promoted: int = 0
    violations: dict[str, int] = field(default_factory=dict)

    def as_map(self) -> dict[str, int]:
        return {k: int(getattr(self, k)) for k in COUNT_KEYS}

    def span_attributes(self) -> dict[str, Any]:
        """``cdf.rows.<outcome>`` and ``cdf.quarantined_by_reason.<code>`` of one entity."""
        return {
            **{T.ROWS_PREFIX + k: n for k, n in self.as_map().items()},
            **{T.BY_REASON_PREFIX + code: n for code, n in self.violations.items()},
        }


@dataclass
class Audit:
    name: str
    passed: bool
    detail: str


#: A raw object's outcome when it is not data (the reason in ``note``): reported, never read.
FILE_IGNORED = "IGNORED"


@dataclass
class FileResult:
    entity: str
    file: str
    sha256: str
    rows: int | None
    status: str
    error: str | None = None
    note: str | None = None  # schema drift found in the file (reported, not an error)


@dataclass
class RunSummary:
    """The outcome of one tenant run."""

    tenant: str
    run_id: str
    status: str
    message: str = ""
    seconds: float = 0.0
    trace_id: str | None = None
    entities: dict[str, EntityCounts] = field(default_factory=dict)
    files: list[FileResult] = field(default_factory=list)
    skipped_files: int = 0
    audits: list[Audit] = field(default_factory=list)
    snapshots_before: dict[str, int] = field(default_factory=dict)
    snapshots_after: dict[str, int] = field(default_factory=dict)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    rule_set_version: str = ""

    def total(self, key: str) -> int:
        return sum(getattr(c, key) for c in self.entities.values())

    @property
    def violations(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for counts in self.entities.values():
            for code, n in counts.violations.items():
                out[code] = out.get(code, 0) + n
        return dict(sorted(out.items()))

    @property
    def pass_rate(self) -> float:
        read = self.total("read") + self.total("promoted")
        return 1.0 if read == 0 else round(1 - self.total("quarantined") / read, 6)

    @property
    def exit_code(self) -> int:
        """0 done (or nothing new), 1 bad data (a file failed, an audit held the publish),
        2 an unknown tenant: a typo is a usage error a scheduler must not show as green,
        3 busy: another run of the tenant was under way (retry later, or ``--wait``)."""
        if self.status in (SUCCEEDED, NOTHING_NEW):
            return EXIT_OK
        if self.status == BUSY:
            return EXIT_BUSY
        return EXIT_USAGE if self.status == UNKNOWN_TENANT else EXIT_FAILED

    def row(self) -> dict[str, Any]:
        """The run's ``ops.runs`` row."""
        return {f.name: f.value(self) for f in RUN_RECORD if f.sql is not None}

    def to_dict(self) -> dict[str, Any]:
        """The machine-readable summary (``--json``)."""
        return {f.json: f.value(self) for f in RUN_RECORD if f.json is not None}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False, default=str)

    def span_attributes(self) -> dict[str, Any]:
        """The attributes the run's root span ends with (see docs/observability.md)."""
        attrs: dict[str, Any] = {}
        for f in RUN_RECORD:
            if f.span is None:
                continue
            value = f.value(self)
            if isinstance(value, dict):
                attrs.update({f.span + str(k): v for k, v in value.items()})
            elif value is not None:
                attrs[f.span] = value
        changed = sorted(
            t for t, i in self.snapshots_after.items() if self.snapshots_before.get(t) != i
        )
        if changed:
            attrs[T.DESTINATIONS] = changed
        return attrs


def trace_run(span: Any, run: RunSummary) -> None:
    """End-of-run telemetry: the record's attributes on the root span, its counts as metrics."""
    T.record_run(
        span,
        run.span_attributes(),
        tenant=run.tenant,
        status=run.status,
        rows={name: c.as_map() for name, c in run.entities.items()},
        reasons={name: c.violations for name, c in run.entities.items()},
    )


@dataclass(frozen=True)
class RecordField:
    """One field of the run record and where it goes.

    ``sql``: its Iceberg type in ``ops.runs`` (None: not stored); ``json``: its key in the
    ``--json`` summary (None: not printed); ``span``: its span attribute, or the prefix of one
    attribute per key for a mapping (None: not on the span).
    """

    name: str
    sql: str | None
    value: Callable[[RunSummary], Any]
    json: str | None = None
    span: str | None = None


def _total(key: str) -> Callable[[RunSummary], int]:
    return lambda r: r.total(key)


def _audits_passed(r: RunSummary) -> int | None:
    return sum(a.passed for a in r.audits) if r.audits else None


def _audits_failed(r: RunSummary) -> int | None:
    return sum(not a.passed for a in r.audits) if r.audits else None


_INPUT_SQL = (
    "array<struct<entity:string,file:string,sha256:string,rows:bigint,"
    "status:string,error:string,note:string>>"
)


def _files_read(r: RunSummary) -> int:
    return sum(1 for f in r.files if f.rows is not None and not f.error)


def _failed_audits(r: RunSummary) -> list[str] | None:
    return [a.name for a in r.audits if not a.passed] if r.audits else None


def _entities(r: RunSummary) -> dict[str, dict[str, Any]]:
    return {n: {**c.as_map(), "violations": c.violations} for n, c in r.entities.items()}


_F = RecordField
_AUDITS_SQL = "array<struct<name:string,passed:boolean,detail:string>>"
_COUNTS_SQL = "map<string,map<string,bigint>>"

RUN_RECORD: tuple[RecordField, ...] = (
    _F("tenant_id", "string", lambda r: r.tenant, json="tenant", span=T.TENANT),
    _F("run_id", "string", lambda r: r.run_id, json="run_id", span=T.RUN_ID),
    _F("trace_id", "string", lambda r: r.trace_id, json="trace_id"),
    _F("status", "string", lambda r: r.status, json="status", span=T.STATE),
    _F("message", "string", lambda r: r.message, json="message"),
    _F("started_at", "timestamp", lambda r: r.started_at),
    _F("finished_at", "timestamp", lambda r: r.finished_at),
    _F("duration_s", "double", lambda r: round(r.seconds, 3), json="seconds"),
    _F("inputs", _INPUT_SQL, lambda r: [asdict(f) for f in r.files], json="files"),
    *(_F(k, "bigint", _total(k), json=k, span=T.ROWS_PREFIX + k) for k in COUNT_KEYS),
    _F("pass_rate", "double", lambda r: r.pass_rate, json="pass_rate", span=T.PASS_RATE),
    _F("entity_counts", _COUNTS_SQL, lambda r: {n: c.as_map() for n, c in r.entities.items()}),
    _F("entities", None, _entities, json="entities"),
    _F(
        "violation_counts",
        "map<string,bigint>",
        lambda r: r.violations,
        json="quarantined_by_reason",
        span=T.BY_REASON_PREFIX,
    ),
    _F("files_read", None, _files_read, span=T.FILES),
    _F("files_failed", None, lambda r: sum(1 for f in r.files if f.error), span=T.FILES_FAILED),
    _F(
        "skipped_files", None, lambda r: r.skipped_files, json="skipped_files", span=T.FILES_SKIPPED
    ),
    _F(
        "snapshots_before",
        "map<string,bigint>",
        lambda r: r.snapshots_before,
        span=T.SNAPSHOT_BEFORE_PREFIX,
    ),
    _F(
        "snapshots_after",
        "map<string,bigint>",
        lambda r: r.snapshots_after,
        span=T.SNAPSHOT_AFTER_PREFIX,
    ),
    _F("audits", _AUDITS_SQL, lambda r: [asdict(a) for a in r.audits], json="audits"),
    _F("audits_passed", None, _audits_passed, span=T.AUDITS_PASSED),
    _F("audits_failed", None, _audits_failed, span=T.AUDITS_FAILED),
    _F("failed_audits", None, _failed_audits, span=T.FAILED_AUDITS),
    _F("rule_set_version", "string", lambda r: r.rule_set_version),
)


def runs_columns_sql() -> str:
    """The ``ops.runs`` columns, in record order."""
    return ",\n  ".join(f"`{f.name}` {f.sql}" for f in RUN_RECORD if f.sql is not None)


def format_summary(s: RunSummary) -> str:
    """A short human-readable summary of one run."""
    lines = [f"tenant {s.tenant}  run {s.run_id}  {s.status}  ({s.seconds:.1f} s)"]
    if s.message:
        lines.append(f"  {s.message}")
    if s.entities:
        labels = [k.replace("duplicates_", "dup.") for k in COUNT_KEYS]
        lines.append(f"  {'entity':<10}" + "".join(f"{k:>12}" for k in labels))
        for name, c in s.entities.items():
            lines.append(f"  {name:<10}" + "".join(f"{v:>12,}" for v in c.as_map().values()))
        lines.append(f"  pass rate {s.pass_rate:.2%}")
        if s.violations:
            lines.append(
                "  quarantined by reason: "
                + ", ".join(f"{k} {v:,}" for k, v in s.violations.items())
            )
    for f in s.files:
        if f.error:
            lines.append(f"  FAILED {f.file}: {f.error}")
        elif f.status == FILE_IGNORED:
            lines.append(f"  IGNORED {f.file}: {f.note}")
        elif f.note:
            lines.append(f"  DRIFT {f.file}: {f.note}")
    return "\n".join(lines)
