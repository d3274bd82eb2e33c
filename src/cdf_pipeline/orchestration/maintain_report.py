"""What ``cdf maintain`` did: per table, per tenant, per check; as text for a person and as one
JSON line for a scheduler, with the exit code that sums it up.

Exit codes: 3 when a tenant was busy (its lease held by a run or another maintenance, so nothing
was done for it: try again later), else 1 when a check failed or a lost table was left lost
(``--repair`` without ``--drop-broken`` and no metadata file to bring it back from), else 0.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cdf_pipeline.exit_codes import EXIT_BUSY, EXIT_FAILED, EXIT_OK
from cdf_pipeline.lakehouse.checks import CheckResult
from cdf_pipeline.lakehouse.maintenance import FileStats
from cdf_pipeline.lakehouse.recovery import DROPPED, REREGISTERED, Recovery
from cdf_pipeline.lakehouse.repair import Repair

MAINTAIN, CHECK, REPAIR = "maintain", "check", "repair"
MODES = (MAINTAIN, CHECK, REPAIR)
#: Per tenant: done (checks passed), BUSY (lease held, skipped), FAILED (a check failed).
OK, BUSY, FAILED = "OK", "BUSY", "FAILED"
#: The status of a repair that left a lost table lost (no surviving metadata, no --drop-broken).
TABLES_LOST = "TABLES_LOST"


@dataclass(frozen=True)
class Options:
    """Retention and safety windows (defaults in ``lakehouse.maintenance``)."""

    retain_days: float
    retain_last: int
    orphan_days: float


@dataclass
class TableReport:
    """One table: its live files before and after (over the tenants in scope), and what the
    table-wide steps did (None: not run, as with ``--tenant``)."""

    table: str  # namespace.table
    before: FileStats = field(default_factory=FileStats)
    after: FileStats = field(default_factory=FileStats)
    snapshots_expired: int | None = None
    orphans_removed: int | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "data_files_before": self.before.data_files,
            "data_files_after": self.after.data_files,
            "delete_files_before": self.before.delete_files,
            "delete_files_after": self.after.delete_files,
            "bytes_before": self.before.bytes,
            "bytes_after": self.after.bytes,
            "snapshots_expired": self.snapshots_expired,
            "orphan_files_removed": self.orphans_removed,
            "notes": self.notes,
        }


@dataclass(frozen=True)
class Busy:
    """A tenant skipped because another holder has its lease."""

    tenant: str
    owner: str
    purpose: str
    expires_in: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "owner": self.owner,
            "purpose": self.purpose,
            "expires_in_s": round(self.expires_in, 1),
        }


@dataclass
class MaintainReport:
    """Everything one ``cdf maintain`` did."""

    mode: str
    tenant: str | None  # --tenant, or None for every tenant
    started_at: datetime
    options: Options
    tenants: dict[str, str] = field(default_factory=dict)
    busy: list[Busy] = field(default_factory=list)
    tables: list[TableReport] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)
    repairs: list[Repair] = field(default_factory=list)
    #: Lost tables (current metadata file missing) found by ``--repair``, and what was done.
    lost: list[Recovery] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def tables_left_lost(self) -> bool:
        return not all(r.recovered for r in self.lost)

    @property
    def exit_code(self) -> int:
        if self.busy:
            return EXIT_BUSY
        if self.tables_left_lost or any(not c.passed for c in self.checks):
            return EXIT_FAILED
        return EXIT_OK

    @property
    def status(self) -> str:
        if self.tables_left_lost:
            return TABLES_LOST
        return {EXIT_OK: OK, EXIT_FAILED: "CHECK_FAILED", EXIT_BUSY: BUSY}[self.exit_code]

    def to_json(self) -> str:
        o = self.options
        return json.dumps(
            {
                "command": "maintain",
                "mode": self.mode,
                "tenant": self.tenant,
                "status": self.status,
                "exit_code": self.exit_code,
                "started_at": self.started_at.isoformat(),
                "seconds": round(self.seconds, 1),
                "tenants": self.tenants,
                "busy": [b.to_dict() for b in self.busy],
                "options": {
                    "retain_days": o.retain_days,
                    "retain_last": o.retain_last,
                    "orphan_days": o.orphan_days,
                },
                "tables": [t.to_dict() for t in self.tables],
                "checks": [c.to_dict() for c in self.checks],
                "repairs": [r.to_dict() for r in self.repairs],
                "lost_tables": [r.to_dict() for r in self.lost],
            },
            sort_keys=False,
        )


def human_bytes(n: int) -> str:
    """1,234,567 -> ``1.2 MB`` (decimal units, like ``ls --si``)."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # unreachable


def _headline(report: MaintainReport) -> str:
    flag = "" if report.mode == MAINTAIN else f" --{report.mode}"
    if report.tenant:
        scope = f"tenant {report.tenant}: {report.tenants.get(report.tenant, OK)}"
    else:
        states = ", ".join(f"{t} {s}" for t, s in report.tenants.items()) or "no tenant has data"
        scope = f"all tenants ({len(report.tenants)}): {states}"
    return f"cdf maintain{flag}  {scope}  {report.status}  ({report.seconds:.1f} s)"


def _optional(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def _tables_text(report: MaintainReport) -> list[str]:
    w = max([24, *(len(t.table) + 2 for t in report.tables)])  # namespace prefixes lengthen them
    lines = [
        f"  {'table':<{w}}{'data files':>16}{'delete files':>16}{'bytes':>22}"
        f"{'snapshots':>11}{'orphans':>9}",
        f"  {'':<{w}}{'before':>8}{'after':>8}{'before':>8}{'after':>8}{'before':>11}{'after':>11}"
        f"{'expired':>11}{'removed':>9}",
    ]
    for t in report.tables:
        b, a = t.before, t.after
        lines.append(
            f"  {t.table:<{w}}{b.data_files:>8,}{a.data_files:>8,}{b.delete_files:>8,}"
            f"{a.delete_files:>8,}{human_bytes(b.bytes):>11}{human_bytes(a.bytes):>11}"
            f"{_optional(t.snapshots_expired):>11}{_optional(t.orphans_removed):>9}"
        )
        lines += [f"    note: {n}" for n in t.notes]
    o = report.options
    if report.tenant:
        lines.append(
            "  snapshot expiry and orphan-file removal are table-wide: not run with --tenant"
        )
    else:
        cutoff = report.started_at - timedelta(days=o.retain_days)
        lines.append(
            f"  kept snapshots newer than {o.retain_days:g} days ({cutoff:%Y-%m-%d %H:%M} UTC) "
            f"and the last {o.retain_last}; removed unreferenced files older than "
            f"{o.orphan_days:g} days"
        )
    return lines


def _checks_text(report: MaintainReport) -> list[str]:
    lines = []
    for c in report.checks:
        mark = "ok    " if c.passed else "FAILED"
        example = f"; e.g. {', '.join(c.examples)}" if c.examples else ""
        lines.append(f"  {mark} {c.tenant:<12} {c.table:<22} {c.name}: {c.detail}{example}")
    return lines


def _repairs_text(report: MaintainReport) -> list[str]:
    lines = []
    for r in report.repairs:
        if r.keys == 0:
            lines.append(f"  {r.tenant:<12} {r.table:<22} nothing to repair")
            continue
        example = f"; e.g. {', '.join(r.examples)}" if r.examples else ""
        lines.append(
            f"  {r.tenant:<12} {r.table:<22} {r.keys:,} repeated key(s): {r.rows_moved:,} row(s) "
            f"moved to {r.quarantine_table} as {r.reason}{example}"
        )
    return lines


def _lost_text(report: MaintainReport) -> list[str]:
    lines = []
    for r in report.lost:
        head = f"  LOST {r.table}: metadata file {r.missing} is missing; "
        if r.action == REREGISTERED:
            lines.append(
                f"{head}re-registered from {r.restored_from} (commits after it are lost: send "
                "again the raw files they ingested)"
            )
        elif r.action == DROPPED:
            lines.append(
                f"{head}no older metadata file survives; dropped (no file deleted): the next run "
                "creates it empty and rebuilds it from the raw files sent again"
            )
        else:
            lines.append(
                f"{head}no older metadata file survives; left as it is: run again with "
                "--repair --drop-broken to drop it, so the next run rebuilds it from the raw files"
            )
    if report.tables_left_lost:
        lines.append("  nothing else was repaired: the tables left lost cannot be loaded")
    return lines


def format_report(report: MaintainReport) -> str:
    """The report for a person: a headline, then the tables, checks or repairs."""
    lines = [_headline(report)]
    if report.mode == MAINTAIN:
        lines += _tables_text(report)
    elif report.mode == CHECK:
        lines += _checks_text(report)
    else:
        lines += _lost_text(report) + _repairs_text(report)
    for b in report.busy:
        lines.append(
            f"  BUSY {b.tenant}: {b.purpose} by {b.owner} holds its lease "
            f"({b.expires_in:.0f} s left unless renewed); nothing done for it, try again later"
        )
    return "\n".join(lines)
