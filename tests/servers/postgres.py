"""A throwaway PostgreSQL server on loopback, started by the tests themselves.

CI runs no services, so a test that needs PostgreSQL starts its own: ``initdb`` into a
temporary directory, ``pg_ctl -w start`` on a free port of 127.0.0.1 only, password (SCRAM)
authentication for a superuser ``cdf`` with a random password, and a database ``cdf``.
Durability is switched off (``fsync=off``): the cluster is thrown away after the tests.

Tests and CI run as root, and ``initdb``/``postgres`` refuse to run as root, so as root the
server runs as the ``postgres`` user (or ``nobody``): its directories are chowned to it and
``base_dir`` and its parents are made traversable (``o+x``, search only) for it.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

HOST = "127.0.0.1"
SUPERUSER = "cdf"
DATABASE = "cdf"
# Unix socket paths are limited to ~107 bytes; the socket file adds "/.s.PGSQL.NNNNN".
_MAX_SOCKET_DIR_LEN = 80
_SETTINGS = {
    "listen_addresses": f"'{HOST}'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "16MB",
    "max_connections": "20",
    "password_encryption": "'scram-sha-256'",
}


@dataclass(frozen=True, kw_only=True)
class PostgresServer:
    """A running throwaway server; ``base_dir`` holds its data, socket and log."""

    host: str = HOST
    port: int
    user: str
    password: str = field(repr=False)  # never in a failing test's output
    database: str
    base_dir: Path

    def dsn(self, *, with_password: bool = False) -> str:
        auth = quote(self.user, safe="")
        if with_password:
            auth += ":" + quote(self.password, safe="")
        return f"postgresql://{auth}@{self.host}:{self.port}/{self.database}"

    def jdbc_url(self) -> str:
        return f"jdbc:postgresql://{self.host}:{self.port}/{self.database}"

    def env(self) -> dict[str, str]:
        """libpq's variables, for psql and friends in a subprocess."""
        return {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGDATABASE": self.database,
        }


def start_postgres(base_dir: Path, settings: Mapping[str, str] | None = None) -> PostgresServer:
    """Create a cluster in ``base_dir/data``, start it on a free loopback port, create ``cdf``.

    ``settings`` override or add ``postgresql.conf`` entries (a benchmark's ``shared_buffers``).
    """
    bin_dir = _bin_dir()
    base_dir = base_dir.absolute()
    data, log = base_dir / "data", base_dir / "postgres.log"
    sock = base_dir / "sock"
    if len(str(sock)) > _MAX_SOCKET_DIR_LEN:
        sock = Path(tempfile.mkdtemp(prefix="pg-", dir="/tmp"))
    for d in (base_dir, data, sock):
        d.mkdir(parents=True, exist_ok=True)
    data.chmod(0o700)
    password = secrets.token_urlsafe(24)
    pwfile = base_dir / "pwfile"
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    log.touch()

    prefix: list[str] = []
    if os.geteuid() == 0:
        account = _unprivileged_account()
        prefix = _run_as(account)
        _make_traversable(base_dir)
        for p in (data, sock, pwfile, log):
            os.chown(p, account.pw_uid, account.pw_gid)

    initdb = [*prefix, _tool(bin_dir, "initdb"), "-D", str(data), "-U", SUPERUSER]
    flags = f"--pwfile={pwfile} --auth=scram-sha-256 --encoding=UTF8 --no-locale --no-sync"
    try:
        _run([*initdb, *flags.split()], cwd=base_dir)
    finally:
        pwfile.unlink()
    port = _free_port()
    settings = {
        **_SETTINGS,
        **(settings or {}),
        "port": str(port),
        "unix_socket_directories": f"'{sock}'",
    }
    with (data / "postgresql.conf").open("a") as conf:
        conf.write("\n# tests/servers/postgres.py\n")
        conf.writelines(f"{k} = {v}\n" for k, v in settings.items())
    pg_ctl = [*prefix, _tool(bin_dir, "pg_ctl"), "-D", str(data)]
    try:
        _run([*pg_ctl, "-l", str(log), "-w", "-t", "60", "start"], cwd=base_dir)
    except RuntimeError as e:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"{e}\n--- tail of {log} ---\n{tail}") from e
    # Over TCP with the password, as ourselves: this also proves that password auth works.
    createdb = [_tool(bin_dir, "createdb"), "-h", HOST, "-p", str(port), "-U", SUPERUSER]
    _run([*createdb, DATABASE], env={**os.environ, "PGPASSWORD": password})
    return PostgresServer(
        port=port, user=SUPERUSER, password=password, database=DATABASE, base_dir=base_dir
    )


def stop_postgres(server_or_base_dir: PostgresServer | Path) -> None:
    """Stop the server at once (``-m immediate``) and remove its data and socket directories."""
    base_dir = (
        server_or_base_dir.base_dir
        if isinstance(server_or_base_dir, PostgresServer)
        else Path(server_or_base_dir)
    )
    data, sock = base_dir / "data", base_dir / "sock"
    pid_file = data / "postmaster.pid"
    if pid_file.exists():
        lines = pid_file.read_text().splitlines()
        if len(lines) >= 5 and lines[4]:  # line 5 of postmaster.pid: the socket directory
            sock = Path(lines[4])
        owner = data.stat().st_uid
        as_root = os.geteuid() == 0 and owner != 0
        prefix = _run_as(pwd.getpwuid(owner)) if as_root else []
        pg_ctl = _tool(_bin_dir(), "pg_ctl")
        _run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], cwd=base_dir)
    shutil.rmtree(data, ignore_errors=True)
    shutil.rmtree(sock, ignore_errors=True)


def _bin_dir() -> Path:
    """The directory of ``initdb``: on PATH (symlinks resolved), else the newest Debian one."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    candidates = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb") if p.is_file()]
    if not candidates:
        raise RuntimeError(
            "PostgreSQL server programs (initdb, pg_ctl) not found on PATH nor under "
            "/usr/lib/postgresql/*/bin: install them, e.g. `apt-get install postgresql` "
            "(Debian/Ubuntu) or `brew install postgresql` (macOS)"
        )
    return max(candidates, key=lambda d: [int(x) for x in d.parent.name.split(".") if x.isdigit()])


def _tool(bin_dir: Path, name: str) -> str:
    if (bin_dir / name).is_file():
        return str(bin_dir / name)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found in {bin_dir} nor on PATH (install postgresql)")
    return found


def _unprivileged_account() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        return pwd.getpwnam("nobody")


def _run_as(account: pwd.struct_passwd) -> list[str]:
    """A command prefix that runs the rest as ``account`` (we are root here)."""
    if runuser := shutil.which("runuser"):
        return [runuser, "-u", account.pw_name, "--"]
    if setpriv := shutil.which("setpriv"):
        ids = [f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--init-groups"]
        return [setpriv, *ids, "--"]
    raise RuntimeError("running PostgreSQL as root needs runuser or setpriv (util-linux)")


def _make_traversable(path: Path) -> None:
    """Give others search (not read) permission on ``path`` and every parent."""
    for p in (path, *path.parents):
        mode = p.stat().st_mode
        if not mode & stat.S_IXOTH:
            p.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _run(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=cwd, env=env)
    except subprocess.CalledProcessError as e:
        out = (e.stderr or e.stdout or "").strip()
        raise RuntimeError(f"command failed: {' '.join(cmd)}\n{out}") from e
