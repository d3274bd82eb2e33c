"""``cdf report`` from settings: the data-quality report (``dq_report``) written as one HTML file.

It only reads: no lease is taken and no table is created (a missing or empty lakehouse is one
clear error, before Spark starts).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime

from cdf_pipeline.config import Settings
from cdf_pipeline.dq_report.build import Report
from cdf_pipeline.orchestration.session import spark_session


def write_report(
    settings: Settings,
    out: str | os.PathLike[str],
    *,
    tenant: str | None,
    since: datetime | None,
    threshold_for: Callable[[str], float],
) -> Report:
    """Check the lakehouse, then build the report in a session of its own and write it to
    ``out``; ``threshold_for`` gives each tenant's publish gate (its ``quality.min_pass_rate``)."""
    from cdf_pipeline.dq_report.build import build_report, check_lakehouse

    check_lakehouse(settings)
    with spark_session(settings, "cdf-report") as spark:
        return build_report(
            spark, settings, out, tenant=tenant, since=since, threshold_for=threshold_for
        )
