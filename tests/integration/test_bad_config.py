"""Bad configuration fails fast: one line on stderr, exit 2, no secret, nothing created.

Each case runs ``cdf run`` in a child process, as a scheduler would. Servers are real: a moto
server that enforces IAM (bad credentials, a user without Glue permissions), a throwaway
PostgreSQL (a wrong password), closed loopback ports (unreachable endpoints).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from servers.postgres import PostgresServer
from support.environment import cli_env, free_port, require

pytestmark = [pytest.mark.slow, pytest.mark.catalogs]

REPO = Path(__file__).resolve().parents[2]
SECRET = "never-print-this-secret-0123456789"
EXIT_CONFIG = 2


def cdf_run(
    profile: str, root: str, env: dict[str, str], *extra: str
) -> subprocess.CompletedProcess[str]:
    base = cli_env(**{"CDF__SPARK__MASTER": "local[1]", **env})
    cmd = [sys.executable, "-m", "cdf_pipeline.cli", "run", "--tenant", "acme"]
    return subprocess.run(
        [*cmd, "--profile", profile, "--root", root, *extra],
        cwd=REPO, env=base, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def assert_config_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit 2, exactly one line on stderr naming the problem, no traceback, no secret."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == EXIT_CONFIG, proc.stderr[-2000:]
    assert len(lines) == 1, proc.stderr[-2000:]
    line = lines[0]
    assert line.startswith("cdf run: error:"), line
    for needle in needles:
        assert needle in line, line
    assert SECRET not in proc.stdout + proc.stderr
    return line


def aws(endpoint: str, key: str = "AKIAUNKNOWN", secret: str = SECRET) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }


@dataclass
class IamMoto:
    """A moto server that checks credentials and IAM policies after its setup requests."""

    endpoint: str
    bucket: str
    s3_only_key: str
    s3_only_secret: str


@pytest.fixture(scope="module")
def iam_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IamMoto]:
    import boto3

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("w")
    # Four unauthenticated requests to set up (user, policy, key, bucket); every later one is
    # checked against IAM, as AWS does.
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "4"}
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    require(False, "the IAM-enforcing moto server did not start")
                time.sleep(0.2)
        kw = {"endpoint_url": endpoint, "region_name": "us-east-1",
              "aws_access_key_id": "setup", "aws_secret_access_key": "setup"}  # fmt: skip
        iam = boto3.client("iam", **kw)
        iam.create_user(UserName="s3-only")
        iam.put_user_policy(
            UserName="s3-only",
            PolicyName="s3",
            PolicyDocument='{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", '
            '"Action": "s3:*", "Resource": "*"}]}',
        )
        key = iam.create_access_key(UserName="s3-only")["AccessKey"]
        boto3.client("s3", **kw).create_bucket(Bucket="iam-lake")
        yield IamMoto(endpoint, "iam-lake", key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def closed_endpoint() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_unreachable_s3_endpoint(tmp_path: Path) -> None:
    proc = cdf_run("aws", "s3://lake/prefix", aws(closed_endpoint()))
    assert_config_error(proc, "bucket 'lake'", "AWS_ENDPOINT_URL")


def test_bad_credentials(iam_moto: IamMoto) -> None:
    proc = cdf_run("aws", f"s3://{iam_moto.bucket}/lake", aws(iam_moto.endpoint))
    assert_config_error(proc, f"bucket '{iam_moto.bucket}'", "credentials")


def test_missing_bucket(iam_moto: IamMoto) -> None:
    env = aws(iam_moto.endpoint, iam_moto.s3_only_key, iam_moto.s3_only_secret)
    proc = cdf_run("aws", "s3://no-such-bucket/lake", env)
    assert_config_error(proc, "'no-such-bucket' does not exist")


def test_missing_glue_permissions(iam_moto: IamMoto) -> None:
    env = aws(iam_moto.endpoint, iam_moto.s3_only_key, iam_moto.s3_only_secret)
    proc = cdf_run("aws", f"s3://{iam_moto.bucket}/lake", env)
    assert_config_error(proc, "Glue", "GetDatabases", "AccessDenied")
    assert iam_moto.s3_only_secret not in proc.stdout + proc.stderr


def test_unreachable_rest_catalog(s3_endpoint: str) -> None:
    env = {**aws(s3_endpoint), "CDF__CATALOG__URI": closed_endpoint()}
    import boto3

    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket="rest-down")
    proc = cdf_run("docker", "s3://rest-down", env)
    assert_config_error(proc, "REST catalog", "catalog.uri")


def test_unreachable_jdbc_database(tmp_path: Path) -> None:
    uri = f"jdbc:postgresql://127.0.0.1:{free_port()}/cdf"
    proc = cdf_run("jdbc", str(tmp_path), {"CDF__CATALOG__URI": uri})
    assert_config_error(proc, "JDBC catalog's database", "CDF__CATALOG__URI")


def test_wrong_database_password(postgres: PostgresServer, tmp_path: Path) -> None:
    env = {"CDF__CATALOG__URI": postgres.jdbc_url(), "PGUSER": postgres.user, "PGPASSWORD": SECRET}
    proc = cdf_run("jdbc", str(tmp_path), env)
    assert_config_error(proc, "rejected the login", "PGPASSWORD")
    assert not (tmp_path / "warehouse" / "silver").exists()


def test_password_in_the_catalog_uri_is_refused_unprinted(tmp_path: Path) -> None:
    uri = f"jdbc:postgresql://cdf:{SECRET}@127.0.0.1:5432/cdf"
    proc = cdf_run("jdbc", str(tmp_path / "lake"), {"CDF__CATALOG__URI": uri})
    assert proc.returncode == EXIT_CONFIG
    assert "carries a credential" in proc.stderr and SECRET not in proc.stderr


def test_garbage_master(tmp_path: Path) -> None:
    proc = cdf_run("local", str(tmp_path), {"CDF__SPARK__MASTER": "garbage"})
    assert_config_error(proc, "'garbage' is not a Spark master URL")


def test_root_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = cdf_run("local", str(blocker / "lake"), {}, "--create-root")
    assert_config_error(proc, "warehouse location", str(blocker / "lake"))


def test_missing_root_is_an_error_unless_asked_for(tmp_path: Path) -> None:
    proc = cdf_run("local", str(tmp_path / "typo"), {})
    assert_config_error(proc, f"root {tmp_path / 'typo'} does not exist", "--create-root")
    assert not (tmp_path / "typo").exists()


def test_jars_missing_from_the_jars_dir(tmp_path: Path) -> None:
    proc = cdf_run("local", str(tmp_path), {"CDF_JARS_DIR": str(tmp_path)})
    assert_config_error(proc, "CDF_JARS_DIR", "iceberg-spark-runtime")


def test_local_profile_refuses_tables_on_s3() -> None:
    proc = cdf_run("local", "s3://lake/prefix", {})
    assert_config_error(proc, "SQLite file under the root", "--profile aws, docker or jdbc")


def test_a_renamed_catalog_is_refused_before_it_reads_as_empty(tmp_path: Path) -> None:
    """The SQLite catalog keys tables by ``catalog.name``: a lakehouse made as ``cdf`` and run
    as ``other`` would look empty and get a second set of tables over the same files."""
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.schema import Schema
    from pyiceberg.types import NestedField, StringType

    from cdf_pipeline.lakehouse.sqlite_catalog import ensure_catalog_file

    ensure_catalog_file(tmp_path / "catalog.db")
    made = SqlCatalog("cdf", uri=f"sqlite:///{tmp_path / 'catalog.db'}",
                      warehouse=str(tmp_path / "warehouse"))  # fmt: skip
    made.create_namespace("silver")
    made.create_table("silver.suppliers", Schema(NestedField(1, "id", StringType())))
    proc = cdf_run("local", str(tmp_path), {"CDF__CATALOG__NAME": "other"})
    assert_config_error(proc, "holds the tables of catalog 'cdf', not 'other'", "catalog.name")
    assert set(made.list_tables("silver")) == {("silver", "suppliers")}


@pytest.mark.parametrize("template", ["{tmp}/user:{secret}@x", "s3://AKIAKEY:{secret}@bucket/lake"])
def test_credentials_in_the_root_are_refused_unprinted(tmp_path: Path, template: str) -> None:
    """``--root`` carrying ``user:password@`` (a local path as an S3 URI) is refused before
    anything is created or stored, and the secret is echoed nowhere."""
    root = template.format(tmp=tmp_path, secret=SECRET)
    proc = cdf_run("local", root, {}, "--create-root")
    assert_config_error(proc, "key 'root'", "credential")
    assert list(tmp_path.iterdir()) == []
