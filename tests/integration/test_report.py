"""``cdf report`` end to end: a small generated lakehouse, the report built from it, and the
report opened in a real browser (headless Chromium driven by Selenium).

Two tenants, three runs each: a first load, a change batch (updates, stale versions and parts
whose supplier has not arrived yet) and a batch that brings those late parents (the parts are
promoted); tenant ``rpb`` also gets a corrupt file in its third batch (a FAILED file, a run
SUCCEEDED_WITH_ERRORS). Then a run of each that stages nothing (NOTHING_NEW, BUSY), on record
too. A few hundred rows per tenant: the browser test is about rendering, not scale.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from support.environment import require
from support.lakes import make_lake

from cdf_generator.api import generate
from cdf_pipeline import run_record as S
from cdf_pipeline.config import Settings
from cdf_pipeline.dq_report.build import build_report
from cdf_pipeline.lakehouse import lease
from cdf_pipeline.lakehouse.tables import TableNames
from cdf_pipeline.pipeline.silver import run_tenant

pytestmark = [pytest.mark.spark, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("CDF_TEST_ARTIFACTS", REPO / "build" / "test-artifacts"))
TENANTS = ("rpa", "rpb")
ROWS = 150


@pytest.fixture(scope="module")
def report_lake(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The two tenants' lakehouse after their three runs each, then a run of ``rpa`` that finds
    nothing new and one of ``rpb`` that finds its tenant busy (runs that stage nothing)."""
    lake = make_lake(spark, tmp_path_factory.mktemp("report") / "lake")
    for batch in (1, 2, 3):
        generate(list(TENANTS), ROWS, ROWS, seed=7, batch=batch, root_uri=lake.root)
        if batch == 3:
            folder = Path(lake.raw_uri, "tenant_id=rpb", "entity=parts", "ingest_date=2026-03-01")
            folder.mkdir(parents=True)
            (folder / "broken.parquet").write_bytes(b"PAR1 not a parquet file")
        for tenant in TENANTS:
            run = run_tenant(spark, lake, tenant)
            assert run.status in (S.SUCCEEDED, S.PARTIAL), run.message
    assert run_tenant(spark, lake, "rpa").status == S.NOTHING_NEW
    held = lease.acquire(lake, "rpb", purpose="maintain")
    try:
        assert run_tenant(spark, lake, "rpb").status == S.BUSY
    finally:
        held.release()
    return lake


@pytest.fixture(scope="module")
def report_file(
    spark: SparkSession, report_lake: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("report-out") / "report.html"
    done = build_report(spark, report_lake, out)
    assert done.tenants == list(TENANTS)
    assert done.runs == 8  # every run on record, those that staged nothing too
    return out


def _expected_marks(spark: SparkSession, lake: Settings) -> dict[str, dict[str, int]]:
    """Per tenant, the marks each chart must draw, counted from the tables (not the report)."""
    names = TableNames(lake.catalog.name)
    runs = spark.table(names.runs)
    out: dict[str, dict[str, int]] = {t: {} for t in TENANTS}
    for r in (
        runs.groupBy("tenant_id")
        .agg(
            F.count(F.lit(1)).alias("runs"),
            F.sum(((F.col("read") + F.col("promoted")) > 0).cast("int")).alias("data_runs"),
        )
        .collect()
    ):
        out[r["tenant_id"]].update(runs=r["runs"], data_runs=r["data_runs"])
    rule_bars = (
        runs.select("tenant_id", F.explode("violation_counts").alias("rule", "n"))
        .where(F.col("n") > 0)
        .groupBy("tenant_id")
        .count()
    )
    for r in rule_bars.collect():
        out[r["tenant_id"]]["rule_bars"] = r["count"]
    file_bars = (
        runs.select("tenant_id", "run_id", F.explode("inputs").alias("f"))
        .select("tenant_id", "run_id", "f.status")
        .distinct()
        .groupBy("tenant_id")
        .count()
    )
    for r in file_bars.collect():
        out[r["tenant_id"]]["file_bars"] = r["count"]
    for entity in ("suppliers", "parts"):
        q = spark.table(names.quarantine(entity)).select("tenant_id", "_status").distinct()
        for r in q.groupBy("tenant_id").count().collect():
            key = "quarantine_bars"
            out[r["tenant_id"]][key] = out[r["tenant_id"]].get(key, 0) + r["count"]
    return out


def test_report_is_one_self_contained_file(report_file: Path, report_lake: Settings) -> None:
    html = report_file.read_text(encoding="utf-8")
    # Nothing loaded from elsewhere: no script with a source, and outside the inline scripts
    # (the vega bundle's code writes tags of its own) no stylesheet, image or frame with one.
    assert not re.search(r"<script\b[^>]*\bsrc\s*=", html)
    markup = re.sub(r"<script\b[^>]*>.*?</script>", "", html, flags=re.S)
    assert not re.search(r"<(link|img|iframe|embed|object|source)\b[^>]*\b(src|href)\s*=", markup)
    assert "@import" not in markup and "url(" not in markup
    assert html.count("window.vegaEmbed=") == 1  # the bundle once, whatever the charts
    assert len(html.encode()) < 5_000_000
    for tenant in TENANTS:
        assert f'id="tenant-{tenant}"' in html
    assert 'id="lakehouse"' in html
    # Bounded samples and no machine detail of the lakehouse beyond its catalog name.
    assert report_lake.root not in html


def test_samples_hold_only_the_tenants_own_rows(
    spark: SparkSession, report_lake: Settings, report_file: Path
) -> None:
    """Every quarantine key in a tenant's section is one of that tenant's quarantine rows."""
    html = report_file.read_text(encoding="utf-8")
    names = TableNames(report_lake.catalog.name)
    sections = dict(re.findall(r'data-tenant="(\w+)">(.*?)</section>', html, re.S))
    assert set(sections) == set(TENANTS)
    for tenant, body in sections.items():
        samples = body.split('class="samples"', 1)[1]
        keys = set(re.findall(r"<td><code>(01[0-9A-Z]{24})</code></td>", samples))
        assert keys, f"no sample rows for {tenant}"
        owned = set()
        for entity, pk in (("suppliers", "supplier_id"), ("parts", "part_id")):
            rows = spark.table(names.quarantine(entity)).where(F.col("tenant_id") == tenant)
            hits = rows.where(F.col(pk).isin(sorted(keys))).select(pk).collect()
            owned |= {r[0] for r in hits}
        assert keys <= owned


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium (Debian's ``chromium`` and ``chromium-driver``) under Selenium, with the
    browser's console and network events logged."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        require(False, "selenium is not installed (pip install -e '.[dev]')")
        raise
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    require(
        binary is not None and driver_path is not None,
        "chromium and chromedriver are not on PATH (apt-get install chromium chromium-driver)",
    )
    options = webdriver.ChromeOptions()
    options.binary_location = str(binary)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,2400"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(driver_path)))
    try:
        yield driver
    finally:
        driver.quit()


def _marks(driver: Any, spec_id: str, mark: str) -> int:
    """Items of ``mark`` (symbol, rect, rule, line) drawn in the chart of ``spec_id``."""
    count: int = driver.execute_script(
        "const div = document.querySelector(`div.chart[data-spec='${arguments[0]}']`);"
        "if (!div) return -1;"
        "const svg = div.querySelector('svg');"
        "if (!svg || svg.getBBox().width === 0) return -2;"
        # role-mark: data marks, not the axes' ticks or the legends' symbols
        "const m = `g.mark-${arguments[1]}.role-mark`;"
        "return svg.querySelectorAll(`${m} > path, ${m} > line`).length;",
        spec_id,
        mark,
    )
    return count


def test_report_renders_in_a_browser_offline(
    spark: SparkSession, report_lake: Settings, report_file: Path, browser: Any
) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get_log("performance")  # drop what an earlier page left
    browser.get(report_file.as_uri())
    WebDriverWait(browser, 60).until(
        lambda d: d.execute_script("return document.body.dataset.charts || ''") != ""
    )
    state = browser.execute_script("return document.body.dataset.charts")
    console = browser.get_log("browser")
    assert state == "rendered", console
    assert [e for e in console if e["level"] == "SEVERE"] == []

    # No request left the file: every network event names the report itself.
    requests = [
        json.loads(e["message"])["message"]
        for e in browser.get_log("performance")
        if '"Network.requestWillBeSent"' in e["message"]
    ]
    urls = {m["params"]["request"]["url"] for m in requests}
    assert urls == {report_file.as_uri()}, urls
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1400, min(int(height), 16000))
    assert browser.save_screenshot(str(ARTIFACTS / "report.png"))
    assert (ARTIFACTS / "report.png").stat().st_size > 10_000

    expected = _expected_marks(spark, report_lake)
    ids = browser.execute_script(
        "return Array.from(document.querySelectorAll('div.chart')).map(d => d.dataset.spec)"
    )
    by_name = {re.sub(r"^spec-\d+-", "", i): i for i in ids}
    for tenant in TENANTS:
        want = expected[tenant]
        assert want["data_runs"] == 3
        assert _marks(browser, by_name[f"{tenant}-pass-rate"], "symbol") == want["data_runs"]
        assert _marks(browser, by_name[f"{tenant}-pass-rate"], "rule") == 1  # the gate
        assert _marks(browser, by_name[f"{tenant}-rules"], "rect") == want["rule_bars"]
        assert _marks(browser, by_name[f"{tenant}-quarantine"], "rect") == want["quarantine_bars"]
        assert _marks(browser, by_name[f"{tenant}-files"], "rect") == want["file_bars"]
        assert _marks(browser, by_name[f"{tenant}-durations"], "rect") == want["runs"]
    # A bar per tenant and its gate as a tick (Vega draws ticks as rects too).
    assert _marks(browser, by_name["lake-pass-rates"], "rect") == 2 * len(TENANTS)
    assert _marks(browser, by_name["lake-open"], "rect") == len(TENANTS)
    assert _marks(browser, by_name["lake-statuses"], "rect") == sum(
        len({r["status"] for r in spark.table(TableNames(report_lake.catalog.name).runs)
             .where(F.col("tenant_id") == t).select("status").collect()})
        for t in TENANTS
    )  # fmt: skip


def _cdf_report(lake: Settings, *args: str) -> Any:
    import subprocess
    import sys

    from support.environment import cli_env

    env = cli_env(CDF__CATALOG__NAME=lake.catalog.name, CDF__SPARK__MASTER="local[1]")
    return subprocess.run(
        [sys.executable, "-m", "cdf_pipeline.cli", "report", "--root", lake.root, *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def test_cli_writes_one_tenants_report_since_a_date(report_lake: Settings, tmp_path: Path) -> None:
    out = tmp_path / "rpa.html"
    proc = _cdf_report(report_lake, "--tenant", "rpa", "--since", "2000-01-01", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    # rpa's runs: its three data runs and the one that found nothing new.
    assert proc.stdout.startswith(f"wrote {out} (1 tenant(s), 4 run(s),"), proc.stdout
    html = out.read_text(encoding="utf-8")
    assert 'data-tenant="rpa"' in html and 'data-tenant="rpb"' not in html
    assert "runs since 2000-01-01 00:00:00 UTC" in html


def test_cli_unknown_tenant_is_one_line_exit_2(report_lake: Settings, tmp_path: Path) -> None:
    out = tmp_path / "x.html"
    proc = _cdf_report(report_lake, "--tenant", "rpx", "--out", str(out))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        "cdf report: error: unknown tenant 'rpx': no run recorded for it in "
        f"{report_lake.catalog.name}.ops.runs at {report_lake.root} (tenants with runs: rpa, rpb)"
    ]
    assert not out.exists()
