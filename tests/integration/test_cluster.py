"""The silver job on a real Spark cluster: a standalone master and two one-core workers on
loopback, the lakehouse on S3 (moto), Iceberg's JDBC catalog on PostgreSQL (atomic commits).

Two tenants, as a user would run them on a cluster: a first load with ``cdf run --tenants
... --parallel 2``, a change batch with ``spark-submit --master spark://... jobs/silver_job.py``,
and a rerun that finds nothing new. The same files go through the same runs in local mode into a
second lakehouse (in this session's driver, ``local[*]``, on the embedded catalog: no second
cold driver); silver, quarantine and ops must then be equal row for row, bar the values that name
a run, a wall-clock time or where the lakehouse is. The executors' own logs prove that tasks
ran on both workers, not in the driver. Per-JVM state of the job (expressions built once per
driver, the run clock as data, the lease heartbeat thread) is exercised by the two tenants of one
driver and by the equality with local mode.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from servers.postgres import PostgresServer
from servers.spark_cluster import SparkCluster, start_cluster, stop_cluster
from support.environment import cli_env, require
from support.jvm import BASE_JVM_OPTIONS, TEST_JVM_OPTIONS
from support.lakes import make_lake

from cdf_generator.api import generate as generate_files
from cdf_pipeline.lakehouse.tables import TableNames
from cdf_pipeline.pipeline.many import run_tenants
from cdf_pipeline.run_record import COUNT_KEYS

pytestmark = [pytest.mark.slow, pytest.mark.spark, pytest.mark.s3, pytest.mark.postgres]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TENANTS = ("north", "south")
ROWS, SEED = "150", "11"
TIMEOUT_S = 900
#: Executors get the drivers' JIT and collector options (not their class archive, which was
#: built for a driver's class path): their tasks are small and short too.
EXECUTOR_OPTIONS = "spark.executor.extraJavaOptions"
#: moto accepts any credentials; throwaway test values.
AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
#: Values that name a run or a write's wall-clock time: they differ between the two lakehouses.
RUN_VALUES = {
    "silver": ["_run_id", "_ingested_at"],
    "quarantine": ["_run_id", "_quarantined_at", "_resolved_run_id", "_resolved_at"],
}


def side_env(
    endpoint: str, pg: PostgresServer, catalog: str, master: str, **extra: str
) -> dict[str, str]:
    """A cdf child's environment: the jdbc profile on the test servers, ``master`` for Spark."""
    return cli_env(
        **AWS,
        AWS_ENDPOINT_URL=endpoint,
        CDF__CATALOG__URI=pg.jdbc_url(),
        CDF__CATALOG__NAME=catalog,
        PGUSER=pg.user,
        PGPASSWORD=pg.password,
        CDF__SPARK__MASTER=master,
        CDF__SPARK__CONF=json.dumps({EXECUTOR_OPTIONS: BASE_JVM_OPTIONS}),
        **extra,
    )


def run(cmd: list[str], env: dict[str, str]) -> list[dict[str, Any]]:
    """The child's JSON lines (a tenant's summary each, or the generator's)."""
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-4000:]
    return [json.loads(ln) for ln in done.stdout.splitlines() if ln.startswith("{")]


def cdf(*args: str) -> list[str]:
    return [sys.executable, "-m", "cdf_pipeline.cli", *args, "--profile", "jdbc", "--json"]


def by_tenant(lines: list[dict[str, Any]]) -> dict[str, str]:
    return {ln["tenant"]: ln["status"] for ln in lines if "tenant" in ln}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str) -> Iterator[SparkCluster]:
    env = cli_env(**AWS, AWS_ENDPOINT_URL=s3_endpoint)
    try:
        started = start_cluster(tmp_path_factory.mktemp("cluster"), env)
    except (RuntimeError, OSError) as exc:
        require(False, f"the Spark standalone cluster did not start: {exc}")
        raise
    try:
        yield started
    finally:
        stop_cluster(started)


def lakehouse_tables(pg: PostgresServer, endpoint: str, catalog: str, out: Path) -> dict[str, Path]:
    """Every table of one lakehouse, read by pyiceberg and written to local Parquet files."""
    from pyiceberg.catalog import load_catalog

    props = {
        "type": "sql",
        "uri": f"postgresql+psycopg2://{pg.user}:{pg.password}@{pg.host}:{pg.port}/{pg.database}",
        "s3.endpoint": endpoint,
        "s3.path-style-access": "true",
        "s3.access-key-id": AWS["AWS_ACCESS_KEY_ID"],
        "s3.secret-access-key": AWS["AWS_SECRET_ACCESS_KEY"],
        "s3.region": AWS["AWS_REGION"],
    }
    iceberg = load_catalog(catalog, **props)
    files = {}
    for name in ("silver.suppliers", "silver.parts", "quarantine.suppliers",
                 "quarantine.parts", "ops.runs", "ops.ingested_files"):  # fmt: skip
        files[name] = out / f"{catalog}-{name}.parquet"
        pq.write_table(iceberg.load_table(name).scan().to_arrow(), files[name])
    return files


def comparable(df: DataFrame, name: str) -> DataFrame:
    """The table as both lakehouses must hold it: without run ids, times and locations."""
    kind = name.split(".")[0]
    if kind in RUN_VALUES:
        return df.drop(*RUN_VALUES[kind])
    if name == "ops.ingested_files":
        return df.select(
            "tenant_id", "entity", F.regexp_extract("file", r"[^/]*$", 0).alias("file"),
            "sha256", "rows", "status", "error", "note", "size",
        )  # fmt: skip
    return df.select(
        "tenant_id", "status", "pass_rate", *COUNT_KEYS,
        F.array_sort(F.map_entries("violation_counts")).alias("violation_counts"),
    )  # fmt: skip


def test_two_tenants_on_a_standalone_cluster_equal_local_mode(
    spark: SparkSession,
    cluster: SparkCluster,
    s3_endpoint: str,
    postgres: PostgresServer,
    tmp_path: Path,
) -> None:
    import boto3

    bucket = f"cdf-cluster-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    root = f"s3://{bucket}/cluster"
    catalog = f"c{uuid.uuid4().hex[:8]}"
    env = side_env(s3_endpoint, postgres, catalog, cluster.master)
    # Local mode: the same files through the same runs in this session's driver (local[*]).
    local = make_lake(spark, tmp_path / "local")
    tenants = ",".join(TENANTS)

    def generate(batch: int) -> None:
        args = ("generate", "--tenants", tenants, "--suppliers", ROWS, "--parts", ROWS,
                "--batch", str(batch), "--seed", SEED, "--root", root)  # fmt: skip
        run(cdf(*args), env)
        generate_files(list(TENANTS), int(ROWS), int(ROWS), seed=int(SEED), batch=batch,
                       root_uri=str(tmp_path / "local"))  # fmt: skip

    def cdf_run() -> dict[str, str]:
        args = ("run", "--tenants", tenants, "--parallel", "2", "--root", root)
        return by_tenant(run(cdf(*args), env))

    def run_locally() -> dict[str, str]:
        done = run_tenants(spark, lambda t: local, TENANTS, parallel=2)
        return {s.tenant: s.status for s in done}

    generate(1)
    assert cdf_run() == {t: "SUCCEEDED" for t in TENANTS}
    assert run_locally() == {t: "SUCCEEDED" for t in TENANTS}
    generate(2)
    submit = [str(BIN / "spark-submit"), "--master", cluster.master,
              "--driver-java-options", TEST_JVM_OPTIONS,
              "--conf", f"{EXECUTOR_OPTIONS}={BASE_JVM_OPTIONS}",
              str(REPO / "jobs" / "silver_job.py"),
              "--tenants", tenants, "--parallel", "2", "--profile", "jdbc",
              "--root", root, "--json"]  # fmt: skip
    assert by_tenant(run(submit, env)) == {t: "SUCCEEDED" for t in TENANTS}
    assert run_locally() == {t: "SUCCEEDED" for t in TENANTS}
    assert cdf_run() == {t: "NOTHING_NEW" for t in TENANTS}
    assert run_locally() == {t: "NOTHING_NEW" for t in TENANTS}  # on record in ops.runs too

    # Tasks ran in executors on both workers (their own logs), in each of the three drivers.
    assert all(n > 0 for n in cluster.finished_tasks()), cluster.finished_tasks()
    apps = [a for a in cluster.applications() if a.get("state") == "FINISHED"]
    assert len(apps) >= 3, apps

    names = TableNames(local.catalog.name)
    for name, path in lakehouse_tables(postgres, s3_endpoint, catalog, tmp_path).items():
        kind, table = name.split(".")
        local_table = f"{names.namespace(kind)}.{table}"
        assert_df_equality(
            comparable(spark.read.parquet(str(path)), name),
            comparable(spark.table(local_table), name),
            ignore_row_order=True,
            ignore_nullable=True,
        )
