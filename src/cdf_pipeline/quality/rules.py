"""Row rules as Spark Column expressions, derived from the contract (no UDFs, nothing collected).

When a row breaks each rule is said once, in ``contracts/rule_registry.py``; :func:`expression`
compiles that to a Column (``cdf_generator/checks.py`` compiles the same to pyarrow masks).

:func:`validate` returns a ``DataFrame -> DataFrame`` transform that appends the violations of
every row rule in ``Entity.row_rules`` (plus the tenant check) to ``_violations``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from datetime import datetime
from functools import reduce
from typing import NoReturn

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cdf_pipeline.contracts import rule_registry as R
from cdf_pipeline.contracts.model import Entity, RuleKind
from cdf_pipeline.contracts.schemas import spark_type
from cdf_pipeline.quality.clock import CLOCK, with_clock
from cdf_pipeline.quality.column_memo import per_jvm
from cdf_pipeline.quality.reasons import (
    VIOLATIONS,
    append_violations,
    observed,
    reason,
    reasons_when,
)

Transform = Callable[[DataFrame], DataFrame]


def _value(v: R.Value) -> Column:
    c = F.col(v.column)
    return c if v.part is None else c[v.part]


def _operand(than: float | R.Value | R.Clock, clock: Column) -> Column | float:
    if isinstance(than, R.Value):
        return _value(than)
    if isinstance(than, R.Clock):
        return clock
    return than


def _fold(op: Callable[[Column, Column], Column], terms: list[Column], *, empty: bool) -> Column:
    return reduce(op, terms) if terms else F.lit(empty)


def _unhandled(node: NoReturn) -> NoReturn:
    raise TypeError(f"no Spark expression for {node!r}")


def expression(node: R.Breach, clock: Column) -> Column:
    """The Column that is true where ``node`` holds (``clock``: the run's clock)."""
    match node:
        case R.IsNull(v):
            return _value(v).isNull()
        case R.NotNull(v):
            return _value(v).isNotNull()
        case R.IsBlank(v):
            return F.trim(_value(v)) == ""
        case R.IsEmpty(v):
            return F.size(_value(v)) == 0
        case R.NotIn(v, codes):
            return ~_value(v).isin(*codes)
        case R.NotMatching(v, pattern):
            return ~_value(v).rlike(pattern)
        case R.HasMatch(v, pattern, each):
            if each:
                return F.exists(_value(v), lambda s: s.rlike(pattern))
            return _value(v).rlike(pattern)
        case R.LongerThan(v, limit, each):
            if each:
                return F.exists(_value(v), lambda s: F.length(s) > limit)
            return F.length(_value(v)) > limit
        case R.Compare(v, op, than):
            left, right = _value(v), _operand(than, clock)
            return left < right if op == "<" else left <= right if op == "<=" else left > right
        case R.Lacks(items, item):
            return ~F.array_contains(_value(items), _value(item))
        case R.AnyOf(terms):
            return _fold(operator.or_, [expression(t, clock) for t in terms], empty=False)
        case R.AllOf(terms):
            return _fold(operator.and_, [expression(t, clock) for t in terms], empty=True)
    _unhandled(node)


#: Observed values in a reason are clipped to this many characters (the row as sent, whole,
#: is in ``_original``): a megabyte value must not be copied into every reason naming it.
OBSERVED_MAX = 100


def clipped(text: Column) -> Column:
    """``text``, or its first :data:`OBSERVED_MAX` characters and its length when longer."""
    length = F.length(text)
    short = F.concat(
        F.substring(text, 1, OBSERVED_MAX), F.lit("... ("), length.cast("string"), F.lit(" chars)")
    )
    return F.when(length > OBSERVED_MAX, short).otherwise(text)


def row_reasons(entity: Entity, tenant: str, now: Column) -> Column:
    """The violations array of every row rule of ``entity`` plus the tenant check."""
    return F.concat(rule_reasons(entity, now), tenant_reasons(entity, tenant))


def rule_reasons(entity: Entity, now: Column) -> Column:
    """The violations array of every row rule of ``entity`` (nothing tenant-specific)."""
    pairs = []
    for rule in entity.row_rules:
        f = entity.field(rule.column)
        pairs.append(
            (
                expression(R.breach(entity, rule), now),
                reason(rule, clipped(observed(F.col(f.name), spark_type(f.kind)))),
            )
        )
    return reasons_when(pairs)


def tenant_reasons(entity: Entity, tenant: str) -> Column:
    """A one-reason violations array for a row naming another tenant than the run's, else
    empty. (A string literal is not written into generated code: every tenant shares it.)"""
    tenant_col = F.col("tenant_id")
    wrong = tenant_col.isNotNull() & (tenant_col != F.lit(tenant))
    return reasons_when(
        [(wrong, reason(entity.rule("tenant_id", RuleKind.TENANT_MATCH), tenant_col))]
    )


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
        now: the run's clock, joined in as data (default: Spark's ``current_timestamp()``, a
            literal in the generated code: for tests and one-off use).
        future_skew_seconds: how far past ``now`` a timestamp may be before it is "in the future".
    """

    def _apply(df: DataFrame) -> DataFrame:
        appended = VIOLATIONS in df.columns
        rules = _rule_reasons(entity, int(future_skew_seconds), now is not None)
        found = F.concat(rules, tenant_reasons(entity, tenant))
        merged = append_violations(F.col(VIOLATIONS), found) if appended else found
        clocked = df.transform(with_clock(now)) if now is not None else df
        cols = [merged.alias(c) if c == VIOLATIONS else F.col(f"`{c}`") for c in df.columns]
        if not appended:
            cols.append(merged.alias(VIOLATIONS))
        return clocked.select(*cols)

    return _apply


@per_jvm
def _rule_reasons(entity: Entity, future_skew_seconds: int, clocked: bool) -> Column:
    """:func:`rule_reasons` as :func:`validate` uses them, built once per key (column_memo.py):
    the entity's rules are the same for every tenant and every run.

    The clock comes in as a column of a broadcast row, not as a literal: the generated code of
    this (large) projection is then the same for every run and compiled once (clock.py), and
    the expression itself holds nothing of the run.
    """
    clock = F.col(CLOCK) if clocked else F.current_timestamp()
    return rule_reasons(entity, clock + F.expr(f"INTERVAL {future_skew_seconds} SECONDS"))
