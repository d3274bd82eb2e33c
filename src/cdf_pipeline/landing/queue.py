"""The SQS side of ``cdf listen``: receive, acknowledge, retry later, dead-letter (boto3).

The client is configured like every other AWS client of the job: endpoint from
``AWS_ENDPOINT_URL_SQS`` > ``AWS_ENDPOINT_URL`` (none: AWS's own), region from ``AWS_REGION`` >
``AWS_DEFAULT_REGION`` > the queue URL (``sqs.<region>.amazonaws.com``) > the profile's
``storage.s3_region``. Credentials are never configured here: boto3's default chain finds them,
and no message of this module prints one.

A dead-lettered message keeps its body byte for byte (so SQS's own redrive can move it back to
the source queue once the cause is fixed) and carries why in message attributes:
``cdf.reason``, ``cdf.source-queue``, ``cdf.receive-count``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cdf_pipeline.config import Settings
from cdf_pipeline.exceptions import ConfigError

logger = logging.getLogger(__name__)

REASON, SOURCE_QUEUE, RECEIVE_COUNT = "cdf.reason", "cdf.source-queue", "cdf.receive-count"
#: SQS allows 256 KiB per message, attributes included: a reason is a line, not a log.
MAX_REASON = 1000
_AWS_QUEUE_HOST = re.compile(r"^sqs[.-]([a-z0-9-]+)\.amazonaws\.com")


@dataclass(frozen=True)
class Received:
    """One received message: what it says and how to answer it."""

    message_id: str
    receipt: str
    body: str
    #: How many times SQS has handed it out, this time included (ApproximateReceiveCount).
    receive_count: int


def sqs_client(
    settings: Settings,
    queue_url: str,
    *,
    wait_seconds: int = 20,
    environ: Mapping[str, str] | None = None,
) -> Any:
    """A boto3 SQS client for ``queue_url`` with the job's endpoint and region rules.

    Raises:
        ConfigError: a malformed endpoint.
    """
    import boto3
    from botocore.config import Config

    env = os.environ if environ is None else environ
    endpoint = env.get("AWS_ENDPOINT_URL_SQS") or env.get("AWS_ENDPOINT_URL") or None
    if endpoint and urlsplit(endpoint).scheme not in ("http", "https"):
        raise ConfigError(
            f"SQS endpoint {endpoint!r} must be an http:// or https:// URL (from "
            "AWS_ENDPOINT_URL_SQS or AWS_ENDPOINT_URL)"
        )
    found = _AWS_QUEUE_HOST.match(urlsplit(queue_url).netloc)
    region = (
        env.get("AWS_REGION")
        or env.get("AWS_DEFAULT_REGION")
        or (found.group(1) if found else None)
        or settings.storage.s3_region
    )
    config = Config(
        connect_timeout=5,
        # A long poll holds the connection for up to wait_seconds: read longer than that.
        read_timeout=wait_seconds + 15,
        retries={"max_attempts": 3, "mode": "standard"},
    )
    return boto3.client("sqs", endpoint_url=endpoint, region_name=region, config=config)


class Queue:
    """A source queue and, optionally, its dead-letter queue."""

    def __init__(self, client: Any, url: str, dlq_url: str | None = None) -> None:
        self.client, self.url, self.dlq_url = client, url, dlq_url

    def check(self) -> None:
        """Both queues exist and answer with these credentials (before anything else starts).

        Raises:
            ConfigError: one line naming the queue and what to check.
        """
        for what, url in (("queue", self.url), ("dead-letter queue", self.dlq_url)):
            if url is None:
                continue
            if not urlsplit(url).scheme.startswith("http"):
                raise ConfigError(f"{what} {url!r} is not a queue URL (https://sqs.<region>...)")
            try:
                self.client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
            except Exception as exc:  # botocore raises several unrelated families here
                raise ConfigError(f"{what} {url}: {explain(exc)}") from None

    def receive(self, max_messages: int, wait_seconds: int, visibility: int) -> list[Received]:
        """Up to ``max_messages`` (1-10) messages, long-polling up to ``wait_seconds``.

        They stay hidden from other consumers for ``visibility`` seconds: longer than a batch
        takes to land and run, whatever the queue's own visibility timeout (which still applies
        when the listener dies mid-batch and never answers).
        """
        answer = self.client.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=max(1, min(10, max_messages)),
            WaitTimeSeconds=max(0, min(20, wait_seconds)),
            VisibilityTimeout=visibility,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        return [
            Received(
                m["MessageId"],
                m["ReceiptHandle"],
                m.get("Body", ""),
                int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1")),
            )
            for m in answer.get("Messages", [])
        ]

    def delete(self, msg: Received) -> bool:
        """Acknowledge; False (logged) when SQS did not take it: it comes back, harmlessly."""
        try:
            self.client.delete_message(QueueUrl=self.url, ReceiptHandle=msg.receipt)
        except Exception as exc:  # a failed ack only means a redelivery (landing is idempotent)
            logger.warning("could not delete message %s: %s", msg.message_id, explain(exc))
            return False
        return True

    def retry_later(self, msg: Received, seconds: int) -> None:
        """Hide the message for ``seconds`` more (its next delivery), best effort."""
        try:
            self.client.change_message_visibility(
                QueueUrl=self.url, ReceiptHandle=msg.receipt, VisibilityTimeout=seconds
            )
        except Exception as exc:  # the queue's own visibility timeout applies instead
            logger.warning("could not delay message %s: %s", msg.message_id, explain(exc))

    def dead_letter(self, msg: Received, reason: str) -> bool:
        """Send the message to the dead-letter queue with ``reason``, then delete it here.

        Without a dead-letter queue the message is left alone (the queue's own redrive policy,
        if any, applies). False when it is still on the source queue.
        """
        if self.dlq_url is None:
            logger.error(
                "message %s should go to a dead-letter queue (%s) but none is set (--dlq): "
                "left on the queue",
                msg.message_id,
                reason,
            )
            return False
        attributes = {
            REASON: reason[:MAX_REASON],
            SOURCE_QUEUE: self.url,
            RECEIVE_COUNT: str(msg.receive_count),
        }
        try:
            self.client.send_message(
                QueueUrl=self.dlq_url,
                MessageBody=msg.body,
                MessageAttributes={
                    k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()
                },
            )
        except Exception as exc:  # still on the source queue: it comes back and tries again
            logger.error("could not dead-letter message %s: %s", msg.message_id, explain(exc))
            return False
        return self.delete(msg)


def explain(exc: BaseException) -> str:
    """One line for a botocore error, without request ids or credentials."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials found (environment, AWS_PROFILE, SSO or an instance role)"
    if isinstance(exc, EndpointConnectionError):
        return (
            f"cannot reach SQS at {exc.kwargs.get('endpoint_url', '?')}; check "
            "AWS_ENDPOINT_URL_SQS / AWS_ENDPOINT_URL and the network"
        )
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", "?"))
        if "NonExistentQueue" in code or code == "QueueDoesNotExist":
            return "the queue does not exist (check the URL, the account and the region)"
        message = str(err.get("Message", ""))
        # An endpoint may answer a JSON request with an XML error body and a bare status
        # (moto does for a denied action): keep its <Message>, on one line.
        found = re.search(r"<Message>(.*?)</Message>", message, re.DOTALL)
        message = " ".join((found.group(1) if found else message).split())
        if code.isdigit():
            code = "AccessDenied" if code == "403" else f"HTTP {code}"
        return f"{code}: {message}".strip()
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
