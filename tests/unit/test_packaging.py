"""A wheel holds the whole project: both packages and the profiles (no checkout needed)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_wheel_ships_both_packages_and_the_profiles(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(REPO)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("cdf_pipeline-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    conf = REPO / "src" / "cdf_pipeline" / "conf"
    shipped = {f"cdf_pipeline/conf/{p.relative_to(conf)}" for p in conf.rglob("*") if p.is_file()}
    assert shipped and shipped <= names
    assert "cdf_generator/api.py" in names and "cdf_pipeline/jars.py" in names
    assert "cdf_pipeline/dq_report/templates/report.html.j2" in names  # cdf report's page
    # No top-level package with a name any project could collide with.
    assert {n.split("/")[0] for n in names if n.endswith(".py")} == {
        "cdf_pipeline",
        "cdf_generator",
    }
