"""The contracts and everything derived from them: schemas, DDL, rule codes and the document.

The type mappings are checked as properties that derive one target from another (Arrow and Spark
convert into each other, Spark reads the Iceberg DDL back, each PostgreSQL type names one kind),
never against a second copy of the mapping typed out here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import types as T
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

from cdf_pipeline.contracts import ENTITIES, PARTS, SUPPLIERS, Entity, Kind, entity
from cdf_pipeline.contracts.docs import render_contracts_markdown
from cdf_pipeline.contracts.schemas import (
    LINEAGE_COLUMNS,
    arrow_schema,
    iceberg_columns_sql,
    postgres_ddl,
    postgres_type,
    spark_schema,
)

REPO = Path(__file__).resolve().parents[2]

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


def test_the_contracts_use_every_kind() -> None:
    """So that the per-field properties below reach every kind's type in every target."""
    assert {f.kind for e in ENTITIES.values() for f in e.fields} == set(Kind)


@both
def test_arrow_and_spark_schemas_convert_into_each_other(e: Entity) -> None:
    """pyspark's own Arrow conversion takes each schema to the other, both ways."""
    arrow, spark = arrow_schema(e), spark_schema(e)
    assert arrow.names == spark.names == list(e.field_names)
    assert from_arrow_schema(arrow) == spark
    assert to_arrow_schema(spark) == arrow
    assert all(af.nullable for af in arrow), "dirty input may hold nulls anywhere"
    assert all(sf.nullable for sf in spark.fields)


@both
def test_enforce_required_makes_exactly_the_required_fields_non_nullable(e: Entity) -> None:
    required = [f.required for f in e.fields]
    assert any(required) and not all(required)
    assert [not af.nullable for af in arrow_schema(e, enforce_required=True)] == required
    assert [not sf.nullable for sf in spark_schema(e, enforce_required=True).fields] == required


@pytest.mark.spark
@both
def test_iceberg_columns_read_back_as_the_spark_schema_then_lineage(
    e: Entity, spark: SparkSession
) -> None:
    """Spark's DDL parser reads the tables' column list back as the contract's Spark schema."""
    from pyspark.sql.types import _parse_datatype_string

    assert _parse_datatype_string(iceberg_columns_sql(e, with_lineage=False)) == spark_schema(e)
    with_lineage = _parse_datatype_string(iceberg_columns_sql(e))
    assert isinstance(with_lineage, T.StructType)
    lineage = with_lineage.fields[len(e.fields) :]
    assert [(f.name, f.dataType.simpleString()) for f in lineage] == [
        (name, typ) for name, typ, _ in LINEAGE_COLUMNS
    ]


@both
def test_postgres_ddl_reads_back_as_each_fields_kind(e: Entity) -> None:
    """Each landing column's type names its field's kind: the DDL read back gives the contract."""
    kind_of = {postgres_type(k): k for k in Kind}
    assert len(kind_of) == len(Kind), "two kinds share a PostgreSQL type"
    lines = postgres_ddl(e, schema="landing").splitlines()
    assert lines[0] == f"CREATE TABLE IF NOT EXISTS landing.{e.name} ("
    assert lines[-1] == ");"
    columns = [line.strip().rstrip(",").split(" ", 1) for line in lines[1:-1]]
    assert [(name, kind_of[typ]) for name, typ in columns] == [(f.name, f.kind) for f in e.fields]


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
