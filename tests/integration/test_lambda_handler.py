"""The Lambda handler against moto S3 + Glue: S3 events in, raw copies and manifest rows out.

The tables are created the way a deployment creates them, by a Spark job of the aws profile
(``cdf land`` on an empty landing zone); the handler then runs in this process without Spark,
as Lambda runs it, and pyiceberg reads the manifest back through the same Glue catalog.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest
from support.environment import cli_env

from cdf_pipeline.config import load_settings
from cdf_pipeline.exceptions import ConfigError

pytestmark = [pytest.mark.slow, pytest.mark.s3, pytest.mark.sqs, pytest.mark.catalogs]

REPO = Path(__file__).resolve().parents[2]
AWS_KEY, AWS_SECRET = "AKIALAMBDATESTKEY", "lambda-secret-never-printed"
REGION = "us-east-1"


def s3_record(bucket: str, key: str, name: str = "ObjectCreated:Put") -> dict[str, Any]:
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": REGION,
        "eventTime": "2026-11-27T10:00:00.000Z",
        "eventName": name,
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "landing",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": quote_plus(key), "size": 1},
        },
    }


def sqs_record(message_id: str, body: str) -> dict[str, Any]:
    return {
        "messageId": message_id,
        "receiptHandle": "handle",
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1"},
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:landing",
        "awsRegion": REGION,
    }


@pytest.fixture(scope="module")
def deployment(s3_endpoint: str) -> dict[str, str]:
    """A bucket and Glue namespaces with the tables made by a Spark job of the aws profile."""
    import boto3

    bucket = f"cdf-{uuid.uuid4().hex[:10]}"
    boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name=REGION,
        aws_access_key_id=AWS_KEY, aws_secret_access_key=AWS_SECRET,
    ).create_bucket(Bucket=bucket)  # fmt: skip
    env = {
        "AWS_ACCESS_KEY_ID": AWS_KEY,
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": s3_endpoint,
        "CDF_PROFILE": "aws",
        "CDF_ROOT": f"s3://{bucket}/lake",
        "CDF__CATALOG__NAMESPACE_PREFIX": f"t{uuid.uuid4().hex[:6]}_",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "cdf_pipeline.cli", "land", "--tenant", "acme", "--profile", "aws"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
        env=cli_env(CDF__SPARK__MASTER="local[2]", **env),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {**env, "bucket": bucket}


@pytest.fixture
def lambda_env(deployment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for k, v in deployment.items():
        if k != "bucket":
            monkeypatch.setenv(k, v)
    return deployment


def s3(dep: dict[str, str]) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=dep["AWS_ENDPOINT_URL"], region_name=REGION)


def manifest_rows(dep: dict[str, str]) -> list[dict[str, Any]]:
    from pyiceberg.catalog import load_catalog

    endpoint = dep["AWS_ENDPOINT_URL"]
    catalog = load_catalog(
        "second-engine", type="glue", **{"glue.endpoint": endpoint, "glue.region": REGION,
        "s3.endpoint": endpoint, "s3.path-style-access": "true", "s3.region": REGION},
    )  # fmt: skip
    table = catalog.load_table(f"{dep['CDF__CATALOG__NAMESPACE_PREFIX']}ops.landed_files")
    return list(table.scan().to_arrow().to_pylist())


def test_s3_event_lands_a_raw_copy_and_a_manifest_row(lambda_env: dict[str, str]) -> None:
    from cdf_pipeline.landing.lambda_handler import handler

    bucket, client = lambda_env["bucket"], s3(lambda_env)
    body = b"supplier_id,tenant_id\n01J0000000000000000000000A,acme\n"
    key = "lake/landing/acme/suppliers/export 2026-11-27.csv"
    client.put_object(Bucket=bucket, Key=key, Body=body)

    summary = handler({"Records": [s3_record(bucket, key)]}, None)

    assert summary["tenants"]["acme"]["landed"] == 1, summary
    sha = hashlib.sha256(body).hexdigest()
    listed = client.list_objects_v2(Bucket=bucket, Prefix="lake/raw/tenant_id=acme/")["Contents"]
    [raw] = [o["Key"] for o in listed if sha in o["Key"]]
    assert raw.startswith("lake/raw/tenant_id=acme/entity=suppliers/ingest_date=")
    assert raw.endswith(f"/{sha}.csv")
    assert client.get_object(Bucket=bucket, Key=raw)["Body"].read() == body
    [row] = [r for r in manifest_rows(lambda_env) if r["source"] == f"s3://{bucket}/{key}"]
    assert (row["tenant_id"], row["outcome"], row["entity"], row["sha256"], row["size"]) == (
        "acme", "LANDED", "suppliers", sha, len(body),
    )  # fmt: skip
    assert row["raw_file"] == f"s3://{bucket}/{raw}"

    again = handler({"Records": [s3_record(bucket, key)]}, None)  # a duplicate delivery
    assert again["tenants"]["acme"]["already_seen"] == 1 and again["tenants"]["acme"]["landed"] == 0
    assert sum(r["source"] == f"s3://{bucket}/{key}" for r in manifest_rows(lambda_env)) == 1


def test_sqs_batch_reports_only_the_failed_messages(lambda_env: dict[str, str]) -> None:
    from cdf_pipeline.landing.lambda_handler import handler

    bucket, client = lambda_env["bucket"], s3(lambda_env)
    good, stray = "lake/landing/acme/parts/p1.csv", "lake/landing/Bad_Tenant/parts/p2.csv"
    for key in (good, stray):
        client.put_object(Bucket=bucket, Key=key, Body=f"part_id\n{key}\n".encode())
    sns = {"Type": "Notification", "Message": json.dumps({"Records": [s3_record(bucket, good)]})}
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": bucket}
    event = {
        "Records": [
            sqs_record("m-good", json.dumps(sns)),
            sqs_record("m-test", json.dumps(test_event)),
            sqs_record("m-malformed", "not json"),
            sqs_record("m-stray", json.dumps({"Records": [s3_record(bucket, stray)]})),
        ]
    }
    response = handler(event, None)

    assert response["batchItemFailures"] == [
        {"itemIdentifier": "m-malformed"},
        {"itemIdentifier": "m-stray"},
    ], response
    assert response["failures"]["m-stray"] == [
        f"no tenant for s3://{bucket}/{stray}: not below a tenant prefix of "
        f"s3://{bucket}/lake/landing/{{tenant}}"
    ]
    assert response["tenants"]["acme"]["landed"] == 1
    sources = {r["source"] for r in manifest_rows(lambda_env)}
    assert f"s3://{bucket}/{good}" in sources and f"s3://{bucket}/{stray}" not in sources


def test_missing_manifest_table_says_how_to_create_it(
    lambda_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cdf_pipeline.landing.lambda_handler import handler

    monkeypatch.setenv("CDF__CATALOG__NAMESPACE_PREFIX", "never_deployed_")
    bucket = lambda_env["bucket"]
    key = "lake/landing/acme/suppliers/late.csv"
    s3(lambda_env).put_object(Bucket=bucket, Key=key, Body=b"x\n")
    with pytest.raises(ConfigError, match=r"never_deployed_ops.landed_files does not exist.*"
                       r"run 'cdf land' or 'cdf run' once"):  # fmt: skip
        handler({"Records": [s3_record(bucket, key)]}, None)


def test_hadoop_catalog_is_not_a_lambda_deployment(tmp_path: Path) -> None:
    from cdf_pipeline.landing.iceberg_manifest import catalog_properties

    hadoop = {"root": str(tmp_path), "catalog": {"type": "hadoop"}}
    with pytest.raises(ConfigError, match="cannot share: deploy the handler with a glue"):
        catalog_properties(load_settings("local", overrides=hadoop))


def test_the_embedded_sqlite_catalog_is_read_by_pyiceberg_sql(tmp_path: Path) -> None:
    from cdf_pipeline.landing.iceberg_manifest import catalog_properties

    props = catalog_properties(load_settings("local", overrides={"root": str(tmp_path)}))
    assert props["type"] == "sql"
    assert props["uri"] == f"sqlite:///{tmp_path.absolute()}/catalog.db"
