"""Commit conflicts between concurrent writers, and how long to back off before trying again.

Iceberg commits optimistically: a writer whose base snapshot moved on re-applies its change to
the new one by itself (``commit.retry.num-retries`` in the table properties), which is all that
runs of different tenants ever need, since they write different partitions. What Iceberg cannot
re-apply is a change whose validation fails against the new snapshot (``ValidationException``) or
that ran out of retries (``CommitFailedException``): the run then stages again from silver as it
is now and publishes that, since every publish step is idempotent.
"""

from __future__ import annotations

import random

#: Times a run stages and publishes before a commit conflict becomes its failure.
PUBLISH_ATTEMPTS = 4
_BASE_S, _CAP_S = 1.0, 30.0
_CONFLICTS = ("CommitFailedException", "ValidationException", "CommitStateUnknownException")


def is_commit_conflict(exc: BaseException) -> bool:
    """Whether ``exc`` (a py4j or pyspark wrapper, or a cause of it) is an Iceberg conflict."""
    seen: BaseException | None = exc
    while seen is not None:
        if any(name in str(seen) or name in type(seen).__name__ for name in _CONFLICTS):
            return True
        seen = seen.__cause__
    return False


def backoff_seconds(attempt: int) -> float:
    """Exponential back-off with full jitter: concurrent losers do not retry in step."""
    return random.uniform(0, min(_CAP_S, _BASE_S * 2**attempt))
