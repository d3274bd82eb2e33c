"""Bad input to ``cdf report``: one line on stderr, exit 2, no traceback, nothing written.

The cases told before Spark starts run ``cdf report`` in a child process, as a person would;
those that need the tables (an unknown tenant, an ``ops.runs`` of an older layout) call the
library on the shared session, and one child checks the unknown tenant's line end to end.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from support.environment import cli_env
from support.lakes import make_lake

from cdf_pipeline.dq_report.build import build_report, parse_since
from cdf_pipeline.exceptions import ConfigError, InputError

REPO = Path(__file__).resolve().parents[2]


def cdf_report(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdf_pipeline.cli", "report", *args],
        cwd=REPO, env=cli_env(**(env or {})), capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def one_line_exit_2(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("cdf report: error:"), lines[0]
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_empty_lakehouse(tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    proc = cdf_report("--root", str(tmp_path), "--out", str(out))
    one_line_exit_2(proc, "is empty", "cdf run")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # nothing created, not even a catalog file


def test_missing_root(tmp_path: Path) -> None:
    proc = cdf_report("--root", str(tmp_path / "nowhere"))
    one_line_exit_2(proc, "no lakehouse at", "--root")


def test_since_in_the_future_and_not_a_date(tmp_path: Path) -> None:
    one_line_exit_2(cdf_report("--root", str(tmp_path), "--since", "2999-01-01"), "in the future")
    one_line_exit_2(cdf_report("--root", str(tmp_path), "--since", "last week"), "YYYY-MM-DD")


def test_lakehouse_of_the_hadoop_catalog_layout(tmp_path: Path) -> None:
    """A cdf-pipeline 0.1 lakehouse (tables found by version-hint files) must be migrated."""
    metadata = tmp_path / "warehouse" / "ops" / "runs" / "metadata"
    metadata.mkdir(parents=True)
    (metadata / "version-hint.text").write_text("1")
    (metadata / "v1.metadata.json").write_text("{}")
    proc = cdf_report("--root", str(tmp_path))
    one_line_exit_2(proc, "cdf migrate-catalog", "hadoop catalog")


def test_parse_since_accepts_dates_and_times_in_utc() -> None:
    from datetime import datetime, timezone

    now = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)
    assert parse_since("2026-12-01", now) == datetime(2026, 12, 1)
    assert parse_since("2026-12-06T09:30:00+02:00", now) == datetime(2026, 12, 6, 7, 30)
    assert parse_since(None, now) is None
    with pytest.raises(InputError, match="in the future"):
        parse_since("2026-12-06T12:00:01Z", now)


@pytest.mark.spark
def test_ops_runs_of_an_older_layout(spark: SparkSession, tmp_path: Path) -> None:
    lake = make_lake(spark, tmp_path / "old")
    runs = f"{lake.catalog.name}.ops.runs"
    spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {lake.catalog.name}.ops")
    spark.sql(f"CREATE TABLE {runs} (tenant_id string, run_id string, status string) USING iceberg")
    spark.sql(f"INSERT INTO {runs} VALUES ('acme', 'r1', 'SUCCEEDED')")
    with pytest.raises(ConfigError, match=r"older layout.*trace_id"):
        build_report(spark, lake, tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


@pytest.mark.spark
def test_empty_ops_runs(spark: SparkSession, tmp_path: Path) -> None:
    from cdf_pipeline.lakehouse.tables import TableNames, ensure_tables

    lake = make_lake(spark, tmp_path / "empty")
    ensure_tables(spark, TableNames.of(lake))
    with pytest.raises(InputError, match="records no run yet"):
        build_report(spark, lake, tmp_path / "r.html")
