"""``cdf maintain --check``: the pipeline's guarantees, verified on what the tables hold now.

A run's audits are incremental (they check the rows it writes, trusting that silver held the
guarantees before); these checks read the whole of a tenant's tables, so they also find what no
audit could see: rows left by older versions of the job, a write from outside the pipeline, a
bug. Per tenant:

- ``<entity>.primary_key_unique``: no key is held by two silver rows;
- ``<entity>.foreign_keys_closed``: every foreign key of a silver row names a silver row of its
  parent entity (for parts: ``default_supplier_id`` and every ``qualified_supplier_ids`` element);
- ``<entity>.quarantine_status``: every quarantine row is ``OPEN`` (and not resolved) or
  ``RESOLVED`` with the run that resolved it and when.

Each check is one aggregate query (a count); only a failing check runs a second query for a few
example keys (bounded by :data:`EXAMPLES`, never data-sized).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdf_pipeline.contracts import ENTITIES, Entity
from cdf_pipeline.lakehouse.quarantine import KEY, OPEN, RESOLVED
from cdf_pipeline.lakehouse.tables import TableNames, tenant_rows
from cdf_pipeline.quality.foreign_keys import PARENT_KEY, missing_references, tagged_keys
from cdf_pipeline.quality.reasons import VIOLATIONS, VIOLATIONS_TYPE
from cdf_pipeline.tenants import validate_tenant_id

#: Example keys shown for a failed check.
EXAMPLES = 3

PRIMARY_KEY_UNIQUE = "primary_key_unique"
FOREIGN_KEYS_CLOSED = "foreign_keys_closed"
QUARANTINE_STATUS = "quarantine_status"


@dataclass(frozen=True)
class CheckResult:
    """One guarantee checked on one tenant's table: how many rows or keys break it."""

    tenant: str
    table: str  # namespace.table, no catalog
    name: str  # <entity>.<check>
    failures: int
    detail: str
    examples: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.failures == 0

    def to_dict(self) -> dict[str, object]:
        return {
            "tenant": self.tenant,
            "table": self.table,
            "check": self.name,
            "passed": self.passed,
            "failures": self.failures,
            "detail": self.detail,
            "examples": list(self.examples),
        }


def _short(table: str) -> str:
    return table.split(".", 1)[1]


def _tenant_table(spark: SparkSession, table: str, tenant: str) -> DataFrame:
    return spark.table(table).where(F.col("tenant_id") == F.lit(tenant))


def primary_key_unique(
    spark: SparkSession, names: TableNames, entity: Entity, tenant: str
) -> CheckResult:
    """Keys held by more than one of the tenant's silver rows, and the surplus rows."""
    table = names.silver(entity)
    pk = entity.primary_key
    repeated = (
        _tenant_table(spark, table, tenant)
        .groupBy(pk)
        .agg(F.count(F.lit(1)).alias("n"))
        .where(F.col("n") > 1)
    )
    row = repeated.agg(
        F.count(F.lit(1)).alias("keys"), F.coalesce(F.sum(F.col("n") - 1), F.lit(0)).alias("extra")
    ).first()
    keys, extra = (int(row["keys"]), int(row["extra"])) if row is not None else (0, 0)
    examples: tuple[str, ...] = ()
    if keys:
        examples = tuple(
            f"{r[pk]} ({r['n']} rows)" for r in repeated.orderBy(pk).limit(EXAMPLES).collect()
        )
    return CheckResult(
        tenant,
        _short(table),
        f"{entity.name}.{PRIMARY_KEY_UNIQUE}",
        keys,
        f"{keys} key(s) held by more than one row ({extra} surplus row(s))"
        if keys
        else "every key held by one row",
        examples,
    )


def foreign_keys_closed(
    spark: SparkSession, names: TableNames, entity: Entity, tenant: str, max_broadcast: int = 0
) -> CheckResult:
    """The tenant's silver rows of ``entity`` with a foreign key naming no silver parent row.

    The same join as the run's FK check (``quality.foreign_keys``), against each parent's silver
    keys only; parents are broadcast when table metadata counts at most ``max_broadcast`` keys.
    """
    table = names.silver(entity)
    frames, parent_rows = [], 0
    for parent in sorted({fk.entity for fk in entity.foreign_keys}):
        p = ENTITIES[parent]
        keys = _tenant_table(spark, names.silver(p), tenant).select(
            F.col(p.primary_key).alias(PARENT_KEY)
        )
        frames.append(tagged_keys(keys, parent))
        parent_rows += tenant_rows(spark, names.silver(p), tenant)
    parents = reduce(lambda a, b: a.unionByName(b), frames)
    cols = [entity.primary_key, *(fk.column for fk in entity.foreign_keys)]
    rows = (
        _tenant_table(spark, table, tenant)
        .select(*cols)
        .withColumn(VIOLATIONS, F.array().cast(VIOLATIONS_TYPE))
    )
    check = missing_references(entity, parents, broadcast_parents=parent_rows <= max_broadcast)
    orphans = rows.transform(check)
    count = int(orphans.count())
    examples: tuple[str, ...] = ()
    if count:
        shown = orphans.orderBy(entity.primary_key).limit(EXAMPLES).collect()
        examples = tuple(_orphan_example(entity, r) for r in shown)
    parent_names = ", ".join(sorted({fk.entity for fk in entity.foreign_keys}))
    return CheckResult(
        tenant,
        _short(table),
        f"{entity.name}.{FOREIGN_KEYS_CLOSED}",
        count,
        f"{count} row(s) referencing missing {parent_names}"
        if count
        else f"every reference names a row of {parent_names}",
        examples,
    )


def _orphan_example(entity: Entity, row: object) -> str:
    missing = []
    for fk in entity.foreign_keys:
        ids = row[f"_missing_{fk.column}"]  # type: ignore[index]
        if ids:
            missing.append(f"{fk.column}: {','.join(ids)}")
    return f"{row[entity.primary_key]} ({'; '.join(missing)})"  # type: ignore[index]


def quarantine_status(
    spark: SparkSession, names: TableNames, entity: Entity, tenant: str
) -> CheckResult:
    """Quarantine rows neither OPEN (unresolved) nor RESOLVED with a resolving run and time."""
    table = names.quarantine(entity)
    status, run, at = F.col("_status"), F.col("_resolved_run_id"), F.col("_resolved_at")
    good = ((status == F.lit(OPEN)) & run.isNull() & at.isNull()) | (
        (status == F.lit(RESOLVED)) & run.isNotNull() & at.isNotNull()
    )
    bad = _tenant_table(spark, table, tenant).where(~F.coalesce(good, F.lit(False)))
    count = int(bad.count())
    examples: tuple[str, ...] = ()
    if count:
        shown = bad.orderBy(KEY).limit(EXAMPLES).collect()
        examples = tuple(
            f"{r[entity.primary_key]} (status {r['_status']}, resolved by {r['_resolved_run_id']})"
            for r in shown
        )
    return CheckResult(
        tenant,
        _short(table),
        f"{entity.name}.{QUARANTINE_STATUS}",
        count,
        f"{count} row(s) neither {OPEN} nor {RESOLVED} with a resolving run"
        if count
        else f"every row {OPEN}, or {RESOLVED} with its run",
        examples,
    )


def check_tenant(
    spark: SparkSession, names: TableNames, tenant: str, max_broadcast: int = 0
) -> list[CheckResult]:
    """Every check on one tenant, entity by entity in contract order."""
    tenant = validate_tenant_id(tenant)
    results: list[CheckResult] = []
    for entity in ENTITIES.values():
        results.append(primary_key_unique(spark, names, entity, tenant))
        if entity.foreign_keys:
            results.append(foreign_keys_closed(spark, names, entity, tenant, max_broadcast))
        results.append(quarantine_status(spark, names, entity, tenant))
    return results
