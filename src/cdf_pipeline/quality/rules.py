"""Row rules as Spark Column expressions, derived from the contract (no UDFs, nothing collected).

:func:`validate` returns a ``DataFrame -> DataFrame`` transform that appends the violations of every
row rule in ``Entity.row_rules`` (plus the tenant check) to ``_violations``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cdf_pipeline.contracts.model import FORMAT_PATTERNS, Entity, Field, Kind, Rule, RuleKind
from cdf_pipeline.contracts.schemas import spark_type
from cdf_pipeline.quality.reasons import (
    VIOLATIONS,
    append_violations,
    observed,
    reason,
    reasons_when,
)

Transform = Callable[[DataFrame], DataFrame]

GEO_BOUNDS = {"lat": (-90.0, 90.0), "lon": (-180.0, 180.0)}


def _field(entity: Entity, rule: Rule) -> Field:
    return entity.field(rule.column)


def _required(f: Field) -> Column:
    c = F.col(f.name)
    if f.kind is Kind.STRING_ARRAY:
        return c.isNull() | (F.size(c) == 0)
    if f.kind is Kind.STRING:
        return c.isNull() | (F.trim(c) == "")
    return c.isNull()


def _range(f: Field) -> Column:
    c = F.col(f.name)
    if f.kind is Kind.GEO:
        out: Column | None = None
        for part, (lo, hi) in GEO_BOUNDS.items():
            v = c[part]
            bad = v.isNull() | (v < lo) | (v > hi)
            out = bad if out is None else (out | bad)
        assert out is not None
        return c.isNotNull() & out
    bad = F.lit(False)
    if f.minimum is not None:
        bad = bad | ((c <= f.minimum) if f.exclusive_minimum else (c < f.minimum))
    if f.maximum is not None:
        bad = bad | (c > f.maximum)
    return c.isNotNull() & bad


def _condition(entity: Entity, rule: Rule, now: Column) -> Column:
    """True when ``rule`` is broken. Null-valued optional fields break nothing but ``required``."""
    col = F.col(rule.column)
    f = _field(entity, rule)
    if rule.kind is RuleKind.REQUIRED:
        return _required(f)
    if rule.kind is RuleKind.ENUM:
        assert f.enum is not None
        return col.isNotNull() & ~col.isin(*f.enum)
    if rule.kind is RuleKind.RANGE:
        return _range(f)
    if rule.kind is RuleKind.FORMAT:
        assert f.fmt is not None
        return col.isNotNull() & ~col.rlike(FORMAT_PATTERNS[f.fmt])
    if rule.kind is RuleKind.NOT_FUTURE:
        return col.isNotNull() & (col > now)
    if rule.kind is RuleKind.P95_GE_AVG:
        assert rule.other is not None
        return col.isNotNull() & F.col(rule.other).isNotNull() & (col < F.col(rule.other))
    if rule.kind is RuleKind.CONTAINS:
        assert rule.other is not None
        other = F.col(rule.other)
        return col.isNotNull() & other.isNotNull() & ~F.array_contains(col, other)
    raise ValueError(f"no row expression for rule kind {rule.kind}")


def row_reasons(entity: Entity, tenant: str, now: Column) -> Column:
    """The violations array of every row rule of ``entity`` plus the tenant check."""
    pairs = []
    for rule in entity.row_rules:
        f = _field(entity, rule)
        pairs.append(
            (
                _condition(entity, rule, now),
                reason(rule, observed(F.col(f.name), spark_type(f.kind))),
            )
        )
    tenant_rule = entity.rule("tenant_id", RuleKind.TENANT_MATCH)
    tenant_col = F.col("tenant_id")
    pairs.append(
        (
            tenant_col.isNotNull() & (tenant_col != F.lit(tenant)),
            reason(tenant_rule, tenant_col),
        )
    )
    return reasons_when(pairs)


def validate(
    entity: Entity,
    tenant: str,
    *,
    now: datetime | None = None,
    future_skew_seconds: int = 300,
) -> Transform:
    """A transform appending every row-rule violation of ``entity`` to ``_violations``.

    Args:
        entity: the contract whose rules apply.
        tenant: the tenant being run; rows naming another tenant are violations.
        now: the run's clock (default: Spark's ``current_timestamp()``); pass one in tests.
        future_skew_seconds: how far past ``now`` a timestamp may be before it is "in the future".
    """
    clock = F.lit(now) if now is not None else F.current_timestamp()
    limit = clock + F.expr(f"INTERVAL {int(future_skew_seconds)} SECONDS")

    def _apply(df: DataFrame) -> DataFrame:
        existing = F.col(VIOLATIONS) if VIOLATIONS in df.columns else None
        found = row_reasons(entity, tenant, limit)
        merged = append_violations(existing, found) if existing is not None else found
        return df.withColumn(VIOLATIONS, merged)

    return _apply


def is_valid(df_col: str = VIOLATIONS) -> Column:
    """True for rows without violations."""
    return F.size(F.col(df_col)) == 0
