"""``cdf listen``'s loop: S3 events from SQS, landed per tenant, then one silver run per tenant.

Each receive is a batch (up to 10 messages). Its objects are grouped by tenant (the ``{tenant}``
segment of ``landing.uri``: one prefix per tenant); each tenant's objects land in one landing
step (``land_tenant(only=...)``) followed by one silver run. Then every message is answered:

- **done** (deleted): its objects landed and their tenant's run finished (whatever its status:
  a run that finished recorded its outcome in ``ops.runs``), or they were duplicates, already
  landed before (a redelivery), gone from S3, or the message announced nothing to land (S3's
  ``s3:TestEvent``, ``ObjectRemoved`` records);
- **retry** (left on the queue, visible again after ``retry_after`` seconds, doubled on each
  delivery): an object failed to land, the landing step or the run raised, or the tenant was
  busy (another run held its lease and may have chosen its files before these landed). Landing is
  idempotent (the manifest), so the next delivery lands only what is missing and runs the
  tenant again;
- **dead-letter** (sent to ``--dlq`` with the reason, then deleted): a message still failing on
  its ``max_receives``-th delivery, a malformed message on its ``max_receives``-th delivery
  (another listener version may understand it, as SQS's own redrive would allow), and at once an
  object whose path names no tenant or lies outside its tenant's landing zone: retrying cannot
  help until the configuration changes, and a redrive from the dead-letter queue can replay it.

A redelivered message whose objects the manifest has already seen still runs its tenant: the
previous delivery may have landed them and died before the run (a run with nothing new ends as
``NOTHING_NEW`` quickly), so an acknowledged message always means "landed and run".
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Protocol

from cdf_pipeline.config import Settings
from cdf_pipeline.lakehouse.landed import LandedObject
from cdf_pipeline.landing.events import MalformedEvent, parse_body
from cdf_pipeline.landing.listen_report import (
    BatchReport,
    ListenSummary,
    TenantResult,
    count_outcomes,
)
from cdf_pipeline.landing.manifest import Known, Manifest
from cdf_pipeline.landing.queue import Queue, Received, explain
from cdf_pipeline.landing.routing import tenant_of
from cdf_pipeline.run_record import BUSY
from cdf_pipeline.storage import canonical, first_line

logger = logging.getLogger(__name__)

#: How long one long poll waits for messages by default (SQS allows up to 20 s).
DEFAULT_WAIT_S = 10
DEFAULT_MAX_RECEIVES = 5
#: Seconds a received message stays hidden while its batch lands and runs.
DEFAULT_VISIBILITY_S = 900
#: Seconds before a failed message's first redelivery (doubled on each further one).
DEFAULT_RETRY_AFTER_S = 30


# --- one tenant's landing step and run -----------------------------------------------------


class TenantStep(Protocol):
    """Land some objects of one tenant, then run the tenant (the Spark work of a batch)."""

    def __call__(self, tenant: str, uris: Sequence[str]) -> TenantResult: ...


class WatchedManifest:
    """A manifest that remembers what it told the landing step was already known."""

    def __init__(self, inner: Manifest) -> None:
        self.inner, self.seen_sources = inner, set[str]()

    def known(self, tenant: str) -> Known:
        known = self.inner.known(tenant)
        self.seen_sources = {source for source, _ in known.seen}
        return known

    def last_cursor(self, tenant: str, source: str) -> str | None:
        return self.inner.last_cursor(tenant, source)

    def record(self, objects: Iterable[LandedObject]) -> None:
        self.inner.record(objects)


class LandAndRun:
    """The production :class:`TenantStep`: ``land_tenant(only=...)`` then ``run_tenant``, on
    the listener's one SparkSession."""

    def __init__(self, spark: Any, settings_for: Callable[[str], Settings]) -> None:
        self.spark, self.settings_for = spark, settings_for

    def __call__(self, tenant: str, uris: Sequence[str]) -> TenantResult:
        from cdf_pipeline import telemetry
        from cdf_pipeline.lakehouse.tables import TableNames
        from cdf_pipeline.landing.land import land_tenant
        from cdf_pipeline.landing.spark_manifest import SparkManifest
        from cdf_pipeline.pipeline.silver import run_tenant
        from cdf_pipeline.storage import storage_for

        result = TenantResult(tenant, objects=len(uris))
        try:
            settings = self.settings_for(tenant)
            ledger = WatchedManifest(SparkManifest(self.spark, TableNames.of(settings)))
            with telemetry.stage("cdf.land", **{telemetry.TENANT: tenant}):
                landed = land_tenant(ledger, settings, tenant, only=uris)
            seen = ledger.seen_sources
            count_outcomes(result, landed.objects, uris, seen, storage_for(settings))
            # A redelivery may follow a landing whose run never finished: run it then too.
            if result.landed or result.already_seen:
                summary = run_tenant(self.spark, settings, tenant)
                result.run, result.run_exit_code = summary.to_dict(), summary.exit_code
                if summary.status == BUSY:  # another run had the tenant: it may miss these files
                    result.error = summary.message
        except Exception as exc:  # one tenant's failure must not stop the service: retried
            logger.exception("tenant %s: landing or run failed; its messages are retried", tenant)
            result.error = first_line(exc)
        return result


# --- routing ----------------------------------------------------------------------------------


class Router:
    """Which tenant an object belongs to, with each tenant's own settings (cached)."""

    def __init__(self, settings: Settings, load: Callable[[str], Settings]) -> None:
        self.settings, self._load = settings, load
        self._cache: dict[str, Settings] = {}

    def settings_for(self, tenant: str) -> Settings:
        if tenant not in self._cache:
            self._cache[tenant] = self._load(tenant)
        return self._cache[tenant]

    def tenant(self, uri: str) -> tuple[str | None, str]:
        """(tenant, "") or (None, why the object has no tenant)."""
        tenant = tenant_of(uri, self.settings)
        if tenant is None:
            where = self.settings.path(self.settings.landing.uri)
            return None, f"no tenant for {uri}: not below a tenant prefix of {where}"
        zone = canonical(self.settings_for(tenant).landing_uri(tenant)).rstrip("/") + "/"
        if not canonical(uri).startswith(zone):
            return None, f"{uri} is not in tenant {tenant}'s landing zone {zone}"
        return tenant, ""


# --- the loop ------------------------------------------------------------------------------


class StopPolling(BaseException):
    """Raised by the signal handler while the loop waits on a long poll (nothing in hand)."""


class Stopper:
    """A stop request from a signal: honoured between batches, at once while polling."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self.polling = False

    def request(self, why: str) -> None:
        self.requested = self.requested or why

    def install(self) -> None:
        """SIGTERM and SIGINT stop the listener after the current batch (a second one during a
        batch stops it at once)."""

        def handler(signum: int, frame: FrameType | None) -> None:
            name = signal.Signals(signum).name
            if self.requested and not self.polling:
                raise KeyboardInterrupt(name)
            self.request(name)
            logger.info("%s: stopping after the current batch", name)
            if self.polling:
                raise StopPolling(name)

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


@dataclass(frozen=True)
class ListenOptions:
    max_receives: int = DEFAULT_MAX_RECEIVES
    max_messages: int | None = None
    idle_exit: float | None = None
    wait: int = DEFAULT_WAIT_S
    visibility: int = DEFAULT_VISIBILITY_S
    retry_after: int = DEFAULT_RETRY_AFTER_S

    def retry_delay(self, receive_count: int) -> int:
        """Exponential backoff, capped by SQS's 12-hour visibility limit."""
        return int(min(self.retry_after * 2 ** max(0, receive_count - 1), 43_200))


def listen(
    queue: Queue,
    router: Router,
    step: TenantStep,
    options: ListenOptions,
    *,
    stopper: Stopper | None = None,
    on_batch: Callable[[BatchReport], None] | None = None,
) -> ListenSummary:
    """Receive and handle batches until a signal, ``max_messages`` or ``idle_exit``."""
    stopper = stopper or Stopper()
    summary = ListenSummary()
    started = last_message = time.monotonic()
    while True:
        if stopper.requested:
            summary.stopped_by = stopper.requested
            break
        if options.max_messages is not None and summary.receives >= options.max_messages:
            summary.stopped_by = "max-messages"
            break
        idle = time.monotonic() - last_message
        if options.idle_exit is not None and idle >= options.idle_exit:
            summary.stopped_by = "idle-exit"
            break
        wait = options.wait
        if options.idle_exit is not None:
            wait = min(wait, max(0, int(options.idle_exit - idle + 0.999)))
        want = 10 if options.max_messages is None else options.max_messages - summary.receives
        try:
            stopper.polling = True
            if stopper.requested:
                continue
            messages = queue.receive(want, wait, options.visibility)
        except StopPolling:
            continue
        except Exception as exc:  # the queue itself failed: stop, say why, exit 1
            summary.error = f"cannot receive from {queue.url}: {explain(exc)}"
            summary.stopped_by = "error"
            logger.error("%s", summary.error)
            break
        finally:
            stopper.polling = False
        if not messages:
            continue
        last_message = time.monotonic()
        report = handle_batch(messages, queue, router, step, options, number=summary.batches + 1)
        last_message = time.monotonic()  # idle counts from the end of the work, not its start
        summary.add(report)
        if on_batch is not None:
            on_batch(report)
    summary.seconds = time.monotonic() - started
    return summary


@dataclass
class _Plan:
    """One message's objects by tenant, and why it cannot be done (if so)."""

    msg: Received
    uris: dict[str, list[str]] = field(default_factory=dict)
    malformed: str | None = None
    #: Failures a later delivery may not meet (a tenant's settings that did not load).
    errors: list[str] = field(default_factory=list)
    no_tenant: list[str] = field(default_factory=list)


def handle_batch(
    messages: Sequence[Received],
    queue: Queue,
    router: Router,
    step: TenantStep,
    options: ListenOptions,
    *,
    number: int = 1,
) -> BatchReport:
    """Land and run the batch's tenants, then answer every message (see the module doc)."""
    ids = [m.message_id for m in messages]
    report = BatchReport(number, messages=len(messages), message_ids=ids)
    plans = [_plan(msg, router, report) for msg in messages]
    wanted: dict[str, list[str]] = {}
    for plan in plans:
        for tenant, uris in plan.uris.items():
            wanted.setdefault(tenant, [])
            wanted[tenant] += [u for u in uris if u not in wanted[tenant]]
    results = {tenant: step(tenant, uris) for tenant, uris in sorted(wanted.items())}
    report.tenants = list(results.values())
    for plan in plans:
        _answer(plan, results, queue, options, report)
    return report


def _plan(msg: Received, router: Router, report: BatchReport) -> _Plan:
    plan = _Plan(msg)
    try:
        event = parse_body(msg.body)
    except MalformedEvent as exc:
        plan.malformed = f"malformed message: {exc}"
        report.malformed += 1
        logger.warning("message %s: %s", msg.message_id, plan.malformed)
        return plan
    report.test_events += event.test_event
    report.ignored_records += len(event.ignored)
    for obj in event.objects:
        try:
            tenant, why = router.tenant(obj.uri)
        except Exception as exc:  # its tenant's settings do not load: retried, then DLQ
            logger.exception("message %s: cannot route %s", msg.message_id, obj.uri)
            plan.errors.append(f"settings for {obj.uri}: {first_line(exc)}")
            continue
        if tenant is None:
            plan.no_tenant.append(why)
            report.unknown.append(why)
            logger.warning("message %s: %s: not landed", msg.message_id, why)
            continue
        plan.uris.setdefault(tenant, []).append(canonical(obj.uri))
    return plan


def _answer(
    plan: _Plan,
    results: dict[str, TenantResult],
    queue: Queue,
    options: ListenOptions,
    report: BatchReport,
) -> None:
    msg = plan.msg
    transient = plan.malformed or (plan.errors[0] if plan.errors else None)
    for tenant, uris in plan.uris.items():
        result = results[tenant]
        if result.error:
            transient = f"tenant {tenant}: {result.error}"
        elif failed := sorted(set(uris) & result.failed_uris):
            transient = f"{len(failed)} object(s) failed to land, first {failed[0]}"
    if transient:
        if msg.receive_count >= options.max_receives:
            reason = f"{transient} (after {msg.receive_count} receives)"
            _dead_letter(msg, reason, queue, report)
        else:
            delay = options.retry_delay(msg.receive_count)
            queue.retry_later(msg, delay)
            report.retried += 1
            logger.info("message %s: retried in %d s: %s", msg.message_id, delay, transient)
        return
    if plan.no_tenant:
        _dead_letter(msg, "; ".join(plan.no_tenant), queue, report)
        return
    report.deleted += queue.delete(msg)


def _dead_letter(msg: Received, reason: str, queue: Queue, report: BatchReport) -> None:
    if queue.dead_letter(msg, reason):
        report.dead_lettered += 1
        logger.warning("message %s dead-lettered: %s", msg.message_id, reason)
    else:
        report.retried += 1
