"""The staging plan: which sets are broadcast, decided once from sizes (no Spark)."""

from __future__ import annotations

import pytest

from cdf_pipeline.pipeline.plan import StagePlan, plan_stage

LIMIT = 1000


@pytest.mark.parametrize(
    ("rows", "candidates", "parents_small", "expected"),
    [
        # A first load with parents too many to broadcast: shuffle joins throughout.
        (50_000, 10, False, StagePlan(False, False, LIMIT)),
        # A change batch with few rows waiting for parents: cut the parents down, broadcast them.
        (500, 10, False, StagePlan(True, True, LIMIT)),
        # ... but not when the waiting rows are many.
        (500, 5_000, False, StagePlan(False, False, LIMIT)),
        # An entity without foreign keys to re-check never cuts parents.
        (500, None, False, StagePlan(False, False, LIMIT)),
        # Parents few enough are broadcast whatever the batch.
        (50_000, 10, True, StagePlan(False, True, LIMIT)),
    ],
)
def test_plan_follows_the_sizes(
    rows: int, candidates: int | None, parents_small: bool, expected: StagePlan
) -> None:
    assert plan_stage(rows, candidates, parents_small, LIMIT) == expected


def test_sets_found_while_staging_are_broadcast_up_to_the_limit() -> None:
    plan = plan_stage(10, None, False, LIMIT)
    assert plan.broadcast(LIMIT) and not plan.broadcast(LIMIT + 1)
