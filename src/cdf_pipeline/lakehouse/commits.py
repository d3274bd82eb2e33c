"""Commit conflicts between concurrent writers, and how long to back off before trying again.

Iceberg commits optimistically: a writer whose base snapshot moved on re-applies its change to
the new one by itself (``commit.retry.num-retries`` in the table properties), which is all that
runs of different tenants ever need, since they write different partitions. What Iceberg cannot
re-apply is a change whose validation fails against the new snapshot (``ValidationException``) or
that ran out of retries (``CommitFailedException``): the run then stages again from silver as it
is now and publishes that, since every publish step is idempotent.

Creating the tables races too, once, on a new lakehouse: two processes' ``CREATE NAMESPACE IF
NOT EXISTS`` both find no namespace and both insert it, and the JDBC catalog reports the loser's
insert as a key violation, not as "already exists" (which Spark's ``IF NOT EXISTS`` would
ignore). Run again, the statement finds what the winner created.
"""

from __future__ import annotations

import random

#: Times a run stages and publishes before a commit conflict becomes its failure.
PUBLISH_ATTEMPTS = 4
_BASE_S, _CAP_S = 1.0, 30.0
_CONFLICTS = ("CommitFailedException", "ValidationException", "CommitStateUnknownException")
#: The store or catalog could not be reached: a commit whose state is unknown for that reason
#: (Iceberg says CommitStateUnknownException) is no conflict, and staging again cannot help while
#: the store is gone; the run fails, and the next one settles the commit (silver.py).
_UNREACHABLE = (
    "ConnectException",
    "Connection refused",
    "UnknownHostException",
    "SocketTimeoutException",
    "NoSuchBucket",
)
#: A concurrent creation of the same name: Iceberg's own exceptions, SQLite's and PostgreSQL's
#: unique-key violations (the JDBC catalog passes them on as they are).
_CREATION_RACES = ("AlreadyExistsException", "SQLITE_CONSTRAINT", "duplicate key value")


def is_commit_conflict(exc: BaseException) -> bool:
    """Whether ``exc`` (a py4j or pyspark wrapper, or a cause of it) is an Iceberg conflict,
    not a store that could not be reached."""
    return _names_any(exc, _CONFLICTS) and not _names_any(exc, _UNREACHABLE)


def is_creation_race(exc: BaseException, root_cause: str = "") -> bool:
    """Whether ``exc`` (or its Java ``root_cause``, as text) says another writer created the
    same namespace or table first."""
    return any(name in root_cause for name in _CREATION_RACES) or _names_any(exc, _CREATION_RACES)


def _names_any(exc: BaseException, names: tuple[str, ...]) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if any(name in str(seen) or name in type(seen).__name__ for name in names):
            return True
        seen = seen.__cause__
    return False


def backoff_seconds(attempt: int) -> float:
    """Exponential back-off with full jitter: concurrent losers do not retry in step."""
    return random.uniform(0, min(_CAP_S, _BASE_S * 2**attempt))
