"""The tenant lease: at most one run (or maintenance) of a tenant publishes at a time.

Two runs of one tenant that both choose the same new files would both append the same new keys:
Iceberg cannot catch it, since a write of new rows only is committed as an append, which checks
nothing against concurrent appends (Iceberg issue 12653). So a run holds its tenant's lease from
choosing its files to recording its run, and a second run finds it held and stops (``BUSY``) or
waits. A lease has an owner, is renewed by a heartbeat thread every quarter of its time to live,
and expires when its holder dies, so a killed run blocks its tenant for at most that time.

Leases live in one small table, ``cdf_tenant_leases``, of the JDBC catalog's own database (the
embedded default's SQLite file, or the catalog's PostgreSQL), so taking one is a single atomic
upsert next to the catalog itself, timed by the database's clock. Catalogs without a database of
their own (Glue, REST) take ``lease.uri``, or a SQLite file in the user's cache folder, which
only guards the runs of one machine (docs/operations.md).

Before each publish the run renews its lease once more and stops (:class:`LeaseLost`) if it was
lost, so a run that stalled past its expiry and was overtaken does not publish.
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cdf_pipeline.config import Settings
from cdf_pipeline.exceptions import CdfError, ConfigError, LeaseLost, TenantBusy
from cdf_pipeline.tenants import validate_tenant_id

logger = logging.getLogger(__name__)

TABLE = "cdf_tenant_leases"
_CREATE = f"""CREATE TABLE IF NOT EXISTS {TABLE} (
  scope TEXT NOT NULL,
  tenant TEXT NOT NULL,
  owner TEXT NOT NULL,
  purpose TEXT NOT NULL,
  acquired_at DOUBLE PRECISION NOT NULL,
  renewed_at DOUBLE PRECISION NOT NULL,
  expires_at DOUBLE PRECISION NOT NULL,
  PRIMARY KEY (scope, tenant)
)"""
_KEY = "scope = ? AND tenant = ?"


@dataclass(frozen=True)
class Holder:
    """Who holds a lease, what for, and for how many more seconds (without renewal)."""

    owner: str
    purpose: str
    expires_in: float


@dataclass(frozen=True)
class LeaseStore:
    """The lease table in one database: how to connect and that database's SQL dialect."""

    where: str
    connect: Callable[[], Any]
    #: The database's clock in epoch seconds, so every machine judges expiry by one clock.
    now_sql: str
    numbered_params: bool = False  # PostgreSQL's $1, $2 ... instead of ?

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement in its own short transaction; its rows (RETURNING or SELECT)."""
        sql = sql.replace("NOW()", self.now_sql)
        if self.numbered_params:
            parts = sql.split("?")
            sql = parts[0] + "".join(f"${i}{p}" for i, p in enumerate(parts[1:], 1))
        with closing(self.connect()) as conn:
            _create_table(conn)
            cur = conn.cursor()
            try:
                cur.execute(sql, params)
                rows = cur.fetchall() if cur.description else []
            finally:
                cur.close()
            conn.commit()
        return [tuple(r) for r in rows]

    def acquire(self, scope: str, tenant: str, owner: str, purpose: str, ttl: float) -> bool:
        """Take the lease if it is free, expired, or already ours (one atomic upsert)."""
        rows = self.execute(
            f"""INSERT INTO {TABLE} AS l
            (scope, tenant, owner, purpose, acquired_at, renewed_at, expires_at)
            VALUES (?, ?, ?, ?, NOW(), NOW(), NOW() + ?)
            ON CONFLICT (scope, tenant) DO UPDATE SET owner = excluded.owner,
              purpose = excluded.purpose, acquired_at = excluded.acquired_at,
              renewed_at = excluded.renewed_at, expires_at = excluded.expires_at
            WHERE l.expires_at < excluded.acquired_at OR l.owner = excluded.owner
            RETURNING owner""",
            (scope, tenant, owner, purpose, ttl),
        )
        return bool(rows)

    def renew(self, scope: str, tenant: str, owner: str, ttl: float) -> bool:
        """Push the expiry ``ttl`` seconds on, if the lease is still ours."""
        rows = self.execute(
            f"UPDATE {TABLE} SET renewed_at = NOW(), expires_at = NOW() + ? "
            f"WHERE {_KEY} AND owner = ? RETURNING owner",
            (ttl, scope, tenant, owner),
        )
        return bool(rows)

    def release(self, scope: str, tenant: str, owner: str) -> None:
        self.execute(f"DELETE FROM {TABLE} WHERE {_KEY} AND owner = ?", (scope, tenant, owner))

    def holder(self, scope: str, tenant: str) -> Holder | None:
        """The current holder, if any (an expired one included: ``expires_in`` < 0)."""
        rows = self.execute(
            f"SELECT owner, purpose, expires_at - NOW() FROM {TABLE} WHERE {_KEY}",
            (scope, tenant),
        )
        return Holder(rows[0][0], rows[0][1], float(rows[0][2])) if rows else None


#: SQLSTATEs of a ``CREATE TABLE IF NOT EXISTS`` that lost a race with the same statement in
#: another session (PostgreSQL checks for the table before it takes its locks, so the loser
#: fails on the catalog's unique index or as a duplicate table): the table is there.
_CREATED_CONCURRENTLY = {"23505", "42P07"}


def _create_table(conn: Any) -> None:
    """The lease table, if it is not there yet, in a transaction of its own: the first runs on a
    new database race to create it (tenants started at once), and the losers go on."""
    cur = conn.cursor()
    try:
        cur.execute(_CREATE)
        conn.commit()
    except Exception as exc:
        if getattr(exc, "sqlstate", None) not in _CREATED_CONCURRENTLY:
            raise
        conn.rollback()
    finally:
        cur.close()


def _sqlite_store(path: Path) -> LeaseStore:
    def connect() -> sqlite3.Connection:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The catalog's writers hold the file for milliseconds; wait rather than fail.
        return sqlite3.connect(path, timeout=60, isolation_level=None)

    return LeaseStore(str(path), connect, "((julianday('now') - 2440587.5) * 86400.0)")


def _postgres_store(uri: str) -> LeaseStore:
    from cdf_pipeline.postgres.connection import connect, where

    return LeaseStore(
        where(uri),
        lambda: connect(uri),
        "extract(epoch from clock_timestamp())::double precision",
        numbered_params=True,
    )


def _default_file() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "cdf-pipeline" / "leases.db"


def store_for(settings: Settings) -> LeaseStore:
    """Where this configuration keeps its leases (see the module docstring).

    Raises:
        ConfigError: ``lease.uri`` is neither PostgreSQL nor SQLite.
    """
    uri = settings.lease.uri
    if uri is None:
        if settings.sqlite_catalog_path is not None:
            return _sqlite_store(settings.sqlite_catalog_path)
        catalog = settings.catalog_uri or ""
        if settings.catalog.type == "jdbc" and catalog.startswith("jdbc:postgresql://"):
            return _postgres_store(catalog.removeprefix("jdbc:"))
        return _sqlite_store(_default_file())
    uri = settings.path(uri).removeprefix("jdbc:")
    if uri.startswith(("postgresql://", "postgres://")):
        return _postgres_store(uri)
    if uri.startswith("sqlite:"):
        return _sqlite_store(Path(uri.removeprefix("sqlite:").removeprefix("//")).absolute())
    raise ConfigError(
        "lease.uri must be postgresql://user@host/db or sqlite:/path/leases.db (got another "
        "scheme); leave it unset to keep leases in the catalog's database"
    )


def check_reachable(settings: Settings) -> None:
    """Log in to the lease database once, touching nothing (preflight: a wrong password is one
    line before Spark starts, not a failure at the run's first step).

    Raises:
        ConfigError: the database refused the login or cannot be reached.
    """
    store = store_for(settings)
    if store.numbered_params:  # PostgreSQL; a SQLite file is made on first use
        store.connect().close()


def scope_of(settings: Settings) -> str:
    """What one lease table row is scoped to: this lakehouse (catalog, prefix and warehouse)."""
    cat = settings.catalog
    return f"{cat.name}:{cat.namespace_prefix}:{settings.warehouse_uri}"


def new_owner(purpose: str) -> str:
    """``host:pid:purpose:random``, so a person reading a BUSY message can find the holder."""
    return f"{socket.gethostname()}:{os.getpid()}:{purpose}:{uuid.uuid4().hex[:8]}"


@dataclass
class Lease:
    """A held tenant lease, renewed in the background until released."""

    store: LeaseStore
    scope: str
    tenant: str
    owner: str
    ttl: float
    _renewed: float = field(default_factory=time.monotonic)
    _lost: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start_heartbeat(self) -> None:
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.tenant}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                self._renew()
            except LeaseLost:
                logger.error("tenant %s: lease lost (taken over after expiry)", self.tenant)
                return
            except Exception as exc:  # an unreachable database: retry until the lease expires
                logger.warning("tenant %s: lease renewal failed: %s", self.tenant, exc)

    def _renew(self) -> None:
        if self._lost or not self.store.renew(self.scope, self.tenant, self.owner, self.ttl):
            self._lost = True
            raise LeaseLost(
                f"tenant {self.tenant}: this run's lease expired and was taken over; it stopped "
                "before publishing, and another run owns the tenant now"
            )
        self._renewed = time.monotonic()

    def check(self) -> None:
        """Renew now and raise :class:`LeaseLost` unless the lease is still this run's.

        Called right before each publish, so a run that stalled past its expiry cannot publish
        what another run may already have published.
        """
        try:
            self._renew()
        except LeaseLost:
            raise
        except Exception as exc:
            if time.monotonic() - self._renewed > self.ttl:
                raise LeaseLost(
                    f"tenant {self.tenant}: the lease could not be renewed for over "
                    f"{self.ttl:.0f} s ({exc}); stopping before publishing"
                ) from exc
            logger.warning("tenant %s: lease renewal failed, still valid: %s", self.tenant, exc)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if not self._lost:
            try:
                self.store.release(self.scope, self.tenant, self.owner)
            except Exception as exc:  # it expires by itself: say so, do not mask the run's result
                logger.warning("tenant %s: lease not released (%s); it expires", self.tenant, exc)


def acquire(
    settings: Settings,
    tenant: str,
    *,
    purpose: str = "run",
    wait: float | None = None,
    store: LeaseStore | None = None,
) -> Lease:
    """Take ``tenant``'s lease, waiting up to ``wait`` seconds for it if given.

    Raises:
        TenantBusy: another live holder has it (after ``wait``, when given).
        ConfigError: the lease database cannot be reached.
    """
    tenant = validate_tenant_id(tenant)
    store = store or store_for(settings)
    scope, ttl = scope_of(settings), settings.lease.ttl_seconds
    owner = new_owner(purpose)
    deadline = time.monotonic() + (wait or 0.0)
    while True:
        try:
            won = store.acquire(scope, tenant, owner, purpose, ttl)
        except CdfError:
            raise
        except Exception as exc:  # sqlite3 and ADBC errors: the database refused
            raise ConfigError(
                f"cannot take tenant {tenant}'s lease in {store.where}: {exc}"
            ) from exc
        if won:
            lease = Lease(store, scope, tenant, owner, ttl)
            lease.start_heartbeat()
            return lease
        if time.monotonic() >= deadline:
            raise _busy(store, scope, tenant, wait)
        time.sleep(min(settings.lease.poll_seconds, max(deadline - time.monotonic(), 0.0)))


def _busy(store: LeaseStore, scope: str, tenant: str, wait: float | None) -> TenantBusy:
    held = store.holder(scope, tenant) or Holder("(released just now)", "run", 0.0)
    waited = f" after waiting {wait:.0f} s" if wait else ""
    return TenantBusy(
        f"tenant {tenant} is busy{waited}: {held.purpose} by {held.owner} holds its lease "
        f"(expires in {max(held.expires_in, 0.0):.0f} s unless renewed); try again later, or "
        "pass --wait SECONDS",
        owner=held.owner,
        purpose=held.purpose,
        expires_in=held.expires_in,
    )


@contextmanager
def tenant_lease(
    settings: Settings, tenant: str, *, wait: float | None = None, purpose: str = "run"
) -> Iterator[Lease]:
    """Hold ``tenant``'s lease for the ``with`` block (see :func:`acquire`)."""
    lease = acquire(settings, tenant, purpose=purpose, wait=wait)
    try:
        yield lease
    finally:
        lease.release()
