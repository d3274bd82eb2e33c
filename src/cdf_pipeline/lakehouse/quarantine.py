"""The quarantine tables: every rejected row with its original values and structured reasons.

Rows are keyed by ``(tenant, source file, hash of the original row, occurrence)``, so a rerun after
a crash inserts nothing twice. Parts rejected only for missing suppliers stay ``OPEN`` and are
re-checked by later runs; once promoted to silver they are marked ``RESOLVED``, never deleted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from cdf_pipeline.contracts import RULE_SET_VERSION, Entity, RuleKind
from cdf_pipeline.lakehouse.tables import TableNames, tenant_rows
from cdf_pipeline.quality.clock import CLOCK, with_clock
from cdf_pipeline.quality.normalise import ORIGINAL
from cdf_pipeline.quality.reasons import VIOLATIONS, has_violations
from cdf_pipeline.tenants import validate_tenant_id

Transform = Callable[[DataFrame], DataFrame]

OPEN, RESOLVED = "OPEN", "RESOLVED"
KEY = "_quarantine_key"


def quarantine_rows(entity: Entity, tenant: str, run_id: str, now: datetime) -> Transform:
    """Rejected batch rows -> quarantine table rows (pure; key derived from the row as sent).

    Every row is filed under the tenant being run, whatever its ``tenant_id`` says: a row naming
    another tenant (or none) must not land in that tenant's partition. The value as sent stays in
    ``_original`` and in the ``tenant_id.tenant_mismatch`` reason. ``_quarantined_at`` is ``now``
    joined in as data (``quality/clock.py``): the generated code is the same for every run.
    """

    def _apply(rejected: DataFrame) -> DataFrame:
        # Rows rejected only for their keys (duplicates, missing parents) passed every value check,
        # so their normalised values are what was sent, bar trimming and case.
        as_sent = F.coalesce(F.col(ORIGINAL), F.to_json(F.struct(*entity.field_names)))
        original_hash = F.sha2(as_sent, 256)
        w = Window.partitionBy("tenant_id", "_source_file", original_hash).orderBy(original_hash)
        occurrence = F.row_number().over(w)
        key = F.sha2(
            F.concat_ws("|", F.lit(tenant), "_source_file", original_hash, occurrence), 256
        )
        owner = F.lit(validate_tenant_id(tenant)).alias("tenant_id")
        return rejected.transform(with_clock(now)).select(
            *(owner if c == "tenant_id" else F.col(c) for c in entity.field_names),
            as_sent.alias(ORIGINAL),
            VIOLATIONS,
            "_source_file",
            F.lit(run_id).alias("_run_id"),
            F.lit(RULE_SET_VERSION).alias("_rule_set_version"),
            F.col(CLOCK).alias("_quarantined_at"),
            key.alias(KEY),
            F.lit(OPEN).alias("_status"),
            F.lit(None).cast("string").alias("_resolved_run_id"),
            F.lit(None).cast("timestamp").alias("_resolved_at"),
        )

    return _apply


def write_quarantine(
    spark: SparkSession,
    names: TableNames,
    entity: Entity,
    tenant: str,
    rows: DataFrame,
    *,
    tenant_has_rows: bool | None = None,
) -> None:
    """Append the quarantine rows whose key is not there yet (idempotent).

    An anti-join and an append rather than a MERGE: only this tenant's run writes its partition,
    and an append commits new files without planning a row-level rewrite. The anti-join is
    skipped while the tenant has no quarantine rows (``tenant_has_rows``, when the caller
    knows; else table metadata says so), and the rows are written where they are: they all
    belong to one partition, so they need no shuffle.
    """
    tenant = validate_tenant_id(tenant)
    table = names.quarantine(entity)
    if tenant_has_rows is None:
        tenant_has_rows = tenant_rows(spark, table, tenant) > 0
    if tenant_has_rows:
        present = spark.table(table).where(F.col("tenant_id") == F.lit(tenant)).select(KEY)
        rows = rows.join(present, KEY, "left_anti")
    rows.writeTo(table).option("distribution-mode", "none").append()


def open_fk_only(spark: SparkSession, names: TableNames, entity: Entity, tenant: str) -> DataFrame:
    """OPEN quarantine rows of the tenant whose every reason is a missing foreign key."""
    fk_codes = [entity.rule(fk.column, RuleKind.FOREIGN_KEY).code for fk in entity.foreign_keys]
    table = spark.table(names.quarantine(entity))
    only_fk = F.forall(F.col(VIOLATIONS), lambda r: r["rule"].isin(*fk_codes))
    return table.where(
        (F.col("tenant_id") == F.lit(validate_tenant_id(tenant)))
        & (F.col("_status") == F.lit(OPEN))
        & has_violations()
        & only_fk
    )


@dataclass(frozen=True)
class Resolver:
    """Who resolves quarantine rows: the run's id and clock, and the temporary view its MERGE
    reads the keys from (a name of the run's own)."""

    run_id: str
    now: datetime
    view: str


def resolve(
    spark: SparkSession,
    names: TableNames,
    entity: Entity,
    tenant: str,
    keys: DataFrame,
    by: Resolver,
) -> None:
    """Mark the quarantine rows with these ``_quarantine_key`` values RESOLVED by ``by``'s run."""
    tenant = validate_tenant_id(tenant)
    run_id, view = by.run_id, by.view
    # The clock rides along with the keys as data, not as a TIMESTAMP literal in the statement.
    resolved = keys.select(KEY).distinct().transform(with_clock(by.now))
    resolved.withColumnRenamed(CLOCK, "_resolved_at").createOrReplaceTempView(view)
    try:
        spark.sql(
            f"""
            MERGE INTO {names.quarantine(entity)} t USING {view} s
            ON t.tenant_id = '{tenant}' AND t.{KEY} = s.{KEY}
            WHEN MATCHED AND t._status = '{OPEN}' THEN UPDATE SET
              t._status = '{RESOLVED}', t._resolved_run_id = '{run_id}',
              t._resolved_at = s._resolved_at
            """
        )
    finally:
        spark.catalog.dropTempView(view)


def resolve_sent_again(
    spark: SparkSession,
    names: TableNames,
    entity: Entity,
    tenant: str,
    received: DataFrame,
    by: Resolver,
) -> None:
    """Resolve older OPEN quarantine rows whose primary key ``by``'s run received again.

    ``received``: the keys (column ``entity.primary_key``) this run landed in silver (inserted or
    updated: the customer fixed the row and sent it back, or sent a newer valid version) or
    quarantined again (sent back still broken: open under its new copy, with its new reasons).
    They come from the run's staged rows, never from a scan of silver, so the cost follows the
    batch. Either way the run counts the row once, where it read it: resolving adds nothing to
    ``promoted`` or any other count. Runs after the promotion step, so rows promoted by this run
    are already RESOLVED. Nothing is written when no key matches (the usual case).
    """
    tenant = validate_tenant_id(tenant)
    pk = entity.primary_key
    older = (
        spark.table(names.quarantine(entity))
        .where(
            (F.col("tenant_id") == F.lit(tenant))
            & (F.col("_status") == F.lit(OPEN))
            & (F.col("_run_id") != F.lit(by.run_id))
        )
        .select(KEY, pk)
    )
    keys = older.join(received.select(pk).distinct(), pk, "left_semi").select(KEY)
    if keys.limit(1).count() == 0:
        return
    resolve(spark, names, entity, tenant, keys, by)
