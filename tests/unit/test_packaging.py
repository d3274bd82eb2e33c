"""A wheel holds the whole project: both packages and the profiles (no checkout needed); ``make``
sets it up on a new machine without noise."""

from __future__ import annotations

import os
import shutil
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


def test_make_finds_a_python_quietly_beside_pyenv_shims(tmp_path: Path) -> None:
    """pyenv puts a shim on PATH for each version it knows; one not installed fails with
    "command not found" on stderr. ``make`` tries versions in turn and must not echo that."""
    shims = tmp_path / "shims"
    shims.mkdir()
    for version in ("python3.12", "python3.11", "python3.10"):
        shim = shims / version
        shim.write_text(f'#!/bin/sh\necho "pyenv: {version}: command not found" >&2\nexit 127\n')
        shim.chmod(0o755)
    real = shutil.which("python3")
    assert real is not None
    env = {**os.environ, "PATH": f"{shims}{os.pathsep}{Path(real).parent}{os.pathsep}/usr/bin:/bin"}
    done = subprocess.run(
        ["make", "-n", "-B", "install"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "command not found" not in done.stdout + done.stderr
    assert "python3 -m venv" in done.stdout  # the shims were passed over, python3 chosen
