"""One rule registry, two engines: the Spark validator and the generator's pyarrow checks agree.

When a row breaks each row rule is said once (``contracts/rule_registry.py``). Both compilers must
handle every node of its vocabulary, and on the same rows both engines must name the same codes:
on hand-made edge cases (nulls, blanks, padding, null members) and on a generated table with
anomalies. The Spark side runs the job's own path (Parquet, ``normalise``, ``validate``).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support.builders import NOW, SUPPLIER_ID, TENANT, clean_part, clean_supplier, ulid

from cdf_generator.api import build_tables
from cdf_generator.checks import TableValues, mask, row_violations
from cdf_generator.plan import Universe
from cdf_pipeline.contracts import PARTS, SUPPLIERS, Entity, RuleKind
from cdf_pipeline.contracts.rule_registry import (
    CHECKED_ELSEWHERE,
    NODES,
    ROW_RULES,
    AllOf,
    AnyOf,
    Breach,
    Compare,
    HasMatch,
    IsBlank,
    IsEmpty,
    IsNull,
    Lacks,
    LongerThan,
    NotIn,
    NotMatching,
    NotNull,
    Value,
    breach,
)
from cdf_pipeline.contracts.schemas import arrow_schema

POSITION = "_position"
NOW_US = int(NOW.timestamp()) * 1_000_000

#: Per entity: case label -> (row, the row-rule codes it breaks).
EDGE_CASES: dict[str, dict[str, tuple[dict[str, Any], set[str]]]] = {
    SUPPLIERS.name: {
        "clean": (clean_supplier(), set()),
        "blank required text": (clean_supplier(legal_name="   "), {"legal_name.required"}),
        "null optional enum": (clean_supplier(incoterms=None), set()),
        "padded lower-case enum": (clean_supplier(country=" de "), set()),
        "unknown enum": (clean_supplier(country="XX"), {"country.enum"}),
        "padded email": (clean_supplier(contact_email=" buyer@example.com "), set()),
        "lower-case ulid": (
            clean_supplier(supplier_id=ulid(3).lower()),
            {"supplier_id.format"},
        ),
        "null geo": (clean_supplier(geo_coords=None), set()),
        "null member of geo": (
            clean_supplier(geo_coords={"lat": None, "lon": 1.0}),
            {"geo_coords.range"},
        ),
        "lon out of range": (
            clean_supplier(geo_coords={"lat": 1.0, "lon": 180.5}),
            {"geo_coords.range"},
        ),
        "exclusive minimum": (
            clean_supplier(capacity_units_per_week=0),
            {"capacity_units_per_week.range"},
        ),
        "future": (
            clean_supplier(source_timestamp=NOW + dt.timedelta(microseconds=1)),
            {"source_timestamp.future"},
        ),
        "now is not future": (clean_supplier(source_timestamp=NOW), set()),
        "p95 below avg": (
            clean_supplier(lead_time_days_avg=10, lead_time_days_p95=9),
            {"lead_time_days_p95.below_avg"},
        ),
        "p95 beside a null avg": (clean_supplier(lead_time_days_avg=None), set()),
        "NUL in a name": (clean_supplier(legal_name="Acme\x00Ltd"), {"legal_name.control_chars"}),
        "C1 in a city": (clean_supplier(city="K\x85ln"), {"city.control_chars"}),
        "line breaks and tab in an address": (
            clean_supplier(address_line1="Hauptstr. 1\r\nHinterhaus\tB"),
            set(),
        ),
        "vertical tab in an address": (
            clean_supplier(address_line2="a\x0bb"),
            {"address_line2.control_chars"},
        ),
        "one past the limit": (clean_supplier(dba_name="y" * 501), {"dba_name.too_long"}),
        "padded to past the limit": (clean_supplier(dba_name=" " + "y" * 500 + " "), set()),
        "non-ASCII at the limit": (clean_supplier(legal_name="Ä" * 500), set()),
        "a list element with a control": (
            clean_supplier(certifications=["ISO9001", "IATF\x0716949"]),
            {"certifications.control_chars"},
        ),
        "an email with a trailing line break": (
            clean_supplier(contact_email="buyer@example.com\n"),
            {"contact_email.format", "contact_email.control_chars"},
        ),
    },
    PARTS.name: {
        "clean": (clean_part(), set()),
        "empty required list": (
            clean_part(qualified_supplier_ids=[]),
            {"qualified_supplier_ids.required", "qualified_supplier_ids.missing_default"},
        ),
        "blank elements only": (
            clean_part(qualified_supplier_ids=["  ", None]),
            {"qualified_supplier_ids.required", "qualified_supplier_ids.missing_default"},
        ),
        "null required list": (
            clean_part(qualified_supplier_ids=None),
            {"qualified_supplier_ids.required"},
        ),
        "list lacks the default": (
            clean_part(qualified_supplier_ids=[ulid(9)]),
            {"qualified_supplier_ids.missing_default"},
        ),
        "null element beside the default": (
            clean_part(qualified_supplier_ids=[None, SUPPLIER_ID]),
            set(),
        ),
        "padded default": (clean_part(default_supplier_id=f" {SUPPLIER_ID} "), set()),
        "null optional list": (clean_part(bom_compatibility=None), set()),
        "negative decimal": (clean_part(unit_cost=Decimal("-0.5")), {"unit_cost.range"}),
        "blank required enum": (clean_part(category=" "), {"category.required"}),
        "a long list element": (
            clean_part(bom_compatibility=["ok", "b" * 501]),
            {"bom_compatibility.too_long"},
        ),
        "a long free text": (clean_part(description="d" * 3999 + "\n"), set()),
        "a ulid with a trailing line break": (
            clean_part(part_id=ulid(5) + "\n"),
            {"part_id.format", "part_id.control_chars"},
        ),
    },
}


def _edge_table(entity: Entity) -> pa.Table:
    rows = [row for row, _ in EDGE_CASES[entity.name].values()]
    return pa.Table.from_pylist(rows, schema=arrow_schema(entity))


def _codes_by_row(violations: dict[str, np.ndarray], n: int) -> list[set[str]]:
    found: list[set[str]] = [set() for _ in range(n)]
    for code, rows in violations.items():
        for i in np.flatnonzero(rows):
            found[i].add(code)
    return found


def _walk(node: Breach) -> set[type]:
    if isinstance(node, AnyOf | AllOf):
        return {type(node)}.union(*(_walk(t) for t in node.terms))
    return {type(node)}


#: One breach holding every node of the vocabulary, over the suppliers contract.
EVERY_NODE: Breach = AnyOf(
    (
        IsNull(Value("legal_name")),
        NotNull(Value("legal_name")),
        IsBlank(Value("legal_name")),
        IsEmpty(Value("certifications")),
        NotIn(Value("country"), ("DE",)),
        NotMatching(Value("contact_email"), "@"),
        Compare(Value("geo_coords", "lat"), "<", 0.0),
        Lacks(Value("certifications"), Value("legal_name")),
        HasMatch(Value("legal_name"), "x"),
        HasMatch(Value("certifications"), "x", each=True),
        LongerThan(Value("legal_name"), 3),
        LongerThan(Value("certifications"), 3, each=True),
        AllOf(()),
    )
)


# --- The registry -------------------------------------------------------------------------------


def test_every_rule_kind_is_checked_on_rows_by_the_registry_or_elsewhere() -> None:
    assert not set(ROW_RULES) & set(CHECKED_ELSEWHERE)
    assert set(ROW_RULES) | set(CHECKED_ELSEWHERE) == set(RuleKind)


@pytest.mark.parametrize("entity", [SUPPLIERS, PARTS], ids=lambda e: e.name)
def test_every_row_rule_of_the_contracts_has_a_breach(entity: Entity) -> None:
    for rule in entity.row_rules:
        assert rule.kind in ROW_RULES, rule.code
        assert breach(entity, rule) is not None


def test_the_every_node_breach_holds_every_node() -> None:
    assert _walk(EVERY_NODE) == set(NODES)


def test_pyarrow_compiles_every_node() -> None:
    table = _edge_table(SUPPLIERS)
    clock = pa.scalar(NOW_US, pa.timestamp("us", tz="UTC"))
    out = mask(EVERY_NODE, TableValues(table, SUPPLIERS), clock)
    assert len(out) == table.num_rows


# --- pyarrow on its own (no Spark) --------------------------------------------------------------


@pytest.mark.parametrize("entity", [SUPPLIERS, PARTS], ids=lambda e: e.name)
def test_pyarrow_names_the_codes_of_every_edge_case(entity: Entity) -> None:
    table = _edge_table(entity)
    found = _codes_by_row(row_violations(table, entity, NOW_US), table.num_rows)
    expected = [codes for _, codes in EDGE_CASES[entity.name].values()]
    assert dict(zip(EDGE_CASES[entity.name], found, strict=True)) == dict(
        zip(EDGE_CASES[entity.name], expected, strict=True)
    )


# --- Spark against pyarrow, row by row ----------------------------------------------------------


def _spark_codes(spark: Any, tmp: Path, entity: Entity, table: pa.Table, now: dt.datetime) -> list:
    """Codes per row as the job finds them: the table as a Parquet file, normalised, validated."""
    from pyspark.sql import functions as F

    from cdf_pipeline.quality.normalise import RAW, normalise
    from cdf_pipeline.quality.reasons import VIOLATIONS, codes
    from cdf_pipeline.quality.rules import validate

    path = tmp / f"{entity.name}.parquet"
    positions = pa.array(np.arange(table.num_rows, dtype=np.int64))
    pq.write_table(table.append_column(POSITION, positions), path)
    checked = (
        spark.read.parquet(str(path))
        .transform(normalise(entity))
        .transform(validate(entity, TENANT, now=now, future_skew_seconds=0))
        .select(F.col(f"{RAW}.{POSITION}").alias(POSITION), codes(F.col(VIOLATIONS)).alias("c"))
    )
    found: list[set[str]] = [set() for _ in range(table.num_rows)]
    for row in checked.collect():
        found[row[POSITION]] = set(row["c"])
    return found


@pytest.mark.spark
@pytest.mark.parametrize("entity", [SUPPLIERS, PARTS], ids=lambda e: e.name)
def test_spark_names_the_same_codes_on_every_edge_case(
    spark: Any, tmp_path: Path, entity: Entity
) -> None:
    table = _edge_table(entity)
    found = _spark_codes(spark, tmp_path, entity, table, NOW)
    expected = [codes for _, codes in EDGE_CASES[entity.name].values()]
    assert dict(zip(EDGE_CASES[entity.name], found, strict=True)) == dict(
        zip(EDGE_CASES[entity.name], expected, strict=True)
    )


@pytest.mark.spark
def test_spark_compiles_every_node(spark: Any) -> None:
    from pyspark.sql import Column
    from pyspark.sql import functions as F

    from cdf_pipeline.quality.rules import expression

    assert isinstance(expression(EVERY_NODE, F.current_timestamp()), Column)


@pytest.mark.spark
@pytest.mark.parametrize("entity", [SUPPLIERS, PARTS], ids=lambda e: e.name)
def test_both_engines_agree_row_by_row_on_a_generated_table(
    spark: Any, tmp_path: Path, entity: Entity
) -> None:
    tenants, n = ("acme", "globex"), 3_000
    as_of_us = Universe(7, tenants, n, n).as_of_us(1)
    table, labels = build_tables(
        "acme", entity.name, tenants=tenants, suppliers=n, parts=n, seed=7, dirty_rate=0.3
    )
    pyarrow_codes = _codes_by_row(row_violations(table, entity, as_of_us), table.num_rows)
    now = dt.datetime.fromtimestamp(as_of_us / 1_000_000, tz=dt.timezone.utc)
    spark_codes = _spark_codes(spark, tmp_path, entity, table, now)
    disagreements = [
        (i, p, s) for i, (p, s) in enumerate(zip(pyarrow_codes, spark_codes, strict=True)) if p != s
    ]
    assert disagreements == []
    # Not vacuous: every row-rule code the labels name is found, on many rows.
    row_codes = {r.code for r in entity.row_rules}
    labelled = {c for codes in labels.column("codes").to_pylist() for c in codes} & row_codes
    assert labelled and labelled <= set().union(*pyarrow_codes)
    assert sum(1 for codes in pyarrow_codes if codes) > n // 10
