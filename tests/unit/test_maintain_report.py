"""``cdf maintain`` without Spark: its safety limits, exit codes, report and arguments."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from cdf_pipeline.cli.main import main
from cdf_pipeline.exceptions import ConfigError
from cdf_pipeline.lakehouse.checks import CheckResult
from cdf_pipeline.lakehouse.maintenance import (
    FileStats,
    check_orphan_window,
    check_retention,
    expirable,
    timestamp_literal,
)
from cdf_pipeline.lakehouse.recovery import LEFT, REREGISTERED, Recovery
from cdf_pipeline.orchestration.maintain_report import (
    CHECK,
    MAINTAIN,
    REPAIR,
    Busy,
    MaintainReport,
    Options,
    TableReport,
    format_report,
    human_bytes,
)

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)
OPTIONS = Options(retain_days=7, retain_last=5, orphan_days=3)


def test_an_orphan_window_under_a_day_is_refused_with_the_reason() -> None:
    check_orphan_window(1)
    for days in (0.99, 0, -3, float("nan")):
        with pytest.raises(ConfigError, match=r"commits still in flight.*Iceberg issue 4194"):
            check_orphan_window(days)
    with pytest.raises(ConfigError, match="--retain-last"):
        check_retention(7, 0)
    with pytest.raises(ConfigError, match="--retain-days"):
        check_retention(-1, 5)


@pytest.mark.parametrize(
    "args", [["--orphan-days", "0.5"], ["--retain-last", "0"], ["--retain-days", "-1"]]
)
def test_bad_windows_exit_2_in_one_line(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["maintain", "--root", "/nonexistent", *args])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2
    assert len(err.splitlines()) == 1 and err.startswith("cdf maintain: error: argument")


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["maintain", "--help"])
    out = capsys.readouterr().out
    assert "3 a tenant was busy" in out and "1 a check failed" in out and "--orphan-days" in out


def test_expirable_keeps_the_latest_and_the_young() -> None:
    snaps = {i: NOW - timedelta(days=d) for i, d in enumerate([30, 20, 10, 9, 8, 2, 1])}
    assert expirable(snaps, NOW - timedelta(days=7), 5) == 2  # 30 and 20 days; 10, 9, 8 last 5
    assert expirable(snaps, NOW - timedelta(days=7), 2) == 5
    assert expirable(snaps, NOW - timedelta(days=40), 1) == 0
    assert expirable({}, NOW, 1) == 0


def test_timestamps_are_utc_literals() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=2)))
    assert timestamp_literal(at) == "TIMESTAMP '2026-01-02 01:04:05.000006+00:00'"
    with pytest.raises(ValueError):
        timestamp_literal(datetime(2026, 1, 1))


def _report(mode: str = MAINTAIN) -> MaintainReport:
    return MaintainReport(mode, None, NOW, OPTIONS, tenants={"acme": "OK"})


def test_exit_codes_busy_wins_over_a_failed_check() -> None:
    report = _report(CHECK)
    assert report.exit_code == 0
    report.checks.append(CheckResult("acme", "silver.parts", "parts.primary_key_unique", 2, "x"))
    assert (report.exit_code, report.status) == (1, "CHECK_FAILED")
    report.busy.append(Busy("globex", "vm:1:run:ab", "run", 42.0))
    assert (report.exit_code, report.status) == (3, "BUSY")
    line = json.loads(report.to_json())
    assert line["exit_code"] == 3 and line["busy"][0]["owner"] == "vm:1:run:ab"
    assert line["checks"][0]["failures"] == 2 and not line["checks"][0]["passed"]


def test_the_text_has_a_line_per_table_with_its_figures() -> None:
    report = _report()
    report.tables = [
        TableReport(
            "silver.parts", FileStats(48, 11, 1_234_567, 5), FileStats(16, 0, 987_654, 1), 9, 1
        )
    ]
    text = format_report(report)
    line = next(x for x in text.splitlines() if x.strip().startswith("silver.parts"))
    assert line.split() == ["silver.parts", "48", "16", "11", "0", "1.2", "MB", "987.7", "KB",
                            "9", "1"]  # fmt: skip
    assert "kept snapshots newer than 7 days (2026-11-20 10:00 UTC) and the last 5" in text
    report.tenant = "acme"
    report.tables[0].snapshots_expired = report.tables[0].orphans_removed = None
    assert "not run with --tenant" in format_report(report)
    assert human_bytes(999) == "999 B" and human_bytes(1_000) == "1.0 KB"


def test_lost_tables_are_reported_and_one_left_lost_fails_the_repair() -> None:
    missing = "s3://lake/warehouse/silver.db/parts/metadata/00004-a.metadata.json"
    older = "s3://lake/warehouse/silver.db/parts/metadata/00003-b.metadata.json"
    report = _report(REPAIR)
    report.lost = [Recovery("silver.parts", missing, REREGISTERED, older)]
    assert (report.exit_code, report.status) == (0, "OK")
    text = format_report(report)
    assert f"LOST silver.parts: metadata file {missing} is missing; re-registered from {older}" in (
        text
    )
    report.lost.append(Recovery("ops.runs", missing.replace("parts", "runs"), LEFT))
    assert (report.exit_code, report.status) == (1, "TABLES_LOST")
    assert "run again with --repair --drop-broken" in format_report(report)
    line = json.loads(report.to_json())
    assert line["lost_tables"][0] == {
        "table": "silver.parts",
        "missing_metadata_file": missing,
        "action": "reregistered",
        "restored_from": older,
        "restored_version": 3,
    }
    assert line["lost_tables"][1]["action"] == "left" and line["repairs"] == []


def test_drop_broken_goes_with_repair_only(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["maintain", "--root", "/nonexistent", "--check", "--drop-broken"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2
    assert err == (
        "cdf maintain: error: --drop-broken goes with --repair only (see cdf maintain --help)"
    )
