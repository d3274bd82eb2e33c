"""SIGTERM, what Kubernetes, systemd and most schedulers send first, stops ``cdf run`` as Ctrl-C
does: the run stops, records itself FAILED, releases its tenant lease and exits 143, so that an
immediate rerun is not BUSY."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli_env, make_lake
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from cdf_generator.api import generate
from cdf_pipeline import run_record as S
from cdf_pipeline.lakehouse.tables import TableNames

pytestmark = [pytest.mark.spark, pytest.mark.slow]

TENANT = "termed"
TIMEOUT_S = 600
#: A line the child logs (with -v) once it is staging: it holds its lease and reads data then.
STAGING = "stage read took"


def test_sigterm_records_the_run_and_releases_its_lease(
    spark: SparkSession, tmp_path: Path
) -> None:
    root = tmp_path / "lake"
    lake = make_lake(spark, root, tenant=TENANT, properties={"cache-enabled": "false"})
    generate([TENANT], 300, 300, seed=5, root_uri=str(root))
    env = cli_env(CDF__CATALOG__NAME=lake.catalog.name, CDF__SPARK__SHUFFLE_PARTITIONS="2")
    cmd = [sys.executable, "-m", "cdf_pipeline.cli", "-v", "run", "--tenant", TENANT,
           "--root", str(root)]  # fmt: skip
    child = subprocess.Popen(
        cmd, env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stderr is not None
    seen = []
    for line in child.stderr:
        seen.append(line)
        if STAGING in line:
            child.send_signal(signal.SIGTERM)
            break
    else:
        pytest.fail("the run ended before staging:\n" + "".join(seen[-30:]))
    _, rest = child.communicate(timeout=TIMEOUT_S)
    assert child.returncode == 128 + signal.SIGTERM, "".join(seen[-20:]) + rest[-3000:]
    # One line says what happened; no traceback.
    assert "cdf run: stopped by SIGTERM" in rest.splitlines()
    assert "Traceback" not in rest

    names = TableNames(lake.catalog.name)
    runs = spark.table(names.runs).where(F.col("tenant_id") == TENANT)
    recorded = [(r.status, r.message) for r in runs.collect()]
    assert recorded == [(S.FAILED, "interrupted by SIGTERM before it finished; run it again")]

    # The lease was released on the way out: a run right now goes ahead (no --wait, not BUSY).
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert again.returncode == 0, again.stderr[-3000:]
    assert spark.table(names.silver("suppliers")).where(F.col("tenant_id") == TENANT).count() > 0
