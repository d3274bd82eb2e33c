"""``cdf run --tenants a,b,c`` / ``--all-tenants``: many tenant runs in one Spark application.

Prints each tenant's summary as it finishes (``--json``: one JSON line per tenant on stdout, the
person's text on stderr), then a total; the exit code is the worst of the tenants' codes.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from cdf_pipeline import run_record as S
from cdf_pipeline import telemetry
from cdf_pipeline.cli_run import report, settings_from_args
from cdf_pipeline.config import Settings
from cdf_pipeline.exceptions import ConfigError

logger = logging.getLogger(__name__)


def tenants_of(args: argparse.Namespace, settings: Settings) -> list[str]:
    """The tenants asked for: the list given, or every tenant folder under the raw root."""
    if args.tenants:
        return list(args.tenants)
    from cdf_pipeline.ingest.files import raw_tenants
    from cdf_pipeline.storage import storage_for

    found = raw_tenants(storage_for(settings), settings.raw_uri)
    if not found:
        raise ConfigError(
            f"--all-tenants found no tenant_id=<t> folder under {settings.raw_uri}: land or "
            "generate data first, or name the tenants with --tenants"
        )
    return found


def run_many(args: argparse.Namespace) -> int:
    from cdf_pipeline.pipeline.many import exit_code, run_tenants
    from cdf_pipeline.preflight import check_run
    from cdf_pipeline.spark import build_session
    from cdf_pipeline.storage import storage_for
    from cdf_pipeline.store_watch import watch_store

    started = time.monotonic()
    base = settings_from_args(args)
    check_run(base, storage_for(base), create_root=args.create_root)
    tenants = tenants_of(args, base)
    cache: dict[str, Settings] = {}

    def settings_of(tenant: str) -> Settings:
        if tenant not in cache:
            cache[tenant] = own = settings_from_args(args, tenant)
            if (own.spark, own.catalog) != (base.spark, base.catalog):
                logger.warning(
                    "tenant %s: its own spark and catalog settings (%s) do not apply in a shared "
                    "application; run it alone with --tenant to use them",
                    tenant, own.tenant_file,
                )  # fmt: skip
        return cache[tenant]

    out = sys.stderr if args.json else sys.stdout
    print(f"running {len(tenants)} tenant(s), {args.parallel} at a time", file=out, flush=True)
    with (
        telemetry.stage("cdf.run_many", **{"cdf.tenants": len(tenants)}),
        watch_store(base, "run"),
    ):
        spark = build_session(base, app_name=f"cdf-silver-{len(tenants)}-tenants")
        summaries: list[S.RunSummary] = []
        try:
            for summary in run_tenants(
                spark, settings_of, tenants, parallel=args.parallel, wait=args.wait
            ):
                summaries.append(summary)
                print(f"[{len(summaries)}/{len(tenants)}]", S.format_summary(summary), file=out)
                out.flush()
                if args.json:
                    print(summary.to_json(), flush=True)
        finally:
            spark.stop()
    total = totals(summaries, time.monotonic() - started)
    code = exit_code(summaries)
    text = f"{len(summaries)} tenant(s) in {total['seconds']:.1f} s: " + ", ".join(
        f"{k} {v}" for k, v in total["statuses"].items()
    )
    report(text, json.dumps({**total, "exit_code": code}), as_json=args.json)
    return code


def totals(summaries: list[S.RunSummary], seconds: float) -> dict:
    """The total line: tenants per status, rows per count, and which tenants did not succeed."""
    statuses: dict[str, int] = {}
    for s in summaries:
        statuses[s.status] = statuses.get(s.status, 0) + 1
    rows = {key: sum(s.total(key) for s in summaries) for key in S.COUNT_KEYS}
    return {
        "total": True,
        "tenants": len(summaries),
        "statuses": statuses,
        "rows": rows,
        "not_succeeded": {s.tenant: s.status for s in summaries if s.exit_code != 0},
        "seconds": round(seconds, 1),
    }
