"""The staging plan: which sets are broadcast, decided once from sizes (pure, no Spark)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StagePlan:
    """How one entity is staged, decided once from sizes (pure: no Spark here).

    Small sets are broadcast to the batch instead of shuffling it; ``max_broadcast`` is
    ``spark.broadcast_max_rows``.
    """

    #: Look the parents the batch and the candidates reference up once, and broadcast that set.
    cut_parents: bool
    #: Broadcast the parent keys to the FK checks.
    broadcast_parents: bool
    max_broadcast: int

    def broadcast(self, rows: int) -> bool:
        """Whether a set of ``rows`` rows found while staging is small enough to broadcast."""
        return rows <= self.max_broadcast


def plan_stage(
    rows_read: int, candidates: int | None, parents_small: bool, max_broadcast: int
) -> StagePlan:
    """The plan for a batch of ``rows_read`` rows and ``candidates`` quarantined rows waiting
    for a parent (None: the entity has no foreign keys to re-check)."""
    small_batch = rows_read <= max_broadcast  # a change batch, not a first load
    cut = candidates is not None and small_batch and candidates <= max_broadcast
    return StagePlan(cut, parents_small or cut, max_broadcast)
