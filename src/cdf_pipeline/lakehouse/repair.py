"""``cdf maintain --repair``: mend silver keys held by more than one row.

Older versions of the job could leave duplicates: two runs of one tenant that chose the same new
files both appended the same new keys (an append checks nothing against concurrent appends,
which the tenant lease now prevents). Per tenant and key the newest version wins: the latest
``source_timestamp``, then the latest ``_ingested_at``, then the highest ``_run_id`` (and, for
rows alike in all three, the first by file and position). Every other row is *moved*: written
to the entity's quarantine table, ``OPEN``, with the reason ``<key>.duplicate_in_silver``, then
deleted from silver.

Why this shape:

- rows to delete are found by position (Iceberg's ``_file`` and ``_pos`` metadata columns), so
  of two byte-identical rows exactly one goes; in Iceberg 1.10 a ``DELETE`` whose condition is
  an ``EXISTS`` over those positions works (row-level, merge-on-read), while a ``MERGE`` joining
  on them fails and a plain ``_file = ... AND _pos = ...`` filter cannot be pushed down and is
  refused. The delete also matches the key and row hash, so a stale position cannot remove
  another row;
- quarantine first, silver second (two tables cannot share a commit): a crash in between leaves
  a row in both places, never in neither, and the next repair finds the same losers, whose
  quarantine keys (from their content and occurrence, not their position) are already there;
- run twice, the second finds no duplicate and writes nothing.

It runs under the tenant's lease, like a run: nothing else writes the tenant's partitions while
the positions are read and deleted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from cdf_pipeline.contracts import RULE_SET_VERSION, Entity
from cdf_pipeline.contracts.schemas import LINEAGE_COLUMNS
from cdf_pipeline.lakehouse.quarantine import KEY, OPEN, write_quarantine
from cdf_pipeline.lakehouse.tables import TableNames
from cdf_pipeline.quality.normalise import ORIGINAL
from cdf_pipeline.quality.reasons import REASON_TYPE, VIOLATIONS
from cdf_pipeline.quality.rowhash import ROW_HASH
from cdf_pipeline.tenants import validate_tenant_id

#: The rule kind of the reason a moved row carries: ``<primary key>.duplicate_in_silver``.
DUPLICATE_IN_SILVER = "duplicate_in_silver"
#: Example keys reported per table.
EXAMPLES = 3

_FILE, _POS = "_repair_file", "_repair_pos"

Transform = Callable[[DataFrame], DataFrame]


def rule_code(entity: Entity) -> str:
    return f"{entity.primary_key}.{DUPLICATE_IN_SILVER}"


@dataclass(frozen=True)
class Repair:
    """What repairing one tenant's silver table did."""

    tenant: str
    table: str  # namespace.table of silver
    quarantine_table: str
    reason: str  # the rule code the moved rows carry
    keys: int  # keys that were held by more than one row
    rows_moved: int  # rows moved to quarantine and deleted from silver
    examples: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "tenant": self.tenant,
            "table": self.table,
            "quarantine_table": self.quarantine_table,
            "reason": self.reason,
            "keys": self.keys,
            "rows_moved": self.rows_moved,
            "examples": list(self.examples),
        }


def _with_positions(spark: SparkSession, table: str, tenant: str) -> DataFrame:
    """The tenant's silver rows with their data file and position in it."""
    return spark.sql(
        f"SELECT *, _file AS {_FILE}, _pos AS {_POS} FROM {table} WHERE tenant_id = '{tenant}'"
    )


def losers(entity: Entity, rows: DataFrame, repeated: DataFrame) -> DataFrame:
    """The rows of repeated keys that lose to the newest version of their key (pure).

    ``rows`` carries the silver columns and the positions; ``repeated`` the repeated keys.
    """
    pk = entity.primary_key
    order = [
        F.col("source_timestamp").desc_nulls_last(),
        F.col("_ingested_at").desc_nulls_last(),
        F.col("_run_id").desc_nulls_last(),
        F.col(_FILE).asc(),
        F.col(_POS).asc(),
    ]
    w = Window.partitionBy(pk).orderBy(*order)
    ranked = rows.join(F.broadcast(repeated), pk, "left_semi").withColumn(
        "_rank", F.row_number().over(w)
    )
    winner_run = F.first("_run_id").over(w)
    return ranked.withColumn("_kept_run_id", winner_run).where(F.col("_rank") > 1)


def as_quarantine(
    entity: Entity, tenant: str, repair_id: str, now: datetime, silver_columns: list[str]
) -> Transform:
    """A transform from losing silver rows to quarantine rows (pure).

    ``_original`` is the row's contract values as JSON (the row passed every value check when it
    was published); the reason's value records the losing version (its timestamps and run) and
    the run whose version was kept. The quarantine key is derived from the row's content and its
    occurrence among identical losers, so a second repair after a crash writes none twice.
    """
    pk = entity.primary_key
    version = F.to_json(
        F.struct(
            F.col("source_timestamp").cast("string").alias("source_timestamp"),
            F.col("_ingested_at").cast("string").alias("_ingested_at"),
            F.col("_run_id").alias("_run_id"),
            F.col("_kept_run_id").alias("kept_run_id"),
        )
    )
    reason = F.struct(
        F.lit(rule_code(entity)).alias("rule"), F.lit(pk).alias("column"), version.alias("value")
    ).cast(REASON_TYPE)
    content = F.sha2(F.to_json(F.struct(*silver_columns)), 256)
    occurrence = F.row_number().over(Window.partitionBy(content).orderBy(F.col(_FILE), F.col(_POS)))
    key = F.sha2(
        F.concat_ws("|", F.lit(tenant), F.lit(DUPLICATE_IN_SILVER), content, occurrence), 256
    )

    def _apply(df: DataFrame) -> DataFrame:
        return df.select(
            *entity.field_names,
            F.to_json(F.struct(*entity.field_names)).alias(ORIGINAL),
            F.array(reason).alias(VIOLATIONS),
            "_source_file",
            F.lit(repair_id).alias("_run_id"),
            F.lit(RULE_SET_VERSION).alias("_rule_set_version"),
            F.lit(now).alias("_quarantined_at"),
            key.alias(KEY),
            F.lit(OPEN).alias("_status"),
            F.lit(None).cast("string").alias("_resolved_run_id"),
            F.lit(None).cast("timestamp").alias("_resolved_at"),
        )

    return _apply


def repair_duplicates(
    spark: SparkSession,
    names: TableNames,
    entity: Entity,
    tenant: str,
    *,
    repair_id: str,
    now: datetime,
) -> Repair:
    """Move every losing version of a repeated key of the tenant's silver rows to quarantine.

    Call it holding the tenant's lease. Nothing is written when no key is repeated.
    """
    tenant = validate_tenant_id(tenant)
    table, qtable = names.silver(entity), names.quarantine(entity)
    pk = entity.primary_key
    rows = _with_positions(spark, table, tenant)
    repeated = (
        rows.groupBy(pk).agg(F.count(F.lit(1)).alias("n")).where(F.col("n") > 1).select(pk)
    ).localCheckpoint(eager=True)
    kept = [repeated]
    try:
        keys = int(repeated.count())
        if keys == 0:
            return Repair(tenant, _short(table), _short(qtable), rule_code(entity), 0, 0)
        # Checkpoints, not caches: a cache reading silver would be recomputed once silver is
        # written, and find nothing left to move.
        lost = losers(entity, rows, repeated).localCheckpoint(eager=True)
        kept.append(lost)
        moved = int(lost.count())
        examples = tuple(r[pk] for r in repeated.orderBy(pk).limit(EXAMPLES).collect())
        silver_columns = [*entity.field_names, *(name for name, _, _ in LINEAGE_COLUMNS)]
        write_quarantine(
            spark,
            names,
            entity,
            tenant,
            lost.transform(as_quarantine(entity, tenant, repair_id, now, silver_columns)),
        )
        _delete_positions(spark, table, entity, tenant, lost, f"repair_{entity.name}")
        return Repair(
            tenant, _short(table), _short(qtable), rule_code(entity), keys, moved, examples
        )
    finally:
        for df in kept:
            _release(df)


def _delete_positions(
    spark: SparkSession, table: str, entity: Entity, tenant: str, lost: DataFrame, view: str
) -> None:
    """Delete exactly the rows at the positions of ``lost`` (checked against key and hash)."""
    pk = entity.primary_key
    lost.select(pk, ROW_HASH, _FILE, _POS).createOrReplaceTempView(view)
    try:
        spark.sql(
            f"""
            DELETE FROM {table} t
            WHERE t.tenant_id = '{tenant}'
              AND EXISTS (SELECT 1 FROM {view} s
                          WHERE s.{_FILE} = t._file AND s.{_POS} = t._pos
                            AND s.{pk} = t.{pk} AND s.{ROW_HASH} = t.{ROW_HASH})
            """
        )
    finally:
        spark.catalog.dropTempView(view)


def _short(table: str) -> str:
    return table.split(".", 1)[1]


def _release(df: DataFrame) -> None:
    """Free a local checkpoint's blocks now (as ``pipeline.materialise.release``, which this
    layer cannot import): the CLI stops its session right after."""
    # Not a checkpoint after all: the context cleaner frees it later.
    with contextlib.suppress(Exception):
        df._jdf.queryExecution().analyzed().rdd().unpersist(True)
