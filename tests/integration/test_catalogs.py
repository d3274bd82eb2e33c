"""Every non-default profile end to end, against real servers on loopback.

For each catalog, as a user would: ``cdf generate --root s3://...`` (or a local root for JDBC),
``cdf run`` (first load), a change batch that reads only its own files, then a second engine
(pyiceberg, through the same catalog) reads silver and quarantine and finds exactly the rows the
summaries report. Servers: moto (S3, Glue, STS), Apache Iceberg's REST catalog server, a
throwaway PostgreSQL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from servers.postgres import PostgresServer
from servers.rest_catalog import RestCatalogServer, start_rest_catalog, stop_rest_catalog
from support.environment import cli_env, require

pytestmark = [pytest.mark.slow, pytest.mark.catalogs, pytest.mark.s3]

REPO = Path(__file__).resolve().parents[2]
TENANT = "acme"
TIMEOUT_S = 900
#: moto accepts any credentials; these throwaway values are what the tests assert never leak.
AWS_KEY, AWS_SECRET = "AKIATESTONLYKEY", "test-secret-never-printed"


@dataclass
class Deployment:
    """One profile pointed at the test servers: how to run cdf and how pyiceberg reads it."""

    profile: str
    root: str
    env: dict[str, str]
    pyiceberg: dict[str, str]
    secrets: list[str] = field(default_factory=list)
    namespace_prefix: str = ""


def cdf(dep: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    env = cli_env(CDF__SPARK__MASTER="local[2]", **dep.env)
    cmd = [sys.executable, "-m", "cdf_pipeline.cli", *args, "--profile", dep.profile]
    return subprocess.run(
        [*cmd, "--root", dep.root], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=TIMEOUT_S,
    )  # fmt: skip


def summary(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    return dict(json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1]))


def aws_env(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": AWS_KEY,
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def s3_props(endpoint: str) -> dict[str, str]:
    return {
        "s3.endpoint": endpoint,
        "s3.path-style-access": "true",
        "s3.access-key-id": AWS_KEY,
        "s3.secret-access-key": AWS_SECRET,
        "s3.region": "us-east-1",
    }


def make_bucket(endpoint: str) -> str:
    import boto3

    name = f"cdf-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=endpoint, **_boto_creds()).create_bucket(Bucket=name)
    return name


def _boto_creds() -> dict[str, str]:
    return {
        "aws_access_key_id": AWS_KEY,
        "aws_secret_access_key": AWS_SECRET,
        "region_name": "us-east-1",
    }


@pytest.fixture(scope="module")
def rest_server(
    s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RestCatalogServer, str]]:
    bucket = make_bucket(s3_endpoint)
    old = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ.update(AWS_ACCESS_KEY_ID=AWS_KEY, AWS_SECRET_ACCESS_KEY=AWS_SECRET)
    try:
        server = start_rest_catalog(
            tmp_path_factory.mktemp("rest"),
            warehouse=f"s3://{bucket}/warehouse",
            s3_endpoint=s3_endpoint,
        )
    except (RuntimeError, OSError) as exc:
        require(False, f"the Iceberg REST catalog server did not start: {exc}")
        raise
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    try:
        yield server, bucket
    finally:
        stop_rest_catalog(server)


def glue_deployment(s3_endpoint: str) -> Deployment:
    bucket = make_bucket(s3_endpoint)
    prefix = f"t{uuid.uuid4().hex[:6]}_"
    env = {**aws_env(s3_endpoint), "CDF__CATALOG__NAMESPACE_PREFIX": prefix}
    props = {
        "type": "glue",
        "glue.endpoint": s3_endpoint,
        "glue.region": "us-east-1",
        "glue.access-key-id": AWS_KEY,
        "glue.secret-access-key": AWS_SECRET,
        **s3_props(s3_endpoint),
    }
    return Deployment("aws", f"s3://{bucket}/lake", env, props, [AWS_SECRET], prefix)


def rest_deployment(s3_endpoint: str, rest: tuple[RestCatalogServer, str]) -> Deployment:
    server, bucket = rest
    env = {**aws_env(s3_endpoint), "CDF__CATALOG__URI": server.uri}
    props = {"type": "rest", "uri": server.uri, **s3_props(s3_endpoint)}
    return Deployment("docker", f"s3://{bucket}", env, props, [AWS_SECRET])


def jdbc_deployment(pg: PostgresServer, root: Path) -> Deployment:
    env = {"CDF__CATALOG__URI": pg.jdbc_url(), "PGUSER": pg.user, "PGPASSWORD": pg.password}
    props = {"type": "sql", "uri": f"postgresql+psycopg2://{pg.user}:{pg.password}@"
             f"{pg.host}:{pg.port}/{pg.database}"}  # fmt: skip
    return Deployment("jdbc", str(root), env, props, [pg.password])


@pytest.fixture(params=["aws", "docker", "jdbc"])
def deployment(request: pytest.FixtureRequest, s3_endpoint: str, tmp_path: Path) -> Deployment:
    if request.param == "aws":
        return glue_deployment(s3_endpoint)
    if request.param == "docker":
        return rest_deployment(s3_endpoint, request.getfixturevalue("rest_server"))
    return jdbc_deployment(request.getfixturevalue("postgres"), tmp_path / "lake")


def test_profile_runs_end_to_end_and_a_second_engine_agrees(deployment: Deployment) -> None:
    dep = deployment
    outputs: list[subprocess.CompletedProcess[str]] = []

    def step(*args: str) -> dict[str, Any]:
        proc = cdf(dep, *args, "--json")
        outputs.append(proc)
        return summary(proc)

    gen = step("generate", "--tenants", TENANT, "--suppliers", "400", "--parts", "400")
    assert all(f.startswith(dep.root) for f in gen["files"])
    first = step("run", "--tenant", TENANT)
    assert first["status"] == "SUCCEEDED", first
    step("generate", "--tenants", TENANT, "--suppliers", "400", "--parts", "400", "--batch", "2")
    change = step("run", "--tenant", TENANT)
    assert change["status"] == "SUCCEEDED", change
    assert change["updated"] > 0 and change["inserted"] > 0
    # The first load's files were known through this catalog's manifest: read once only. (No
    # third run: one that finds nothing new proves no more than this, at a cold JVM's cost.)
    assert change["files"]
    assert not {f["file"] for f in first["files"]} & {f["file"] for f in change["files"]}

    expected = {
        entity: {
            "silver": sum(s["entities"][entity]["inserted"] for s in (first, change)),
            "quarantine": sum(s["entities"][entity]["quarantined"] for s in (first, change)),
        }
        for entity in ("suppliers", "parts")
    }
    assert second_engine_counts(dep) == expected
    for proc in outputs:
        for secret in dep.secrets:
            assert secret not in proc.stdout + proc.stderr


def second_engine_counts(dep: Deployment) -> dict[str, dict[str, int]]:
    """Rows per table for the tenant, read by pyiceberg through the deployment's catalog."""
    from pyiceberg.catalog import load_catalog
    from pyiceberg.expressions import EqualTo

    catalog = load_catalog("cdf", **dep.pyiceberg)  # JDBC rows are keyed by this name
    counts: dict[str, dict[str, int]] = {}
    for entity in ("suppliers", "parts"):
        counts[entity] = {}
        for ns in ("silver", "quarantine"):
            table = catalog.load_table(f"{dep.namespace_prefix}{ns}.{entity}")
            scan = table.scan(
                row_filter=EqualTo("tenant_id", TENANT), selected_fields=("tenant_id",)
            )
            counts[entity][ns] = scan.to_arrow().num_rows
    return counts
