"""The GitHub Actions workflows: linted with actionlint, and checked against what they promise.

``ci.yml`` must run exactly ``.ci/run`` on every push and pull request, with the Java and the
Python versions the README names, caching pip's downloads and Ivy's Spark jars. ``deploy.yml``
synthesizes the CloudFormation stack and lints it. actionlint (installed by ``.ci/run`` into
``.ci/bin``) checks the files' syntax, expressions, action inputs and shell steps.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.environment import require

pytestmark = pytest.mark.deploy

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"


def actionlint() -> str:
    found = shutil.which("actionlint") or str(REPO / ".ci" / "bin" / "actionlint")
    require(Path(found).exists(), "actionlint is not installed (.ci/run builds it into .ci/bin)")
    return found


def load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as the boolean true.
    doc["on"] = doc.pop(True, doc.get("on"))
    return dict(doc)


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if s.get("uses", "").split("@")[0] == action]


def test_actionlint_passes_the_workflows_and_catches_a_broken_one(tmp_path: Path) -> None:
    lint = actionlint()
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    assert [Path(f).name for f in files] == ["ci.yml", "deploy.yml"]
    proc = subprocess.run([lint, *files], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    broken = tmp_path / "broken.yml"
    broken.write_text((WORKFLOWS / "ci.yml").read_text().replace("matrix.python", "matrix.py"))
    proc = subprocess.run([lint, str(broken)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 1 and 'property "py" is not defined' in proc.stdout


def test_ci_runs_exactly_ci_run_with_the_readmes_versions_and_caches() -> None:
    ci = load("ci.yml")
    assert set(ci["on"]) == {"push", "pull_request"}
    [job] = ci["jobs"].values()
    runs = [s["run"] for s in job["steps"] if "run" in s]
    assert runs == [".ci/run"], runs

    readme = (REPO / "README.md").read_text()
    pythons = re.search(r"- Python (3\.\d+), (3\.\d+) or (3\.\d+)", readme)
    java = re.search(r"- Java (\d+) ", readme)
    assert pythons and java, "the README's prerequisites moved: update this test"
    assert job["strategy"]["matrix"]["python"] == list(pythons.groups())
    [setup_java] = steps_using(job, "actions/setup-java")
    assert str(setup_java["with"]["java-version"]) == java.group(1)
    [setup_python] = steps_using(job, "actions/setup-python")
    assert setup_python["with"]["python-version"] == "${{ matrix.python }}"
    assert setup_python["with"]["cache"] == "pip"
    [ivy] = steps_using(job, "actions/cache")
    assert ivy["with"]["path"] == "~/.ivy2"
    # The README's Python range is pyproject's too.
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'requires-python = ">={pythons.group(1)},<3.{int(pythons.group(3)[2:]) + 1}"' in (
        pyproject
    )


def test_ci_run_ends_with_make_test() -> None:
    lines = [ln for ln in (REPO / ".ci" / "run").read_text().splitlines() if ln.strip()]
    assert lines[-1] == "make test"


def test_the_deploy_workflow_synthesizes_and_lints_the_stack() -> None:
    deploy = load("deploy.yml")
    assert {"push", "pull_request", "workflow_dispatch"} <= set(deploy["on"])
    [job] = deploy["jobs"].values()
    runs = " && ".join(s["run"] for s in job["steps"] if "run" in s)
    assert "python deploy/synth.py --tenants" in runs and "cfn-lint cdf-stack.json" in runs
