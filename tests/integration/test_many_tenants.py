"""Many tenants at once, against the same tables: as separate processes, as one application with
``--parallel``, the same tenant twice, and on the JDBC catalog in PostgreSQL.

Each case runs two rounds (a first load, then a change batch; the JDBC case one) and then reads
the tables back with pyiceberg, a second engine: no key twice, silver's rows per tenant equal to
what the runs said they inserted, every run in ``ops.runs``, and every run's commits in the
tables' history.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from support.environment import cli_env
from support.jvm import TEST_JVM_OPTIONS
from support.lakes import make_lake

from cdf_generator.api import generate
from cdf_pipeline import run_record as S
from cdf_pipeline.config import Settings
from cdf_pipeline.contracts import ENTITIES
from cdf_pipeline.exceptions import RunFailed
from cdf_pipeline.lakehouse import lease
from cdf_pipeline.lakehouse.tables import TableNames
from cdf_pipeline.pipeline.many import run_tenants
from cdf_pipeline.pipeline.silver import run_tenant
from cdf_pipeline.quality.rowhash import ROW_HASH

pytestmark = [pytest.mark.spark, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
#: Tenants of one application (``--parallel 4``: more tenants than pool slots, so runs queue).
TENANTS = [f"t{i:02d}" for i in range(5)]
#: Tenants as processes started at once: two JVMs committing to one catalog at once is the case
#: (ten, then four, made this the suite's slowest test, and proved no more).
PROCESS_TENANTS = TENANTS[:2]
ROWS, SEED = 120, 5
TIMEOUT_S = 1200  # generous: only reached if a child hangs


def _generate(root: Path, batch: int, tenants: list[str] = TENANTS) -> None:
    generate(tenants, ROWS, ROWS, seed=SEED, batch=batch, root_uri=str(root))


def _last_json(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def check_lakehouse(catalog: Any, prefix: str, runs: dict[str, list[dict[str, Any]]]) -> None:
    """The guarantees, read back by pyiceberg for every tenant of ``runs`` (tenant -> its run
    summaries, oldest first)."""
    recorded = catalog.load_table(f"{prefix}ops.runs").scan().to_arrow().to_pylist()
    for entity in ENTITIES.values():
        table = catalog.load_table(f"{prefix}silver.{entity.name}")
        rows = table.scan(selected_fields=("tenant_id", entity.primary_key)).to_arrow()
        keys = rows.group_by(["tenant_id", entity.primary_key]).aggregate([([], "count_all")])
        twice = keys.filter(pc.greater(keys["count_all"], 1))
        assert twice.num_rows == 0, f"{entity.name}: keys held twice: {twice.slice(0, 5)}"
        per_tenant = Counter(rows["tenant_id"].to_pylist())
        for tenant, summaries in runs.items():
            inserted = sum(s["entities"][entity.name]["inserted"] for s in summaries)
            assert per_tenant[tenant] == inserted, (tenant, entity.name)
        # Every run's commit is an ancestor of the table's current snapshot: none was lost.
        history = {h.snapshot_id for h in table.history()}
        name = f"{prefix}silver.{entity.name}"
        for row in recorded:
            after = dict(row["snapshots_after"] or [])
            if row["tenant_id"] in runs and name in after:
                assert after[name] in history, (row["run_id"], name)
    for tenant, summaries in runs.items():
        mine = {r["run_id"]: r["status"] for r in recorded if r["tenant_id"] == tenant}
        assert mine == {s["run_id"]: s["status"] for s in summaries}, tenant


def _sqlite_catalog(settings: Settings) -> Any:
    from pyiceberg.catalog.sql import SqlCatalog

    return SqlCatalog(
        settings.catalog.name,
        uri=f"sqlite:///{settings.sqlite_catalog_path}",
        warehouse=settings.warehouse_uri,
    )


def test_tenants_as_processes_at_once_two_rounds(tmp_path: Path) -> None:
    """Two ``cdf run`` processes at once on the embedded default, twice."""
    from cdf_pipeline.config import load_settings

    root = tmp_path / "lake"
    runs: dict[str, list[dict[str, Any]]] = {t: [] for t in PROCESS_TENANTS}
    env = cli_env(CDF__SPARK__MASTER="local[1]")
    for batch in (1, 2):
        _generate(root, batch, PROCESS_TENANTS)
        procs = {
            t: subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cdf_pipeline.cli",
                    "run",
                    "--tenant",
                    t,
                    "--root",
                    str(root),
                    "--json",
                ],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for t in PROCESS_TENANTS
        }
        for tenant, proc in procs.items():
            out, err = proc.communicate(timeout=TIMEOUT_S)
            assert proc.returncode == 0, f"{tenant}: {err[-3000:]}"
            summary = _last_json(out)[-1]
            assert summary["status"] == S.SUCCEEDED, summary["message"]
            runs[tenant].append(summary)
    assert all(r[1]["updated"] > 0 for r in runs.values())  # round 2 was a change batch
    check_lakehouse(
        _sqlite_catalog(load_settings("local", overrides={"root": str(root)})), "", runs
    )


def test_tenants_in_one_application_parallel_4_two_rounds(
    spark: SparkSession, tmp_path: Path
) -> None:
    """The same five tenants through ``run_tenants`` (what ``--all-tenants --parallel 4`` runs)
    in one session: four tenant runs at a time, each in its own scheduler pool."""
    lake = make_lake(spark, tmp_path / "lake")
    root = Path(lake.root)
    runs: dict[str, list[dict[str, Any]]] = {t: [] for t in TENANTS}
    for batch in (1, 2):
        _generate(root, batch)
        done = list(run_tenants(spark, lambda t: lake, TENANTS, parallel=4))
        assert sorted(s.tenant for s in done) == TENANTS
        for s in done:
            assert s.status == S.SUCCEEDED, (s.tenant, s.message)
            runs[s.tenant].append(s.to_dict())
    check_lakehouse(_sqlite_catalog(lake), "", runs)


def _silver(spark: SparkSession, lake: Settings, tenant: str) -> Any:
    """The tenant's silver rows without the values that name a run or its time."""
    frames = []
    for entity in ENTITIES.values():
        df = spark.table(f"{lake.catalog.name}.silver.{entity.name}")
        frames.append(
            df.where(F.col("tenant_id") == tenant).select(
                F.lit(entity.name).alias("entity"),
                F.col(entity.primary_key).alias("key"),
                F.col(ROW_HASH),
                F.col("source_timestamp"),
            )
        )
    out = frames[0]
    for f in frames[1:]:
        out = out.unionByName(f)
    return out.orderBy("entity", "key")


def test_the_same_tenant_started_twice_publishes_once(
    spark: SparkSession, lake: Settings, another_lake: Settings
) -> None:
    """Two runs of one tenant at once (the double-write bug of cron overlaps): one publishes,
    the other is BUSY and writes nothing but its record; silver equals one clean run's."""
    tenant = "twice"
    for target in (lake, another_lake):
        generate([tenant], 400, 400, seed=SEED, root_uri=target.root)
    results: list[S.RunSummary] = []
    go = threading.Barrier(2)

    def start() -> None:
        go.wait()
        results.append(run_tenant(spark, lake, tenant))

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT_S)
    assert sorted(r.status for r in results) == [S.BUSY, S.SUCCEEDED]
    busy = next(r for r in results if r.status == S.BUSY)
    assert busy.exit_code == S.EXIT_BUSY and "holds its lease" in busy.message
    clean = run_tenant(spark, another_lake, tenant)
    assert clean.status == S.SUCCEEDED
    assert_df_equality(_silver(spark, lake, tenant), _silver(spark, another_lake, tenant))
    again = run_tenant(spark, lake, tenant)  # the lease was released: the next run goes ahead
    assert again.status == S.NOTHING_NEW
    # Every attempt is on record, the BUSY one and the one that found nothing new with no counts.
    recorded = spark.table(TableNames.of(lake).runs).where(F.col("tenant_id") == tenant)
    statuses = {r.run_id: (r.status, r.read) for r in recorded.collect()}
    published = next(r for r in results if r.status == S.SUCCEEDED)
    assert statuses == {
        published.run_id: (S.SUCCEEDED, published.total("read")),
        busy.run_id: (S.BUSY, 0),
        again.run_id: (S.NOTHING_NEW, 0),
    }


def test_a_run_whose_lease_was_taken_over_publishes_nothing_and_is_recorded_failed(
    spark: SparkSession, lake: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that stalled past its lease's expiry (no heartbeats: a GC pause, a SIGSTOP) while
    another run took the tenant over stops at its next step (the lease is checked before each
    entity is staged, before the audits and before each publish write): FAILED, exit 1, on
    record in ops.runs once, and not one row of its own in silver or quarantine."""
    tenant = "stalled"
    generate([tenant], 300, 300, seed=SEED, root_uri=lake.root)
    short = lake.model_copy(update={"lease": lake.lease.model_copy(update={"ttl_seconds": 1.0})})
    monkeypatch.setattr(lease.Lease, "start_heartbeat", lambda self: None)  # the stall
    taken: list[lease.Lease] = []
    real_check = lease.Lease.check

    def check_after_a_takeover(self: lease.Lease) -> None:
        if not taken:  # another run waits out the stalled run's expiry and takes the tenant
            taken.append(lease.acquire(short, tenant, purpose="run", wait=30.0))
        real_check(self)

    monkeypatch.setattr(lease.Lease, "check", check_after_a_takeover)
    with pytest.raises(RunFailed, match="taken over") as failed:
        run_tenant(spark, short, tenant)
    taken[0].release()
    run = failed.value.summary
    assert run.status == S.FAILED and run.exit_code == 1 and "LeaseLost" in run.message
    # It stopped at its first step after the takeover: no audit ran, no counts to contradict.
    assert (run.audits, run.entities) == ([], {})
    assert "\n" not in str(failed.value)
    names = TableNames.of(short)
    recorded = spark.table(names.runs).where(F.col("tenant_id") == tenant)
    assert [(r.run_id, r.status, r.read) for r in recorded.collect()] == [(run.run_id, S.FAILED, 0)]
    for entity in ENTITIES:
        for table in (names.silver(entity), names.quarantine(entity)):
            assert spark.table(table).where(F.col("tenant_id") == tenant).isEmpty(), table


@pytest.mark.postgres
def test_tenants_on_the_jdbc_catalog_in_postgresql_via_spark_submit(
    tmp_path: Path, postgres: Any
) -> None:
    """``spark-submit jobs/silver_job.py --all-tenants --parallel 4`` on the jdbc profile, leases
    and catalog in the same PostgreSQL. One round: the change batch under concurrency is the
    in-application test's second round; here it would be a second cold application."""
    from pyiceberg.catalog.sql import SqlCatalog

    root = tmp_path / "lake"
    prefix = "many_"  # this test's own namespaces in the shared test database
    env = cli_env(
        CDF__CATALOG__URI=postgres.jdbc_url(),
        CDF__CATALOG__NAMESPACE_PREFIX=prefix,
        **postgres.env(),
    )
    submit = [str(Path(sys.executable).parent / "spark-submit"),
              "--driver-java-options", TEST_JVM_OPTIONS, str(REPO / "jobs" / "silver_job.py"),
              "--all-tenants", "--parallel", "4", "--profile", "jdbc", "--root", str(root),
              "--json"]  # fmt: skip
    runs: dict[str, list[dict[str, Any]]] = {t: [] for t in TENANTS}
    _generate(root, 1)
    proc = subprocess.run(
        submit, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    lines = _last_json(proc.stdout)
    failed = {
        s["tenant"]: s["message"] for s in lines if s.get("status", S.SUCCEEDED) != S.SUCCEEDED
    }
    assert proc.returncode == 0, f"{failed}\n{proc.stderr[-3000:]}"
    *tenants, total = lines
    assert total["total"] and total["statuses"] == {S.SUCCEEDED: len(TENANTS)}
    assert sorted(s["tenant"] for s in tenants) == TENANTS
    for s in tenants:
        runs[s["tenant"]].append(s)
    assert postgres.password not in proc.stdout + proc.stderr
    catalog = SqlCatalog(
        "cdf",
        uri=f"postgresql+psycopg2://{postgres.user}:{postgres.password}@{postgres.host}:"
        f"{postgres.port}/{postgres.database}",
        warehouse=str(root / "warehouse"),
    )
    check_lakehouse(catalog, prefix, runs)
