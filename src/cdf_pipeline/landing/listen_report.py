"""What ``cdf listen`` reports: per tenant, per batch (one receive), and over its whole life.

Kept apart from the loop so the Lambda handler can report a batch in the same words.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cdf_pipeline.exit_codes import EXIT_FAILED, EXIT_OK
from cdf_pipeline.lakehouse.landed import DUPLICATE, FAILED, LANDED, UNMATCHED, LandedObject
from cdf_pipeline.storage import canonical

logger = logging.getLogger(__name__)


@dataclass
class TenantResult:
    """What the landing step and the run did for one tenant's objects of one batch."""

    tenant: str
    objects: int = 0
    landed: int = 0
    duplicate: int = 0
    unmatched: int = 0
    failed: int = 0
    #: Decided before (a redelivery, or an earlier ``cdf land``): not read again.
    already_seen: int = 0
    #: Announced, but no longer in the landing zone (deleted, or landed and released before).
    gone: int = 0
    #: Object URIs that failed to land: the messages holding them are retried.
    failed_uris: set[str] = field(default_factory=set)
    run: dict[str, Any] | None = None
    run_exit_code: int = 0
    #: The landing step or the run raised (all of this tenant's messages are retried).
    error: str | None = None

    @property
    def run_status(self) -> str | None:
        return None if self.run is None else str(self.run.get("status"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "objects": self.objects,
            "landed": self.landed,
            "duplicate": self.duplicate,
            "unmatched": self.unmatched,
            "failed": self.failed,
            "already_seen": self.already_seen,
            "gone": self.gone,
            "run_status": self.run_status,
            "run": self.run,
            "error": self.error,
        }

    def format(self) -> str:
        run = self.run_status or ("not run" if self.error is None else "FAILED")
        text = (
            f"{self.tenant}: {self.landed} landed, {self.duplicate} duplicate, "
            f"{self.already_seen} already seen, {self.failed} failed"
        )
        text += f", {self.unmatched} unmatched" if self.unmatched else ""
        text += f", {self.gone} gone" if self.gone else ""
        run_id = f" {self.run['run_id']}" if self.run else ""
        return f"{text}; run{run_id} {run}" + (f" ({self.error})" if self.error else "")


def count_outcomes(
    result: TenantResult,
    objects: Sequence[LandedObject],
    uris: Sequence[str],
    seen_sources: set[str],
    storage: Any,
) -> None:
    """Fill ``result`` from a landing step's objects; an asked-for object it does not name was
    already seen (the manifest said so), is gone, or (listed under another name) failed."""
    for o in objects:
        if o.outcome == LANDED:
            result.landed += 1
        elif o.outcome == DUPLICATE:
            result.duplicate += 1
        elif o.outcome == UNMATCHED:
            result.unmatched += 1
        elif o.outcome == FAILED:
            result.failed += 1
            result.failed_uris.add(o.source)
    decided = {o.source for o in objects}
    for uri in {canonical(u) for u in uris} - decided:
        if uri in seen_sources:
            result.already_seen += 1
        elif storage.exists(uri):
            # Listed under another name than the event's: never acknowledge an unlanded object.
            result.failed += 1
            result.failed_uris.add(uri)
            logger.warning("%s exists but was not landed (not listed under that name)", uri)
        else:
            result.gone += 1
            logger.warning("%s is no longer in the landing zone: nothing to land", uri)


@dataclass
class BatchReport:
    """What one receive did: messages answered, and per tenant what landed and ran."""

    number: int
    messages: int = 0
    #: The ids of the messages received (a message retried is received again in a later batch).
    message_ids: list[str] = field(default_factory=list)
    deleted: int = 0
    retried: int = 0
    dead_lettered: int = 0
    test_events: int = 0
    ignored_records: int = 0
    malformed: int = 0
    #: Objects that were not landed because no tenant owns them (with the reason).
    unknown: list[str] = field(default_factory=list)
    tenants: list[TenantResult] = field(default_factory=list)

    @property
    def needs_attention(self) -> bool:
        return bool(
            self.retried or self.dead_lettered or any(t.run_exit_code for t in self.tenants)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.number,
            "messages": self.messages,
            "deleted": self.deleted,
            "retried": self.retried,
            "dead_lettered": self.dead_lettered,
            "test_events": self.test_events,
            "ignored_records": self.ignored_records,
            "malformed": self.malformed,
            "unknown": self.unknown,
            "tenants": [t.to_dict() for t in self.tenants],
        }

    def format(self) -> str:
        head = (
            f"batch {self.number}: {self.messages} message(s): {self.deleted} done, "
            f"{self.retried} retried, {self.dead_lettered} dead-lettered"
        )
        parts = [head, *(t.format() for t in self.tenants)]
        if self.unknown:
            parts.append(f"{len(self.unknown)} object(s) without a tenant, not landed")
        return " | ".join(parts)


@dataclass
class ListenSummary:
    """The listener's life: totals over every batch, and why it stopped."""

    batches: int = 0
    #: Distinct messages over the listener's life; ``receives`` counts each delivery.
    messages: int = 0
    receives: int = 0
    deleted: int = 0
    retried: int = 0
    dead_lettered: int = 0
    test_events: int = 0
    malformed: int = 0
    unknown: int = 0
    landed: int = 0
    already_seen: int = 0
    duplicate: int = 0
    failed: int = 0
    runs: int = 0
    failed_runs: int = 0
    stopped_by: str = ""
    error: str | None = None
    seconds: float = 0.0
    _seen: set[str] = field(default_factory=set, repr=False)

    def add(self, batch: BatchReport) -> None:
        self.batches += 1
        self.receives += batch.messages
        self._seen.update(batch.message_ids)
        self.messages = len(self._seen)
        for name in ("deleted", "retried", "dead_lettered", "test_events"):
            setattr(self, name, getattr(self, name) + getattr(batch, name))
        self.malformed += batch.malformed
        self.unknown += len(batch.unknown)
        for t in batch.tenants:
            self.landed += t.landed
            self.already_seen += t.already_seen
            self.duplicate += t.duplicate
            self.failed += t.failed
            self.runs += t.run is not None
            self.failed_runs += bool(t.run_exit_code or t.error)

    @property
    def exit_code(self) -> int:
        """0 when stopped by a signal (a service stops cleanly) or when every message was done;
        1 when the queue failed, or a batch step (``--max-messages``/``--idle-exit``) left a
        message for retry, dead-lettered one, or saw a run fail."""
        if self.error:
            return EXIT_FAILED
        if self.stopped_by.startswith("SIG"):
            return EXIT_OK
        attention = self.retried or self.dead_lettered or self.failed_runs
        return EXIT_FAILED if attention else EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("seconds", "_seen")}
        return {"total": True, **out, "seconds": round(self.seconds, 3)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def format(self) -> str:
        text = (
            f"listened {self.seconds:.1f} s ({self.stopped_by}): {self.messages} message(s) "
            f"({self.receives} receive(s)) in {self.batches} batch(es): {self.deleted} done, "
            f"{self.retried} retried, "
            f"{self.dead_lettered} dead-lettered; {self.landed} object(s) landed, "
            f"{self.already_seen} already seen, {self.duplicate} duplicate, {self.failed} failed, "
            f"{self.unknown} without a tenant; {self.runs} run(s), {self.failed_runs} failed"
        )
        return text + (f"; stopped on error: {self.error}" if self.error else "")
