"""Stage one entity of a tenant run: everything up to (not including) the writes.

The staged result holds the batch with its outcome per row, the MERGE input and the quarantine
rows. Each step's result is materialised (:mod:`cdf_pipeline.pipeline.materialise`); which sets
are broadcast is decided up front by a :class:`~cdf_pipeline.pipeline.plan.StagePlan`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import reduce

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from cdf_pipeline.config import Settings
from cdf_pipeline.contracts import Entity
from cdf_pipeline.ingest.files import RawFile
from cdf_pipeline.ingest.read import FileRowCounts, ReadOptions, files_in_error, read_normalised
from cdf_pipeline.lakehouse import merge
from cdf_pipeline.lakehouse.quarantine import KEY, open_fk_only, quarantine_rows
from cdf_pipeline.lakehouse.tables import java_root_cause, tenant_rows
from cdf_pipeline.pipeline.context import RunContext
from cdf_pipeline.pipeline.materialise import materialise, release
from cdf_pipeline.pipeline.plan import StagePlan, plan_stage
from cdf_pipeline.quality.dedupe import (
    DROPPED,
    repeated_keys,
    repeated_versions,
    unrepeated_rows,
)
from cdf_pipeline.quality.foreign_keys import (
    PARENT_KEY,
    check_foreign_keys,
    flag_missing,
    missing_references,
    referenced_parents,
)
from cdf_pipeline.quality.normalise import keep_original
from cdf_pipeline.quality.reasons import (
    VIOLATIONS,
    VIOLATIONS_TYPE,
    codes,
    has_violations,
    no_violations,
)
from cdf_pipeline.quality.rowhash import ROW_HASH, row_hash
from cdf_pipeline.quality.rules import validate
from cdf_pipeline.run_record import EntityCounts
from cdf_pipeline.telemetry import stage

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParentKeys:
    """The keys of the parents an entity references, as they will be once this run is
    published (silver's plus this run's valid parents), and whether they are few enough to
    broadcast to every join against them."""

    keys: DataFrame
    broadcast: bool = False


@dataclass
class StagedEntity:
    """One entity of a run, staged: ready to audit and to write."""

    entity: Entity
    classified: DataFrame | None  # valid rows (batch + promoted) with merge._outcome
    rejected: DataFrame | None  # quarantine table rows
    promoted_keys: DataFrame | None  # _quarantine_key of quarantine rows promoted to silver
    counts: EntityCounts = field(default_factory=EntityCounts)
    _materialised: list[DataFrame] = field(default_factory=list)
    _valid_keys: DataFrame | None = None
    #: The parent keys the FK checks used (for entities with foreign keys), and whether they
    #: were broadcast: the FK audit checks against the same set.
    parents: DataFrame | None = None
    broadcast_parents: bool = False
    #: Silver's rows for this run's keys, when classification looked them up (a change batch
    #: small enough to broadcast): the key audit checks the inserts against them instead of
    #: scanning the tenant's silver again.
    silver_state: DataFrame | None = None
    #: Files left out because Spark read another number of rows than the pre-check counted
    #: (each with the reason as ``error``): they fail alone, the others are staged.
    unaccounted: list[RawFile] = field(default_factory=list)

    @property
    def changes(self) -> DataFrame | None:
        """The MERGE input: inserts and updates only."""
        if self.classified is None:
            return None
        return self.classified.where(F.col(merge.OUTCOME).isin(merge.INSERT, merge.UPDATE))

    def outcome(self, outcome: str) -> DataFrame:
        """Classified rows with one merge outcome (inserted, updated, ...)."""
        assert self.classified is not None
        return self.classified.where(F.col(merge.OUTCOME) == outcome)

    def valid_keys(self) -> DataFrame | None:
        """Keys of every valid row of this run (they exist in silver once it is published).

        Materialised on first use: the child's FK check and the FK audit both join them.
        """
        if self.classified is None:
            return None
        if self._valid_keys is None:
            self._valid_keys = materialise(
                _keys_of(self.entity, self.classified), self._materialised
            )
        return self._valid_keys

    def release(self) -> None:
        """Free the blocks holding the staged rows (memory and local disk)."""
        for df in self._materialised:
            release(df)
        self._materialised.clear()


def validated_rows(
    entity: Entity, tenant: str, settings: Settings, now: datetime
) -> Callable[[DataFrame], DataFrame]:
    """A transform from one normalised file to its rows with every rule's verdict, the row hash
    and, for rejected rows only, the row as sent (``_original``)."""
    checks = validate(
        entity, tenant, now=now, future_skew_seconds=settings.quality.future_skew_seconds
    )

    def _apply(df: DataFrame) -> DataFrame:
        return (
            df.transform(checks)
            .withColumn(ROW_HASH, row_hash(entity))
            .transform(keep_original("rejected"))
        )

    return _apply


def _fk_candidates(ctx: RunContext, entity: Entity, keep: list[DataFrame]) -> tuple[DataFrame, int]:
    """Quarantined rows that failed only for missing parents (to re-check), and how many."""
    candidates = materialise(
        open_fk_only(ctx.spark, ctx.names, entity, ctx.tenant).withColumn(
            VIOLATIONS, F.array().cast(VIOLATIONS_TYPE)
        ),
        keep,
    )
    return candidates, int(candidates.count())


def _promotable(
    entity: Entity, candidates: DataFrame, parent_keys: DataFrame, broadcast_parents: bool
) -> DataFrame:
    """The candidates that now pass the FK check, ranked per key (rank 1 is the newest)."""
    rechecked = candidates.transform(
        check_foreign_keys(entity, parent_keys, broadcast_parents=broadcast_parents)
    )
    passing = rechecked.where(no_violations())
    w = Window.partitionBy(entity.primary_key).orderBy(
        F.col("source_timestamp").desc(), F.col(KEY).desc()
    )
    return passing.withColumn("_promoted_rank", F.row_number().over(w))


@dataclass
class _Batch:
    """The batch while it is staged: rows with their verdicts, and what is counted so far."""

    rows: DataFrame | None
    counts: EntityCounts
    rejected: DataFrame | None = None


def stage_entity(
    ctx: RunContext, entity: Entity, files: list[RawFile], *, parents: ParentKeys | None
) -> StagedEntity:
    """Read, normalise, validate, deduplicate and FK-check one entity; classify against silver.

    Args:
        parents: for entities with foreign keys, their parents' keys (:class:`ParentKeys`).
    """
    settings, tenant = ctx.settings, ctx.tenant
    keep: list[DataFrame] = []
    attrs = ctx.attrs(**{"cdf.entity": entity.name})
    counts = EntityCounts(read=sum(f.rows or 0 for f in files))
    candidates = None
    n_candidates: int | None = None
    if entity.foreign_keys and parents is not None:
        with stage("recheck_quarantine", **attrs):
            candidates, n_candidates = _fk_candidates(ctx, entity, keep)
    broadcast_parents = parents is not None and parents.broadcast
    plan = plan_stage(
        counts.read, n_candidates, broadcast_parents, settings.spark.broadcast_max_rows
    )
    row_counts = FileRowCounts(ctx.spark, settings.storage.csv_encoding)
    with stage("read", **attrs, **{"cdf.files": len(files)}):
        rows = read_normalised(
            ctx.spark,
            entity,
            files,
            ReadOptions(settings.quality.extra_columns, settings.storage.csv_encoding),
            per_file=validated_rows(entity, tenant, settings, ctx.now),
            row_counts=row_counts,
        )
    try:
        validated = _validated(rows, attrs, keep)
        unaccounted = row_counts.unaccounted() if validated is not None else []
    except Exception as exc:  # a scan failed: on a file it names, that file fails alone
        unaccounted = files_in_error(_scan_error(exc), files)
        if not unaccounted:
            raise
    if unaccounted:
        # Rare (the readers agree on valid CSV; a footer that reads well rarely hides bad data):
        # stage again without those files, so that they fail alone instead of failing the whole
        # tenant's count invariant, or its read, on every run.
        logger.warning(
            "%s: %d file(s) left out, rows not accounted for: %s",
            entity.name,
            len(unaccounted),
            "; ".join(f"{f.name}: {f.error}" for f in unaccounted),
        )
        for df in keep:
            release(df)
        left_out = {f.path for f in unaccounted}
        kept = [f for f in files if f.path not in left_out]
        staged = stage_entity(ctx, entity, kept, parents=parents)
        staged.unaccounted = [*unaccounted, *staged.unaccounted]
        return staged
    batch = _Batch(_deduplicated(entity, validated, attrs, keep), counts)
    parent_keys = parents.keys if parents is not None else None
    if plan.cut_parents and parent_keys is not None and candidates is not None:
        # A small batch and few candidates reference few parents: look those up once (one scan
        # of the tenant's parents) and broadcast that small set to every check that follows.
        children = [candidates] if batch.rows is None else [batch.rows, candidates]
        parent_keys = materialise(referenced_parents(entity, parent_keys, children), keep)
    if batch.rows is not None:
        if entity.foreign_keys and parent_keys is not None:
            with stage("fk_check", **attrs):
                batch.rows = _flag_orphans(entity, batch.rows, parent_keys, plan, keep)
        _set_aside_not_valid(ctx, entity, batch, keep)
    promoted, promoted_keys = None, None
    if candidates is not None and parent_keys is not None and n_candidates:
        with stage("recheck_quarantine", **attrs):
            promoted, promoted_keys = _promoted(entity, candidates, parent_keys, plan, batch, keep)
            counts.promoted = int(promoted.count())
    classified = _classify(ctx, entity, batch, promoted, plan, keep)
    return StagedEntity(
        entity,
        classified.rows,
        batch.rejected,
        promoted_keys,
        counts,
        keep,
        classified.valid_keys,
        parents=parent_keys,
        broadcast_parents=plan.broadcast_parents,
        silver_state=classified.silver_state,
    )


def _scan_error(exc: BaseException) -> str:
    """A failed scan's message with its innermost Java cause (which names the file)."""
    return f"{java_root_cause(exc)}\n{exc}"


def _validated(
    rows: DataFrame | None, attrs: dict[str, str], keep: list[DataFrame]
) -> DataFrame | None:
    """The batch with every rule's verdict, materialised: dedupe, the FK check, counting, audits
    and writes all read it (and computing it counts each file's rows, see ``FileRowCounts``)."""
    if rows is None:
        return None
    with stage("validate", **attrs):
        return materialise(rows, keep)


def _deduplicated(
    entity: Entity, validated: DataFrame | None, attrs: dict[str, str], keep: list[DataFrame]
) -> DataFrame | None:
    """The validated batch with in-batch duplicates resolved.

    Dedupe reduces to small sets (repeated keys and their versions), materialised and broadcast
    to the validated rows, which are never shuffled or copied again.
    """
    if validated is None:
        return None
    with stage("dedupe", **attrs):
        repeated = materialise(validated.transform(repeated_keys(entity)), keep)
        versions = materialise(validated.transform(repeated_versions(entity, repeated)), keep)
        return validated.transform(unrepeated_rows(entity, repeated)).unionByName(versions)


def _flag_orphans(
    entity: Entity, rows: DataFrame, parent_keys: DataFrame, plan: StagePlan, keep: list[DataFrame]
) -> DataFrame:
    """``rows`` with an FK violation on each reference to a missing parent."""
    check = missing_references(entity, parent_keys, broadcast_parents=plan.broadcast_parents)
    missing = materialise(rows.transform(check), keep)
    return rows.transform(
        flag_missing(entity, missing, broadcast=plan.broadcast(int(missing.count())))
    )


def _set_aside_not_valid(
    ctx: RunContext, entity: Entity, batch: _Batch, keep: list[DataFrame]
) -> None:
    """Count the rows that go nowhere near silver and shape the rejected ones for quarantine.

    The batch is not materialised again: a second copy of a million wide rows costs more
    (memory pressure, blocks spilled to disk) than reading the validated rows once per use with
    the small verdict sets broadcast. Its rows that are rejected or dropped (a few percent) are.
    """
    assert batch.rows is not None
    not_valid = materialise(batch.rows.where((has_violations()) | F.col(DROPPED)), keep)
    _count_not_valid(not_valid, batch.counts)
    rejected = not_valid.where(has_violations())
    batch.rejected = rejected.transform(quarantine_rows(entity, ctx.tenant, ctx.run_id, ctx.now))


def _promoted(
    entity: Entity,
    candidates: DataFrame,
    parent_keys: DataFrame,
    plan: StagePlan,
    batch: _Batch,
    keep: list[DataFrame],
) -> tuple[DataFrame, DataFrame]:
    """(quarantined rows whose parents arrived, newest per key and not sent again in this batch;
    the quarantine keys they resolve)."""
    ranked = materialise(_promotable(entity, candidates, parent_keys, plan.broadcast_parents), keep)
    promoted = ranked.where(F.col("_promoted_rank") == 1)
    if batch.rows is not None:
        batch_valid_keys = batch.rows.where(no_violations()).select(entity.primary_key)
        promoted = promoted.join(batch_valid_keys, entity.primary_key, "left_anti")
    return promoted, ranked.select(KEY)


@dataclass(frozen=True)
class _Classified:
    """The valid rows (batch and promoted) with their merge outcome; their keys when
    materialised here (a first load); silver's rows for them when looked up (a small batch)."""

    rows: DataFrame | None = None
    valid_keys: DataFrame | None = None
    silver_state: DataFrame | None = None


def _classify(
    ctx: RunContext,
    entity: Entity,
    batch: _Batch,
    promoted: DataFrame | None,
    plan: StagePlan,
    keep: list[DataFrame],
) -> _Classified:
    """The valid rows (batch and promoted) with their merge outcome against silver, counted."""
    valid_frames: list[DataFrame] = []
    if batch.rows is not None:
        valid_frames.append(
            batch.rows.where((no_violations()) & ~F.col(DROPPED)).select(
                *entity.field_names, "_source_file", ROW_HASH
            )
        )
    if promoted is not None:
        valid_frames.append(
            promoted.select(*entity.field_names, "_source_file", row_hash(entity).alias(ROW_HASH))
        )
    if not valid_frames:
        return _Classified()
    valid = reduce(lambda a, b: a.unionByName(b), valid_frames)
    counts = batch.counts
    current = merge.silver_state(ctx.spark, ctx.names, entity, ctx.tenant)
    valid_keys = state = None
    with stage("classify", **{"cdf.entity": entity.name, "cdf.tenant": ctx.tenant}):
        if tenant_rows(ctx.spark, ctx.names.silver(entity), ctx.tenant) == 0:
            # The tenant's first load: every key is new, no join with silver needed, and nothing
            # read from silver that a write could change under us. The valid keys (for the FK
            # check of children and the audits) are materialised, and counted: a scan of its
            # own, separate from the one that counted the rejected rows.
            classified = valid.withColumn(merge.OUTCOME, F.lit(merge.INSERT))
            valid_keys = materialise(_keys_of(entity, classified), keep)
            by_outcome = {merge.INSERT: int(valid_keys.count())}
        else:
            if plan.broadcast(counts.read + counts.promoted):
                # Silver's rows for the run's keys, looked up in one scan of the tenant's silver
                # and kept: classification joins them broadcast, and the key audit reads them
                # instead of scanning silver again.
                state = materialise(merge.state_for_keys(entity, current, valid), keep)
                current = F.broadcast(state)
            classified = materialise(valid.transform(merge.classify(entity, current)), keep)
            by_outcome = {
                r[0]: int(r[1]) for r in classified.groupBy(merge.OUTCOME).count().collect()
            }
    for outcome in merge.MERGE_OUTCOMES:
        setattr(counts, outcome, by_outcome.get(outcome, 0))
    return _Classified(classified, valid_keys, state)


def _keys_of(entity: Entity, rows: DataFrame) -> DataFrame:
    return rows.select(F.col(entity.primary_key).alias(PARENT_KEY))


def _count_not_valid(not_valid: DataFrame, counts: EntityCounts) -> None:
    """Quarantined and dropped rows, and rows per violation code, in one action.

    The rows are grouped by (dropped, set of codes): a few dozen groups, summed on the driver.
    The valid rows are counted elsewhere (by outcome), so the count invariant audit checks that
    no row was lost or repeated between reading and staging.
    """
    code_set = F.array_sort(F.array_distinct(codes(F.col(VIOLATIONS))))
    combos = (
        not_valid.groupBy(F.col(DROPPED).alias("dropped"), code_set.alias("codes"))
        .count()
        .collect()
    )
    per_code: dict[str, int] = {}
    for row in combos:
        n = int(row["count"])
        if row["codes"]:
            counts.quarantined += n
            for code in row["codes"]:
                per_code[code] = per_code.get(code, 0) + n
        elif row["dropped"]:
            counts.duplicates_dropped += n
    counts.violations = dict(sorted(per_code.items()))
