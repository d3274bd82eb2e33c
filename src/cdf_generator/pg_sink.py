"""Generated rows into a PostgreSQL landing database, as a customer's database would hold them.

The tables are made from the contract's DDL (:func:`~cdf_pipeline.contracts.schemas.postgres_ddl`)
in one schema per tenant, with an index on ``(source_timestamp, <primary key>)``, the order the
incremental pull reads in. Rows are streamed with ADBC's ``adbc_ingest`` (``COPY`` binary) into a
temporary staging table; GEO structs become JSON text on the way, columnar, and ``jsonb`` in SQL.

* Batch 1 (first load) replaces the table's rows with every row as generated, duplicates and
  anomalies included (a landing table has no constraints); running it again gives the same table.
* A change batch applies the rows as upserts from the customer's application would: a key already
  in the table is UPDATEd in place by the batch's newest version of it, but only when that
  version is newer (``source_timestamp``) than the row held, so an update moves the row's
  timestamp forward and the next pull sees it; a late, older version is not applied (a database
  keeps the newest state, so late versions never reach a PostgreSQL landing zone). Keys not in the
  table are inserted, duplicates included.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from cdf_generator.shapes import json_geo
from cdf_pipeline.contracts import Entity, Kind
from cdf_pipeline.contracts.schemas import postgres_ddl
from cdf_pipeline.postgres.connection import query_error, quote_ident

POSITION = "__pos"


@dataclass(frozen=True)
class PgLoad:
    """What one (tenant, entity) load did to its landing table."""

    table: str
    rows: int
    inserted: int
    updated: int


def geo_json(arr: pa.Array) -> pa.Array:
    """struct<lat, lon> as JSON text; a null struct stays null, a null part is JSON ``null``."""
    lat = pc.fill_null(arr.field("lat").cast(pa.string()), "null")
    lon = pc.fill_null(arr.field("lon").cast(pa.string()), "null")
    struct = pa.StructArray.from_arrays([lat, lon], names=["lat", "lon"])
    text = json_geo(struct)
    return pc.if_else(pc.is_null(arr), pa.scalar(None, pa.string()), text)


def pg_shape(table: pa.Table, entity: Entity, offset: int) -> pa.RecordBatch:
    """A contract-typed chunk as the staging table's batch: GEO as text, plus the file position."""
    arrays = [
        geo_json(table.column(f.name).combine_chunks())
        if f.kind is Kind.GEO
        else table.column(f.name).combine_chunks()
        for f in entity.fields
    ]
    arrays.append(pa.array(range(offset, offset + table.num_rows), pa.int64()))
    return pa.RecordBatch.from_arrays(arrays, names=[*entity.field_names, POSITION])


def staging_schema(entity: Entity, sample: pa.Table) -> pa.Schema:
    return pg_shape(sample, entity, 0).schema


def load_entity(
    conn: Any, schema: str, entity: Entity, batch: int, chunks: Iterable[pa.Table]
) -> PgLoad:
    """Create ``schema.<entity>`` if needed and load ``chunks`` (batch 1: insert; else upsert)."""
    from adbc_driver_manager import Error as AdbcError

    target = f"{quote_ident(schema)}.{quote_ident(entity.name)}"
    stage = f"cdf_stage_{entity.name}"
    cur = conn.cursor()
    try:
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
        cur.execute(postgres_ddl(entity, schema=schema))
        cursor_idx = quote_ident(f"{entity.name}_cursor_idx")
        cur.execute(
            f"CREATE INDEX IF NOT EXISTS {cursor_idx} ON {target} "
            f"(source_timestamp, {quote_ident(entity.primary_key)})"
        )
        cur.execute(f"DROP TABLE IF EXISTS {quote_ident(stage)}")
        first, rest = _peek(iter(chunks))
        if first is None:
            conn.commit()
            return PgLoad(f"{schema}.{entity.name}", 0, 0, 0)
        reader = pa.RecordBatchReader.from_batches(
            staging_schema(entity, first), _shaped(first, rest, entity)
        )
        rows = cur.adbc_ingest(stage, reader, mode="create", temporary=True)
        if batch == 1:
            cur.execute(f"TRUNCATE {target}")
        inserted, updated = (_insert if batch == 1 else _upsert)(cur, target, stage, entity)
        cur.execute(f"DROP TABLE {quote_ident(stage)}")
        conn.commit()
        # Fresh statistics, as autovacuum would give a customer's table after a while: the pull's
        # plan (index order or sort) is chosen on the real row count.
        cur.execute(f"ANALYZE {target}")
        conn.commit()
    except AdbcError as exc:
        conn.rollback()
        raise query_error(f"load of {schema}.{entity.name}", exc) from exc
    finally:
        cur.close()
    return PgLoad(f"{schema}.{entity.name}", int(rows), inserted, updated)


def _peek(chunks: Iterator[pa.Table]) -> tuple[pa.Table | None, Iterator[pa.Table]]:
    first = next(chunks, None)
    return first, chunks


def _shaped(first: pa.Table, rest: Iterator[pa.Table], entity: Entity) -> Iterator[pa.RecordBatch]:
    offset = 0
    for table in _chain(first, rest):
        yield pg_shape(table, entity, offset)
        offset += table.num_rows


def _chain(first: pa.Table, rest: Iterator[pa.Table]) -> Iterator[pa.Table]:
    yield first
    yield from rest


def _values(entity: Entity, alias: str) -> str:
    """The staging columns as the landing table's types (GEO text to ``jsonb``)."""
    return ", ".join(
        f"{alias}.{quote_ident(f.name)}::jsonb"
        if f.kind is Kind.GEO
        else f"{alias}.{quote_ident(f.name)}"
        for f in entity.fields
    )


def _names(entity: Entity) -> str:
    return ", ".join(quote_ident(f.name) for f in entity.fields)


def _insert(cur: Any, target: str, stage: str, entity: Entity) -> tuple[int, int]:
    cur.execute(
        f"INSERT INTO {target} ({_names(entity)}) SELECT {_values(entity, 's')} "
        f"FROM {quote_ident(stage)} s"
    )
    return int(cur.rowcount), 0


def _upsert(cur: Any, target: str, stage: str, entity: Entity) -> tuple[int, int]:
    pk, ts = quote_ident(entity.primary_key), quote_ident("source_timestamp")
    newest = (
        f"SELECT DISTINCT ON ({pk}) * FROM {quote_ident(stage)} "
        f"ORDER BY {pk}, {ts} DESC NULLS LAST, {POSITION} DESC"
    )
    cur.execute(
        f"UPDATE {target} t SET ({_names(entity)}) = ({_values(entity, 's')}) FROM ({newest}) s "
        f"WHERE t.{pk} = s.{pk} AND (s.{ts} > t.{ts} OR (t.{ts} IS NULL AND s.{ts} IS NOT NULL))"
    )
    updated = int(cur.rowcount)
    cur.execute(
        f"INSERT INTO {target} ({_names(entity)}) SELECT {_values(entity, 's')} "
        f"FROM {quote_ident(stage)} s WHERE NOT EXISTS "
        f"(SELECT 1 FROM {target} t WHERE t.{pk} = s.{pk})"
    )
    return int(cur.rowcount), updated
