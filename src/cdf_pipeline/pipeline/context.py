"""The fixed inputs of one tenant run: built once when the run has its lease, passed whole.

Every step of a run (choose files, stage, audit, publish, record) works with the same session,
settings, table names, storage, tenant, run id, clock and lease. They take this one frozen
object, so no step can see another version of them and none needs eight parameters to say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pyspark.sql import SparkSession

from cdf_pipeline.config import Settings
from cdf_pipeline.lakehouse.lease import Lease
from cdf_pipeline.lakehouse.tables import TableNames
from cdf_pipeline.storage import Storage


@dataclass(frozen=True)
class RunContext:
    """One tenant run's fixed inputs.

    Attributes:
        run_id: the run's id; a run that completes the publish of a run that was killed takes
            that run's id (its record stands), so the context is made once that is known.
        now: the run's clock: every row it writes is stamped with it.
        lease: the tenant's lease, held for the whole run; ``lease.check()`` before each step
            stops a run that lost it.
    """

    spark: SparkSession
    settings: Settings
    names: TableNames
    storage: Storage
    tenant: str
    run_id: str
    now: datetime
    lease: Lease

    def attrs(self, **more: Any) -> dict[str, Any]:
        """Span attributes naming the run's tenant, and ``more``."""
        return {"cdf.tenant": self.tenant, **more}

    def view(self, kind: str) -> str:
        """A temporary view name of this run's (``kind`` tells its writes apart)."""
        return f"{kind}_{self.run_id.replace('-', '_')}"
