"""A class-data-sharing archive for the driver JVMs the tests start (JDK 17 dynamic AppCDS).

A cold ``cdf`` child spends much of its CPU loading Spark's, Iceberg's and Parquet's classes:
parsing and verifying thousands of them from their jars. A JVM started with
``-XX:SharedArchiveFile`` maps the classes an earlier run loaded instead. Measured on the 2-core
machine, a cold 150-row ``cdf run``: 30-34 CPU-seconds with the archive against 37-42 without
(three runs each, interleaved). What the JVM runs is the same either way.

The archive is built once per test session, on a thread of the controller, by a small cold
``cdf run`` whose JVM writes what it loaded when it exits (``-XX:ArchiveClassesAtExit``). It is
written under a temporary name and renamed once that JVM is gone: a JVM that maps a half-written
archive crashes. Children started before it is ready run without it (a missing archive is
ignored), so nothing waits for it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from servers.processes import wait_group_gone

#: The environment variable naming the archive: set by the controller, inherited by workers.
ENV = "CDF_TEST_CLASS_ARCHIVE"
_TENANT = "classes"
_BUILD_TIMEOUT_S = 900.0


def archive_options(path: str | None) -> str:
    """The JVM options that use the archive at ``path`` (none when there is none)."""
    return f" -XX:SharedArchiveFile={path} -Xlog:cds=off" if path else ""


class ArchiveBuilder:
    """Builds the archive at ``path`` in the background; ``stop`` ends the build if unfinished."""

    def __init__(self, path: Path, env: dict[str, str], jvm_options: str) -> None:
        self.path = path
        self._env = env
        self._jvm_options = jvm_options
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._build, name="class-archive", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
        self._thread.join(60)

    def _build(self) -> None:
        from cdf_generator.api import generate

        work = self.path.parent
        root = work / "lake"
        generate([_TENANT], 150, 150, seed=1, root_uri=str(root))
        partial = work / "classes.partial"
        env = dict(self._env)
        env["CDF__SPARK__DRIVER_JAVA_OPTIONS"] = (
            f"{self._jvm_options} -XX:ArchiveClassesAtExit={partial} -Xlog:cds=off"
        )
        cmd = [sys.executable, "-m", "cdf_pipeline.cli", "run", "--tenant", _TENANT,
               "--root", str(root)]  # fmt: skip
        with (work / "build.log").open("wb") as log:
            if self._stopped.is_set():
                return
            self._proc = subprocess.Popen(
                cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            code = self._proc.wait(timeout=_BUILD_TIMEOUT_S)
        # The JVM writes the archive after the Python process that launched it has exited.
        gone = wait_group_gone(self._proc.pid, _BUILD_TIMEOUT_S)
        if code == 0 and gone and not self._stopped.is_set() and partial.is_file():
            os.replace(partial, self.path)
