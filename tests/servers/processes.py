"""Process groups of the children tests start: a ``cdf`` child's Python process exits before the
Spark JVM it launched, so "the child exited" is not "its JVM is gone"."""

from __future__ import annotations

import time
from pathlib import Path


def group_alive(pgid: int) -> bool:
    """Whether any non-zombie process is left in process group ``pgid`` (Linux /proc)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process exited while we looked
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def wait_group_gone(pgid: int, timeout_s: float) -> bool:
    """Wait until process group ``pgid`` has no live process; whether it went in time."""
    deadline = time.monotonic() + timeout_s
    while group_alive(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)  # polls /proc: there is no event for "a process group emptied"
    return True
