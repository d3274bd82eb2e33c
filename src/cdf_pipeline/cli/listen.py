"""``cdf listen``: land S3 objects as their events arrive on SQS, then run their tenants."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cdf_pipeline.cli.common import (
    add_json,
    add_profile,
    add_root,
    positive_int,
    report,
    settings_from_args,
)
from cdf_pipeline.landing.listen import (
    DEFAULT_MAX_RECEIVES,
    DEFAULT_RETRY_AFTER_S,
    DEFAULT_VISIBILITY_S,
    DEFAULT_WAIT_S,
    ListenOptions,
)
from cdf_pipeline.landing.listen_report import BatchReport
from cdf_pipeline.orchestration.land import listen_queue


def _wait(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 20:
        raise argparse.ArgumentTypeError(f"SQS long polls last 0 to 20 seconds, got {value}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {value}")
    return value


def register(subs: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = subs.add_parser(
        "listen",
        help="land S3 objects from their SQS event notifications, then run their tenants",
        description="Receive S3 ObjectCreated notifications from an SQS queue (plain or wrapped "
        "by SNS), map each object to its tenant by its landing prefix (the {tenant} segment of "
        "landing.uri, default <root>/landing/<tenant>/), land each tenant's objects of a batch "
        "into raw and run the tenant's silver job once. A message is deleted only when its "
        "objects are landed and the run finished; a failure leaves it for redelivery, and on "
        "its --max-receives-th delivery it goes to --dlq with the reason (a malformed message "
        "too). An object under no tenant prefix is not landed: its message goes to --dlq at "
        "once. SIGTERM or SIGINT finishes the current batch and exits. One line per batch on "
        "stderr; with --json one JSON line per batch on stdout and a final total. See "
        "docs/landing.md. Exit code: 0 when stopped by a signal, or when every message was "
        "done; 1 when the queue failed, or (with --max-messages/--idle-exit) a message was "
        "retried or dead-lettered or a run failed; 2 on bad arguments or configuration (a "
        "missing or unreachable queue, before Spark starts).",
    )
    p.add_argument("--queue", required=True, metavar="URL", help="the SQS queue URL to consume")
    add_profile(p)
    add_root(p)
    p.add_argument(
        "--dlq", metavar="URL", help="dead-letter queue URL for messages that cannot be handled"
    )
    p.add_argument(
        "--max-receives",
        type=positive_int,
        default=DEFAULT_MAX_RECEIVES,
        metavar="N",
        help="a message still failing on its N-th delivery goes to --dlq (default "
        f"{DEFAULT_MAX_RECEIVES}); keep the queue's own redrive maxReceiveCount above N",
    )
    p.add_argument(
        "--max-messages",
        type=positive_int,
        metavar="N",
        help="stop after N messages received (a retried message counts at each delivery)",
    )
    p.add_argument(
        "--idle-exit",
        type=_seconds,
        metavar="SECONDS",
        help="stop after SECONDS without a message (a batch step instead of a service)",
    )
    p.add_argument(
        "--wait",
        type=_wait,
        default=DEFAULT_WAIT_S,
        metavar="SECONDS",
        help=f"long-poll wait per receive, 0-20 (default {DEFAULT_WAIT_S})",
    )
    p.add_argument(
        "--visibility",
        type=positive_int,
        default=DEFAULT_VISIBILITY_S,
        metavar="SECONDS",
        help="how long a received message stays hidden while its batch lands and runs (default "
        f"{DEFAULT_VISIBILITY_S}); more than a batch takes",
    )
    p.add_argument(
        "--retry-after",
        type=positive_int,
        default=DEFAULT_RETRY_AFTER_S,
        metavar="SECONDS",
        help="a failed message comes back after SECONDS, doubled on each further delivery "
        f"(default {DEFAULT_RETRY_AFTER_S})",
    )
    add_json(p)
    p.set_defaults(func=cmd_listen)


def cmd_listen(args: argparse.Namespace) -> int:
    options = ListenOptions(
        args.max_receives,
        args.max_messages,
        args.idle_exit,
        args.wait,
        visibility=args.visibility,
        retry_after=args.retry_after,
    )

    def on_listening() -> None:
        print(f"listening on {args.queue}", file=sys.stderr, flush=True)

    def on_batch(batch: BatchReport) -> None:
        print(batch.format(), file=sys.stderr, flush=True)
        if args.json:
            print(json_line(batch.to_dict()), flush=True)

    summary = listen_queue(
        settings_from_args(args),
        args.queue,
        options,
        dlq=args.dlq,
        settings_for=lambda tenant: settings_from_args(args, tenant),
        on_listening=on_listening,
        on_batch=on_batch,
    )
    report(summary.format(), summary.to_json(), as_json=args.json)
    return summary.exit_code


def json_line(doc: dict[str, Any]) -> str:
    return json.dumps(doc, default=str)
