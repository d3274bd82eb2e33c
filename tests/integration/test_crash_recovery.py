"""A run killed with SIGKILL at any commit point of its publish, then run again, equals one
clean run: its data, and its record.

Two roots get byte-identical raw files (same generator seed). Root B: batches 1, 2 and 3
cleanly. Root A: batches 1 and 2 cleanly, then ``cdf -v run`` for batch 3 (updates, new rows,
rejected rows and late parents that promote waiting parts) in a child process that is
SIGKILLed (with its Spark JVM) right after one commit point, and again in the next child at the
next point, through every commit point of the publish in order: the run's PUBLISHING record, the
quarantine write, the silver append, the MERGE, the quarantine resolve, the manifest. Then a last
run. Silver, quarantine, the file manifest and ``ops.runs`` (each batch's counts, one record
each) of A and B must then be equal, bar the values that name a run or a wall-clock time.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from servers.processes import wait_group_gone
from support.jvm import TEST_JVM_OPTIONS
from support.lakes import make_lake

from cdf_generator.api import generate
from cdf_pipeline import run_record as S
from cdf_pipeline.config import Settings
from cdf_pipeline.contracts import ENTITIES
from cdf_pipeline.pipeline.silver import run_tenant
from cdf_pipeline.run_record import COUNT_KEYS

pytestmark = [pytest.mark.spark, pytest.mark.slow]

TENANT = "crash"
SUPPLIERS, PARTS, SEED = 600, 600, 7
LEASE_TTL_S = 6
RUN_TIMEOUT_S = 1200  # generous: only reached if a child hangs (CI runs take well under a minute)

# Values that name the run or the wall-clock time of a write: they differ between A and B.
IGNORED = {
    "silver": ["_run_id", "_ingested_at"],
    "quarantine": ["_run_id", "_quarantined_at", "_resolved_run_id", "_resolved_at"],
}
#: The commit points of a publish, in order: ``stage X took`` is logged when the stage's ``with``
#: block exits, i.e. right after its Iceberg commit returned (the first such write of a run).
COMMIT_POINTS = (
    "journal", "quarantine_write", "append", "merge", "quarantine_resolve", "record_files",
)  # fmt: skip


def kill_at(point: str) -> re.Pattern[str]:
    return re.compile(rf"cdf_pipeline\.telemetry: stage {point} took")


def _attach_catalog(spark: SparkSession, root: Path) -> Settings:
    """Register ``root``'s catalog on the shared session; its settings.

    ``cache-enabled=false``: another process writes these tables between our reads, and Iceberg's
    caching catalog would otherwise serve table metadata up to 30 s old.
    """
    return make_lake(spark, root, tenant=TENANT, properties={"cache-enabled": "false"})


def _generate(root: Path, batch: int) -> list[str]:
    summary = generate([TENANT], SUPPLIERS, PARTS, seed=SEED, batch=batch, root_uri=str(root))
    return sorted(Path(f).name for f in summary.files)


def _run_in_process(spark: SparkSession, lake: Settings) -> S.RunSummary:
    run = run_tenant(spark, lake, TENANT)
    assert run.status == S.SUCCEEDED, run.message
    return run


def _child_env(catalog: str) -> dict[str, str]:
    """The test's environment without CDF overrides, plus a small Spark like the test session's
    and the catalog name this test reads with: the SQLite catalog keys its tables by it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDF__") and k != "CDF_ROOT"}
    env.update(
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        CDF__SPARK__SHUFFLE_PARTITIONS="2",  # as the test session, which runs root B
        CDF__SPARK__DRIVER_MEMORY="1g",
        # A killed run's tenant lease blocks reruns until it expires: 30 s, not the default 60.
        CDF__LEASE__TTL_SECONDS=str(LEASE_TTL_S),
        SPARK_LOCAL_IP="127.0.0.1",  # loopback only
        CDF__CATALOG__NAME=catalog,
        CDF__SPARK__DRIVER_JAVA_OPTIONS=TEST_JVM_OPTIONS,
    )
    return env


def _cdf_run(root: Path) -> list[str]:
    return [sys.executable, "-m", "cdf_pipeline.cli", "-v", "run", "--tenant", TENANT,
            "--root", str(root)]  # fmt: skip


class _LineReader:
    """Lines of a child's stream, read on a thread so the caller can give up at a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        with stream:
            for line in stream:
                self._queue.put(line)
        self._queue.put(None)

    def lines(self, timeout_s: float) -> Iterator[str]:
        deadline = time.monotonic() + timeout_s
        while (line := self._queue.get(timeout=max(0.0, deadline - time.monotonic()))) is not None:
            yield line

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _kill_during_publish(root: Path, catalog: str, log: Path, point: str) -> int:
    """Start ``cdf -v run`` (waiting out a killed run's lease) and SIGKILL its process group
    right after commit ``point``; the child's exit code."""
    tail: deque[str] = deque(maxlen=40)
    cmd = [*_cdf_run(root), "--wait", str(10 * LEASE_TTL_S)]
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, env=_child_env(catalog), stdout=out, stderr=subprocess.PIPE, text=True,
            start_new_session=True,  # its own process group: the Spark JVM and workers join it
        )  # fmt: skip
        assert proc.stderr is not None
        reader = _LineReader(proc.stderr)
        try:
            for line in reader.lines(RUN_TIMEOUT_S):
                if "cdf_pipeline" in line:
                    tail.append(line)
                if kill_at(point).search(line):
                    _kill_group(proc.pid)
                    break
            else:
                raise AssertionError("the run ended before publishing:\n" + "".join(tail))
        except queue.Empty:
            raise AssertionError(
                f"no publish within {RUN_TIMEOUT_S} s:\n" + "".join(tail)
            ) from None
        finally:
            _kill_group(proc.pid)  # a no-op after the kill above; cleans up after a failure
            code = proc.wait(timeout=60)
            reader.join(60)
    # A JVM left behind could still commit: the rerun must not start until the group is gone.
    assert wait_group_gone(proc.pid, 60), "the killed run's JVM did not exit"
    return code


def _snapshot_counts(spark: SparkSession, lake: Settings) -> dict[str, int]:
    cat = lake.catalog.name
    return {
        f"{ns}.{e}": int(spark.sql(f"SELECT count(*) FROM {cat}.{ns}.{e}.snapshots").first()[0])
        for ns in ("silver", "quarantine")
        for e in ENTITIES
    }


def _table(spark: SparkSession, lake: Settings, ns: str, entity: str) -> DataFrame:
    key = ENTITIES[entity].primary_key if ns == "silver" else "_quarantine_key"
    return (
        spark.table(f"{lake.catalog.name}.{ns}.{entity}")
        .where(F.col("tenant_id") == TENANT)
        .drop(*IGNORED[ns])
        .orderBy(key)
    )


def _manifest(spark: SparkSession, lake: Settings) -> DataFrame:
    return (
        spark.table(f"{lake.catalog.name}.ops.ingested_files")
        .where(F.col("tenant_id") == TENANT)
        .select("entity", "sha256", "rows", "status")
        .orderBy("entity", "sha256", "status")
    )


#: Attempts that staged nothing: on record, with no counts (checked apart).
NO_DATA = (S.BUSY, S.NOTHING_NEW)


def _all_records(spark: SparkSession, lake: Settings) -> DataFrame:
    return spark.table(f"{lake.catalog.name}.ops.runs").where(F.col("tenant_id") == TENANT)


def _runs(spark: SparkSession, lake: Settings) -> list[str]:
    """The statuses of the runs that staged data, oldest first."""
    rows = (
        _all_records(spark, lake)
        .where(~F.col("status").isin(*NO_DATA))
        .orderBy("started_at")
        .select("status")
        .collect()
    )
    return [r[0] for r in rows]


def _records(spark: SparkSession, lake: Settings) -> DataFrame:
    """Each data run's record: status and counts (sums over ops.runs must be exact)."""
    return (
        _all_records(spark, lake)
        .where(~F.col("status").isin(*NO_DATA))
        .select("status", *COUNT_KEYS, "pass_rate")
        .orderBy("read", "inserted")
    )


def test_killed_at_every_commit_point_then_rerun_equals_one_clean_run(
    spark: SparkSession, tmp_path: Path
) -> None:
    root_a, root_b = tmp_path / "a", tmp_path / "b"
    a, b = _attach_catalog(spark, root_a), _attach_catalog(spark, root_b)

    # Batches 1 and 2 cleanly on both roots (each generated once the last ran: a run ingests
    # every new file). Batch 2 leaves parts waiting for their suppliers; batch 3 brings them.
    for batch in (1, 2):
        assert _generate(root_a, batch) == _generate(root_b, batch)  # content-addressed names
        _run_in_process(spark, a)
        _run_in_process(spark, b)
    assert _generate(root_a, 3) == _generate(root_b, 3)

    # B: batch 3 cleanly. It must write at every commit point, or a kill below would miss one.
    clean = _run_in_process(spark, b)
    assert clean.total("updated") > 0 and clean.total("inserted") > 0
    assert clean.total("quarantined") > 0 and clean.total("promoted") > 0

    # A: batch 3 killed right after each commit point in turn, each child resuming the last.
    for i, point in enumerate(COMMIT_POINTS):
        before = _snapshot_counts(spark, a)
        code = _kill_during_publish(root_a, a.catalog.name, tmp_path / f"killed{i}.log", point)
        assert code == -signal.SIGKILL
        if i == 0:  # the first kill: only the record of the run being published was written
            assert _snapshot_counts(spark, a) == before
        # No record claims the batch as done before its files are in the manifest.
        assert _runs(spark, a) == [S.SUCCEEDED, S.SUCCEEDED, S.PUBLISHING], point
        busy = run_tenant(spark, a, TENANT)  # the killed run's lease outlives it a while
        assert busy.status == S.BUSY and "holds its lease" in busy.message, busy.message

    # Killed after its manifest: only the final status is missing, and the next run gives it.
    last = run_tenant(spark, a, TENANT, wait=10 * LEASE_TTL_S)
    assert last.status == S.NOTHING_NEW, last.message
    assert _runs(spark, a) == [S.SUCCEEDED] * 3

    for ns in ("silver", "quarantine"):
        for entity in ENTITIES:
            assert_df_equality(_table(spark, a, ns, entity), _table(spark, b, ns, entity))
    assert_df_equality(_manifest(spark, a), _manifest(spark, b))
    assert_df_equality(_records(spark, a), _records(spark, b))
    # A's other attempts: one BUSY per kill and the last NOTHING_NEW, none counting a row.
    others = _all_records(spark, a).where(F.col("status").isin(*NO_DATA))
    counted = others.select(*(F.sum(k).alias(k) for k in COUNT_KEYS)).first()
    assert sorted(r.status for r in others.collect()) == sorted(
        [S.BUSY] * len(COMMIT_POINTS) + [S.NOTHING_NEW]
    )
    assert all(not counted[k] for k in COUNT_KEYS), counted
