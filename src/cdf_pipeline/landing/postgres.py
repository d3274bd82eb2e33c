"""Incremental, columnar pull of one entity's PostgreSQL landing table into one Parquet file.

Rows come through ADBC's PostgreSQL driver (libpq, ``COPY (SELECT ...) TO STDOUT`` binary) as
Arrow record batches, are converted to the contract's types and streamed into a
``ParquetWriter`` (:mod:`.pg_arrow`): never a Python loop over rows, never the whole table in
memory.

Cursor. A pull takes the rows after the cursor, ``(cursor_column, pk) > (last value, last key)``,
in ``ORDER BY cursor_column, pk`` and then every other column, so even two versions of one key
with one timestamp always come out in one order: the same rows give the same bytes, hence the
same content hash. It returns the new cursor, a JSON string, and never stores it: the caller keeps
it and advances it only once the Parquet file is durable in the raw zone. A pull that finds
nothing writes no file (``path`` None, ``rows`` 0) and returns the cursor it was given.

What a cursor cannot place, and what happens then:

* rows whose cursor column is NULL, and rows stamped after the pull's own clock (the server's
  ``now()``; a future ``source_timestamp`` is a bad value or a bad clock): the first pull (no
  cursor) takes them all, but the cursor never moves past the clock, so one bad timestamp cannot
  hide every later change. Later pulls leave them and *count* them (``null_cursor_rows``,
  ``future_cursor_rows``, logged): nothing is skipped uncounted. A future row is pulled again once
  its time has come (harmless: silver finds it unchanged);
* rows deleted in the source: nothing happens; silver keeps the last version it received;
* a row changed without moving its cursor column forward, or committed after a pull with a cursor
  value older than that pull's cursor: not seen. Landing tables must move ``source_timestamp`` on
  every change (`cdf generate --to` does).

``cursor_column="xmin"`` tracks writes instead of a business timestamp: PostgreSQL's ``xmin``
system column (the transaction that wrote each row version) against the oldest transaction still
running when the last pull read (the snapshot's ``xmin``, as a 64-bit id). Every insert and update
after that pull is taken, whatever its ``source_timestamp`` (NULL, in the future, or older than
any timestamp cursor: a row made upstream long ago and inserted now), and nothing needs an index
or a trustworthy clock. The price: each pull scans the table, and rows written while a
transaction that was running at the last pull had not finished are pulled twice (harmless: silver
finds them unchanged). Rows restored by ``pg_dump``/``pg_restore`` come again once.

Schema drift. A missing primary key or cursor column is an error (no incremental pull without
them). Any other missing column is left out of the file and reported (``missing_columns``): the
silver job then treats the file like any customer file with that column missing (a required one
is a ``missing_column`` violation on every row, an optional one is null). Source columns outside
the contract are not pulled and are reported (``extra_columns``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from cdf_pipeline.contracts.model import Entity, Field, Kind
from cdf_pipeline.contracts.schemas import _POSTGRES as PG_TYPES
from cdf_pipeline.exceptions import CdfError, ConfigError, InputError
from cdf_pipeline.landing import pg_arrow
from cdf_pipeline.landing.pg_source import connect, query_error, quote_ident, quote_literal

logger = logging.getLogger(__name__)

DEFAULT_SCHEMA = "landing"
DEFAULT_CURSOR_COLUMN = "source_timestamp"
#: The write-tracking cursor (PostgreSQL's system column), see the module docstring.
XMIN = "xmin"
#: ADBC's batch size hint: the rows in flight between libpq and the writer stay a few MB.
BATCH_HINT_BYTES = 8 * 1024 * 1024
SORT_MEMORY = "64MB"
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


@dataclass(frozen=True)
class PullResult:
    """What one pull did. ``path`` is None when there was nothing new (no file written)."""

    entity: str
    table: str
    rows: int
    path: Path | None
    #: The cursor to store once ``path`` is durable (the given one when nothing was new).
    cursor: str | None
    null_cursor_rows: int = 0
    future_cursor_rows: int = 0
    missing_columns: tuple[str, ...] = ()
    extra_columns: tuple[str, ...] = ()
    #: Values nulled because the contract type cannot hold them, per column.
    unparsed: dict[str, int] = field(default_factory=dict)

    @property
    def has_rows(self) -> bool:
        return self.rows > 0


def pull_entity(
    uri: str,
    entity: Entity,
    dest: Path,
    *,
    cursor: str | None = None,
    schema: str = DEFAULT_SCHEMA,
    table: str | None = None,
    cursor_column: str = DEFAULT_CURSOR_COLUMN,
) -> PullResult:
    """Pull the rows of ``schema.table`` after ``cursor`` into the Parquet file ``dest``.

    Args:
        uri: ``postgresql://user@host:port/db``; the password comes from libpq (PGPASSWORD,
            ~/.pgpass), never from the URI.
        entity: the contract; the file has its Arrow types.
        dest: the local Parquet file to write (written whole or not at all).
        cursor: the JSON a previous pull returned, or None for a first pull.
        table: the landing table (default: the entity's name).
        cursor_column: a contract column that moves forward on every change.

    Raises:
        ConfigError: bad URI, login or server; missing schema or cursor column; a foreign cursor.
        InputError: missing table or primary key; a column PostgreSQL cannot cast to the
            contract's type; an unwritable destination.
    """
    table = table or entity.name
    name = f"{schema}.{table}"
    prev = Cursor.from_json(cursor) if cursor else None
    if prev and prev.column != cursor_column:
        raise ConfigError(
            f"the cursor of {name} was taken on {prev.column!r}, not {cursor_column!r}: keep the "
            "cursor column of a landing table, or reset its cursor to pull everything again"
        )
    source = f"{quote_ident(schema)}.{quote_ident(table)}"
    conn = connect(uri)
    try:
        with conn.cursor() as cur:
            # One snapshot (and one now()) for the checks, the counts and the rows.
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            # The ORDER BY sorts the pulled rows; more memory than the 4 MB default keeps a
            # first pull's sort from spilling in many small runs (this transaction only).
            cur.execute(f"SET LOCAL work_mem = '{SORT_MEMORY}'")
            columns = _columns(cur, schema, table)
            fields = _check_columns(entity, columns, name, cursor_column)
            arrow_schema = pg_arrow.contract_schema(entity, [f.name for f in fields])
            if cursor_column == XMIN:
                snapshot_xmin, written = _xmin_now(cur)
                nulls = future = 0
                tracker = None
                where = f"WHERE {written} >= {int(prev.value)}" if prev and prev.value else ""
                # Key, then version (the default cursor column), then the rest.
                versions = [f.name for f in fields if f.name == DEFAULT_CURSOR_COLUMN]
                sql = _select(fields, source, where, [entity.primary_key, *versions])
            else:
                kind = entity.field(cursor_column).kind
                clock = _horizon(cur, kind)
                horizon = None if clock is None else f"{quote_literal(clock)}::{PG_TYPES[kind]}"
                nulls, future = _uncounted(cur, source, cursor_column, horizon) if prev else (0, 0)
                tracker = pg_arrow.CursorTracker(
                    cursor_column, entity.primary_key, _scalar(clock, arrow_schema, cursor_column)
                )
                sql = _query(entity, fields, source, cursor_column, prev, horizon)
            cur.adbc_statement.set_options(
                **{"adbc.postgresql.batch_size_hint_bytes": str(BATCH_HINT_BYTES)}
            )
            unparsed: dict[str, int] = {}
            try:
                cur.execute(sql)
                batches = _converted(cur.fetch_record_batch(), fields, arrow_schema, unparsed)
                dictionary = pg_arrow.dictionary_columns(fields)
                rows = pg_arrow.write_parquet(batches, dest, arrow_schema, tracker, dictionary)
            except CdfError:
                raise
            except Exception as exc:  # ADBC's errors share no base class with pyarrow's
                if not type(exc).__module__.startswith("adbc_driver_manager"):
                    raise
                raise query_error(f"pull of {name}", exc) from exc
    finally:
        conn.close()
    extra = tuple(sorted(set(columns) - set(entity.field_names)))
    missing = tuple(f for f in entity.field_names if f not in columns)
    _warn(name, cursor_column, missing, extra, nulls, future, unparsed)
    if not rows:
        new_cursor = cursor
    elif tracker is None:
        new_cursor = Cursor(XMIN, snapshot_xmin, None).to_json()
    else:
        new_cursor = _new_cursor(tracker, cursor_column).to_json()
    return PullResult(
        entity.name,
        name,
        rows,
        dest if rows else None,
        new_cursor,
        nulls,
        future,
        missing,
        extra,
        unparsed,
    )


def _columns(cur: Any, schema: str, table: str) -> list[str]:
    cur.execute(
        "SELECT column_name FROM information_schema.columns "
        f"WHERE table_schema = {quote_literal(schema)} AND table_name = {quote_literal(table)} "
        "ORDER BY ordinal_position"
    )
    columns = [str(r[0]) for r in cur.fetchall()]
    if columns:
        return columns
    cur.execute(
        f"SELECT 1 FROM information_schema.schemata WHERE schema_name = {quote_literal(schema)}"
    )
    if not cur.fetchall():
        raise ConfigError(
            f"PostgreSQL schema {schema!r} does not exist (or is not visible to this user): check "
            "the landing schema setting, or create it with `cdf generate --to` / the contracts' DDL"
        )
    raise InputError(
        f"PostgreSQL table {schema}.{table} does not exist (or this user lacks SELECT on it): "
        "create it from the contract's DDL (`cdf contracts`) or check the landing schema and "
        "table names"
    )


def _check_columns(
    entity: Entity, columns: list[str], name: str, cursor_column: str
) -> list[Field]:
    if cursor_column == XMIN:
        pass  # a system column: every table has it
    elif (
        cursor_column not in entity.field_names
        or entity.field(cursor_column).kind not in CURSOR_KINDS
    ):
        raise ConfigError(
            f"cursor column {cursor_column!r} is not an orderable column of the {entity.name} "
            "contract: use a timestamp that moves on every change (default source_timestamp) "
            "or xmin (every write)"
        )
    elif cursor_column not in columns:
        raise ConfigError(
            f"cursor column {cursor_column!r} is missing from {name}: add it to the table or set "
            "the landing cursor column to one the table has (or xmin)"
        )
    if entity.primary_key not in columns:
        raise InputError(
            f"primary key column {entity.primary_key!r} is missing from {name}: the table must "
            "have the contract's primary key (see `cdf contracts`)"
        )
    return [f for f in entity.fields if f.name in columns]


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
            value = f"{quote_literal(prev.value)}::{PG_TYPES[entity.field(cursor_column).kind]}"
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


def _converted(
    reader: pa.RecordBatchReader, fields: list[Field], schema: pa.Schema, unparsed: dict[str, int]
) -> Iterator[pa.RecordBatch]:
    for raw in reader:
        if raw.num_rows:
            yield pg_arrow.to_contract(raw, fields, schema, unparsed)


def _new_cursor(tracker: pg_arrow.CursorTracker, cursor_column: str) -> Cursor:
    """The cursor at the tracked row (two scalars, not a row loop)."""
    value = tracker.value.as_py() if tracker.value is not None else None
    key = tracker.key.as_py() if tracker.key is not None else None
    text = value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else value
    return Cursor(
        cursor_column, None if text is None else str(text), None if key is None else str(key)
    )


def _warn(
    name: str,
    cursor_column: str,
    missing: tuple[str, ...],
    extra: tuple[str, ...],
    nulls: int,
    future: int,
    unparsed: dict[str, int],
) -> None:
    if missing:
        logger.warning("columns missing from %s (left out of the file): %s", name, missing)
    if extra:
        logger.warning("columns of %s outside the contract (not pulled): %s", name, extra)
    if nulls or future:
        logger.warning(
            "%s: %d rows with a NULL %s and %d stamped after the pull's clock were not pulled",
            name, nulls, cursor_column, future,
        )  # fmt: skip
    if unparsed:
        logger.warning("%s: values nulled, not representable in the contract: %s", name, unparsed)
