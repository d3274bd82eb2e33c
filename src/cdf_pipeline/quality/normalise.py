"""Normalise customer-shaped input into the contract's types, recording what cannot be normalised.

Handles every shape the generator writes: typed Parquet, ISO-8601 timestamp strings, JSON or
comma-separated arrays, ``geo_coords`` as JSON text or flat ``geo_lat``/``geo_lon``, numbers as
strings, padded text and lower-case enums. A value that cannot be cast becomes null plus a
``<column>.type`` violation; a missing required column becomes ``<column>.missing_column`` on every
row; missing optional columns are added as null (the contract default). Never raises on data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdf_pipeline.contracts.model import Entity, Field, Kind, RuleKind
from cdf_pipeline.contracts.schemas import spark_type
from cdf_pipeline.quality.column_memo import per_jvm
from cdf_pipeline.quality.reasons import VIOLATIONS, has_violations, observed, reason, reasons_when

Transform = Callable[[DataFrame], DataFrame]

ORIGINAL = "_original"
RAW = "_raw"
FLAT_GEO = ("geo_lat", "geo_lon")


@dataclass(frozen=True)
class Drift:
    """How a file's columns differ from the contract."""

    missing_required: tuple[str, ...]
    missing_optional: tuple[str, ...]
    extra: tuple[str, ...]

    @property
    def is_clean(self) -> bool:
        return not (self.missing_required or self.missing_optional or self.extra)


def _present(entity: Entity, columns: list[str]) -> set[str]:
    """Contract fields a file provides (flat geo columns count as ``geo_coords``)."""
    have = {c for c in columns if c in entity.field_names}
    if "geo_coords" in entity.field_names and all(c in columns for c in FLAT_GEO):
        have.add("geo_coords")
    return have


def detect_drift(entity: Entity, columns: list[str]) -> Drift:
    """Compare a file's column names with the contract."""
    have = _present(entity, columns)
    known = set(entity.field_names) | (set(FLAT_GEO) if "geo_coords" in have else set())
    missing = [f for f in entity.fields if f.name not in have]
    return Drift(
        missing_required=tuple(f.name for f in missing if f.required),
        missing_optional=tuple(f.name for f in missing if not f.required),
        extra=tuple(c for c in columns if c not in known and not c.startswith("_")),
    )


def _blank_to_null(c: Column) -> Column:
    trimmed = F.trim(c)
    return F.when(trimmed == "", F.lit(None)).otherwise(trimmed)


def _from_text(f: Field, c: Column) -> Column:
    """Parse a text column into the field's type (null when it does not parse)."""
    text = _blank_to_null(c)
    if f.kind is Kind.STRING_ARRAY:
        as_json = F.from_json(text, T.ArrayType(T.StringType()))
        parsed = F.when(text.startswith("["), as_json).otherwise(F.split(text, ","))
        # Trim and drop blank elements whatever the shape, as for typed arrays.
        return F.filter(F.transform(parsed, F.trim), lambda s: s != "")
    if f.kind is Kind.GEO:
        # from_json yields a struct of nulls (not null) for text that is not JSON.
        geo = F.from_json(text, spark_type(Kind.GEO))  # type: ignore[arg-type]
        return F.when(geo["lat"].isNull() & geo["lon"].isNull(), F.lit(None)).otherwise(geo)
    if f.kind is Kind.TIMESTAMP:
        return text.cast(T.TimestampType())
    if f.kind is Kind.INT:
        # A plain cast truncates "12.7" to 12; only whole numbers (12, 12.0) are clean casts.
        whole = text.rlike(r"^[+-]?[0-9]+(\.0*)?$")
        return F.when(whole, text.cast("decimal(38,6)").cast(T.IntegerType()))
    return text.cast(spark_type(f.kind))


def absent_value(f: Field) -> Column:
    """What an absent value of ``f`` becomes: an empty list for an optional list, else null.

    A CSV cell (or a comma-separated text column) cannot tell an empty list from a missing one,
    so every shape reads an absent optional list as empty, and the typed and text shapes agree.
    """
    if f.kind is Kind.STRING_ARRAY and not f.required:
        return F.array().cast(spark_type(f.kind))
    return F.lit(None).cast(spark_type(f.kind))


def _convert(f: Field, source: T.DataType, c: Column) -> Column:
    target = spark_type(f.kind)
    if f.kind is Kind.STRING:
        value = _blank_to_null(c.cast("string"))
        return F.upper(value) if f.enum is not None else value
    if isinstance(source, T.StringType):
        return _from_text(f, c)
    if f.kind is Kind.STRING_ARRAY and isinstance(source, T.ArrayType):
        return F.filter(F.transform(c.cast(target), F.trim), lambda s: s != "")
    return c.cast(target)


_NESTED = (T.ArrayType, T.StructType, T.MapType)


def _fits(f: Field, source: T.DataType) -> bool:
    """Whether a column of type ``source`` can hold values of ``f`` (text always can: it is
    parsed, value by value). Lists take lists of scalars, locations structs of two fields,
    scalars anything but a list, a struct or a map."""
    if isinstance(source, T.StringType):
        return True
    if f.kind is Kind.STRING_ARRAY:
        return isinstance(source, T.ArrayType) and not isinstance(source.elementType, _NESTED)
    if f.kind is Kind.GEO:
        return isinstance(source, T.StructType) and len(source.fields) == 2
    binary = isinstance(source, T.BinaryType) and f.kind is not Kind.STRING
    return not (isinstance(source, _NESTED) or binary)


def _cast_failed(source_col: Column, source: T.DataType, result: Column) -> Column:
    """The source held a value (not blank text) but the converted result is null."""
    present = source_col.isNotNull()
    if isinstance(source, T.StringType):
        present = present & (F.trim(source_col) != "")
    return present & result.isNull()


def normalise(
    entity: Entity,
    source_file: str | Column | None = None,
    *,
    extra_columns: str = "ignore",
    exclude: str | None = None,
) -> Transform:
    """A transform from raw rows of one shape (one file, or one scan of files alike) to the
    contract's columns.

    Args:
        entity: the contract to normalise to.
        source_file: recorded in ``_source_file`` when given (a name, or a column of each
            row's file name).
        extra_columns: ``"ignore"`` drops columns the contract does not know (the caller reports
            them); ``"quarantine"`` gives every row an ``<column>.extra_column`` violation.
        exclude: a column of the input that is not the customer's (the scan's file path): left
            out of the row as sent and of the drift.

    Output columns: the contract fields in contract order (typed), ``_raw`` (the row as the
    customer sent it, a struct: free until :func:`keep_original` renders it), ``_source_file``
    (when given) and ``_violations``.
    """

    def _apply(df: DataFrame) -> DataFrame:
        sent = T.StructType([f for f in df.schema.fields if f.name != exclude])
        columns, violations = _normalised(entity, sent, extra_columns)
        extra = []
        if source_file is not None:
            name = F.lit(source_file) if isinstance(source_file, str) else source_file
            extra.append(name.alias("_source_file"))
        return df.select(*columns, *extra, violations)

    return _apply


@per_jvm
def _normalised(
    entity: Entity, schema: T.StructType, extra_columns: str
) -> tuple[tuple[Column, ...], Column]:
    """:func:`normalise`'s columns for a file of this schema (the contract fields and ``_raw``),
    and its ``_violations``: built once per entity and file shape (column_memo.py)."""
    types = {f.name: f.dataType for f in schema.fields}
    original = F.struct(*(F.col(f"`{c}`") for c in schema.names))
    drift = detect_drift(entity, schema.names)
    outputs: list[Column] = []
    failures: list[tuple[Column, Column]] = []
    for f in entity.fields:
        if f.name in drift.missing_required or f.name in drift.missing_optional:
            outputs.append(absent_value(f).alias(f.name))
            if f.name in drift.missing_required:
                failures.append((F.lit(True), reason(entity.rule(f.name, RuleKind.MISSING_COLUMN))))
            continue
        if f.kind is Kind.GEO and f.name not in types:
            lat, lon = (
                _from_text(Field(n, Kind.DOUBLE, ""), F.col(n).cast("string")) for n in FLAT_GEO
            )
            src = F.to_json(F.struct(*(F.col(n) for n in FLAT_GEO)))
            failed = (F.col(FLAT_GEO[0]).isNotNull() & lat.isNull()) | (
                F.col(FLAT_GEO[1]).isNotNull() & lon.isNull()
            )
            # Like any value that cannot be cast, a half-parsed location becomes null.
            value = F.when(failed | (lat.isNull() & lon.isNull()), F.lit(None)).otherwise(
                F.struct(lat.alias("lat"), lon.alias("lon"))
            )
        elif not _fits(f, types[f.name]):
            # A nested value where a scalar is wanted, or a scalar where a list or a location
            # is: a type violation, never its text rendering (a struct cast to a string would
            # publish "{x, 0}" as a name).
            src_col = F.col(f"`{f.name}`")
            value = F.lit(None).cast(spark_type(f.kind))
            src = observed(src_col, types[f.name])
            failed = src_col.isNotNull()
        else:
            src_col = F.col(f"`{f.name}`")
            value = _convert(f, types[f.name], src_col)
            src = observed(src_col, types[f.name])
            failed = _cast_failed(src_col, types[f.name], value)
            if f.kind is Kind.STRING_ARRAY and not f.required:
                # Absent -> empty; a value that did not parse stays null (and is a violation).
                value = F.when(~failed, F.coalesce(value, absent_value(f)))
        outputs.append(value.alias(f.name))
        failures.append((failed, reason(entity.rule(f.name, RuleKind.TYPE), src)))
    if extra_columns == "quarantine":
        for name in drift.extra:
            failures.append((F.lit(True), reason(entity.rule(name, RuleKind.EXTRA_COLUMN))))
    return (*outputs, original.alias(RAW)), reasons_when(failures).alias(VIOLATIONS)


def keep_original(rows: Literal["rejected", "all"] = "rejected") -> Transform:
    """Replace ``_raw`` by ``_original``, the row as sent rendered as JSON.

    Only rows with violations need it (for the quarantine), so by default the others get null:
    rendering every row of a million-row batch as JSON, and keeping it, costs more than the rest of
    the validation.
    """

    def _apply(df: DataFrame) -> DataFrame:
        text = F.to_json(F.col(RAW))
        if rows == "rejected":
            text = F.when(has_violations(), text)
        return df.select(*(text.alias(ORIGINAL) if c == RAW else F.col(c) for c in df.columns))

    return _apply
