"""normalise: customer-shaped files become the contract's typed columns, or say why they cannot.

Most cases are rows of one text file (every value a string, as CSV delivers it), normalised once
by a module fixture; each test compares the columns it is about for its own rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from support.builders import (
    YESTERDAY,
    Raw,
    as_text,
    clean_part,
    clean_supplier,
    contract_frame,
    in_order,
    reason,
    text_frame,
    ulid,
)

from cdf_pipeline.contracts import PARTS, SUPPLIERS, Entity
from cdf_pipeline.contracts.schemas import spark_schema
from cdf_pipeline.quality.normalise import ORIGINAL, RAW, detect_drift, keep_original, normalise
from cdf_pipeline.quality.reasons import VIOLATIONS, VIOLATIONS_TYPE

pytestmark = pytest.mark.spark

UTC = timezone.utc
KEY = "supplier_id"

#: label -> a supplier as a text file sends it (typed values rendered as text, Raw sent verbatim).
TEXT: dict[str, dict[str, Any]] = {}


def case(label: str, **changes: Any) -> str:
    """Register a text-file row; returns its supplier_id, which identifies it in the output."""
    sid = ulid(100 + len(TEXT))
    TEXT[label] = clean_supplier(supplier_id=sid, **changes)
    return sid


def frame_of(
    spark: SparkSession, entity: Entity, columns: Sequence[str], rows: list[tuple]
) -> DataFrame:
    """Expected rows of some output columns, typed from the contract (and _violations)."""
    types = {f.name: f for f in spark_schema(entity).fields}
    types[VIOLATIONS] = T.StructField(VIOLATIONS, VIOLATIONS_TYPE, True)
    types[ORIGINAL] = T.StructField(ORIGINAL, T.StringType(), True)
    return spark.createDataFrame(rows, T.StructType([types[c] for c in columns]))


def assert_rows(actual: DataFrame, expected: DataFrame, key: str = KEY) -> None:
    keys = expected.select(key)
    picked = actual.join(keys, on=key, how="left_semi").select(*expected.columns)
    assert_df_equality(in_order(picked, key), in_order(expected, key), ignore_nullable=True)


@pytest.fixture(scope="module")
def text_file(spark: SparkSession) -> Iterator[DataFrame]:
    """Every TEXT row, normalised once."""
    out = text_frame(spark, SUPPLIERS, list(TEXT.values())).transform(normalise(SUPPLIERS)).cache()
    yield out
    out.unpersist()


CLEAN = case("clean")


def test_clean_text_row_becomes_the_typed_contract_row(
    spark: SparkSession, text_file: DataFrame
) -> None:
    expected = contract_frame(spark, SUPPLIERS, [TEXT["clean"]], violations=True)
    actual = text_file.where(F.col(KEY) == CLEAN).drop(RAW)
    assert_df_equality(actual, expected, ignore_nullable=True)


def test_clean_text_part_becomes_the_typed_contract_row(spark: SparkSession) -> None:
    typed = clean_part(unit_cost=Decimal("3.250000"), qualified_supplier_ids=[ulid(1), ulid(2)])
    raw = dict(typed, qualified_supplier_ids=Raw(f"{ulid(1)}, {ulid(2)}"), unit_cost=Raw("3.25"))
    bad_date = dict(typed, part_id=ulid(9), last_price_change=Raw("2026-02-30"))
    out = text_frame(spark, PARTS, [raw, bad_date]).transform(normalise(PARTS)).drop(RAW)
    expected = contract_frame(
        spark, PARTS, [typed, dict(typed, part_id=ulid(9), last_price_change=None)]
    )
    expected = expected.withColumn(
        VIOLATIONS,
        F.when(
            F.col("part_id") == ulid(9),
            F.array(F.struct(*(F.lit(v) for v in reason("last_price_change.type", "2026-02-30")))),
        )
        .otherwise(F.array())
        .cast(VIOLATIONS_TYPE),
    )
    assert_df_equality(
        in_order(out, "part_id"), in_order(expected, "part_id"), ignore_nullable=True
    )


TS_OFFSET = case("ts offset", source_timestamp=Raw("2026-11-01T14:00:00+02:00"))
TS_SPACE = case("ts space", source_timestamp=Raw("2026-11-01 12:00:00"))
TS_FRACTION = case("ts fraction", source_timestamp=Raw("2026-11-01T12:00:00.250Z"))
TS_BAD = case("ts bad", source_timestamp=Raw("yesterday"))


def test_iso8601_strings_become_utc_timestamps(spark: SparkSession, text_file: DataFrame) -> None:
    noon = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    expected = frame_of(
        spark,
        SUPPLIERS,
        [KEY, "source_timestamp", VIOLATIONS],
        [
            (TS_OFFSET, noon, []),
            (TS_SPACE, noon, []),
            (TS_FRACTION, noon.replace(microsecond=250_000), []),
            (TS_BAD, None, [reason("source_timestamp.type", "yesterday")]),
        ],
    )
    assert_rows(text_file, expected)


ARRAYS = {
    "json": ('["ISO9001","IATF16949"]', ["ISO9001", "IATF16949"]),
    "comma-separated": ("ISO9001, IATF16949", ["ISO9001", "IATF16949"]),
    "one value": ("ISO9001", ["ISO9001"]),
    "comma-separated with blanks": ("ISO9001,, ,", ["ISO9001"]),
    # Every array shape is trimmed and loses blank elements alike.
    "json with padding": ('[" ISO9001 ", ""]', ["ISO9001"]),
    "empty json": ("[]", []),
    # A blank cell cannot tell an empty list from a missing one: an optional list reads as empty.
    "blank": ("   ", []),
}
ARRAY_IDS = {
    label: case(f"array {label}", certifications=Raw(text)) for label, (text, _) in ARRAYS.items()
}
ARRAY_BAD = case("array bad json", certifications=Raw('["ISO9001"'))


def test_json_and_comma_separated_arrays(spark: SparkSession, text_file: DataFrame) -> None:
    rows = [(ARRAY_IDS[label], value, []) for label, (_, value) in ARRAYS.items()]
    rows.append((ARRAY_BAD, None, [reason("certifications.type", '["ISO9001"')]))
    expected = frame_of(spark, SUPPLIERS, [KEY, "certifications", VIOLATIONS], rows)
    assert_rows(text_file, expected)


GEO_JSON = case("geo json", geo_coords=Raw('{"lat": 1.5, "lon": -2.5}'))
GEO_BAD = case("geo bad", geo_coords=Raw("nowhere"))
GEO_BLANK = case("geo blank", geo_coords=Raw(""))


def test_geo_json_text(spark: SparkSession, text_file: DataFrame) -> None:
    expected = frame_of(
        spark,
        SUPPLIERS,
        [KEY, "geo_coords", VIOLATIONS],
        [
            (GEO_JSON, {"lat": 1.5, "lon": -2.5}, []),
            (GEO_BAD, None, [reason("geo_coords.type", "nowhere")]),
            (GEO_BLANK, None, []),
        ],
    )
    assert_rows(text_file, expected)


def test_flat_geo_lat_lon_columns(spark: SparkSession) -> None:
    rows = [clean_supplier(supplier_id=ulid(n)) for n in range(4)]
    lat = ["48.1", None, "abc", " -33.9 "]
    lon = ["11.6", None, "11.6", "151.2"]
    df = text_frame(
        spark, SUPPLIERS, rows, drop=["geo_coords"], extra={"geo_lat": lat, "geo_lon": lon}
    )
    out = df.transform(normalise(SUPPLIERS))
    expected = frame_of(
        spark,
        SUPPLIERS,
        [KEY, "geo_coords", VIOLATIONS],
        [
            (ulid(0), {"lat": 48.1, "lon": 11.6}, []),
            (ulid(1), None, []),
            (ulid(2), None, [reason("geo_coords.type", '{"geo_lat":"abc","geo_lon":"11.6"}')]),
            (ulid(3), {"lat": -33.9, "lon": 151.2}, []),
        ],
    )
    assert_rows(out, expected)


NUM_PADDED = case(
    "numbers padded",
    lead_time_days_avg=Raw(" 12 "),
    risk_score=Raw("12.5"),
    defect_rate_ppm=Raw("0"),
)
NUM_BAD = case("number bad", lead_time_days_avg=Raw("ten"))
NUM_FRACTION = case(
    "fraction for an int", lead_time_days_avg=Raw("12.7"), defect_rate_ppm=Raw("3.0")
)
NUM_BLANK = case("number blank", risk_score=Raw(""), defect_rate_ppm=Raw("  "))
TWO_BAD = case("two bad", lead_time_days_avg=Raw("ten"), source_timestamp=Raw("soon"))


def test_numeric_strings_are_cast_and_failures_keep_the_original_text(
    spark: SparkSession, text_file: DataFrame
) -> None:
    clean = TEXT["clean"]
    avg, risk, ppm = (clean[c] for c in ("lead_time_days_avg", "risk_score", "defect_rate_ppm"))
    expected = frame_of(
        spark,
        SUPPLIERS,
        [
            KEY,
            "lead_time_days_avg",
            "risk_score",
            "defect_rate_ppm",
            "source_timestamp",
            VIOLATIONS,
        ],
        [
            (NUM_PADDED, 12, 12.5, 0, YESTERDAY, []),
            (NUM_BAD, None, risk, ppm, YESTERDAY, [reason("lead_time_days_avg.type", "ten")]),
            (NUM_BLANK, avg, None, None, YESTERDAY, []),
            # "12.7" would truncate to 12: not a clean cast. "3.0" is a whole number.
            (NUM_FRACTION, None, risk, 3, YESTERDAY, [reason("lead_time_days_avg.type", "12.7")]),
            # Several failures on one row, in contract order.
            (
                TWO_BAD,
                None,
                risk,
                ppm,
                None,
                [reason("lead_time_days_avg.type", "ten"), reason("source_timestamp.type", "soon")],
            ),
        ],
    )
    assert_rows(text_file, expected)


TEXT_PADDED = case(
    "text padded",
    legal_name=Raw("  Acme GmbH "),
    country=Raw(" de "),
    incoterms=Raw("fob"),
    dba_name=Raw("   "),
    contact_email=Raw(" buyer@example.com  "),
)
TEXT_BLANK_REQUIRED = case("blank required", legal_name=Raw("  "))


def test_text_is_trimmed_enums_upper_cased_and_blanks_become_null(
    spark: SparkSession, text_file: DataFrame
) -> None:
    expected = frame_of(
        spark,
        SUPPLIERS,
        [KEY, "legal_name", "dba_name", "country", "contact_email", "incoterms", VIOLATIONS],
        [
            (TEXT_PADDED, "Acme GmbH", None, "DE", "buyer@example.com", "FOB", []),
            # A blank required value is absent, not a type error: validate reports it.
            (TEXT_BLANK_REQUIRED, None, "dba_name-1", "AD", "buyer@example.com", "EXW", []),
        ],
    )
    assert_rows(text_file, expected)


def test_missing_columns_required_on_every_row_optional_as_absent(spark: SparkSession) -> None:
    rows = [clean_supplier(supplier_id=ulid(n), legal_name=Raw(" Acme ")) for n in (1, 2)]
    df = text_frame(
        spark,
        SUPPLIERS,
        rows,
        drop=["contact_email", "dba_name", "certifications"],
        extra={"notes": ["x", None]},
    )
    out = df.transform(normalise(SUPPLIERS, source_file="raw/acme/suppliers.csv")).transform(
        keep_original("all")
    )

    def original(row: dict[str, Any], notes: str | None) -> str:
        sent = {c: as_text(row[c]) for c in df.columns if c in row}
        sent["notes"] = notes
        return json.dumps({k: v for k, v in sent.items() if v is not None}, separators=(",", ":"))

    missing = [reason("contact_email.missing_column")]
    expected = frame_of(
        spark,
        SUPPLIERS,
        [KEY, "legal_name", "dba_name", "certifications", "contact_email", ORIGINAL, VIOLATIONS],
        [
            (ulid(1), "Acme", None, [], None, original(rows[0], "x"), missing),
            (ulid(2), "Acme", None, [], None, original(rows[1], None), missing),
        ],
    ).withColumn("_source_file", F.lit("raw/acme/suppliers.csv"))
    assert_rows(out, expected)
    # Output columns: the contract in order, then the lineage columns; extra columns are dropped.
    assert out.columns == [*SUPPLIERS.field_names, ORIGINAL, "_source_file", VIOLATIONS]


def test_typed_input_passes_through_and_is_still_tidied(spark: SparkSession) -> None:
    clean = clean_supplier()
    messy = clean_supplier(
        supplier_id=ulid(2),
        country="de",
        legal_name=" Acme ",
        certifications=[" ISO9001 ", "", None],
    )
    tidy = dict(messy, country="DE", legal_name="Acme", certifications=["ISO9001"])
    out = contract_frame(spark, SUPPLIERS, [clean, messy]).transform(normalise(SUPPLIERS))
    expected = contract_frame(spark, SUPPLIERS, [clean, tidy], violations=True)
    assert_df_equality(in_order(out.drop(RAW), KEY), in_order(expected, KEY), ignore_nullable=True)


def test_detect_drift_reports_missing_and_extra_columns() -> None:
    fields = list(SUPPLIERS.field_names)
    assert detect_drift(SUPPLIERS, fields).is_clean

    without = [c for c in fields if c not in ("legal_name", "dba_name", "geo_coords")]
    drift = detect_drift(SUPPLIERS, [*without, "geo_lat", "geo_lon", "notes", "_rescued"])
    assert drift.missing_required == ("legal_name",)
    assert drift.missing_optional == ("dba_name",)
    # Flat geo columns stand in for geo_coords; underscore columns are the pipeline's own.
    assert drift.extra == ("notes",)
    assert not drift.is_clean

    half_geo = detect_drift(SUPPLIERS, [*without, "legal_name", "dba_name", "geo_lat"])
    assert half_geo.missing_optional == ("geo_coords",)
    assert half_geo.extra == ("geo_lat",)
