"""JVM options of the Spark drivers and executors the tests start, and the class archive's path.

Importing this (``conftest.py`` does, first) names the class-data-sharing archive the test
session builds for its child JVMs (``servers/class_archive.py``), so every child, in this process
or an xdist worker, gets the same options.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from servers import class_archive

#: The JIT's first tier only, for every child JVM the tests start (drivers, and the cluster test's
#: executors): their runs are small and short, and the optimising tier's compilations were most of
#: their CPU (a 120-row cold run took 31 s instead of 88 s on a loaded 2-core machine). Behaviour
#: is the same either way. With C1 only, the JVM's code cache shrinks to 48 MB, which a driver that
#: runs many tenants filled ("Out of space in CodeCache"): it gets the tiered default's 240 MB
#: back. The serial collector suits their small heaps: a cold 120-row run took ~10% less CPU (31-32
#: s against 28-29 s). A class-data-sharing archive, when the session has one
#: (``servers/class_archive.py``), cuts a cold child's CPU by a fifth.
BASE_JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=240m -XX:+UseSerialGC"
#: The folder this process made for the archive (None in xdist workers, which inherit its name
#: from the controller, or when the caller named a ready-made archive).
OWN_ARCHIVE_DIR: Path | None = None
if class_archive.ENV not in os.environ and "PYTEST_XDIST_WORKER" not in os.environ:
    OWN_ARCHIVE_DIR = Path(tempfile.mkdtemp(prefix="cdf-test-classes-"))
    os.environ[class_archive.ENV] = str(OWN_ARCHIVE_DIR / "classes.jsa")
TEST_JVM_OPTIONS = BASE_JVM_OPTIONS + class_archive.archive_options(
    os.environ.get(class_archive.ENV)
)
#: The options of each test worker's own session: the same first JIT tier as the children. Its
#: optimising tier made some of a session's later runs faster, but the suite is bound by CPU
#: (two workers on two cores) and that tier's compilations cost more than they saved. Measured
#: on the in-process tests (silver job, audits, run clock, third entity, telemetry, quarantine
#: work, file outcomes; one process, back to back): 275 CPU-s and 262 s with the first tier
#: only, against 459 CPU-s and 353 s with both tiers.
SESSION_JVM_OPTIONS = BASE_JVM_OPTIONS
