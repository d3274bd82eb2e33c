"""Tiny test-data builders derived from the contracts, so a test states only what it changes.

A *clean row* holds, for every contract field, a value that passes every rule of that field
(an enum's first code, a number inside its range, a valid ULID/email/tenant, a past timestamp).
Nothing here lists the contract's columns: they come from ``Entity.fields`` and ``spark_schema``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from cdf_pipeline.contracts import PARTS, SUPPLIERS, Entity, Field, Format, Kind
from cdf_pipeline.contracts.schemas import spark_schema
from cdf_pipeline.quality.reasons import VIOLATIONS, VIOLATIONS_TYPE

#: The run's clock in every test that needs one (passed to ``validate(now=...)``).
NOW = datetime(2026, 11, 2, 12, 0, 0, tzinfo=timezone.utc)
#: A timestamp safely in the past: the default ``source_timestamp`` of a clean row.
YESTERDAY = NOW - timedelta(days=1)
TENANT = "acme"
CASE = "case"

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid(n: int) -> str:
    """A valid, deterministic ULID for small integers (``ulid(1) != ulid(2)``)."""
    digits = ""
    while True:
        n, rem = divmod(n, 32)
        digits = _CROCKFORD[rem] + digits
        if n == 0:
            break
    return "01HZ" + digits.rjust(22, "0")


SUPPLIER_ID = ulid(1)
PART_ID = ulid(1001)


def clean_value(f: Field) -> Any:
    """A value of ``f`` that passes all of ``f``'s own rules."""
    if f.enum is not None:
        return f.enum[0]
    if f.fmt is Format.ULID:
        return ulid(7)
    if f.fmt is Format.EMAIL:
        return "buyer@example.com"
    if f.fmt is Format.TENANT:
        return TENANT
    if f.kind in (Kind.INT, Kind.DOUBLE, Kind.DECIMAL):
        if f.minimum is not None and f.maximum is not None:
            number: float = (f.minimum + f.maximum) / 2
        else:
            number = (f.minimum or 0) + 1
        if f.kind is Kind.INT:
            return int(number)
        return float(number) if f.kind is Kind.DOUBLE else Decimal(str(number))
    return {
        Kind.STRING: f"{f.name}-1",
        Kind.DATE: date(2026, 1, 15),
        Kind.TIMESTAMP: YESTERDAY,
        Kind.STRING_ARRAY: [f"{f.name}-1"],
        Kind.GEO: {"lat": 48.1, "lon": 11.6},
    }[f.kind]


#: Values that tie fields together (keys, and a part's default supplier among its qualified ones).
_LINKED: dict[str, dict[str, Any]] = {
    SUPPLIERS.name: {SUPPLIERS.primary_key: SUPPLIER_ID},
    PARTS.name: {
        PARTS.primary_key: PART_ID,
        "default_supplier_id": SUPPLIER_ID,
        "qualified_supplier_ids": [SUPPLIER_ID],
    },
}


def clean_row(entity: Entity, **changes: Any) -> dict[str, Any]:
    """A row of ``entity`` that passes every row rule, with ``changes`` applied on top."""
    unknown = set(changes) - set(entity.field_names)
    if unknown:
        raise KeyError(f"{entity.name} has no fields {sorted(unknown)}")
    row = {f.name: clean_value(f) for f in entity.fields}
    row.update(_LINKED[entity.name])
    row.update(changes)
    return row


def clean_supplier(**changes: Any) -> dict[str, Any]:
    return clean_row(SUPPLIERS, **changes)


def clean_part(**changes: Any) -> dict[str, Any]:
    return clean_row(PARTS, **changes)


def cases_frame(
    spark: SparkSession,
    entity: Entity,
    cases: Mapping[str, Mapping[str, Any]],
    *,
    violations: Mapping[str, Sequence[tuple[str, str, str | None]]] | None = None,
    extra: Mapping[str, tuple[T.DataType, Mapping[str, Any]]] | None = None,
) -> DataFrame:
    """A typed frame of ``entity``: a ``case`` label column, then the contract columns.

    Args:
        cases: case label -> row (usually ``clean_row(...)``).
        violations: when given, a ``_violations`` column (missing labels get ``[]``).
        extra: more columns after the contract ones: name -> (type, case label -> value).
    """
    schema = spark_schema(entity)
    fields = [T.StructField(CASE, T.StringType(), False), *schema.fields]
    extra = extra or {}
    fields += [T.StructField(name, typ, True) for name, (typ, _) in extra.items()]
    if violations is not None:
        fields.append(T.StructField(VIOLATIONS, VIOLATIONS_TYPE, True))
    data = []
    for label, row in cases.items():
        values = [label, *(row[f.name] for f in entity.fields)]
        values += [by_case.get(label) for _, by_case in extra.values()]
        if violations is not None:
            values.append(list(violations.get(label, [])))
        data.append(tuple(values))
    return spark.createDataFrame(data, T.StructType(fields))


def contract_frame(
    spark: SparkSession,
    entity: Entity,
    rows: Sequence[Mapping[str, Any]],
    *,
    violations: bool = False,
) -> DataFrame:
    """A typed frame of ``entity`` (``spark_schema``), optionally with an empty ``_violations``."""
    schema = spark_schema(entity)
    data = [tuple(row[f.name] for f in entity.fields) for row in rows]
    if violations:
        schema = T.StructType([*schema.fields, T.StructField(VIOLATIONS, VIOLATIONS_TYPE, True)])
        data = [(*values, []) for values in data]
    return spark.createDataFrame(data, schema)


def reason(code: str, value: str | None = None) -> tuple[str, str, str | None]:
    """The (rule, column, value) a violation holds; the column is the code's prefix."""
    return (code, code.split(".", 1)[0], value)


def violations_frame(
    spark: SparkSession,
    cases: Mapping[str, Sequence[tuple[str, str, str | None]]],
    *,
    label: str = CASE,
) -> DataFrame:
    """Expected ``(label, _violations)`` rows."""
    schema = T.StructType(
        [
            T.StructField(label, T.StringType(), True),
            T.StructField(VIOLATIONS, VIOLATIONS_TYPE, True),
        ]
    )
    return spark.createDataFrame([(k, list(v)) for k, v in cases.items()], schema)


class Raw(str):
    """Text sent as-is by :func:`text_frame` (``clean_supplier(country=Raw(" de "))``)."""


def assert_violations(
    actual: DataFrame, expected: Mapping[str, Sequence[tuple[str, str, str | None]]]
) -> None:
    """``actual``'s ``(case, _violations)`` equal ``expected`` (case label -> reasons, in order)."""
    assert_df_equality(
        in_order(actual.select(CASE, VIOLATIONS)),
        in_order(violations_frame(actual.sparkSession, expected)),
        ignore_nullable=True,
    )


def in_order(df: DataFrame, by: str = CASE) -> DataFrame:
    """``df`` sorted by ``by`` without a shuffle (a range sort costs a second per tiny frame)."""
    return df.coalesce(1).sortWithinPartitions(by)


def as_text(value: Any) -> str | None:
    """How a customer's CSV/JSON file spells a typed value (ISO-8601 timestamps, JSON arrays)."""
    if value is None:
        return None
    if isinstance(value, Raw):
        return str.__str__(value)  # a plain str: Spark's Python workers cannot unpickle Raw
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def text_frame(
    spark: SparkSession,
    entity: Entity,
    rows: Sequence[Mapping[str, Any]],
    *,
    drop: Sequence[str] = (),
    extra: Mapping[str, Sequence[str | None]] | None = None,
) -> DataFrame:
    """An all-string frame of ``entity`` as a text file would arrive.

    Args:
        rows: typed rows (``clean_row(...)``, with :class:`Raw` for text sent verbatim), each
            rendered with :func:`as_text`.
        drop: contract columns the file lacks.
        extra: columns the contract does not define: name -> one value per row.
    """
    extra = extra or {}
    columns = [f.name for f in entity.fields if f.name not in drop] + list(extra)
    data = [
        tuple(as_text(row[c]) for c in columns if c not in extra)
        + tuple(values[i] for values in extra.values())
        for i, row in enumerate(rows)
    ]
    schema = T.StructType([T.StructField(c, T.StringType(), True) for c in columns])
    return spark.createDataFrame(data, schema)
