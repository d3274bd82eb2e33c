"""The listener's loop against a real SQS (moto on loopback), with the Spark step replaced.

What is decided here is what happens to each message: deleted, left for redelivery, or sent to
the dead-letter queue with its reason. The Spark work (landing and the silver run) is a recording
stand-in; test_listen.py runs the real thing end to end. Redeliveries come after a 1 s retry
delay through the loop's own long polls, bounded by ``--idle-exit``: no sleeps.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from cdf_pipeline.config import load_settings
from cdf_pipeline.landing.listen import ListenOptions, Router, listen
from cdf_pipeline.landing.listen_report import TenantResult
from cdf_pipeline.landing.queue import REASON, RECEIVE_COUNT, Queue, sqs_client

pytestmark = [pytest.mark.s3, pytest.mark.sqs]

ROOT = "s3://lake/data"


def event(*keys: str, bucket: str = "lake", name: str = "ObjectCreated:Put") -> str:
    records = [
        {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "eventName": name,
            "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 10}},
        }
        for key in keys
    ]
    return json.dumps({"Records": records})


class FakeStep:
    """Records each call; objects listed in ``fail`` fail to land, tenants in ``broken`` raise."""

    def __init__(self, fail: Sequence[str] = (), broken: Sequence[str] = ()) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.fail, self.broken = set(fail), set(broken)

    def __call__(self, tenant: str, uris: Sequence[str]) -> TenantResult:
        self.calls.append((tenant, list(uris)))
        result = TenantResult(tenant, objects=len(uris))
        if tenant in self.broken:
            result.error = "commit conflict"
            return result
        result.failed_uris = {u for u in uris if u in self.fail}
        result.failed = len(result.failed_uris)
        result.landed = len(uris) - result.failed
        result.run = {"run_id": "r1", "status": "SUCCEEDED"}
        return result


@pytest.fixture
def queues(s3_endpoint: str) -> tuple[Queue, Any]:
    env = {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_REGION": "us-east-1"}
    settings = load_settings("local", overrides={"root": ROOT})
    client = sqs_client(settings, "http://x", wait_seconds=1, environ=env)
    name = f"q{uuid.uuid4().hex[:8]}"
    url = client.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    dlq = client.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    return Queue(client, url, dlq), client


def router() -> Router:
    settings = load_settings("local", overrides={"root": ROOT})
    return Router(settings, lambda t: load_settings("local", tenant=t, overrides={"root": ROOT}))


def drain(client: Any, url: str, expect: int, deadline_s: float = 10.0) -> list[dict[str, Any]]:
    """Receive until ``expect`` messages arrived or the deadline passed (long polls, no sleep)."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + deadline_s
    while len(got) < expect and time.monotonic() < deadline:
        answer = client.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
            MessageAttributeNames=["All"], VisibilityTimeout=30,
        )  # fmt: skip
        got += answer.get("Messages", [])
    return got


def left_on(client: Any, url: str) -> int:
    attrs = client.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


def test_one_batch_one_step_per_tenant_and_every_done_message_deleted(
    queues: tuple[Queue, Any],
) -> None:
    queue, client = queues
    client.send_message(QueueUrl=queue.url, MessageBody=event("data/landing/acme/suppliers/a.csv"))
    client.send_message(
        QueueUrl=queue.url,
        MessageBody=event("data/landing/acme/parts/b+c.csv", "data/landing/globex/parts/p.csv"),
    )
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "lake"}
    client.send_message(QueueUrl=queue.url, MessageBody=json.dumps(test_event))
    removed = event("data/landing/acme/suppliers/old.csv", name="ObjectRemoved:Delete")
    client.send_message(QueueUrl=queue.url, MessageBody=removed)
    step = FakeStep()
    reports: list[Any] = []
    summary = listen(queue, router(), step, ListenOptions(max_messages=4, wait=1),
                     on_batch=reports.append)  # fmt: skip

    assert summary.messages == 4 and summary.deleted == 4, summary
    assert summary.stopped_by == "max-messages" and summary.exit_code == 0
    assert summary.test_events == 1
    calls = dict(step.calls)
    assert len(step.calls) == len(calls), "one landing step per tenant per batch"
    assert sorted(calls["acme"]) == [
        "s3://lake/data/landing/acme/parts/b c.csv",
        "s3://lake/data/landing/acme/suppliers/a.csv",
    ]
    assert calls["globex"] == ["s3://lake/data/landing/globex/parts/p.csv"]
    assert left_on(client, queue.url) == 0
    assert left_on(client, queue.dlq_url or "") == 0


def test_malformed_message_goes_to_the_dlq_on_its_nth_receive_with_its_reason(
    queues: tuple[Queue, Any],
) -> None:
    queue, client = queues
    client.send_message(QueueUrl=queue.url, MessageBody="this is not an S3 event")
    summary = listen(queue, router(), FakeStep(),
                     ListenOptions(max_receives=3, idle_exit=4, wait=1, retry_after=1))  # fmt: skip

    assert summary.malformed == 3, summary  # seen on each of its 3 receives
    assert summary.retried == 2 and summary.dead_lettered == 1
    assert summary.exit_code == 1 and summary.stopped_by == "idle-exit"
    [dead] = drain(client, queue.dlq_url or "", expect=1)
    assert dead["Body"] == "this is not an S3 event", "the body is kept for a redrive"
    reason = dead["MessageAttributes"][REASON]["StringValue"]
    assert reason.startswith("malformed message: not JSON") and "after 3 receives" in reason
    assert dead["MessageAttributes"][RECEIVE_COUNT]["StringValue"] == "3"
    assert left_on(client, queue.url) == 0


def test_object_of_no_tenant_is_not_landed_and_dead_lettered_at_once(
    queues: tuple[Queue, Any],
) -> None:
    queue, client = queues
    body = event("data/landing/acme/suppliers/a.csv", "data/landing/Bad..Tenant/suppliers/x.csv",
                 "elsewhere/suppliers/y.csv")  # fmt: skip
    client.send_message(QueueUrl=queue.url, MessageBody=body)
    step = FakeStep()
    reports: list[Any] = []
    summary = listen(queue, router(), step, ListenOptions(max_messages=1, wait=1),
                     on_batch=reports.append)  # fmt: skip

    assert step.calls == [("acme", ["s3://lake/data/landing/acme/suppliers/a.csv"])]
    assert reports[0].unknown == [
        "no tenant for s3://lake/data/landing/Bad..Tenant/suppliers/x.csv: not below a tenant "
        "prefix of s3://lake/data/landing/{tenant}",
        "no tenant for s3://lake/elsewhere/suppliers/y.csv: not below a tenant prefix of "
        "s3://lake/data/landing/{tenant}",
    ]
    assert summary.dead_lettered == 1 and summary.unknown == 2
    [dead] = drain(client, queue.dlq_url or "", expect=1)
    assert dead["MessageAttributes"][REASON]["StringValue"].startswith(
        "no tenant for s3://lake/data/landing/Bad..Tenant/suppliers/x.csv"
    )
    assert left_on(client, queue.url) == 0


def test_failed_object_is_redelivered_then_dead_lettered_others_deleted(
    queues: tuple[Queue, Any],
) -> None:
    queue, client = queues
    bad = "s3://lake/data/landing/acme/suppliers/bad.csv"
    for key in ("acme/suppliers/bad.csv", "globex/parts/ok.csv", "initech/parts/x.csv"):
        client.send_message(QueueUrl=queue.url, MessageBody=event(f"data/landing/{key}"))
    step = FakeStep(fail=[bad], broken=["initech"])
    summary = listen(
        queue, router(), step, ListenOptions(max_receives=2, idle_exit=4, wait=1, retry_after=1)
    )

    assert summary.deleted == 1, summary  # globex's
    assert summary.dead_lettered == 2 and summary.retried == 2
    assert sum(1 for t, _ in step.calls if t == "acme") == 2, "retried once, then DLQ"
    reasons = sorted(
        m["MessageAttributes"][REASON]["StringValue"]
        for m in drain(client, queue.dlq_url or "", expect=2)
    )
    assert reasons == [
        f"1 object(s) failed to land, first {bad} (after 2 receives)",
        "tenant initech: commit conflict (after 2 receives)",
    ]
