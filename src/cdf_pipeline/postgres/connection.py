"""A PostgreSQL database: its URI, the connection, and libpq failures as one clear line.

Shared by the landing pull (:mod:`.pull`), the tenant lease store on PostgreSQL
(:mod:`cdf_pipeline.lakehouse.lease`) and the generator's ``--to postgresql://...``. The password
never passes through here: libpq reads ``PGPASSWORD`` or ``~/.pgpass`` (``PGPASSFILE``) itself,
and a URI that carries one is refused before anything connects, without being echoed.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cdf_pipeline.config import _no_credentials
from cdf_pipeline.exceptions import CdfError, ConfigError, InputError

if TYPE_CHECKING:
    from adbc_driver_postgresql.dbapi import Connection

SCHEMES = ("postgresql", "postgres")
#: Without it libpq waits for the OS's TCP timeout (minutes) on a black-holed host.
CONNECT_TIMEOUT_S = 10
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

_AUTH = ("password authentication failed", "no password supplied", "authentication failed")
_UNREACHABLE = (
    "connection refused",
    "could not connect",
    "timeout expired",
    "could not translate host name",
    "network is unreachable",
    "no route to host",
    "server closed the connection",
)


def check_uri(uri: str) -> str:
    """Return ``uri`` when it is a ``postgresql://user@host:port/db`` URI without a password.

    Raises:
        ConfigError: another scheme, or a credential in the URI (not echoed).
    """
    try:
        _no_credentials(uri)
    except ValueError as exc:
        raise ConfigError(f"PostgreSQL URI refused: {exc}") from None  # the URI is not echoed
    parts = urlsplit(uri)
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise ConfigError(
            f"not a PostgreSQL URI: {where(uri)!r}; use postgresql://user@host:port/database "
            "(the password from PGPASSWORD or ~/.pgpass)"
        )
    return uri


def where(uri: str) -> str:
    """``user@host:port/db`` of a URI, for messages (never a password: the URI has none)."""
    p = urlsplit(uri)
    user = f"{p.username}@" if p.username else ""
    port = f":{p.port}" if p.port else ""
    return f"{user}{p.hostname or '?'}{port}{p.path or ''}"


def quote_ident(name: str) -> str:
    """A schema, table or column name as a SQL identifier; only plain lowercase names pass.

    Names come from the contracts and configuration, never from data; the check keeps any
    quoting question (and SQL injection through a template) out of the way.
    """
    if not _IDENT.match(name):
        raise ConfigError(
            f"invalid PostgreSQL name {name!r}: use lowercase letters, digits and '_' "
            "(starting with a letter or '_', at most 63 characters)"
        )
    return f'"{name}"'


def quote_literal(value: str) -> str:
    """A text literal (standard-conforming strings, which :func:`connect` switches on)."""
    return "'" + value.replace("'", "''") + "'"


def connect(uri: str) -> Connection:
    """Open an ADBC connection (libpq) to ``uri``: UTC session, standard-conforming strings.

    Raises:
        ConfigError: refused URI, wrong or missing password, unreachable server, unknown database.
    """
    from adbc_driver_postgresql import dbapi

    check_uri(uri)
    target = (
        uri if "connect_timeout=" in uri else _with_param(uri, "connect_timeout", CONNECT_TIMEOUT_S)
    )
    try:
        conn = dbapi.connect(target)
    except dbapi.Error as exc:
        raise connect_error(uri, exc) from exc
    with conn.cursor() as cur:
        # Timestamps without a zone are read as UTC, the same on every machine.
        cur.execute("SET TIME ZONE 'UTC'")
        cur.execute("SET standard_conforming_strings = on")
    conn.commit()
    return conn


def connect_error(uri: str, exc: BaseException) -> CdfError:
    """The one-line error of a failed connection: what happened and what to do."""
    text = server_message(exc)
    low = text.lower()
    at = where(uri)
    if any(s in low for s in _AUTH):
        return ConfigError(
            f"PostgreSQL at {at} rejected the login (wrong or missing password): set PGPASSWORD "
            "or add the user to ~/.pgpass (PGPASSFILE); never put the password in the URI"
        )
    if "database" in low and "does not exist" in low:
        return ConfigError(f"PostgreSQL at {at}: the database does not exist; check the URI's path")
    if any(s in low for s in _UNREACHABLE):
        return ConfigError(
            f"cannot reach PostgreSQL at {at}: check the host and port and that the server is "
            f"running and accepts TCP connections ({text})"
        )
    return ConfigError(f"cannot connect to PostgreSQL at {at}: {text}")


def query_error(what: str, exc: BaseException) -> InputError:
    """A failed statement as one line (the server's message, without ADBC's query echo)."""
    return InputError(f"PostgreSQL {what} failed: {server_message(exc)}")


def server_message(exc: BaseException) -> str:
    """The server's message of an ADBC/libpq error, scrubbed of the password if it ever showed."""
    text = str(exc)
    for marker in ("ERROR:  ", "FATAL:  ", "failed: "):
        if marker in text:
            text = text.split(marker, 1)[1]
            break
    line = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    secret = os.environ.get("PGPASSWORD")
    return line.replace(secret, "***") if secret else line


def _with_param(uri: str, key: str, value: Any) -> str:
    return f"{uri}{'&' if '?' in uri else '?'}{key}={value}"
