"""The run's clock as data: a one-row frame broadcast into each plan that needs it, never a literal.

Spark writes a timestamp literal into the Java code it generates (as a ``long`` constant) and
caches compiled classes by their source text. With the run's clock as a literal, each run's
validation, lineage and quarantine projections are new source: Janino compiles them again and the
JVM runs them interpreted until the JIT has warmed them up again, about 1.5 s per entity of a
1M-row load in a driver that runs many tenants (docs/benchmarks.md, "Generated code reused across
runs"). A value read from a row is not code: with the clock cross-joined from a broadcast one-row
frame, every run generates the same source and reuses the classes; only the broadcast row differs.

The frame is a ``LocalRelation`` (SQL ``VALUES``), so the optimizer sees data, not an expression:
constant folding cannot put the literal back. (``spark.range(1).select(F.lit(now))`` would not do:
``FoldablePropagation`` carries a foldable alias through an inner join into the plan above it.)
Broadcasting a local relation runs no Spark job.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

Transform = Callable[[DataFrame], DataFrame]

#: The column that holds the run's clock while a plan needs it (never written to a table).
CLOCK = "_run_clock"


def clock_frame(df: DataFrame, now: datetime) -> DataFrame:
    """One row, one timestamp column :data:`CLOCK` holding ``now``, in ``df``'s session.

    ``now`` is converted as ``F.lit(now)`` would convert it (an aware datetime is an instant; a
    naive one is read in the driver's local time zone).
    """
    return df.sparkSession.sql(f"SELECT * FROM VALUES (:now) AS clock({CLOCK})", args={"now": now})


def with_clock(now: datetime) -> Transform:
    """A transform adding :data:`CLOCK` = ``now`` to every row (a broadcast cross join)."""

    def _apply(df: DataFrame) -> DataFrame:
        return df.crossJoin(F.broadcast(clock_frame(df, now)))

    return _apply
