"""One row of the landing manifest (``ops.landed_files``): what was seen, where it went, and why.

The dataclass is the one definition: the table's columns, its rows and the JSON summary are all
derived from its fields, in order. It lives with the tables (``tables`` derives the manifest's DDL
from it) rather than in ``landing``, which writes the rows: the lakehouse is below landing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any, get_type_hints

#: Outcomes. LANDED: copied into raw. DUPLICATE: its bytes were landed before (under any name),
#: nothing written. UNMATCHED: no entity's naming rule matches it (or not CSV/Parquet); reported,
#: never moved. FAILED: could not be landed (the reason is in ``detail``); tried again next time.
LANDED, DUPLICATE, UNMATCHED, FAILED = "LANDED", "DUPLICATE", "UNMATCHED", "FAILED"
OUTCOMES = (LANDED, DUPLICATE, UNMATCHED, FAILED)


@dataclass
class LandedObject:
    """One landing object (a file, or one pull of a PostgreSQL table) and what became of it."""

    tenant_id: str
    #: The object's URI (``s3://…``, a local path, ``postgresql://host:port/db/schema.table``).
    source: str
    #: What tells a changed object at the same URI apart: ``<size>:<mtime in ns>`` for files.
    version: str
    size: int
    outcome: str
    entity: str | None = None
    sha256: str | None = None
    #: The raw file it became (LANDED), or the raw file holding the same bytes (DUPLICATE).
    raw_file: str | None = None
    #: Rows pulled (PostgreSQL); files are counted by the silver job.
    rows: int | None = None
    #: The PostgreSQL cursor after this pull: where the next pull starts.
    cursor: str | None = None
    detail: str | None = None
    land_id: str = ""
    landed_at: datetime | None = None

    def row(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_dict(self) -> dict[str, Any]:
        out = self.row()
        out["landed_at"] = self.landed_at.isoformat() if self.landed_at else None
        return out


_SQL_TYPES = {str: "string", int: "bigint", datetime: "timestamp"}


def _sql_type(hint: Any) -> str:
    base = next(t for t in getattr(hint, "__args__", (hint,)) if t is not type(None))
    return _SQL_TYPES[base]


def columns_sql() -> str:
    """The manifest table's column list for ``CREATE TABLE`` (Spark SQL types)."""
    hints = get_type_hints(LandedObject)
    return ",\n  ".join(
        f"`{f.name}` {_sql_type(hints[f.name])}" for f in dataclasses.fields(LandedObject)
    )
