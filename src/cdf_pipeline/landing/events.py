"""S3 event notifications, as SQS, SNS or Lambda deliver them, to the objects they announce.

One parser for every delivery path, so ``cdf listen`` and the Lambda handler agree on what a
message means:

- a plain S3 notification (``{"Records": [{"eventSource": "aws:s3", ...}]}``), as S3 sends it to
  SQS or to a Lambda function;
- the same wrapped by SNS (``{"Type": "Notification", "Message": "<json>"}``) when the bucket
  notifies a topic and the queue subscribes to it without raw message delivery;
- the ``s3:TestEvent`` S3 sends once when a notification is configured: it announces nothing
  and is acknowledged.

S3 URL-encodes object keys in notifications (form encoding: ``+`` is a space), so keys are
decoded here; the URI that comes out is the object's real name. Only ``ObjectCreated:*`` records
announce something to land; other records (``ObjectRemoved:*`` and the like) are returned as
ignored so the caller can acknowledge and report them. Anything else is :class:`MalformedEvent`:
it can never succeed, whoever reads it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

TEST_EVENT = "s3:TestEvent"
CREATED_PREFIX = "ObjectCreated:"


class MalformedEvent(ValueError):
    """A message that is not an S3 event notification (or is one with a broken record)."""


@dataclass(frozen=True)
class ObjectCreated:
    """One object an ``ObjectCreated:*`` record announces."""

    bucket: str
    #: The decoded key (``landing/acme/my file.csv``, not ``my+file.csv``).
    key: str
    size: int | None
    event_name: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class S3Notification:
    """What one message says: the created objects, and what it held that needs no landing."""

    objects: tuple[ObjectCreated, ...] = ()
    #: S3's ``s3:TestEvent``: nothing to land, acknowledge silently.
    test_event: bool = False
    #: Event names of records that are not ``ObjectCreated:*`` (acknowledged, reported).
    ignored: tuple[str, ...] = field(default_factory=tuple)


def parse_body(body: str) -> S3Notification:
    """Parse an SQS message body (plain or SNS-wrapped S3 notification).

    Raises:
        MalformedEvent: not JSON, or not an S3 notification; the message says which.
    """
    try:
        doc = json.loads(body)
    except (TypeError, ValueError) as exc:
        raise MalformedEvent(f"not JSON ({exc})") from None
    return parse_event(doc)


def parse_event(doc: Any) -> S3Notification:
    """Parse a decoded notification: an S3 event, an SNS envelope holding one, or a TestEvent.

    Raises:
        MalformedEvent: what is wrong with it, in one line.
    """
    if not isinstance(doc, Mapping):
        raise MalformedEvent(f"expected a JSON object, got {type(doc).__name__}")
    if doc.get("Type") == "Notification" and "Message" in doc:  # SNS, not raw delivery
        inner = doc["Message"]
        if not isinstance(inner, str):
            raise MalformedEvent("SNS notification whose Message is not a string")
        try:
            return parse_body(inner)
        except MalformedEvent as exc:
            raise MalformedEvent(f"SNS notification: {exc}") from None
    if doc.get("Event") == TEST_EVENT:
        return S3Notification(test_event=True)
    records = doc.get("Records")
    if not isinstance(records, list) or not records:
        raise MalformedEvent("not an S3 event notification (no 'Records' list)")
    objects: list[ObjectCreated] = []
    ignored: list[str] = []
    for i, record in enumerate(records):
        if not isinstance(record, Mapping) or record.get("eventSource") != "aws:s3":
            raise MalformedEvent(f"record {i} is not an S3 record (eventSource aws:s3)")
        name = str(record.get("eventName", ""))
        if not name.startswith(CREATED_PREFIX):
            ignored.append(name or "<no eventName>")
            continue
        objects.append(_object(record, i, name))
    return S3Notification(objects=tuple(objects), ignored=tuple(ignored))


def _object(record: Mapping[str, Any], i: int, name: str) -> ObjectCreated:
    try:
        s3 = record["s3"]
        bucket = str(s3["bucket"]["name"])
        raw_key = str(s3["object"]["key"])
    except (KeyError, TypeError):
        raise MalformedEvent(
            f"record {i} ({name}) has no s3.bucket.name or s3.object.key"
        ) from None
    if not bucket or not raw_key:
        raise MalformedEvent(f"record {i} ({name}) has an empty bucket or key")
    size = s3["object"].get("size")
    return ObjectCreated(
        bucket=bucket,
        key=unquote_plus(raw_key),
        size=size if isinstance(size, int) else None,
        event_name=name,
    )
