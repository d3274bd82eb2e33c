"""rules.validate: every row rule of the contracts fires on a violating row and only there.

Each test's cases are a table (label -> (row, expected reasons)) next to the test; one module
fixture validates every table of an entity in a single frame, so the rules compile once.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from support.builders import (
    CASE,
    NOW,
    SUPPLIER_ID,
    TENANT,
    assert_violations,
    cases_frame,
    clean_part,
    clean_supplier,
    in_order,
    reason,
    ulid,
)

from cdf_pipeline.contracts import PARTS, SUPPLIERS, Entity
from cdf_pipeline.quality.reasons import VIOLATIONS
from cdf_pipeline.quality.rules import validate

pytestmark = pytest.mark.spark

Reason = tuple[str, str, str | None]
Cases = dict[str, tuple[dict[str, Any], list[Reason]]]


def _validated(
    spark: SparkSession, entity: Entity, tables: list[Cases], **kwargs: Any
) -> DataFrame:
    rows = {label: row for table in tables for label, (row, _) in table.items()}
    assert len(rows) == sum(len(t) for t in tables), "case labels must be unique per entity"
    df = cases_frame(spark, entity, rows)
    return df.transform(validate(entity, TENANT, now=NOW, **kwargs))


@pytest.fixture(scope="module")
def validated(spark: SparkSession) -> Iterator[dict[str, DataFrame]]:
    """Every supplier and part case of this module, validated once (``now=NOW``, skew 300 s)."""
    frames = {
        SUPPLIERS.name: _validated(spark, SUPPLIERS, SUPPLIER_TABLES).cache(),
        PARTS.name: _validated(spark, PARTS, PART_TABLES).cache(),
    }
    yield frames
    for df in frames.values():
        df.unpersist()


def check(validated: dict[str, DataFrame], entity: Entity, table: Cases) -> None:
    actual = validated[entity.name].where(F.col(CASE).isin(list(table)))
    assert_violations(actual, {label: expected for label, (_, expected) in table.items()})


CLEAN_SUPPLIERS: Cases = {"clean supplier": (clean_supplier(), [])}
CLEAN_PARTS: Cases = {"clean part": (clean_part(), [])}


def test_clean_rows_from_the_builders_pass_every_rule(validated: dict[str, DataFrame]) -> None:
    check(validated, SUPPLIERS, CLEAN_SUPPLIERS)
    check(validated, PARTS, CLEAN_PARTS)


REQUIRED_SUPPLIERS: Cases = {
    "null text": (clean_supplier(legal_name=None), [reason("legal_name.required")]),
    "blank text": (clean_supplier(legal_name="   "), [reason("legal_name.required", "   ")]),
    "null timestamp": (
        clean_supplier(source_timestamp=None),
        [reason("source_timestamp.required")],
    ),
    "optional nulls": (clean_supplier(dba_name=None, certifications=None), []),
}
REQUIRED_PARTS: Cases = {
    "blank part_number": (clean_part(part_number=""), [reason("part_number.required", "")]),
    "null array": (
        clean_part(qualified_supplier_ids=None),
        [reason("qualified_supplier_ids.required")],
    ),
    # An empty list is absent, and it also cannot contain the default supplier.
    "empty array": (
        clean_part(qualified_supplier_ids=[]),
        [
            reason("qualified_supplier_ids.required", "[]"),
            reason("qualified_supplier_ids.missing_default", "[]"),
        ],
    ),
}


def test_required_fires_on_null_blank_text_and_empty_array(validated: dict[str, DataFrame]) -> None:
    check(validated, SUPPLIERS, REQUIRED_SUPPLIERS)
    check(validated, PARTS, REQUIRED_PARTS)


# validate does not upper-case: normalise does, before validate runs.
ENUM_SUPPLIERS: Cases = {
    "unknown country": (clean_supplier(country="XX"), [reason("country.enum", "XX")]),
    "lower-case country": (clean_supplier(country="de"), [reason("country.enum", "de")]),
    "upper-case country": (clean_supplier(country="DE"), []),
    "lower-case tier": (
        clean_supplier(financial_risk_tier="low"),
        [reason("financial_risk_tier.enum", "low")],
    ),
    "optional enum null": (clean_supplier(incoterms=None), []),
}
ENUM_PARTS: Cases = {
    "unknown uom": (clean_part(uom="BARREL"), [reason("uom.enum", "BARREL")]),
    "lower-case category": (clean_part(category="other"), [reason("category.enum", "other")]),
}


def test_enum_fires_on_unknown_and_lower_case_codes(validated: dict[str, DataFrame]) -> None:
    check(validated, SUPPLIERS, ENUM_SUPPLIERS)
    check(validated, PARTS, ENUM_PARTS)


RANGE_SUPPLIERS: Cases = {
    "avg above max": (
        clean_supplier(lead_time_days_avg=366, lead_time_days_p95=400),
        [reason("lead_time_days_avg.range", "366")],
    ),
    "avg below min": (
        clean_supplier(lead_time_days_avg=-1),
        [reason("lead_time_days_avg.range", "-1")],
    ),
    "capacity 0 (exclusive minimum)": (
        clean_supplier(capacity_units_per_week=0),
        [reason("capacity_units_per_week.range", "0")],
    ),
    "capacity 1": (clean_supplier(capacity_units_per_week=1), []),
    "inclusive bounds 0 and 100": (
        clean_supplier(on_time_delivery_rate=0.0, risk_score=100.0, defect_rate_ppm=0),
        [],
    ),
    "risk above 100": (clean_supplier(risk_score=100.5), [reason("risk_score.range", "100.5")]),
    "on-time below 0": (
        clean_supplier(on_time_delivery_rate=-0.1),
        [reason("on_time_delivery_rate.range", "-0.1")],
    ),
    "optional number null": (clean_supplier(risk_score=None), []),
}
RANGE_PARTS: Cases = {
    "moq 0 (exclusive minimum)": (clean_part(moq=0), [reason("moq.range", "0")]),
    "moq 1": (clean_part(moq=1), []),
    "unit cost 0": (clean_part(unit_cost=Decimal("0")), []),
    "negative unit cost": (
        clean_part(unit_cost=Decimal("-0.5")),
        [reason("unit_cost.range", "-0.500000")],
    ),
}


def test_range_fires_outside_bounds_and_accepts_inclusive_bounds(
    validated: dict[str, DataFrame],
) -> None:
    check(validated, SUPPLIERS, RANGE_SUPPLIERS)
    check(validated, PARTS, RANGE_PARTS)


_LOWER_ULID = SUPPLIER_ID.lower()
_ULID_WITH_I = "01HZ" + "I" * 22
FORMAT_SUPPLIERS: Cases = {
    "not a ulid": (clean_supplier(supplier_id="SUP-1"), [reason("supplier_id.format", "SUP-1")]),
    "lower-case ulid": (
        clean_supplier(supplier_id=_LOWER_ULID),
        [reason("supplier_id.format", _LOWER_ULID)],
    ),
    "ulid with I": (
        clean_supplier(supplier_id=_ULID_WITH_I),
        [reason("supplier_id.format", _ULID_WITH_I)],
    ),
    "email without domain": (
        clean_supplier(contact_email="buyer@"),
        [reason("contact_email.format", "buyer@")],
    ),
    "email without tld": (
        clean_supplier(contact_email="buyer@example"),
        [reason("contact_email.format", "buyer@example")],
    ),
    # A malformed tenant id is also, necessarily, not the tenant being run.
    "upper-case tenant": (
        clean_supplier(tenant_id="Acme"),
        [reason("tenant_id.format", "Acme"), reason("tenant_id.tenant_mismatch", "Acme")],
    ),
}


def test_format_fires_on_bad_ulid_email_and_tenant(validated: dict[str, DataFrame]) -> None:
    check(validated, SUPPLIERS, FORMAT_SUPPLIERS)


GEO_SUPPLIERS: Cases = {
    "lat 95": (
        clean_supplier(geo_coords={"lat": 95.0, "lon": 11.6}),
        [reason("geo_coords.range", '{"lat":95.0,"lon":11.6}')],
    ),
    "lon -181": (
        clean_supplier(geo_coords={"lat": 48.1, "lon": -181.0}),
        [reason("geo_coords.range", '{"lat":48.1,"lon":-181.0}')],
    ),
    "null lon": (
        clean_supplier(geo_coords={"lat": 48.1, "lon": None}),
        [reason("geo_coords.range", '{"lat":48.1}')],
    ),
    "geo bounds": (clean_supplier(geo_coords={"lat": -90.0, "lon": 180.0}), []),
    "no coordinates": (clean_supplier(geo_coords=None), []),
}


def test_geo_range_checks_each_component(validated: dict[str, DataFrame]) -> None:
    check(validated, SUPPLIERS, GEO_SUPPLIERS)


CROSS_SUPPLIERS: Cases = {
    "p95 below avg": (
        clean_supplier(lead_time_days_avg=10, lead_time_days_p95=9),
        [reason("lead_time_days_p95.below_avg", "9")],
    ),
    "p95 equals avg": (clean_supplier(lead_time_days_avg=10, lead_time_days_p95=10), []),
    "p95 missing": (clean_supplier(lead_time_days_avg=10, lead_time_days_p95=None), []),
}
CROSS_PARTS: Cases = {
    "default not qualified": (
        clean_part(default_supplier_id=ulid(2)),
        [reason("qualified_supplier_ids.missing_default", f'["{SUPPLIER_ID}"]')],
    ),
    "default among several": (clean_part(qualified_supplier_ids=[ulid(2), SUPPLIER_ID]), []),
    "part p95 below avg": (
        clean_part(lead_time_days_avg=10, lead_time_days_p95=9),
        [reason("lead_time_days_p95.below_avg", "9")],
    ),
}


def test_p95_below_avg_and_default_not_qualified(validated: dict[str, DataFrame]) -> None:
    check(validated, SUPPLIERS, CROSS_SUPPLIERS)
    check(validated, PARTS, CROSS_PARTS)


def _at(seconds: int) -> dict[str, Any]:
    return clean_supplier(source_timestamp=NOW + timedelta(seconds=seconds))


FUTURE_SUPPLIERS: Cases = {
    "now": (_at(0), []),
    "at the skew": (_at(300), []),
    "past the skew": (_at(301), [reason("source_timestamp.future", "2026-11-02 12:05:01")]),
}


def test_not_future_allows_the_skew_and_no_more(
    spark: SparkSession, validated: dict[str, DataFrame]
) -> None:
    check(validated, SUPPLIERS, FUTURE_SUPPLIERS)
    no_skew: Cases = {
        "now, no skew": (_at(0), []),
        "1 s ahead, no skew": (_at(1), [reason("source_timestamp.future", "2026-11-02 12:00:01")]),
    }
    out = _validated(spark, SUPPLIERS, [no_skew], future_skew_seconds=0)
    assert_violations(out, {label: expected for label, (_, expected) in no_skew.items()})


TENANT_SUPPLIERS: Cases = {
    "other tenant": (
        clean_supplier(tenant_id="globex"),
        [reason("tenant_id.tenant_mismatch", "globex")],
    ),
    "this tenant": (clean_supplier(tenant_id=TENANT), []),
}


def test_tenant_mismatch_names_the_other_tenant(validated: dict[str, DataFrame]) -> None:
    check(validated, SUPPLIERS, TENANT_SUPPLIERS)


STRUCT_SUPPLIERS: Cases = {
    "reason struct": (clean_supplier(country="FR "), [("country.enum", "country", "FR ")]),
}


def test_reason_struct_holds_rule_column_and_value(validated: dict[str, DataFrame]) -> None:
    check(validated, SUPPLIERS, STRUCT_SUPPLIERS)


MANY_PROBLEMS = [
    reason("legal_name.required"),
    reason("country.enum", "XX"),
    reason("contact_email.format", "nope"),
    reason("risk_score.range", "101.0"),
    reason("lead_time_days_p95.below_avg", "9"),
    reason("tenant_id.tenant_mismatch", "globex"),
]
MANY_SUPPLIERS: Cases = {
    "many problems": (
        clean_supplier(
            tenant_id="globex",
            legal_name=None,
            country="XX",
            contact_email="nope",
            risk_score=101.0,
            lead_time_days_avg=10,
            lead_time_days_p95=9,
        ),
        MANY_PROBLEMS,
    ),
}


def test_every_problem_of_a_row_is_reported_in_contract_order(
    validated: dict[str, DataFrame],
) -> None:
    contract_order = [r.code for r in SUPPLIERS.row_rules]
    row_rule_codes = [code for code, _, _ in MANY_PROBLEMS[:-1]]
    assert row_rule_codes == sorted(row_rule_codes, key=contract_order.index)
    check(validated, SUPPLIERS, MANY_SUPPLIERS)


def test_existing_violations_are_kept_first_and_other_columns_untouched(
    spark: SparkSession,
) -> None:
    earlier = reason("lead_time_days_avg.type", "ten")
    df = cases_frame(
        spark,
        SUPPLIERS,
        {
            "earlier only": clean_supplier(lead_time_days_avg=None),
            "earlier and new": clean_supplier(lead_time_days_avg=None, tenant_id="globex"),
            "none": clean_supplier(),
        },
        violations={"earlier only": [earlier], "earlier and new": [earlier]},
    )
    out = df.transform(validate(SUPPLIERS, TENANT, now=NOW))
    assert_violations(
        out,
        {
            "earlier only": [earlier],
            "earlier and new": [earlier, reason("tenant_id.tenant_mismatch", "globex")],
            "none": [],
        },
    )
    assert_df_equality(in_order(out.drop(VIOLATIONS)), in_order(df.drop(VIOLATIONS)))


LONG = "x" * 1_000_000
NUL = "Acme\x00Ltd"
TEXT_SUPPLIERS: Cases = {
    "a megabyte name": (
        clean_supplier(legal_name=LONG),
        [reason("legal_name.too_long", "x" * 100 + "... (1000000 chars)")],
    ),
    "at the limit": (clean_supplier(legal_name="y" * 500, address_line1="z" * 500), []),
    "one past it": (
        clean_supplier(dba_name="y" * 501),
        [reason("dba_name.too_long", "y" * 100 + "... (501 chars)")],
    ),
    "NUL": (clean_supplier(legal_name=NUL), [reason("legal_name.control_chars", NUL)]),
    "DEL and C1": (
        clean_supplier(city="K\x7fln", state="Bay\x85ern"),
        [reason("city.control_chars", "K\x7fln"), reason("state.control_chars", "Bay\x85ern")],
    ),
    "line break in a name": (
        clean_supplier(legal_name="Acme\nLtd"),
        [reason("legal_name.control_chars", "Acme\nLtd")],
    ),
    "tab and line breaks in an address": (
        clean_supplier(address_line1="Hauptstr. 1\r\nHinterhaus", address_line2="c/o\tB"),
        [],
    ),
    "other controls in an address": (
        clean_supplier(address_line1="Hauptstr.\x0b1"),
        [reason("address_line1.control_chars", "Hauptstr.\x0b1")],
    ),
    "an element of a list": (
        clean_supplier(certifications=["ISO9001", "AS\x009100"]),
        [reason("certifications.control_chars", '["ISO9001","AS\\u00009100"]')],
    ),
    "non-ASCII letters count once": (clean_supplier(legal_name="Ä" * 500), []),
}
TEXT_PARTS: Cases = {
    "a long description is free text": (clean_part(description="d" * 3998 + "\n\t"), []),
    "too long even so": (
        clean_part(description="d" * 4001),
        [reason("description.too_long", "d" * 100 + "... (4001 chars)")],
    ),
    "a long list element": (
        clean_part(bom_compatibility=["b" * 501]),
        [reason("bom_compatibility.too_long", '["' + "b" * 98 + "... (505 chars)")],
    ),
}


def test_text_limits_reject_long_values_and_control_characters(
    validated: dict[str, DataFrame],
) -> None:
    """NUL, other control characters and megabyte values are rejected with stable codes (the
    reason clips the value; free-text fields may hold tabs and line breaks)."""
    check(validated, SUPPLIERS, TEXT_SUPPLIERS)
    check(validated, PARTS, TEXT_PARTS)


SUPPLIER_TABLES = [
    CLEAN_SUPPLIERS,
    REQUIRED_SUPPLIERS,
    ENUM_SUPPLIERS,
    RANGE_SUPPLIERS,
    FORMAT_SUPPLIERS,
    GEO_SUPPLIERS,
    CROSS_SUPPLIERS,
    FUTURE_SUPPLIERS,
    TENANT_SUPPLIERS,
    STRUCT_SUPPLIERS,
    MANY_SUPPLIERS,
    TEXT_SUPPLIERS,
]
PART_TABLES = [CLEAN_PARTS, REQUIRED_PARTS, ENUM_PARTS, RANGE_PARTS, CROSS_PARTS, TEXT_PARTS]
