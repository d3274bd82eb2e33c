"""Silver runs from settings: one tenant (``cdf run --tenant``, ``jobs/silver_job.py``), many in one
application (``--tenants``/``--all-tenants``), and a tenant's run history (``cdf runs``).

:func:`run_silver` is the one path from settings to a finished run of one tenant: preflight,
session, ``pipeline.silver.run_tenant``, session stopped. :func:`run_many` is the same for several
tenants sharing one session (``pipeline.many.run_tenants``), reporting each summary as it comes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from cdf_pipeline import run_record as S
from cdf_pipeline import telemetry
from cdf_pipeline.config import Settings
from cdf_pipeline.exceptions import ConfigError

logger = logging.getLogger(__name__)

SettingsOf = Callable[[str], Settings]


def run_silver(
    settings: Settings, tenant: str, *, create_root: bool = False, wait: float | None = None
) -> S.RunSummary:
    """Build the session, run one tenant, stop the session, return the summary (the one path
    for every caller).

    One span covers both, so the trace of a tenant run includes the Spark start-up. The session
    is stopped here, before the process exits, so the JVM does not shut its thread pools down
    under running tasks (which printed RejectedExecutionException traces after a clean run).
    """
    from cdf_pipeline.pipeline.silver import run_tenant
    from cdf_pipeline.preflight import check_run
    from cdf_pipeline.spark import build_session
    from cdf_pipeline.storage import storage_for
    from cdf_pipeline.store_watch import watch_store

    with telemetry.stage("cdf.run", **{telemetry.TENANT: tenant}) as span:
        with telemetry.stage("preflight"):
            check_run(settings, storage_for(settings), create_root=create_root)
        with watch_store(settings, "run"):  # a store that vanishes ends the run in bounded time
            with telemetry.stage("spark_session"):
                spark = build_session(settings, app_name=f"cdf-silver-{tenant}")
            try:
                summary = run_tenant(spark, settings, tenant, wait=wait)
            finally:
                spark.stop()
        telemetry.set_attributes(
            span, {telemetry.RUN_ID: summary.run_id, telemetry.STATE: summary.status}
        )
    return summary


def tenants_to_run(settings: Settings, tenants: Sequence[str] | None) -> list[str]:
    """The tenants asked for: the list given, or every tenant folder under the raw root."""
    if tenants:
        return list(tenants)
    from cdf_pipeline.ingest.files import raw_tenants
    from cdf_pipeline.storage import storage_for

    found = raw_tenants(storage_for(settings), settings.raw_uri)
    if not found:
        raise ConfigError(
            f"--all-tenants found no tenant_id=<t> folder under {settings.raw_uri}: land or "
            "generate data first, or name the tenants with --tenants"
        )
    return found


def prepare_many(
    base: Settings, tenants: Sequence[str] | None, *, create_root: bool = False
) -> list[str]:
    """Preflight of the shared application, then the tenants it will run (before Spark starts)."""
    from cdf_pipeline.preflight import check_run
    from cdf_pipeline.storage import storage_for

    check_run(base, storage_for(base), create_root=create_root)
    return tenants_to_run(base, tenants)


def shared_settings(base: Settings, load: SettingsOf) -> SettingsOf:
    """Each tenant's settings, loaded once; warns when a tenant's own Spark or catalog settings
    differ from the shared application's (they cannot apply there)."""
    cache: dict[str, Settings] = {}

    def settings_of(tenant: str) -> Settings:
        if tenant not in cache:
            cache[tenant] = own = load(tenant)
            if (own.spark, own.catalog) != (base.spark, base.catalog):
                logger.warning(
                    "tenant %s: its own spark and catalog settings (%s) do not apply in a shared "
                    "application; run it alone with --tenant to use them",
                    tenant,
                    own.tenant_file,
                )
        return cache[tenant]

    return settings_of


def run_many(
    base: Settings,
    settings_of: SettingsOf,
    tenants: Sequence[str],
    *,
    parallel: int,
    wait: float | None = None,
    on_summary: Callable[[S.RunSummary], None] | None = None,
) -> list[S.RunSummary]:
    """Run ``tenants`` in one Spark application, ``parallel`` at a time; ``on_summary`` sees each
    summary as its run finishes. The summaries, in that order."""
    from cdf_pipeline.pipeline.many import run_tenants
    from cdf_pipeline.spark import build_session
    from cdf_pipeline.store_watch import watch_store

    summaries: list[S.RunSummary] = []
    with (
        telemetry.stage("cdf.run_many", **{"cdf.tenants": len(tenants)}),
        watch_store(base, "run"),
    ):
        spark = build_session(base, app_name=f"cdf-silver-{len(tenants)}-tenants")
        try:
            for summary in run_tenants(spark, settings_of, tenants, parallel=parallel, wait=wait):
                summaries.append(summary)
                if on_summary is not None:
                    on_summary(summary)
        finally:
            spark.stop()
    return summaries


def totals(summaries: list[S.RunSummary], seconds: float) -> dict[str, Any]:
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


def run_history(settings: Settings, tenant: str, *, limit: int) -> list[dict[str, Any]]:
    """The tenant's latest ``ops.runs`` rows, newest first (the tables are created if missing)."""
    from cdf_pipeline.lakehouse import ops
    from cdf_pipeline.lakehouse.tables import TableNames, ensure_tables
    from cdf_pipeline.spark import build_session

    spark = build_session(settings, app_name="cdf-runs")
    names = TableNames.of(settings)
    ensure_tables(spark, names)
    return ops.list_runs(spark, names, tenant, limit=limit)
