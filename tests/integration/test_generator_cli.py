"""``cdf generate`` end to end: summary, JSON line, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cdf_pipeline.cli.main import main

CDF = str(Path(sys.executable).with_name("cdf"))


def test_generate_json_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["generate", "--tenants", "acme,globex", "--suppliers", "500", "--parts", "400",
         "--seed", "1", "--root", str(tmp_path), "--json"]
    )  # fmt: skip
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    summary = json.loads(out[-1])
    assert set(summary) >= {"tenants", "files", "seconds", "batch"}
    assert summary["batch"] == 1
    acme = summary["tenants"]["acme"]["suppliers"]
    assert acme["rows"] >= 500 and acme["anomalies"] == sum(acme["by_anomaly"].values())
    assert len(summary["files"]) == 4 and all(Path(f).is_file() for f in summary["files"])
    assert any("tenant" in line and "entity" in line for line in out)  # the table


def test_cdf_root_env_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDF_ROOT", str(tmp_path / "lake"))
    assert main(["generate", "--tenants", "acme", "--suppliers", "50", "--parts", "50"]) == 0
    assert list((tmp_path / "lake" / "raw" / "tenant_id=acme").rglob("*.parquet"))


@pytest.mark.parametrize(
    "args",
    [
        ["--suppliers", "0"],
        ["--parts", "-3"],
        ["--dirty-rate", "0.9"],
        ["--tenants", "Bad/Id"],
        ["--batch", "0"],
        ["--format", "xlsx"],
        ["--as-of", "yesterday"],
        ["--root", "/tmp/a", "--out", "/tmp/b"],
    ],
)
def test_bad_arguments_are_one_line(
    args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["generate", "--tenants", "acme", "--suppliers", "10", "--parts", "10"]
    if "--root" not in args:
        base += ["--root", str(tmp_path)]
    try:
        code = main([*base, *args])
    except SystemExit as exc:  # argparse errors exit from the parser
        code = int(exc.code or 0)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_unwritable_destination_subprocess(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = subprocess.run(
        [CDF, "generate", "--tenants", "acme", "--suppliers", "10", "--parts", "10",
         "--root", str(blocker / "lake")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("cdf generate: error: cannot write")


def test_help_explains_every_option() -> None:
    proc = subprocess.run([CDF, "generate", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for opt in ("--tenants", "--suppliers", "--parts", "--dirty-rate", "--seed", "--batch",
                "--format", "--shape", "--root", "--out", "--profile", "--as-of", "--change-rate",
                "--chunk-rows", "--s3-endpoint", "--json"):  # fmt: skip
        assert opt in proc.stdout
