"""Tenant-scoped foreign-key checks, scalar and array, as joins (nothing collected).

``parent_keys`` must hold only the current tenant's parent keys, two columns: the parent entity
(``_parent``) and its key (``key``), so each foreign key is checked against its own parent's keys
(an entity may reference several parents; an id of the wrong parent is an orphan). A child
pointing at another tenant's parent is an orphan by construction. Each violation names the
missing ids, sorted and comma-separated.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cdf_pipeline.contracts.model import Entity, RuleKind
from cdf_pipeline.quality.dedupe import DROPPED
from cdf_pipeline.quality.reasons import VIOLATIONS, append_violations, no_violations, reason

Transform = Callable[[DataFrame], DataFrame]

PARENT_KEY = "key"
PARENT_ENTITY = "_parent"


def tagged_keys(keys: DataFrame, parent: str) -> DataFrame:
    """``(_parent, key)`` from a one-column frame of ``parent``'s keys."""
    return keys.select(F.lit(parent).alias(PARENT_ENTITY), F.col(PARENT_KEY))


def _references(df: DataFrame, entity: Entity, *keep: str) -> DataFrame:
    """``(*keep, _fk, _ref, _parent)``: one row per non-null id a row references, through any
    foreign key (``_fk``: the key's position in ``entity.foreign_keys``; ``_parent``: the entity
    it must exist in). One pass over ``df`` for all keys.
    """
    parent_of = F.array(*(F.lit(fk.entity) for fk in entity.foreign_keys))
    tagged = []
    for i, fk in enumerate(entity.foreign_keys):
        ids = (
            F.coalesce(F.col(fk.column), F.array().cast("array<string>"))
            if fk.is_array
            else F.array(F.col(fk.column))
        )
        tag = F.array_repeat(F.lit(i), F.size(ids))
        tagged.append(F.arrays_zip(tag.alias("_fk"), ids.alias("_ref")))
    refs = df.select(*keep, F.inline(F.concat(*tagged))).where(F.col("_ref").isNotNull())
    return refs.withColumn(PARENT_ENTITY, parent_of[F.col("_fk")])


def _found_in(refs: DataFrame, parents: DataFrame) -> Column:
    return (refs["_ref"] == parents[PARENT_KEY]) & (refs[PARENT_ENTITY] == parents[PARENT_ENTITY])


def _missing_ids(
    df: DataFrame,
    entity: Entity,
    parents: DataFrame,
    few_children: bool,
    broadcast_parents: bool,
) -> DataFrame:
    """``(pk, _missing_<column>...)``: per child row with a reference not found among parents,
    the sorted distinct missing ids of each foreign key (null for a key with none missing).

    Parents few enough to broadcast are, so the children's references are never shuffled. Else,
    with few children, the parents are first cut down to the ids referenced (a broadcast
    semi-join, a scan of the parent keys), so the big parent set is never shuffled.
    """
    pk = entity.primary_key
    refs = _references(df, entity, pk)
    if broadcast_parents:
        parents = F.broadcast(parents)
    elif few_children:
        wanted = refs.select(PARENT_ENTITY, F.col("_ref").alias(PARENT_KEY)).distinct()
        on = [PARENT_ENTITY, PARENT_KEY]
        parents = F.broadcast(parents.join(F.broadcast(wanted), on, "left_semi"))
    missing = refs.join(parents, _found_in(refs, parents), "left_anti")
    per_key = []
    for i, fk in enumerate(entity.foreign_keys):
        ids = F.array_sort(F.collect_set(F.when(F.col("_fk") == i, F.col("_ref"))))
        per_key.append(F.when(F.size(ids) > 0, ids).alias(f"_missing_{fk.column}"))
    return missing.groupBy(pk).agg(*per_key)


def _checked(df: DataFrame) -> Column:
    """Rows the check applies to: no violation yet, and not an exact copy being dropped."""
    ok = no_violations()
    return ok & ~F.col(DROPPED) if DROPPED in df.columns else ok


def missing_references(
    entity: Entity,
    parent_keys: DataFrame,
    *,
    few_children: bool = False,
    broadcast_parents: bool = False,
) -> Transform:
    """A transform from a batch to ``(pk, _missing_<column>...)``: one row per checked row with
    a reference not in ``parent_keys`` (usually few: worth materialising and broadcasting).

    Checked rows must be unique by primary key, which deduplication guarantees. Pass
    ``few_children`` when the batch is small enough to broadcast its referenced ids, and
    ``broadcast_parents`` when the parent keys are.
    """
    # No distinct(): an anti-join finds the same references whether a key appears once or twice.
    parents = parent_keys.select(PARENT_ENTITY, PARENT_KEY)

    def _apply(df: DataFrame) -> DataFrame:
        checked = df.where(_checked(df))
        return _missing_ids(checked, entity, parents, few_children, broadcast_parents)

    return _apply


def referenced_parents(
    entity: Entity, parent_keys: DataFrame, children: list[DataFrame]
) -> DataFrame:
    """The parent keys that the checked rows of ``children`` reference, through any foreign key.

    For the rows of ``children``, checking against this (small) set finds exactly what checking
    against all of ``parent_keys`` would. The referenced ids are broadcast to one scan of the
    parents.
    """
    refs = [
        _references(df.where(_checked(df)), entity).select(
            PARENT_ENTITY, F.col("_ref").alias(PARENT_KEY)
        )
        for df in children
    ]
    wanted = reduce(lambda a, b: a.unionByName(b), refs).distinct()
    on = [PARENT_ENTITY, PARENT_KEY]
    return parent_keys.select(*on).join(F.broadcast(wanted), on, "left_semi")


def flag_missing(entity: Entity, missing: DataFrame, *, broadcast: bool = False) -> Transform:
    """A transform appending ``<column>.fk`` violations from :func:`missing_references`."""
    pk = entity.primary_key

    def _apply(df: DataFrame) -> DataFrame:
        side = F.broadcast(missing) if broadcast else missing
        out = df.withColumn("_fk_checked", _checked(df)).join(side, on=pk, how="left")
        merged = F.col(VIOLATIONS)
        for fk in entity.foreign_keys:
            ids = F.col(f"_missing_{fk.column}")
            rule = entity.rule(fk.column, RuleKind.FOREIGN_KEY)
            found = F.when(
                F.col("_fk_checked") & ids.isNotNull(),
                F.array(reason(rule, F.array_join(ids, ","))),
            )
            merged = append_violations(merged, found)
        return out.select(*(c for c in df.columns if c != VIOLATIONS), merged.alias(VIOLATIONS))

    return _apply


def check_foreign_keys(
    entity: Entity,
    parent_keys: DataFrame,
    *,
    few_children: bool = False,
    broadcast_parents: bool = False,
) -> Transform:
    """A transform appending ``<column>.fk`` violations for references not in ``parent_keys``.

    Only rows without violations (and not dropped as exact copies) are checked; others are
    already rejected or counted.
    """

    def _apply(df: DataFrame) -> DataFrame:
        if not entity.foreign_keys:
            return df
        check = missing_references(
            entity, parent_keys, few_children=few_children, broadcast_parents=broadcast_parents
        )
        missing = df.transform(check)
        return df.transform(flag_missing(entity, missing, broadcast=few_children))

    return _apply
