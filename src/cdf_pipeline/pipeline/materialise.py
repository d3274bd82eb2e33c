"""Materialised frames: each staging step's result computed once (a local checkpoint), not cached:

- the plans behind it (hundreds of validation expressions) are cut off, so every later count,
  audit and write plans in milliseconds instead of re-planning and re-describing the whole
  pipeline (with ``persist`` each action spent seconds printing the cached plan);
- the staged rows are a snapshot: writing silver cannot make Spark recompute them against the
  new table state (a cache that reads a table is rebuilt when the table is written).
"""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame

logger = logging.getLogger(__name__)


def materialise(df: DataFrame, keep: list[DataFrame] | None = None) -> DataFrame:
    """Compute ``df`` once into executor blocks and return a frame reading those blocks.

    Its plan is a scan of the blocks, whatever ``df``'s plan was (see the module docstring).
    """
    done = df.localCheckpoint(eager=True)
    if keep is not None:
        keep.append(done)
    return done


def release(df: DataFrame) -> None:
    """Free the blocks of a frame from :func:`materialise` now, not at the JVM's next GC.

    Blocking: the run stops its session right after, and a removal still pending then is
    logged by Spark as a block "not removed normally" on an otherwise clean run.
    """
    try:
        df._jdf.queryExecution().analyzed().rdd().unpersist(True)
    except Exception:  # not a checkpoint: the context cleaner frees it later
        logger.debug("could not release a materialised frame", exc_info=True)
