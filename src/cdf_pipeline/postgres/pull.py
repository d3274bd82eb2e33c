"""Incremental, columnar pull of one entity's PostgreSQL landing table into one Parquet file.

Rows come through ADBC's PostgreSQL driver (libpq, ``COPY (SELECT ...) TO STDOUT`` binary) as
Arrow record batches, are converted to the contract's types and streamed into a
``ParquetWriter`` (:mod:`.arrow`): never a Python loop over rows, never the whole table in
memory.

Cursor. With a column cursor, a pull takes the rows after it, ``(cursor_column, pk) > (last
value, last key)``, in ``ORDER BY cursor_column, pk`` and then every other column, so even two
versions of one key with one timestamp always come out in one order: the same rows give the same
bytes, hence the same content hash (the ``xmin`` cursor, the configured default, is below). It
returns the new cursor, a JSON string, and never stores it: the caller keeps
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
or a trustworthy clock. Its rows come in the heap's order, unsorted (a sort cost 20-30 % of a
first pull), from one backend with synchronized scans off, so an unchanged table gives the same
bytes again. The price: each pull scans the table, and rows written while a
transaction that was running at the last pull had not finished are pulled twice (harmless: silver
finds them unchanged). Rows restored by ``pg_dump``/``pg_restore`` come again once.

Schema drift. A missing primary key or cursor column is an error (no incremental pull without
them). Any other missing column is left out of the file and reported (``missing_columns``): the
silver job then treats the file like any customer file with that column missing (a required one
is a ``missing_column`` violation on every row, an optional one is null). Source columns outside
the contract are not pulled and are reported (``extra_columns``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from cdf_pipeline.contracts.model import Entity, Field
from cdf_pipeline.exceptions import CdfError, ConfigError, InputError
from cdf_pipeline.postgres import arrow as pg_arrow
from cdf_pipeline.postgres.connection import connect, query_error, quote_ident, quote_literal
from cdf_pipeline.postgres.cursor import (
    CURSOR_KINDS,
    DEFAULT_CURSOR_COLUMN,
    XMIN,
    Cursor,
    plan_rows,
)

logger = logging.getLogger(__name__)

DEFAULT_SCHEMA = "landing"
#: ADBC's batch size hint: the rows in flight between libpq and the writer stay a few MB.
BATCH_HINT_BYTES = 8 * 1024 * 1024
SORT_MEMORY = "64MB"


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
            # A column cursor's ORDER BY sorts the pulled rows; more memory than the 4 MB default
            # keeps a first pull's sort from spilling in many small runs (this transaction only).
            cur.execute(f"SET LOCAL work_mem = '{SORT_MEMORY}'")
            # An unsorted (xmin) pull reads the heap from its first page, in one backend: a
            # synchronized scan may start mid-table and parallel workers interleave their rows,
            # and either would give the same rows other bytes.
            cur.execute("SET LOCAL synchronize_seqscans = off")
            cur.execute("SET LOCAL max_parallel_workers_per_gather = 0")
            columns = _columns(cur, schema, table)
            fields = _check_columns(entity, columns, name, cursor_column)
            arrow_schema = pg_arrow.contract_schema(entity, [f.name for f in fields])
            plan = plan_rows(cur, entity, fields, source, cursor_column, prev, arrow_schema)
            cur.adbc_statement.set_options(
                **{"adbc.postgresql.batch_size_hint_bytes": str(BATCH_HINT_BYTES)}
            )
            unparsed: dict[str, int] = {}
            try:
                cur.execute(plan.sql)
                batches = _converted(cur.fetch_record_batch(), fields, arrow_schema, unparsed)
                dictionary = pg_arrow.dictionary_columns(fields)
                stats = pg_arrow.statistics_columns(fields)
                rows = pg_arrow.write_parquet(
                    batches, dest, arrow_schema, plan.tracker, dictionary, stats
                )
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
    nulls, future = plan.null_rows, plan.future_rows
    _warn(name, cursor_column, missing, extra, nulls, future, unparsed)
    new_cursor = plan.next_cursor().to_json() if rows else cursor
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


def _converted(
    reader: pa.RecordBatchReader, fields: list[Field], schema: pa.Schema, unparsed: dict[str, int]
) -> Iterator[pa.RecordBatch]:
    for raw in reader:
        if raw.num_rows:
            yield pg_arrow.to_contract(raw, fields, schema, unparsed)


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
            name,
            nulls,
            cursor_column,
            future,
        )
    if unparsed:
        logger.warning("%s: values nulled, not representable in the contract: %s", name, unparsed)
