"""The audits of write-audit-publish, run on the staged state before anything is published.

Each audit checks what this run would write against silver as it is, so a failing audit leaves
silver untouched. The key and reference audits are incremental: silver satisfied them before the
run (every earlier publish passed them) and rows are never deleted, so checking the rows written
keeps the invariant for the whole tenant without rescanning it.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import reduce

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdf_pipeline.config import Settings
from cdf_pipeline.contracts import ENTITIES, Entity
from cdf_pipeline.lakehouse import merge
from cdf_pipeline.lakehouse.tables import TableNames, tenant_rows
from cdf_pipeline.pipeline.context import RunContext
from cdf_pipeline.pipeline.stage import ParentKeys, StagedEntity
from cdf_pipeline.quality.foreign_keys import PARENT_KEY, missing_references, tagged_keys
from cdf_pipeline.quality.reasons import VIOLATIONS, VIOLATIONS_TYPE
from cdf_pipeline.run_record import Audit
from cdf_pipeline.tenants import validate_tenant_id


def _silver(spark: SparkSession, names: TableNames, entity: Entity, tenant: str) -> DataFrame:
    return spark.table(names.silver(entity)).where(F.col("tenant_id") == validate_tenant_id(tenant))


def parent_keys(ctx: RunContext, child: Entity, staged: Mapping[str, StagedEntity]) -> ParentKeys:
    """The keys of every parent ``child`` references, once this run is published.

    Per parent entity: silver's keys plus this run's valid rows (``staged``), tagged with the
    parent's name so each foreign key is checked against its own parent. And whether to
    broadcast them: at most ``spark.broadcast_max_parent_keys`` keys in all (silver's counted
    from table metadata), so that joins against them never shuffle the children's references.
    """
    spark, names, tenant = ctx.spark, ctx.names, ctx.tenant
    max_broadcast = ctx.settings.spark.broadcast_max_parent_keys
    frames: list[DataFrame] = []
    estimate = 0
    for name in sorted({fk.entity for fk in child.foreign_keys}):
        parent = staged.get(name) or StagedEntity(ENTITIES[name], None, None, None)
        pk = parent.entity.primary_key
        keys = _silver(spark, names, parent.entity, tenant).select(F.col(pk).alias(PARENT_KEY))
        if (run_keys := parent.valid_keys()) is not None:
            keys = keys.unionByName(run_keys)
        frames.append(tagged_keys(keys, name))
        c = parent.counts
        estimate += c.inserted + c.updated + c.unchanged + c.stale
        if estimate <= max_broadcast:
            estimate += tenant_rows(spark, names.silver(parent.entity), tenant)
    union = reduce(lambda a, b: a.unionByName(b), frames)
    return ParentKeys(union, estimate <= max_broadcast)


def count_invariant(staged: StagedEntity) -> Audit:
    """read + promoted = inserted + updated + unchanged + stale + quarantined + dropped copies."""
    c = staged.counts
    left = c.read + c.promoted
    right = c.inserted + c.updated + c.unchanged + c.stale + c.quarantined + c.duplicates_dropped
    return Audit(
        f"{staged.entity.name}.count_invariant",
        left == right,
        f"read {c.read} + promoted {c.promoted} = {left}; outcomes add up to {right}",
    )


def primary_key_unique(
    spark: SparkSession, names: TableNames, staged: StagedEntity, tenant: str, few: bool = False
) -> Audit:
    """No key is written twice, and no "new" key already exists in silver.

    With silver unique before the run (the previous runs' audit), that keeps it unique after.
    ``few``: the rows to write are few enough to broadcast against silver's keys.
    """
    name = f"{staged.entity.name}.primary_key_unique"
    changes = staged.changes
    if changes is None:
        return Audit(name, True, "nothing to write")
    pk = staged.entity.primary_key
    # Over every valid key of the run (a superset of the keys written), read from the small
    # materialised key set rather than by recomputing the staged rows.
    valid = staged.valid_keys()
    assert valid is not None  # there are changes, so there are valid rows
    twice = valid.groupBy(PARENT_KEY).count().where(F.col("count") > 1).count()
    current = _silver(spark, names, staged.entity, tenant).select(pk)
    clash = 0
    # An empty silver (a first load) cannot clash; table metadata says whether it is empty.
    if tenant_rows(spark, names.silver(staged.entity), tenant) > 0:
        inserts = changes.where(F.col(merge.OUTCOME) == merge.INSERT).select(pk)
        if staged.silver_state is not None:
            # Silver's rows for every key of the run, read by classification (a superset of
            # the inserts' keys): no second scan of the tenant's silver.
            looked_up = F.broadcast(staged.silver_state.select(pk))
            clash = inserts.join(looked_up, pk, "left_semi").count()
        elif few:  # scan silver's keys against the broadcast inserts rather than shuffle them
            clash = current.join(F.broadcast(inserts), pk, "left_semi").count()
        else:
            clash = inserts.join(current, pk, "left_semi").count()
    return Audit(
        name,
        twice == 0 and clash == 0,
        f"{twice} keys written twice, {clash} new keys already in silver",
    )


def foreign_keys_closed(child: StagedEntity, parents: ParentKeys, few: bool = False) -> Audit:
    """Every row this run writes references only parents that exist once it is published.

    Silver rows the run does not touch were closed before (previous audits) and parents are never
    deleted, so checking the written rows keeps the whole tenant closed. ``few``: the rows to
    write are few enough to broadcast their references.
    """
    e = child.entity
    name = f"{e.name}.foreign_keys_closed"
    changes = child.changes
    if changes is None:
        return Audit(name, True, "nothing to write")
    cols = [e.primary_key, *(fk.column for fk in e.foreign_keys)]
    rows = changes.select(*cols).withColumn(VIOLATIONS, F.array().cast(VIOLATIONS_TYPE))
    check = missing_references(
        e, parents.keys, few_children=few, broadcast_parents=parents.broadcast
    )
    orphans = rows.transform(check).count()
    return Audit(name, orphans == 0, f"{orphans} written rows with missing parents")


def pass_rate(settings: Settings, staged: dict[str, StagedEntity]) -> Audit:
    read = sum(s.counts.read + s.counts.promoted for s in staged.values())
    bad = sum(s.counts.quarantined for s in staged.values())
    rate = 1.0 if read == 0 else 1 - bad / read
    floor = settings.quality.min_pass_rate
    return Audit("pass_rate", rate >= floor, f"{rate:.4f} of rows valid; minimum {floor:.4f}")


def run_audits(ctx: RunContext, staged: dict[str, StagedEntity]) -> list[Audit]:
    """Every audit, in a stable order."""
    spark, names, tenant = ctx.spark, ctx.names, ctx.tenant
    audits = [count_invariant(s) for s in staged.values()]
    audits.append(pass_rate(ctx.settings, staged))
    limit = ctx.settings.spark.broadcast_max_rows
    few = {n: s.counts.inserted + s.counts.updated <= limit for n, s in staged.items()}
    audits += [primary_key_unique(spark, names, s, tenant, few[n]) for n, s in staged.items()]
    for s in staged.values():
        if not s.entity.foreign_keys:
            continue
        if s.parents is not None:  # the set the FK check used
            parents = ParentKeys(s.parents, s.broadcast_parents)
        else:
            parents = parent_keys(ctx, s.entity, staged)
        audits.append(foreign_keys_closed(s, parents, few[s.entity.name]))
    return audits
