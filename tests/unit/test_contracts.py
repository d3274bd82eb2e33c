"""The contracts and everything derived from them: schemas, DDL, rule codes and the document."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pytest
from pyspark.sql import types as T

from cdf_pipeline.contracts import ENTITIES, PARTS, SUPPLIERS, Entity, Kind, entity
from cdf_pipeline.contracts.docs import render_contracts_markdown
from cdf_pipeline.contracts.schemas import (
    LINEAGE_COLUMNS,
    arrow_schema,
    iceberg_columns_sql,
    postgres_ddl,
    spark_schema,
)

REPO = Path(__file__).resolve().parents[2]

#: What each Kind must become in each target, written out independently of schemas.py.
ARROW = {
    Kind.STRING: pa.string(),
    Kind.INT: pa.int32(),
    Kind.DOUBLE: pa.float64(),
    Kind.DECIMAL: pa.decimal128(18, 6),
    Kind.DATE: pa.date32(),
    Kind.TIMESTAMP: pa.timestamp("us", tz="UTC"),
    Kind.STRING_ARRAY: pa.list_(pa.string()),
    Kind.GEO: pa.struct([("lat", pa.float64()), ("lon", pa.float64())]),
}
SPARK = {
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
ICEBERG_SQL = {
    Kind.STRING: "string",
    Kind.INT: "int",
    Kind.DOUBLE: "double",
    Kind.DECIMAL: "decimal(18,6)",
    Kind.DATE: "date",
    Kind.TIMESTAMP: "timestamp",
    Kind.STRING_ARRAY: "array<string>",
    Kind.GEO: "struct<lat:double,lon:double>",
}
POSTGRES = {
    Kind.STRING: "TEXT",
    Kind.INT: "INTEGER",
    Kind.DOUBLE: "DOUBLE PRECISION",
    Kind.DECIMAL: "NUMERIC(18,6)",
    Kind.DATE: "DATE",
    Kind.TIMESTAMP: "TIMESTAMPTZ",
    Kind.STRING_ARRAY: "TEXT[]",
    Kind.GEO: "JSONB",
}

both = pytest.mark.parametrize("e", [SUPPLIERS, PARTS], ids=lambda e: e.name)


def test_field_counts_and_keys() -> None:
    assert len(SUPPLIERS.fields) == 33
    assert len(PARTS.fields) == 23
    assert (SUPPLIERS.primary_key, PARTS.primary_key) == ("supplier_id", "part_id")
    assert [(fk.column, fk.entity, fk.is_array) for fk in PARTS.foreign_keys] == [
        ("default_supplier_id", "suppliers", False),
        ("qualified_supplier_ids", "suppliers", True),
    ]
    # Parents load before children.
    assert list(ENTITIES) == ["suppliers", "parts"]
    assert entity("parts") is PARTS
    with pytest.raises(KeyError, match="expected one of"):
        entity("part")


def test_every_kind_has_a_type_in_every_target() -> None:
    assert set(ARROW) == set(SPARK) == set(ICEBERG_SQL) == set(POSTGRES) == set(Kind)


@both
def test_arrow_schema_matches_the_contract(e: Entity) -> None:
    schema = arrow_schema(e)
    assert schema.names == list(e.field_names)
    for f, af in zip(e.fields, schema, strict=True):
        assert af.type == ARROW[f.kind], f.name
        assert af.nullable, f"{f.name}: dirty input may hold nulls anywhere"
    enforced = arrow_schema(e, enforce_required=True)
    assert [not af.nullable for af in enforced] == [f.required for f in e.fields]


@both
def test_spark_schema_matches_the_contract(e: Entity) -> None:
    schema = spark_schema(e)
    assert schema.names == list(e.field_names)
    for f, sf in zip(e.fields, schema.fields, strict=True):
        assert sf.dataType == SPARK[f.kind], f.name
        assert sf.nullable
    enforced = spark_schema(e, enforce_required=True)
    assert [not sf.nullable for sf in enforced.fields] == [f.required for f in e.fields]


@both
def test_iceberg_columns_match_the_contract_then_lineage(e: Entity) -> None:
    contract = [(f.name, ICEBERG_SQL[f.kind]) for f in e.fields]
    lineage = [(name, typ) for name, typ, _ in LINEAGE_COLUMNS]

    def parse(sql: str) -> list[tuple[str, str]]:
        cols = [re.fullmatch(r"`(\w+)` (\S+)", c) for c in sql.split(",\n  ")]
        assert all(cols), sql
        return [(m.group(1), m.group(2)) for m in cols if m]

    assert parse(iceberg_columns_sql(e, with_lineage=False)) == contract
    assert parse(iceberg_columns_sql(e)) == contract + lineage


@both
def test_postgres_ddl_matches_the_contract(e: Entity) -> None:
    ddl = postgres_ddl(e, schema="landing")
    lines = ddl.splitlines()
    assert lines[0] == f"CREATE TABLE IF NOT EXISTS landing.{e.name} ("
    assert lines[-1] == ");"
    columns = [line.strip().rstrip(",").split(" ", 1) for line in lines[1:-1]]
    assert columns == [[f.name, POSTGRES[f.kind]] for f in e.fields]


@both
def test_every_rule_code_is_unique(e: Entity) -> None:
    codes = [r.code for r in (*e.row_rules, *e.fk_rules, e.duplicate_rule)]
    assert len(codes) == len(set(codes)), sorted(c for c in codes if codes.count(c) > 1)
    for code in codes:
        column, kind = code.split(".")
        assert column in e.field_names, code
        assert kind, code


def test_contracts_document_is_generated_from_the_contracts() -> None:
    path = REPO / "docs" / "contracts.md"
    assert path.is_file(), "run: cdf contracts --write docs/contracts.md"
    assert path.read_text() == render_contracts_markdown(), (
        "docs/contracts.md is stale: run `cdf contracts --write docs/contracts.md` and commit it"
    )
