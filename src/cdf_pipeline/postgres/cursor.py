"""Which rows a pull takes, in which order, and where the next pull starts (the cursor).

Two kinds of cursor (see :mod:`.pull` for what each can and cannot see):

* a contract column (default ``source_timestamp``) plus the primary key: ``(column, pk) >
  (last value, last key)``, ordered by ``column, pk``; never past the pull's clock;
* ``xmin``: the rows written since the oldest transaction still running at the last pull, in
  the table's physical order (no sort: the cursor does not depend on the order).

A column cursor orders by every other column after its leading keys: a total order on the rows'
content, so the same rows always give the same bytes. An ``xmin`` pull reads the heap in order
(one backend, synchronized scans off: see :mod:`.pull`), so an unchanged table gives the same
bytes again; measured, the sort cost a first pull of 1M suppliers 20-30 % of its time
(docs/benchmarks.md). A table rewritten in between (``VACUUM FULL``, ``CLUSTER``) gives its same
rows in other bytes: a second raw file whose rows the silver job finds unchanged.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from cdf_pipeline.contracts.model import Entity, Field, Kind
from cdf_pipeline.contracts.schemas import postgres_type
from cdf_pipeline.exceptions import ConfigError
from cdf_pipeline.postgres import arrow as pg_arrow
from cdf_pipeline.postgres.connection import quote_ident, quote_literal

DEFAULT_CURSOR_COLUMN = "source_timestamp"
#: The write-tracking cursor (PostgreSQL's system column).
XMIN = "xmin"
CURSOR_KINDS = frozenset(
    {Kind.TIMESTAMP, Kind.DATE, Kind.INT, Kind.DOUBLE, Kind.DECIMAL, Kind.STRING}
)
#: The pull's clock per cursor kind; other kinds have no "future".
_CLOCK = {Kind.TIMESTAMP: "now()", Kind.DATE: "current_date"}


@dataclass(frozen=True)
class Cursor:
    """Where the last pull ended: the cursor column's value and the primary key of that row.

    ``value`` is None after a first pull in which no row had a usable cursor value (NULL or in
    the future): the next pull takes every row with one.
    """

    column: str
    value: str | None
    key: str | None

    def to_json(self) -> str:
        return json.dumps({"column": self.column, "value": self.value, "key": self.key})

    @classmethod
    def from_json(cls, text: str) -> Cursor:
        try:
            data = json.loads(text)
            return cls(str(data["column"]), data["value"], data["key"])
        except (ValueError, TypeError, KeyError):
            raise ConfigError(
                "unreadable landing cursor: it must be the JSON a pull returned; reset it to pull "
                "the table again from the start"
            ) from None


@dataclass
class RowPlan:
    """The pull's SELECT, what it leaves (counted), and how to read the next cursor from it."""

    sql: str
    column: str
    tracker: pg_arrow.CursorTracker | None = None
    null_rows: int = 0
    future_rows: int = 0
    snapshot_xmin: str | None = None

    def next_cursor(self) -> Cursor:
        """The cursor after the pulled rows (call once they are all written)."""
        if self.tracker is None:
            return Cursor(XMIN, self.snapshot_xmin, None)
        return _new_cursor(self.tracker, self.column)


def plan_rows(
    cur: Any,
    entity: Entity,
    fields: list[Field],
    source: str,
    cursor_column: str,
    prev: Cursor | None,
    arrow_schema: pa.Schema,
) -> RowPlan:
    """Plan a pull inside its (repeatable read) transaction: counts, clock or snapshot, SQL."""
    if cursor_column == XMIN:
        snapshot_xmin, written = _xmin_now(cur)
        where = f"WHERE {written} >= {int(prev.value)}" if prev and prev.value else ""
        sql = f"SELECT {pg_arrow.select_list(fields)} FROM {source} {where}".rstrip()
        return RowPlan(sql, XMIN, snapshot_xmin=snapshot_xmin)
    kind = entity.field(cursor_column).kind
    clock = _horizon(cur, kind)
    horizon = None if clock is None else f"{quote_literal(clock)}::{postgres_type(kind)}"
    nulls, future = _uncounted(cur, source, cursor_column, horizon) if prev else (0, 0)
    tracker = pg_arrow.CursorTracker(
        cursor_column, entity.primary_key, _scalar(clock, arrow_schema, cursor_column)
    )
    sql = _query(entity, fields, source, cursor_column, prev, horizon)
    return RowPlan(sql, cursor_column, tracker, nulls, future)


def _horizon(cur: Any, kind: Kind) -> str | None:
    """The pull's clock (the transaction's ``now()``) as text, for a time-like cursor column."""
    if kind not in _CLOCK:
        return None
    cur.execute(f"SELECT ({_CLOCK[kind]})::text")
    return str(cur.fetchall()[0][0])


def _scalar(horizon: str | None, schema: pa.Schema, column: str) -> pa.Scalar | None:
    return None if horizon is None else pa.scalar(horizon).cast(schema.field(column).type)


def _uncounted(cur: Any, source: str, cursor_column: str, horizon: str | None) -> tuple[int, int]:
    """Rows a later pull leaves: (NULL cursor, cursor after the pull's clock)."""
    c = quote_ident(cursor_column)
    future = f"count(*) FILTER (WHERE {c} > {horizon})" if horizon else "0"
    cur.execute(f"SELECT count(*) FILTER (WHERE {c} IS NULL), {future} FROM {source}")
    nulls, late = cur.fetchall()[0]
    return int(nulls), int(late)


def _query(
    entity: Entity,
    fields: list[Field],
    source: str,
    cursor_column: str,
    prev: Cursor | None,
    horizon: str | None,
) -> str:
    """The pull's SELECT. The cursor's values are inlined as literals: ADBC streams (COPY) only
    statements without bind parameters."""
    c, pk = quote_ident(cursor_column), quote_ident(entity.primary_key)
    where: list[str] = []
    if prev is not None:
        where.append(f"{c} IS NOT NULL")
        if horizon:
            where.append(f"{c} <= {horizon}")
        if prev.value is not None:
            kind = entity.field(cursor_column).kind
            value = f"{quote_literal(prev.value)}::{postgres_type(kind)}"
            where.append(
                f"{c} > {value}"
                if prev.key is None
                else f"({c}, {pk}) > ({value}, {quote_literal(prev.key)}::text)"
            )
    # Ascending, NULLs last: the order of a plain (cursor, key) index, which PostgreSQL can then
    # read instead of sorting (the other columns only order exact-key ties, an incremental sort).
    condition = f"WHERE {' AND '.join(where)}" if where else ""
    return _select(fields, source, condition, [cursor_column, entity.primary_key])


def _select(fields: list[Field], source: str, where: str, first: list[str]) -> str:
    """SELECT of ``fields`` ordered by ``first``, then every other column: a total order on the
    rows' content, so the same rows always come out in the same order."""
    rest = [f.name for f in fields if f.name not in first]
    order = ", ".join(quote_ident(name) for name in [*first, *rest])
    return f"SELECT {pg_arrow.select_list(fields)} FROM {source} {where} ORDER BY {order}"


def _xmin_now(cur: Any) -> tuple[str, str]:
    """(this snapshot's xmin as a 64-bit id, the SQL of each row's ``xmin`` as a 64-bit id).

    ``xmin`` is 32 bits and wraps; the snapshot's ``xmax`` gives the current epoch, and a row id
    above its low 32 bits comes from the previous epoch (a live row is never 2^31 ids old:
    PostgreSQL freezes it first, and a frozen row at worst maps to a newer id and comes again).
    """
    cur.execute(
        "SELECT pg_snapshot_xmin(s)::text, pg_snapshot_xmax(s)::text FROM pg_current_snapshot() s"
    )
    xmin, xmax = (int(v) for v in cur.fetchall()[0])
    epoch, low = xmax >> 32, xmax & 0xFFFFFFFF
    row = "xmin::text::bigint"
    base = f"CASE WHEN {row} <= {low} THEN {epoch << 32} ELSE {max(epoch - 1, 0) << 32} END"
    return str(xmin), f"({base} + {row})"


def _new_cursor(tracker: pg_arrow.CursorTracker, cursor_column: str) -> Cursor:
    """The cursor at the tracked row (two scalars, not a row loop)."""
    value = tracker.value.as_py() if tracker.value is not None else None
    key = tracker.key.as_py() if tracker.key is not None else None
    text = value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else value
    return Cursor(
        cursor_column, None if text is None else str(text), None if key is None else str(key)
    )
