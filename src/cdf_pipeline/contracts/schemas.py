"""Schemas derived from the contracts: Arrow (generator), Spark, Iceberg DDL and PostgreSQL DDL.

Nothing here lists a field by hand; each function walks ``Entity.fields`` and maps ``Kind``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

from cdf_pipeline.contracts.model import Entity, Kind

if TYPE_CHECKING:
    from pyspark.sql import types as T

#: Provenance columns every silver row carries, after the contract fields.
LINEAGE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("_run_id", "string", "Run that last wrote the row"),
    ("_source_file", "string", "Raw file the winning version came from"),
    ("_ingested_at", "timestamp", "When that run wrote the row"),
    ("_row_hash", "string", "xxHash64 of the content fields; equal hashes mean an unchanged row"),
)

_ARROW: dict[Kind, pa.DataType] = {
    Kind.STRING: pa.string(),
    Kind.INT: pa.int32(),
    Kind.DOUBLE: pa.float64(),
    Kind.DECIMAL: pa.decimal128(18, 6),
    Kind.DATE: pa.date32(),
    Kind.TIMESTAMP: pa.timestamp("us", tz="UTC"),
    Kind.STRING_ARRAY: pa.list_(pa.string()),
    Kind.GEO: pa.struct([("lat", pa.float64()), ("lon", pa.float64())]),
}

_POSTGRES: dict[Kind, str] = {
    Kind.STRING: "TEXT",
    Kind.INT: "INTEGER",
    Kind.DOUBLE: "DOUBLE PRECISION",
    Kind.DECIMAL: "NUMERIC(18,6)",
    Kind.DATE: "DATE",
    Kind.TIMESTAMP: "TIMESTAMPTZ",
    Kind.STRING_ARRAY: "TEXT[]",
    Kind.GEO: "JSONB",  # {"lat": .., "lon": ..}; PostgreSQL has no anonymous struct type
}


def postgres_type(kind: Kind) -> str:
    """The PostgreSQL type a landing table holds a contract kind in."""
    return _POSTGRES[kind]


def arrow_schema(entity: Entity, *, enforce_required: bool = False) -> pa.Schema:
    """The Arrow schema of an entity (the generator's contract shape).

    Required fields stay nullable unless asked: dirty files carry nulls there on purpose.
    """
    return pa.schema(
        [
            pa.field(f.name, _ARROW[f.kind], nullable=not (enforce_required and f.required))
            for f in entity.fields
        ]
    )


def spark_type(kind: Kind) -> T.DataType:
    """The Spark type of one contract kind."""
    from pyspark.sql import types as T

    mapping: dict[Kind, T.DataType] = {
        Kind.STRING: T.StringType(),
        Kind.INT: T.IntegerType(),
        Kind.DOUBLE: T.DoubleType(),
        Kind.DECIMAL: T.DecimalType(18, 6),
        Kind.DATE: T.DateType(),
        Kind.TIMESTAMP: T.TimestampType(),
        Kind.STRING_ARRAY: T.ArrayType(T.StringType(), True),
        Kind.GEO: T.StructType(
            [T.StructField("lat", T.DoubleType(), True), T.StructField("lon", T.DoubleType(), True)]
        ),
    }
    return mapping[kind]


def spark_schema(entity: Entity, *, enforce_required: bool = False) -> T.StructType:
    """The Spark schema of an entity.

    Args:
        entity: the contract.
        enforce_required: mark required fields non-nullable. Off by default because the pipeline
            reads dirty data; a missing required value is a violation to record, not a crash.
    """
    from pyspark.sql import types as T

    return T.StructType(
        [
            T.StructField(f.name, spark_type(f.kind), not (enforce_required and f.required))
            for f in entity.fields
        ]
    )


def iceberg_columns_sql(entity: Entity, *, with_lineage: bool = True) -> str:
    """Column list for ``CREATE TABLE ... USING iceberg`` (Spark SQL type names)."""
    cols = [f"`{f.name}` {spark_type(f.kind).simpleString()}" for f in entity.fields]
    if with_lineage:
        cols += [f"`{name}` {typ}" for name, typ, _ in LINEAGE_COLUMNS]
    return ",\n  ".join(cols)


def postgres_ddl(entity: Entity, *, schema: str = "landing") -> str:
    """``CREATE TABLE`` for a PostgreSQL landing zone of this entity.

    No constraints: a landing table holds what the customer sent, duplicates and nulls included;
    the silver job is where the contract is enforced.
    """
    body = ",\n".join(f"  {f.name} {_POSTGRES[f.kind]}" for f in entity.fields)
    return f"CREATE TABLE IF NOT EXISTS {schema}.{entity.name} (\n{body}\n);"
