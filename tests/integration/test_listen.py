"""``cdf listen`` end to end, as an operator runs it, against moto (S3, SNS, SQS, Glue) on loopback.

moto delivers S3 bucket notifications itself (to SQS directly, and through an SNS topic that
the queue subscribes to, which wraps them), including S3's ``s3:TestEvent`` when the
notification is configured; only the duplicate delivery and the malformed message are sent by
hand. The listener is a ``cdf listen`` subprocess on the aws profile (Glue + S3), stopped by
``--idle-exit``; redeliveries come from its ``--retry-after``, not from sleeps here.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from support.environment import cli_env

pytestmark = [pytest.mark.slow, pytest.mark.s3, pytest.mark.sqs, pytest.mark.catalogs]

REPO = Path(__file__).resolve().parents[2]
#: moto accepts any credentials; the test asserts these never appear in the output.
AWS_KEY, AWS_SECRET = "AKIALISTENTESTKEY", "listen-secret-never-printed"
CREDS = {"aws_access_key_id": AWS_KEY, "aws_secret_access_key": AWS_SECRET}
REGION = "us-east-1"


class Aws:
    """boto3 clients on the moto server, and the environment of a ``cdf`` child process."""

    def __init__(self, endpoint: str) -> None:
        import boto3

        self.endpoint = endpoint
        kw: dict[str, Any] = {"endpoint_url": endpoint, "region_name": REGION, **CREDS}
        self.s3, self.sqs, self.sns = (boto3.client(s, **kw) for s in ("s3", "sqs", "sns"))
        self.prefix = f"t{uuid.uuid4().hex[:6]}_"

    def env(self, **more: str) -> dict[str, str]:
        return cli_env(
            AWS_ACCESS_KEY_ID=AWS_KEY,
            AWS_SECRET_ACCESS_KEY=AWS_SECRET,
            AWS_REGION=REGION,
            AWS_ENDPOINT_URL=self.endpoint,
            CDF__CATALOG__NAMESPACE_PREFIX=self.prefix,
            CDF__SPARK__MASTER="local[2]",
            **more,
        )

    def queue(self, name: str) -> tuple[str, str]:
        url = self.sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "2"})
        arn = self.sqs.get_queue_attributes(QueueUrl=url["QueueUrl"], AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        return url["QueueUrl"], arn

    def pyiceberg(self) -> Any:
        from pyiceberg.catalog import load_catalog

        return load_catalog(
            "cdf",
            **{
                "type": "glue",
                "glue.endpoint": self.endpoint,
                "glue.region": REGION,
                "glue.access-key-id": AWS_KEY,
                "glue.secret-access-key": AWS_SECRET,
                "s3.endpoint": self.endpoint,
                "s3.path-style-access": "true",
                "s3.access-key-id": AWS_KEY,
                "s3.secret-access-key": AWS_SECRET,
                "s3.region": REGION,
            },
        )


@pytest.fixture
def aws(s3_endpoint: str) -> Aws:
    return Aws(s3_endpoint)


def s3_event(bucket: str, key: str, size: int) -> str:
    """What S3 sends for a put (AWS's notification structure; the key form-encoded)."""
    from urllib.parse import quote_plus

    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": REGION,
        "eventTime": "2026-11-27T10:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "landing",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": quote_plus(key), "size": size},
        },
    }
    return json.dumps({"Records": [record]})


class Listener:
    """A ``cdf listen`` child process whose stdout and stderr are read as they come.

    Each stream has a reader thread of its own (``communicate`` would read stderr too, from under
    the thread, and close it)."""

    def __init__(self, aws: Aws, *args: str) -> None:
        cmd = [sys.executable, "-m", "cdf_pipeline.cli", "listen", *args]
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, env=aws.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=_read_into, args=(stream, lines), daemon=True)
            for stream, lines in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr))
        ]
        for reader in self._readers:
            reader.start()

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in ln for ln in self.stderr):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} on stderr:\n{''.join(self.stderr)[-4000:]}")
            self._readers[1].join(0.2)  # waits for output, not for a fixed time

    def finish(self, timeout: float) -> tuple[int, list[dict[str, Any]], str]:
        self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(5)
        out = "".join(self.stdout)
        docs = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
        return self.proc.returncode, docs, out + "".join(self.stderr)


def _read_into(stream: IO[str], lines: list[str]) -> None:
    for line in stream:
        lines.append(line)


@pytest.fixture
def cleanup() -> Iterator[list[Listener]]:
    started: list[Listener] = []
    yield started
    for listener in started:
        if listener.proc.poll() is None:
            listener.proc.kill()
            listener.proc.wait(30)


def drain(sqs: Any, url: str, expect: int, deadline_s: float = 15.0) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + deadline_s
    while len(got) < expect and time.monotonic() < deadline:
        got += sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
            MessageAttributeNames=["All"], VisibilityTimeout=60,
        ).get("Messages", [])  # fmt: skip
    return got


def test_events_land_both_tenants_and_their_runs_publish(aws: Aws, cleanup: list[Listener]) -> None:
    from cdf_generator.api import generate

    bucket = f"cdf-{uuid.uuid4().hex[:10]}"
    aws.s3.create_bucket(Bucket=bucket)
    url, arn = aws.queue(f"landing-{bucket}")
    dlq, _ = aws.queue(f"landing-{bucket}-dlq")
    topic = aws.sns.create_topic(Name=f"landing-{bucket}")["TopicArn"]
    aws.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)

    def under(prefix: str) -> dict[str, Any]:
        return {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}}

    created = ["s3:ObjectCreated:*"]
    aws.s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {"QueueArn": arn, "Events": created, "Filter": under("lake/landing/acme/")},
                {"QueueArn": arn, "Events": created, "Filter": under("lake/landing/Not-")},
            ],
            # globex's events come through SNS, wrapped in its envelope.
            "TopicConfigurations": [
                {"TopicArn": topic, "Events": created, "Filter": under("lake/landing/globex/")}
            ],
        },
    )
    gen = generate(["acme", "globex"], 300, 300, root_uri=f"s3://{bucket}/gen",
                   s3_endpoint=aws.endpoint)  # fmt: skip
    generated: dict[str, set[str]] = {"acme": set(), "globex": set()}
    first_acme: tuple[str, int] | None = None
    for uri in gen.files:
        key = uri.removeprefix(f"s3://{bucket}/")
        tenant = key.split("tenant_id=")[1].split("/")[0]
        entity = key.split("entity=")[1].split("/")[0]
        name = key.rsplit("/", 1)[1]
        generated[tenant].add(name)
        # A space in the name: S3 sends it form-encoded ('+'), the listener must decode it.
        target = f"lake/landing/{tenant}/{entity}/export {name}"
        aws.s3.copy_object(Bucket=bucket, Key=target, CopySource={"Bucket": bucket, "Key": key})
        if tenant == "acme" and first_acme is None:
            first_acme = (target, aws.s3.head_object(Bucket=bucket, Key=target)["ContentLength"])
    assert first_acme is not None and all(len(v) == 2 for v in generated.values())
    stray = "lake/landing/Not-A-Tenant/suppliers/x.csv"
    aws.s3.put_object(Bucket=bucket, Key=stray, Body=b"supplier_id\n1\n")
    aws.sqs.send_message(QueueUrl=url, MessageBody="{ this is not an S3 event")

    listener = Listener(
        aws, "--queue", url, "--dlq", dlq, "--profile", "aws", "--root", f"s3://{bucket}/lake",
        "--idle-exit", "8", "--wait", "1", "--max-receives", "3", "--retry-after", "1", "--json",
    )  # fmt: skip
    cleanup.append(listener)
    listener.wait_for("batch 1:", timeout=600)
    # A duplicate delivery of an event already handled (at-least-once queues do this).
    aws.sqs.send_message(QueueUrl=url, MessageBody=s3_event(bucket, *first_acme))
    code, docs, output = listener.finish(timeout=600)

    batches, total = docs[:-1], docs[-1]
    assert total["total"] and code == 1, output[-4000:]  # 2 dead-lettered: attention
    assert total["landed"] == 4 and total["failed"] == 0, total
    assert (total["unknown"], total["dead_lettered"], total["retried"]) == (1, 2, 2), total
    assert total["test_events"] == 2, total  # the queue's and the topic's (SNS-wrapped)
    tenants = [t for b in batches for t in b["tenants"]]
    for tenant in ("acme", "globex"):
        mine = [t for t in tenants if t["tenant"] == tenant]
        assert sum(t["landed"] for t in mine) == 2
        assert mine[0]["run_status"] == "SUCCEEDED", mine[0]
    [dup] = [t for t in tenants if t["already_seen"]]
    assert (dup["tenant"], dup["landed"], dup["already_seen"]) == ("acme", 0, 1)
    assert dup["run_status"] == "NOTHING_NEW"

    # Raw holds each generated file once, under its content name: nothing landed twice.
    for tenant, names in generated.items():
        listed = aws.s3.list_objects_v2(Bucket=bucket, Prefix=f"lake/raw/tenant_id={tenant}/")
        files = [o["Key"] for o in listed["Contents"] if not o["Key"].endswith("/")]  # no markers
        assert sorted(k.rsplit("/", 1)[1] for k in files) == sorted(names)

    # A second engine (pyiceberg on Glue) reads what the runs reported.
    from pyiceberg.expressions import EqualTo

    catalog = aws.pyiceberg()
    manifest = catalog.load_table(f"{aws.prefix}ops.landed_files").scan().to_arrow().to_pylist()
    landed = sorted((r["tenant_id"], r["source"]) for r in manifest if r["outcome"] == "LANDED")
    assert landed == sorted(
        (t, f"s3://{bucket}/lake/landing/{t}/{e}/export {n}")
        for t, names in generated.items()
        for n in names
        for e in ("suppliers", "parts")
        if any(n in u and f"entity={e}" in u for u in gen.files)
    )
    for tenant in ("acme", "globex"):
        runs = [t["run"] for t in tenants if t["tenant"] == tenant and t["run"]]
        for entity in ("suppliers", "parts"):
            table = catalog.load_table(f"{aws.prefix}silver.{entity}")
            rows = table.scan(
                row_filter=EqualTo("tenant_id", tenant), selected_fields=("tenant_id",)
            )
            reported = sum(r["entities"][entity]["inserted"] for r in runs if r.get("entities"))
            assert reported > 0 and rows.to_arrow().num_rows == reported, (tenant, entity)

    # The dead-letter queue holds the two hopeless messages, bodies intact, with their reasons.
    dead = {
        m["MessageAttributes"]["cdf.reason"]["StringValue"]: m["Body"]
        for m in drain(aws.sqs, dlq, expect=2)
    }
    malformed = [r for r in dead if r.startswith("malformed message: not JSON")]
    assert len(malformed) == 1 and "(after 3 receives)" in malformed[0], dead
    assert dead[malformed[0]] == "{ this is not an S3 event"
    stray_uri = f"s3://{bucket}/{stray}"
    assert any(r.startswith(f"no tenant for {stray_uri}") for r in dead), dead
    assert f"no tenant for {stray_uri}" in output  # reported, and nothing landed from it
    assert not drain(aws.sqs, url, expect=1, deadline_s=2)
    assert AWS_SECRET not in output


def test_sigterm_while_idle_exits_0_promptly_with_a_summary(
    aws: Aws, cleanup: list[Listener], tmp_path: Path
) -> None:
    url, _ = aws.queue(f"idle-{uuid.uuid4().hex[:8]}")
    listener = Listener(aws, "--queue", url, "--profile", "local", "--root", str(tmp_path),
                        "--wait", "20", "--json")  # fmt: skip
    cleanup.append(listener)
    listener.wait_for("listening on", timeout=300)
    sent = time.monotonic()
    listener.proc.send_signal(signal.SIGTERM)
    code, docs, output = listener.finish(timeout=60)
    assert code == 0, output[-3000:]
    assert time.monotonic() - sent < 15, "did not wait out the 20 s long poll"
    assert docs[-1]["total"] and docs[-1]["stopped_by"] == "SIGTERM"
    assert docs[-1]["messages"] == 0
    assert "Traceback" not in output


def test_missing_queue_is_one_line_and_exit_2_before_spark(aws: Aws) -> None:
    url = f"{aws.endpoint}/123456789012/no-such-queue-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "cdf_pipeline.cli", "listen", "--queue", url, "--profile", "aws"],
        cwd=REPO, env=aws.env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"cdf listen: error: queue {url}: the queue does not exist (check the URL, the account "
        "and the region)"
    ]
    assert time.monotonic() - started < 30  # no JVM was started
    assert AWS_SECRET not in proc.stderr + proc.stdout
