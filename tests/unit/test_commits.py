"""Which failures a run retries: Iceberg commit conflicts (restage and publish again) and a lost
race to create the same namespace or table (run the DDL again). Everything else is reported."""

from __future__ import annotations

import pytest

from cdf_pipeline.lakehouse.commits import backoff_seconds, is_commit_conflict, is_creation_race

#: Root causes as the catalogs report them (the SQLite one from a CI run of ten first runs at once).
SQLITE_RACE = (
    "SQLiteException: [SQLITE_CONSTRAINT_PRIMARYKEY] A PRIMARY KEY constraint failed (UNIQUE "
    "constraint failed: iceberg_namespace_properties.catalog_name, "
    "iceberg_namespace_properties.namespace, iceberg_namespace_properties.property_key)"
)
POSTGRES_RACE = (
    'PSQLException: ERROR: duplicate key value violates unique constraint "iceberg_tables_pkey"'
)
ICEBERG_RACE = "AlreadyExistsException: Namespace already exists: silver"
NOT_RACES = [
    "SQLiteException: [SQLITE_BUSY] The database file is locked (database is locked)",
    'PSQLException: FATAL: password authentication failed for user "cdf"',
    "AccessDeniedException: User is not authorized to perform: glue:CreateDatabase",
]


@pytest.mark.parametrize("cause", [SQLITE_RACE, POSTGRES_RACE, ICEBERG_RACE])
def test_a_lost_creation_race_is_run_again(cause: str) -> None:
    assert is_creation_race(RuntimeError("An error occurred while calling o42.sql."), cause)
    assert is_creation_race(RuntimeError(f"py4j wrapper\nCaused by: {cause}"))


@pytest.mark.parametrize("cause", NOT_RACES)
def test_other_catalog_failures_are_reported_not_retried(cause: str) -> None:
    assert not is_creation_race(RuntimeError("An error occurred while calling o42.sql."), cause)
    assert not is_commit_conflict(RuntimeError(cause))


def test_commit_conflicts_are_found_through_the_cause_chain() -> None:
    try:
        try:
            raise RuntimeError("CommitFailedException: Cannot commit: stale metadata")
        except RuntimeError as inner:
            raise ValueError("publish failed") from inner
    except ValueError as outer:
        assert is_commit_conflict(outer)


@pytest.mark.parametrize(
    "cause",
    [
        "java.net.ConnectException: Connection refused",
        "S3Exception: The specified bucket does not exist (Service: S3, Status Code: 404, "
        "Error Code: NoSuchBucket)",
    ],
)
def test_a_commit_the_store_could_not_take_is_no_conflict(cause: str) -> None:
    """The store is gone: staging again cannot help, the run fails at once."""
    trace = f"CommitStateUnknownException: Commit status unknown\nCaused by: {cause}"
    assert not is_commit_conflict(RuntimeError(trace))
    assert is_commit_conflict(RuntimeError("CommitStateUnknownException: Commit status unknown"))


def test_backoff_grows_and_is_capped() -> None:
    for attempt in range(1, 12):
        assert 0 <= backoff_seconds(attempt) <= min(30.0, 2.0**attempt)
