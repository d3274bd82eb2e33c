"""What a run did, as the CLI prints it and ``ops.runs`` stores it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

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
FAILED = "FAILED"


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


@dataclass
class Audit:
    name: str
    passed: bool
    detail: str


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
        return 0 if self.status in (SUCCEEDED, NOTHING_NEW, UNKNOWN_TENANT) else 1

    def to_dict(self) -> dict[str, Any]:
        """The machine-readable summary (``--json``)."""
        return {
            "tenant": self.tenant,
            "run_id": self.run_id,
            "status": self.status,
            "message": self.message,
            **{k: self.total(k) for k in COUNT_KEYS},
            "quarantined_by_reason": self.violations,
            "pass_rate": self.pass_rate,
            "seconds": round(self.seconds, 3),
            "trace_id": self.trace_id,
            "entities": {
                n: {**c.as_map(), "violations": c.violations} for n, c in self.entities.items()
            },
            "files": [asdict(f) for f in self.files],
            "skipped_files": self.skipped_files,
            "audits": [asdict(a) for a in self.audits],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False)
