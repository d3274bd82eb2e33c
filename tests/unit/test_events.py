"""S3 event notifications as SQS, SNS and S3 itself deliver them, parsed to objects."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cdf_pipeline.landing.events import MalformedEvent, ObjectCreated, parse_body, parse_event


def s3_event(*keys: str, name: str = "ObjectCreated:Put", bucket: str = "lake") -> dict[str, Any]:
    """Shaped like AWS's (docs: notification-content-structure), keys as S3 encodes them."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": "2026-11-27T10:00:00.000Z",
                "eventName": name,
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "landing",
                    "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {"key": key, "size": 1024, "eTag": "d41d8cd98f00b204"},
                },
            }
            for key in keys
        ]
    }


def test_plain_event() -> None:
    got = parse_body(json.dumps(s3_event("landing/acme/suppliers/a.csv")))
    assert got.objects == (
        ObjectCreated("lake", "landing/acme/suppliers/a.csv", 1024, "ObjectCreated:Put"),
    )
    assert got.objects[0].uri == "s3://lake/landing/acme/suppliers/a.csv"
    assert not got.test_event and got.ignored == ()


def test_sns_wrapped_event() -> None:
    envelope = {
        "Type": "Notification",
        "MessageId": "5f0c",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:landing",
        "Message": json.dumps(s3_event("landing/globex/parts/p.parquet", "landing/x/y.csv")),
    }
    got = parse_body(json.dumps(envelope))
    assert [o.uri for o in got.objects] == [
        "s3://lake/landing/globex/parts/p.parquet",
        "s3://lake/landing/x/y.csv",
    ]


def test_test_event_announces_nothing() -> None:
    body = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026", "Bucket": "lake"}
    got = parse_body(json.dumps(body))
    assert got.test_event and got.objects == ()


def test_url_encoded_key_is_decoded() -> None:
    got = parse_body(json.dumps(s3_event("landing/acme/suppliers/my+file%282%29%C3%A9.csv")))
    assert got.objects[0].key == "landing/acme/suppliers/my file(2)é.csv"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("not json {", "not JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"hello": "world"}', "no 'Records' list"),
        ('{"Records": [{"eventSource": "aws:sqs"}]}', "not an S3 record"),
        ('{"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put"}]}', "s3.bucket"),
        ('{"Type": "Notification", "Message": "oops"}', "SNS notification: not JSON"),
    ],
)
def test_malformed_messages_say_why(body: str, why: str) -> None:
    with pytest.raises(MalformedEvent, match=why):
        parse_body(body)


def test_records_that_are_not_object_created_are_ignored_not_landed() -> None:
    event = s3_event("landing/acme/suppliers/a.csv", name="ObjectRemoved:Delete")
    event["Records"] += s3_event("landing/acme/suppliers/b.csv")["Records"]
    got = parse_event(event)
    assert got.ignored == ("ObjectRemoved:Delete",)
    assert [o.key for o in got.objects] == ["landing/acme/suppliers/b.csv"]
