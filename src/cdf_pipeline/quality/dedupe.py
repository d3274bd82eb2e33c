"""Primary-key deduplication within one batch, deterministic whatever the partitioning.

Among the rows that passed the row rules, one version per ``(tenant_id, key)`` wins: the newest
``source_timestamp``, ties broken by the content hash, then the source file.
A loser with the winner's content is an exact copy: dropped and counted (``_dropped``). A loser
with other content is a conflicting version: it gets a ``<key>.duplicate`` violation and is
quarantined. Rows already in violation pass through untouched.
"""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from cdf_pipeline.contracts.model import Entity
from cdf_pipeline.quality.reasons import VIOLATIONS, append_violations, no_violations, reason
from cdf_pipeline.quality.rowhash import ROW_HASH

Transform = Callable[[DataFrame], DataFrame]

DROPPED = "_dropped"


def repeated_keys(entity: Entity) -> Transform:
    """A transform from a batch to ``(tenant_id, key)`` of keys held by more than one valid row.

    A key-only aggregate: usually a handful of rows, worth materialising and broadcasting.
    """
    key = entity.primary_key

    def _apply(df: DataFrame) -> DataFrame:
        return (
            df.where(no_violations())
            .groupBy("tenant_id", key)
            .count()
            .where(F.col("count") > 1)
            .select("tenant_id", key, F.lit(True).alias("_repeated"))
        )

    return _apply


def _flagged(df: DataFrame, entity: Entity, repeated: DataFrame) -> DataFrame:
    return df.join(F.broadcast(repeated), ["tenant_id", entity.primary_key], "left")


def unrepeated_rows(entity: Entity, repeated: DataFrame) -> Transform:
    """A transform keeping the rows dedupe leaves alone: keys held once, and rows in violation.

    They get ``_dropped`` false. With :func:`repeated_versions` it splits a batch in two.
    """

    def _apply(df: DataFrame) -> DataFrame:
        flagged = _flagged(df, entity, repeated)
        return flagged.where(F.col("_repeated").isNull() | ~no_violations()).select(
            *df.columns, F.lit(False).alias(DROPPED)
        )

    return _apply


def repeated_versions(entity: Entity, repeated: DataFrame) -> Transform:
    """A transform keeping the valid rows of repeated keys, each with its verdict: the winner,
    a dropped exact copy, or a conflicting version with a duplicate violation.

    Usually a few percent of the batch: worth materialising, so that the ranking (a shuffle and
    sort) runs once however often the batch is read.
    """
    key = entity.primary_key
    rule = entity.duplicate_rule

    def _apply(df: DataFrame) -> DataFrame:
        order = [F.col("source_timestamp").desc_nulls_last(), F.col(ROW_HASH).desc()]
        order += [F.col(c).asc() for c in ("_source_file",) if c in df.columns]
        w = Window.partitionBy("tenant_id", key).orderBy(*order)
        ranked = (
            _flagged(df, entity, repeated)
            .where(F.col("_repeated") & no_violations())
            .withColumn("_rank", F.row_number().over(w))
            .withColumn("_winner_hash", F.first(ROW_HASH).over(w))
        )
        loser = F.col("_rank") > 1
        same = F.col(ROW_HASH) == F.col("_winner_hash")
        dup_reason = F.array(reason(rule, F.col("source_timestamp").cast("string")))
        return ranked.select(
            *(c for c in df.columns if c != VIOLATIONS),
            F.when(loser & ~same, append_violations(F.col(VIOLATIONS), dup_reason))
            .otherwise(F.col(VIOLATIONS))
            .alias(VIOLATIONS),
            (loser & same).alias(DROPPED),
        )

    return _apply


def resolve_duplicates(entity: Entity, repeated: DataFrame) -> Transform:
    """A transform adding ``_dropped`` and duplicate violations, given :func:`repeated_keys`.

    Only rows of repeated keys are ranked, so the wide rows are never sorted as a whole.
    """

    def _apply(df: DataFrame) -> DataFrame:
        single = df.transform(unrepeated_rows(entity, repeated))
        return single.unionByName(df.transform(repeated_versions(entity, repeated)))

    return _apply


def deduplicate(entity: Entity) -> Transform:
    """A transform adding ``_dropped`` and duplicate violations; needs ``_row_hash`` and
    ``_violations`` (and uses ``_source_file`` as the last tie-breaker when present; rows still
    tied have the same content and file, so either may win).
    """

    def _apply(df: DataFrame) -> DataFrame:
        return df.transform(resolve_duplicates(entity, df.transform(repeated_keys(entity))))

    return _apply
