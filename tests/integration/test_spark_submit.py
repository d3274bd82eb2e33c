"""The spark-submit entry point (``jobs/silver_job.py``) and ``cdf run``'s edge cases, end to end.

Each case runs in a child process, as a scheduler or an operator would run it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.jvm import TEST_JVM_OPTIONS

from cdf_generator.api import generate
from cdf_pipeline import run_record as S

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TIMEOUT_S = 1200  # generous: only reached if a child hangs


def _env() -> dict[str, str]:
    """The test's environment without CDF overrides; Python of this venv for driver and workers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDF__") and k != "CDF_ROOT"}
    env.update(
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        CDF__SPARK__SHUFFLE_PARTITIONS="2",
        SPARK_LOCAL_IP="127.0.0.1",  # loopback only
    )
    return env


def _run(
    args: list[str], extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**_env(), **(extra_env or {})}
    return subprocess.run(
        args, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )


@pytest.fixture(scope="module")
def submitted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Generate one batch for ``subm`` and spark-submit the silver job twice on it.

    Both children are launched from inside a parent span, as a scheduler would: they get its
    trace context (``TRACEPARENT``) and write their spans to ``<root>/telemetry/spans.jsonl``.
    """
    from opentelemetry.sdk.trace import TracerProvider

    from cdf_pipeline import telemetry

    root = tmp_path_factory.mktemp("subm")
    generated = generate(["subm"], 1000, 1000, seed=3, root_uri=str(root))
    submit = [str(BIN / "spark-submit"), "--driver-java-options", TEST_JVM_OPTIONS,
              str(REPO / "jobs" / "silver_job.py"),
              "--tenant", "subm", "--root", str(root), "--json"]  # fmt: skip
    scheduler = TracerProvider().get_tracer("test-scheduler")
    with scheduler.start_as_current_span("launch tenant jobs") as parent:
        traced = {**telemetry.child_env(), "OTEL_TRACES_EXPORTER": "jsonl"}
        first = _run(submit, traced)
        again = _run(submit, traced) if first.returncode == 0 else None
    rows = sum(e.rows for e in generated.tenants["subm"].values())
    ctx = parent.get_span_context()
    return {
        "rows": rows,
        "first": first,
        "again": again,
        "root": root,
        "parent_trace_id": f"{ctx.trace_id:032x}",
        "parent_span_id": f"{ctx.span_id:016x}",
    }


def _summary(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The ``--json`` summary: the last stdout line that is a JSON object."""
    objects = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert objects, f"no JSON summary on stdout:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    summary: dict[str, Any] = json.loads(objects[-1])
    return summary


@pytest.mark.slow
def test_spark_submit_runs_the_silver_job_then_finds_nothing_new(
    submitted: dict[str, Any],
) -> None:
    first, again = submitted["first"], submitted["again"]
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    summary = _summary(first)
    assert summary["status"] == S.SUCCEEDED, summary["message"]
    assert summary["read"] == submitted["rows"]
    assert summary["inserted"] > 0

    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    summary = _summary(again)
    assert summary["status"] == S.NOTHING_NEW, summary["message"]
    assert summary["read"] == 0 and summary["inserted"] == 0


@pytest.mark.slow
def test_spark_submit_json_summary_is_the_last_stdout_line(submitted: dict[str, Any]) -> None:
    for proc in (submitted["first"], submitted["again"]):
        assert proc is not None and proc.returncode == 0
        # A clean run ends quietly: no shutdown noise from the JVM after the summary.
        for noise in ("RejectedExecutionException", "was not removed normally", "Traceback"):
            assert noise not in proc.stdout + proc.stderr, noise
        last = proc.stdout.strip().splitlines()[-1]
        assert json.loads(last)["status"] in (S.SUCCEEDED, S.NOTHING_NEW), last


def test_invalid_tenant_is_one_line_and_exit_2() -> None:
    proc = _run([str(BIN / "cdf"), "run", "--tenant", "../evil"])
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2
    assert len(err) == 1, proc.stderr
    assert err[0].startswith("cdf run: error: invalid tenant id '../evil'")
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_unknown_tenant_exits_2_and_says_so(tmp_path: Path) -> None:
    """A typo in a tenant id must not look green to a scheduler."""
    proc = _run([str(BIN / "cdf"), "run", "--tenant", "nobody_here", "--root", str(tmp_path)])
    assert proc.returncode == 2, proc.stderr[-5000:]
    assert S.UNKNOWN_TENANT in proc.stdout
    assert "unknown tenant 'nobody_here'" in proc.stdout
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_the_parents_trace_reaches_each_spark_submit_child(submitted: dict[str, Any]) -> None:
    """TRACEPARENT from the launcher: every span of both children is in the launcher's trace,
    each child's top span hangs under the launcher's span, and ops.runs names that trace."""
    from cdf_pipeline.telemetry.export import read_spans

    trace_id, parent_id = submitted["parent_trace_id"], submitted["parent_span_id"]
    assert submitted["first"].returncode == 0
    spans = read_spans(Path(submitted["root"]) / "telemetry" / "spans.jsonl")
    assert {s["trace_id"] for s in spans} == {trace_id}
    tops = [s for s in spans if s["parent_id"] == parent_id]
    assert [s["name"] for s in tops] == ["cdf.run", "cdf.run"]  # one per child process
    names = {s["name"] for s in spans}
    assert {"spark_session", "cdf.silver_run", "stage_entity", "publish", "record_run"} <= names
    first, again = _summary(submitted["first"]), _summary(submitted["again"])
    assert first["trace_id"] == again["trace_id"] == trace_id
    recorded = {
        (r["run_id"], r["trace_id"], r["status"]) for r in _ops_runs(Path(submitted["root"]))
    }
    assert recorded == {
        (first["run_id"], trace_id, S.SUCCEEDED),
        (again["run_id"], trace_id, S.NOTHING_NEW),  # on record too, with no counts
    }


def _ops_runs(root: Path) -> list[dict[str, Any]]:
    """The ``ops.runs`` rows of a local lakehouse, read with pyiceberg's SQL catalog on the
    lakehouse's own ``catalog.db`` (no Spark needed)."""
    from pyiceberg.catalog.sql import SqlCatalog

    catalog = SqlCatalog(
        "cdf", uri=f"sqlite:///{root.absolute()}/catalog.db", warehouse=str(root / "warehouse")
    )
    table = catalog.load_table("ops.runs")
    return table.scan(selected_fields=("run_id", "trace_id", "status")).to_arrow().to_pylist()


@pytest.mark.slow
def test_spark_submit_with_packages_uses_the_cluster_jars(tmp_path: Path) -> None:
    """A cluster launch brings the jars itself (``--packages "$(cdf jars)"``): the job uses them
    and resolves nothing (an empty CDF_JARS_DIR would fail any resolution of its own)."""
    from cdf_pipeline import jars

    generate(["pkgs"], 300, 300, seed=5, root_uri=str(tmp_path / "lake"))
    coordinates = _run([str(BIN / "cdf"), "jars"]).stdout.strip()
    assert coordinates == jars.coordinates([jars.ICEBERG_RUNTIME, jars.SQLITE_JDBC])
    empty = tmp_path / "no-jars"
    empty.mkdir()
    proc = _run(
        [str(BIN / "spark-submit"), "--driver-java-options", TEST_JVM_OPTIONS, "--packages",
         coordinates, str(REPO / "jobs" / "silver_job.py"),
         "--tenant", "pkgs", "--root", str(tmp_path / "lake"), "--json"],
        {jars.JARS_DIR_ENV: str(empty)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert _summary(proc)["status"] == S.SUCCEEDED
    # spark-submit sized the driver before Python ran: the profile's 4g is said not to apply.
    assert "pass --driver-memory 4g" in proc.stdout + proc.stderr
