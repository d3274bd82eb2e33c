"""Signals a run process gets from outside.

SIGTERM, what Kubernetes, systemd and most schedulers send first, stops ``cdf run`` as Ctrl-C
does: the run stops, records itself FAILED, releases its tenant lease and exits 143, so that an
immediate rerun is not BUSY. A run paused (SIGSTOP: a stalled VM, a long GC, a debugger) past its
lease's expiry and overtaken by another run stops with ``LeaseLost`` when it resumes (SIGCONT):
one line, exit 1, recorded FAILED once, no audit run, nothing of it counted."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from support.environment import cli_env
from support.lakes import make_lake

from cdf_generator.api import generate
from cdf_pipeline import run_record as S
from cdf_pipeline.lakehouse.tables import TableNames
from cdf_pipeline.pipeline.silver import run_tenant

pytestmark = [pytest.mark.spark, pytest.mark.slow]

TENANT = "termed"
TIMEOUT_S = 600
#: The paused run's lease time to live: it expires while the run is stopped.
PAUSED_TTL_S = "4"
#: A line the child logs (with -v) once it is staging: it holds its lease and reads data then.
STAGING = "stage read took"


def test_sigterm_records_the_run_and_releases_its_lease(
    spark: SparkSession, tmp_path: Path
) -> None:
    root = tmp_path / "lake"
    lake = make_lake(spark, root, tenant=TENANT, properties={"cache-enabled": "false"})
    generate([TENANT], 300, 300, seed=5, root_uri=str(root))
    env = cli_env(CDF__CATALOG__NAME=lake.catalog.name)
    cmd = [sys.executable, "-m", "cdf_pipeline.cli", "-v", "run", "--tenant", TENANT,
           "--root", str(root)]  # fmt: skip
    child, seen = _start_and_signal_when_staging(cmd, env, signal.SIGTERM)
    _, rest = child.communicate(timeout=TIMEOUT_S)
    assert child.returncode == 128 + signal.SIGTERM, "".join(seen[-20:]) + rest[-3000:]
    # One line says what happened; no traceback.
    assert "cdf run: stopped by SIGTERM" in rest.splitlines()
    assert "Traceback" not in rest

    names = TableNames(lake.catalog.name)
    runs = spark.table(names.runs).where(F.col("tenant_id") == TENANT)
    recorded = [(r.status, r.message) for r in runs.collect()]
    assert recorded == [(S.FAILED, "interrupted by SIGTERM before it finished; run it again")]

    # The lease was released on the way out: a run right now goes ahead (no wait, not BUSY).
    again = run_tenant(spark, lake, TENANT)
    assert again.status == S.SUCCEEDED, again.message
    assert spark.table(names.silver("suppliers")).where(F.col("tenant_id") == TENANT).count() > 0


def test_a_paused_run_overtaken_after_its_lease_expired_stops_when_resumed(
    spark: SparkSession, tmp_path: Path
) -> None:
    tenant = "paused"
    root = tmp_path / "lake"
    lake = make_lake(spark, root, tenant=tenant, properties={"cache-enabled": "false"})
    generate([tenant], 300, 300, seed=6, root_uri=str(root))
    env = cli_env(
        CDF__CATALOG__NAME=lake.catalog.name,
        CDF__LEASE__TTL_SECONDS=PAUSED_TTL_S,
    )
    cmd = [sys.executable, "-m", "cdf_pipeline.cli", "-v", "run", "--tenant", tenant,
           "--root", str(root)]  # fmt: skip
    paused, seen = _start_and_signal_when_staging(cmd, env, signal.SIGSTOP)
    try:
        # Another run waits for the paused run's lease to expire, takes the tenant over and
        # publishes everything.
        other = run_tenant(spark, lake, tenant, wait=120)
        assert other.status == S.SUCCEEDED, other.message
    finally:
        paused.send_signal(signal.SIGCONT)
    _, rest = paused.communicate(timeout=TIMEOUT_S)
    assert paused.returncode == 1, "".join(seen[-20:]) + rest[-3000:]
    errors = [line for line in rest.splitlines() if line.startswith("cdf run: error:")]
    assert len(errors) == 1 and "LeaseLost" in errors[0], rest[-3000:]
    assert "Traceback" not in rest

    names = TableNames(lake.catalog.name)
    runs = spark.table(names.runs).where(F.col("tenant_id") == tenant)
    by_status = {r.status: r for r in runs.collect()}
    assert sorted(by_status) == [S.FAILED, S.SUCCEEDED], errors[0]
    assert runs.count() == 2  # the paused run is on record once
    failed = by_status[S.FAILED]
    assert "LeaseLost" in failed.message
    # It stopped before its audits and counts none of the rows the other run published.
    assert failed.audits is None or list(failed.audits) == []
    assert not failed.entity_counts
    assert failed["read"] == 0
    files = spark.table(names.ingested_files).where(F.col("tenant_id") == tenant)
    assert {r.run_id for r in files.collect()} == {other.run_id}

    # Its lease is not held: a run right now goes ahead (no wait) and finds nothing new.
    again = run_tenant(spark, lake, tenant)
    assert again.status == S.NOTHING_NEW, again.message


def _start_and_signal_when_staging(
    cmd: list[str], env: dict[str, str], sig: signal.Signals
) -> tuple[subprocess.Popen[str], list[str]]:
    """Start a ``cdf -v run`` and send ``sig`` once it is staging (holding its lease, reading
    data); the stderr lines seen so far."""
    child = subprocess.Popen(
        cmd, env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stderr is not None
    seen = []
    for line in child.stderr:
        seen.append(line)
        if STAGING in line:
            child.send_signal(sig)
            return child, seen
    child.wait(timeout=TIMEOUT_S)
    pytest.fail("the run ended before staging:\n" + "".join(seen[-30:]))
