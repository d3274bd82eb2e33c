"""Generate straight to S3 (a moto server on loopback) and read the files back."""

from __future__ import annotations

import hashlib
import io

import pyarrow.parquet as pq
import pytest

from cdf_generator.api import generate
from cdf_pipeline.exceptions import InputError

pytestmark = pytest.mark.s3


def test_generate_to_s3_prefix(s3_endpoint: str) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="gen-bucket")
    summary = generate(
        ["acme"], 2_000, 2_000, root_uri="s3://gen-bucket/landing", s3_endpoint=s3_endpoint
    )
    listed = s3.list_objects_v2(Bucket="gen-bucket", Prefix="landing/")
    keys = sorted(o["Key"] for o in listed["Contents"])
    assert len(keys) == 4
    assert all(f.startswith("s3://gen-bucket/landing/raw/tenant_id=acme/") for f in summary.files)
    for uri in summary.files:
        key = uri.removeprefix("s3://gen-bucket/")
        body = s3.get_object(Bucket="gen-bucket", Key=key)["Body"].read()
        assert key.endswith(hashlib.sha256(body).hexdigest() + ".parquet")
        table = pq.read_table(io.BytesIO(body))
        entity = "suppliers" if "entity=suppliers" in key else "parts"
        assert table.num_rows == summary.tenants["acme"][entity].rows
    label_key = summary.label_files[0].removeprefix("s3://gen-bucket/")
    labels = pq.read_table(
        io.BytesIO(s3.get_object(Bucket="gen-bucket", Key=label_key)["Body"].read())
    )
    assert labels.num_rows == summary.tenants["acme"]["suppliers"].anomalies


def test_missing_bucket_is_one_clear_error(s3_endpoint: str) -> None:
    with pytest.raises(InputError, match="no-such-bucket"):
        generate(["acme"], 10, 10, root_uri="s3://no-such-bucket/x", s3_endpoint=s3_endpoint)
