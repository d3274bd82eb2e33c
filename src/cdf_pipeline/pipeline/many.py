"""Many tenants in one Spark application: up to N tenant runs at a time, isolated from each other.

A cold ``spark-submit`` costs tens of seconds before any work; one application that runs its
tenants in threads pays it once. Each tenant run gets a scheduler pool of its own (the session
runs the FAIR scheduler), so the stages of one big tenant cannot hold back the small ones, and
its own trace, ``ops.runs`` row and summary. A tenant that fails (or is busy) is reported and the
others go on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime, timezone

from pyspark.sql import SparkSession

from cdf_pipeline import run_record as S
from cdf_pipeline.config import Settings
from cdf_pipeline.contracts import RULE_SET_VERSION
from cdf_pipeline.exceptions import CdfError, RunFailed
from cdf_pipeline.lakehouse.tables import TableNames, ensure_tables
from cdf_pipeline.pipeline.silver import new_run_id, run_tenant

logger = logging.getLogger(__name__)

SettingsOf = Callable[[str], Settings]


def run_tenants(
    spark: SparkSession,
    settings_of: SettingsOf,
    tenants: Sequence[str],
    *,
    parallel: int = 1,
    wait: float | None = None,
) -> Iterator[S.RunSummary]:
    """Run each tenant's silver job, ``parallel`` at a time; yields each summary as it finishes.

    ``settings_of(tenant)`` gives a tenant's settings (its own quality rules and landing zone;
    the session, catalog and tables are the application's).
    """
    if tenants:  # the tables once, before any thread: no tenant run repeats the DDL
        ensure_tables(spark, TableNames.of(settings_of(tenants[0])))
    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="tenant") as pool:
        futures = [pool.submit(_one, spark, settings_of, t, wait) for t in tenants]
        for future in as_completed(futures):
            yield future.result()


def _one(
    spark: SparkSession, settings_of: SettingsOf, tenant: str, wait: float | None
) -> S.RunSummary:
    """One tenant run in this worker thread, in the tenant's own scheduler pool; never raises."""
    sc = spark.sparkContext
    sc.setLocalProperty("spark.scheduler.pool", f"tenant_{tenant}")
    sc.setJobDescription(f"cdf run {tenant}")
    try:
        return run_tenant(spark, settings_of(tenant), tenant, wait=wait)
    except RunFailed as exc:
        assert isinstance(exc.summary, S.RunSummary)
        return exc.summary
    except CdfError as exc:  # the tenant's settings, or a refusal before the run started
        logger.error("tenant %s: %s", tenant, exc)
        return failed_before_start(tenant, str(exc))
    finally:
        sc.setLocalProperty("spark.scheduler.pool", None)  # type: ignore[arg-type]
        sc.setJobDescription(None)  # type: ignore[arg-type]


def failed_before_start(tenant: str, message: str) -> S.RunSummary:
    """The summary of a tenant run that could not start (nothing was read or written)."""
    now = datetime.now(timezone.utc)
    return S.RunSummary(
        tenant=tenant,
        run_id=new_run_id(now),
        status=S.FAILED,
        started_at=now,
        rule_set_version=RULE_SET_VERSION,
        message=message,
    )


def exit_code(summaries: Sequence[S.RunSummary]) -> int:
    """The worst of the tenants' exit codes: any failure (1) or unknown tenant (2) first, then
    busy (3), else 0."""
    codes = {s.exit_code for s in summaries}
    for code in (1, 2, S.EXIT_BUSY):
        if code in codes:
            return code
    return 0
