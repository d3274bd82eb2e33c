"""An AWS Lambda entry point for the landing step: S3 events in, raw copies and manifest rows out.

Lambda has no Spark, so this does the landing step only (the same ``land_tenant`` as ``cdf
land``, with the manifest kept through pyiceberg); the silver run stays a Spark job (``cdf run``
on a schedule, or ``cdf listen``). Handler: ``cdf_pipeline.landing.lambda_handler.handler``.

Triggers:

- **S3 → Lambda** (asynchronous invocation, one notification): returns a summary; when an object
  failed to land it raises after recording what did land, so Lambda's own retries (and the
  function's on-failure destination) take over;
- **SQS → Lambda** (an event source mapping with ``ReportBatchItemFailures``): each record's body
  is an S3 notification (plain or SNS-wrapped). Returns the summary plus ``batchItemFailures``
  naming the messages to retry: those with an object that failed, a malformed body, or an object
  no tenant owns; the queue's redrive policy moves them to its dead-letter queue after
  ``maxReceiveCount`` receives. The reasons are in the summary and the log;
- **SNS → Lambda**: each record's ``Sns.Message`` is an S3 notification (as the S3 trigger).

Settings come from the environment as for ``cdf``: ``CDF_PROFILE`` (default ``aws``),
``CDF_ROOT`` and ``CDF__SECTION__KEY`` variables; credentials from the function's role.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cdf_pipeline.config import Settings, load_settings
from cdf_pipeline.exceptions import CdfError
from cdf_pipeline.landing.events import MalformedEvent, ObjectCreated, parse_body, parse_event
from cdf_pipeline.landing.listen import Router, WatchedManifest
from cdf_pipeline.landing.listen_report import TenantResult, count_outcomes
from cdf_pipeline.storage import canonical, storage_for

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)  # Lambda's root logger is at WARNING


@dataclass
class _Item:
    """One unit Lambda can retry alone: an SQS message, or the whole direct invocation."""

    item_id: str
    objects: list[ObjectCreated] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """Land the objects an S3 event announces; see the module doc for what each trigger gets.

    Raises:
        CdfError: (direct S3 or SNS trigger) an object failed to land, so Lambda retries.
        ConfigError: the settings, the catalog or the manifest table are not usable.
    """
    profile = os.environ.get("CDF_PROFILE", "aws")
    settings = load_settings(profile)
    records = event.get("Records") or []
    from_sqs = bool(records) and all(r.get("eventSource") == "aws:sqs" for r in records)
    items = _sqs_items(records) if from_sqs else [_direct_item(event)]
    router = Router(settings, lambda t: load_settings(profile, tenant=t))
    results = _land(items, router, settings)
    failed = [i for i in items if _failures(i, router, results)]
    summary = {
        "trigger": "sqs" if from_sqs else "direct",
        "objects": sum(len(i.objects) for i in items),
        "tenants": {t: r.to_dict() for t, r in results.items()},
        "failures": {i.item_id: _failures(i, router, results) for i in failed},
    }
    logger.info("%s", json.dumps(summary, default=str))
    if from_sqs:
        return {**summary, "batchItemFailures": [{"itemIdentifier": i.item_id} for i in failed]}
    if failed:
        raise CdfError(f"landing failed, Lambda retries the event: {summary['failures']}")
    return summary


def _sqs_items(records: Sequence[Mapping[str, Any]]) -> list[_Item]:
    items = []
    for r in records:
        item = _Item(str(r.get("messageId", "?")))
        try:
            item.objects = list(parse_body(str(r.get("body", ""))).objects)
        except MalformedEvent as exc:
            item.problems.append(f"malformed message: {exc}")
        items.append(item)
    return items


def _direct_item(event: Mapping[str, Any]) -> _Item:
    item = _Item("event")
    try:
        records = event.get("Records") or []
        if records and all(r.get("EventSource") == "aws:sns" for r in records):
            for r in records:
                item.objects += parse_body(str(r.get("Sns", {}).get("Message", ""))).objects
        else:
            item.objects = list(parse_event(event).objects)
    except MalformedEvent as exc:  # retrying cannot help: reported, not raised
        logger.error("not an S3 event, ignored: %s", exc)
    return item


def _land(items: Sequence[_Item], router: Router, settings: Settings) -> dict[str, TenantResult]:
    """One landing step per tenant over every item's objects (the manifest opened once)."""
    wanted: dict[str, list[str]] = {}
    for item in items:
        for obj in item.objects:
            tenant, why = router.tenant(obj.uri)
            if tenant is None:
                item.problems.append(why)
                logger.warning("%s: not landed", why)
            elif canonical(obj.uri) not in wanted.setdefault(tenant, []):
                wanted[tenant].append(canonical(obj.uri))
    if not wanted:
        return {}
    from cdf_pipeline.lakehouse.tables import TableNames
    from cdf_pipeline.landing.iceberg_manifest import IcebergManifest, load_catalog
    from cdf_pipeline.landing.land import land_tenant

    manifest = IcebergManifest(load_catalog(settings), TableNames.of(settings))
    results: dict[str, TenantResult] = {}
    for tenant, uris in sorted(wanted.items()):
        result = results[tenant] = TenantResult(tenant, objects=len(uris))
        tenant_settings = router.settings_for(tenant)
        ledger = WatchedManifest(manifest)
        try:
            landed = land_tenant(ledger, tenant_settings, tenant, only=uris)
        except Exception as exc:  # this tenant's items are retried; the others go on
            logger.exception("tenant %s: landing failed", tenant)
            result.error = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            continue
        count_outcomes(result, landed.objects, uris, ledger.seen_sources, storage_for(settings))
    return results


def _failures(item: _Item, router: Router, results: Mapping[str, TenantResult]) -> list[str]:
    """Why ``item`` must be retried (empty: done)."""
    out = list(item.problems)
    for obj in item.objects:
        tenant, _ = router.tenant(obj.uri)
        if tenant is None or tenant not in results:
            continue
        result = results[tenant]
        if result.error:
            out.append(f"tenant {tenant}: {result.error}")
        elif canonical(obj.uri) in result.failed_uris:
            out.append(f"{obj.uri} failed to land")
    return out
