"""Tenant-scoped foreign-key checks, scalar and array, as joins (nothing collected).

``parent_keys`` must hold only the current tenant's parent keys (one column, ``key``): a child
pointing at another tenant's parent is then an orphan by construction. Each violation names the
missing ids, sorted and comma-separated.
"""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cdf_pipeline.contracts.model import Entity, ForeignKey, RuleKind
from cdf_pipeline.quality.reasons import VIOLATIONS, append_violations, reason

Transform = Callable[[DataFrame], DataFrame]

PARENT_KEY = "key"


def _missing_ids(df: DataFrame, pk: str, fk: ForeignKey, parents: DataFrame) -> DataFrame:
    """``(pk, _missing_<fk>)``: per child row, the sorted distinct ids not found among parents."""
    element = F.explode(F.col(fk.column)) if fk.is_array else F.col(fk.column)
    refs = df.select(pk, element.alias("_ref")).where(F.col("_ref").isNotNull())
    missing = refs.join(parents, refs["_ref"] == parents[PARENT_KEY], "left_anti")
    return missing.groupBy(pk).agg(
        F.array_sort(F.collect_set("_ref")).alias(f"_missing_{fk.column}")
    )


def check_foreign_keys(entity: Entity, parent_keys: DataFrame) -> Transform:
    """A transform appending ``<column>.fk`` violations for references not in ``parent_keys``.

    Only rows without violations are checked (others are already rejected), and those must be
    unique by primary key, which :func:`~cdf_pipeline.quality.dedupe.deduplicate` guarantees.
    """
    pk = entity.primary_key
    parents = parent_keys.select(F.col(PARENT_KEY)).distinct()

    def _apply(df: DataFrame) -> DataFrame:
        if not entity.foreign_keys:
            return df
        flagged = df.withColumn("_fk_checked", F.size(F.col(VIOLATIONS)) == 0)
        checked = flagged.where(F.col("_fk_checked"))
        out = flagged
        for fk in entity.foreign_keys:
            out = out.join(_missing_ids(checked, pk, fk, parents), on=pk, how="left")
        found = []
        for fk in entity.foreign_keys:
            missing = F.col(f"_missing_{fk.column}")
            rule = entity.rule(fk.column, RuleKind.FOREIGN_KEY)
            found.append(
                F.when(
                    F.col("_fk_checked") & missing.isNotNull(),
                    F.array(reason(rule, F.array_join(missing, ","))),
                )
            )
        merged = F.col(VIOLATIONS)
        for f in found:
            merged = append_violations(merged, f)
        return out.select(*(c for c in df.columns if c != VIOLATIONS), merged.alias(VIOLATIONS))

    return _apply
