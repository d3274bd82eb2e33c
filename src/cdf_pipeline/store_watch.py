"""A command whose store vanishes ends within ``storage.timeout_seconds``, whatever is retrying.

Why: every S3 client here gives up on one request within a quarter of that timeout (storage.py,
spark.py), but Iceberg retries a failed table-metadata read 20 times with back-offs of up to 5 s,
each try with the client's own retries, and that loop cannot be configured: a lakehouse bucket
deleted under a run kept it going for over three minutes. So while a command runs, a thread asks
each bucket of the lakehouse every few seconds whether it still answers (one request, no retry,
short timeouts); once one has been silent long enough that the timeout would pass before the
next look, the command prints one line naming it and ends the process (exit 1), the Spark JVM
with it (the JVM exits when its Python parent's pipe closes).

Nothing is recorded then: the store that would hold the record is the one that is gone. The
run's tenant lease expires by itself (its TTL), and the next run finishes or supersedes the run
that was cut short, as after any crash (docs/architecture.md, crash safety).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from cdf_pipeline.config import Settings
from cdf_pipeline.locations import is_s3
from cdf_pipeline.storage import S3Config, bucket_of, bucket_silence, s3_config, s3_filesystem

logger = logging.getLogger(__name__)

EXIT_FAILED = 1
#: Seconds between two looks at the buckets (less for a short timeout).
PROBE_EVERY_S = 5.0
#: Connection and answer timeout of one look, seconds.
PROBE_TIMEOUT_S = 2.0


@contextmanager
def watch_store(settings: Settings, command: str) -> Iterator[None]:
    """Watch the S3 buckets of ``settings``' lakehouse (tables and raw files) for the block;
    a local lakehouse needs no watch. ``command`` names the command in the error line."""
    buckets = sorted({bucket_of(u) for u in (settings.warehouse_uri, settings.raw_uri) if is_s3(u)})
    if not buckets:
        yield
        return
    watch = _Watch(buckets, s3_config(settings), command)
    watch.start()
    try:
        yield
    finally:
        watch.stopped.set()


class _Watch(threading.Thread):
    """The thread that looks at the buckets and ends the process when one stays silent."""

    def __init__(self, buckets: list[str], s3: S3Config, command: str) -> None:
        super().__init__(name="cdf-store-watch", daemon=True)
        self.buckets = buckets
        self.s3 = s3
        self.command = command
        self.stopped = threading.Event()
        self.every = min(PROBE_EVERY_S, s3.timeout_s / 6)
        #: Silence after which the timeout would pass before the next look has answered: the
        #: last answer came at most one interval before the store vanished, the next look comes
        #: at most one interval later and takes at most two probe timeouts.
        self.give_up_after = s3.timeout_s - self.every - 2 * PROBE_TIMEOUT_S

    def run(self) -> None:
        fs = s3_filesystem(self.s3, PROBE_TIMEOUT_S, PROBE_TIMEOUT_S, attempts=1)
        answered = dict.fromkeys(self.buckets, time.monotonic())
        while not self.stopped.wait(self.every):
            for bucket in self.buckets:
                why = bucket_silence(fs, bucket)
                now = time.monotonic()
                if why is None:
                    answered[bucket] = now
                    continue
                silent = now - answered[bucket]
                logger.debug("bucket %s silent for %.1f s: %s", bucket, silent, why)
                if silent >= self.give_up_after and not self.stopped.is_set():
                    self._end(bucket, silent, why)

    def _end(self, bucket: str, silent: float, why: str) -> None:
        where = self.s3.endpoint or "AWS S3"
        sys.stderr.write(
            f"cdf {self.command}: error: the lakehouse bucket {bucket!r} at {where} has not "
            f"answered for {silent:.0f} s ({why}); stopped: check that the endpoint is up and the "
            "bucket exists, then run again (storage.timeout_seconds sets how long to wait, "
            f"{self.s3.timeout_s:g} s)\n"
        )
        sys.stderr.flush()
        os._exit(EXIT_FAILED)  # the main thread may be inside a JVM call that retries for minutes
