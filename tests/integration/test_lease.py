"""The tenant lease, on the embedded default's SQLite catalog file and on PostgreSQL.

No Spark: the lease is a row in the catalog's database, taken by an atomic upsert.
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cdf_pipeline.config import Settings, load_settings
from cdf_pipeline.exceptions import LeaseLost, TenantBusy
from cdf_pipeline.lakehouse.lease import acquire, scope_of, store_for, tenant_lease


def _sqlite(tmp_path: Path, ttl: float = 30.0) -> Settings:
    return load_settings(
        "local",
        overrides={"root": str(tmp_path), "lease": {"ttl_seconds": ttl, "poll_seconds": 0.2}},
    )


def _postgres(tmp_path: Path, server: Any, ttl: float = 30.0) -> Settings:
    return load_settings(
        "jdbc",
        overrides={
            "root": str(tmp_path),
            "catalog": {"uri": server.jdbc_url()},
            "lease": {"ttl_seconds": ttl, "poll_seconds": 0.2},
        },
    )


@pytest.fixture(params=["sqlite", "postgres"])
def lake_settings(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """A factory of settings (by ttl) for a lakehouse whose catalog database keeps the leases."""
    if request.param == "sqlite":
        return lambda ttl=30.0: _sqlite(tmp_path, ttl)
    server = request.getfixturevalue("postgres")
    for key, value in server.env().items():  # the login, as libpq reads it
        monkeypatch.setenv(key, value)
    return lambda ttl=30.0: _postgres(tmp_path, server, ttl)


def test_a_second_holder_is_told_who_is_busy_and_gets_it_once_released(lake_settings: Any) -> None:
    settings = lake_settings()
    with tenant_lease(settings, "acme", purpose="run") as first:
        with pytest.raises(
            TenantBusy, match=r"tenant acme is busy: run by .*try again later"
        ) as busy:
            acquire(settings, "acme", purpose="maintain")
        assert busy.value.owner == first.owner
        assert busy.value.expires_in > 0
        # Another tenant is not held up.
        with tenant_lease(settings, "globex"):
            pass
    with tenant_lease(settings, "acme", purpose="maintain") as second:
        assert second.owner != first.owner


def test_a_killed_holder_blocks_until_its_lease_expires_and_cannot_publish_after(
    lake_settings: Any,
) -> None:
    settings = lake_settings(ttl=1.0)
    store = store_for(settings)
    dead = acquire(settings, "acme", store=store)
    dead._stop.set()  # the holder was killed: no more heartbeats
    dead._thread.join()  # type: ignore[union-attr]
    with pytest.raises(TenantBusy):
        acquire(settings, "acme")
    taker = acquire(settings, "acme", wait=10.0)  # waits for the expiry, then takes it over
    try:
        with pytest.raises(LeaseLost, match="taken over"):
            dead.check()  # what the stalled run does right before publishing
        taker.check()
    finally:
        taker.release()
        dead.release()


def test_a_heartbeat_keeps_a_live_holder_past_its_ttl(lake_settings: Any) -> None:
    settings = lake_settings(ttl=1.0)
    with tenant_lease(settings, "acme") as held:
        with pytest.raises(TenantBusy, match=r"after waiting 2 s"):
            acquire(settings, "acme", wait=2.0)  # twice the ttl: only renewals keep it held
        held.check()


def test_tenants_started_at_once_on_a_new_postgresql_database_all_get_their_lease(
    tmp_path: Path, postgres: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first runs on a new catalog database create the lease table together: PostgreSQL's
    ``CREATE TABLE IF NOT EXISTS`` fails all but one of them when they race, and none may fail
    its run for it. Sixteen tenants at once, each its first lease, on each of five new databases
    (one race is lost often, not always)."""
    import adbc_driver_postgresql.dbapi

    for key, value in postgres.env().items():
        monkeypatch.setenv(key, value)
    tenants = [f"t{i}" for i in range(16)]
    for _ in range(5):
        database = f"leases_{uuid.uuid4().hex[:8]}"
        with adbc_driver_postgresql.dbapi.connect(postgres.dsn(with_password=True)) as admin:
            admin.adbc_connection.set_autocommit(True)  # CREATE DATABASE refuses a transaction
            with admin.cursor() as cur:
                cur.execute(f"CREATE DATABASE {database}")
        settings = _postgres(tmp_path, replace(postgres, database=database))
        start = threading.Barrier(len(tenants))

        def first_lease(
            tenant: str, settings: Settings = settings, start: threading.Barrier = start
        ) -> str:
            start.wait()
            held = acquire(settings, tenant, purpose="run")
            held.release()
            return held.owner

        with ThreadPoolExecutor(len(tenants)) as pool:
            owners = list(pool.map(first_lease, tenants))
        assert len(set(owners)) == len(tenants)
        assert store_for(settings).holder(scope_of(settings), "t0") is None  # released
