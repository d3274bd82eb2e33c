"""S3 prefix -> raw benchmark: ``cdf land``'s streamed, hashed copy against plain boto3 copies, and
the landing step's memory on one large object. Prints the figures recorded in docs/benchmarks.md.

    .venv/bin/python benchmarks/landing_s3_bench.py --files 10 --mb 100 --big-mb 1024

S3 is a moto server in a child process on loopback (``moto_server``), so the server's CPU is not
this process's; it shares the machine's two cores with the client, as any local S3 stand-in does.
Objects are random bytes (nothing compresses or deduplicates them).

Measured, in one run, interleaved per round (boto3 server-side, landing, boto3 streamed):

- ``land``: :func:`cdf_pipeline.landing.land.land_tenant` from ``s3://<bucket>/landing/bench/``
  into raw ``s3://<bucket>/raw`` (each object read once, hashed while it streams to a temporary
  key, then renamed to its SHA-256 name), manifest on a local hadoop catalog (one Spark session);
- ``boto3 copy``: ``client.copy`` per object (a managed, server-side copy: what ``aws s3 cp
  s3://a s3://b`` does; the bytes never reach the client, so no hash can be taken);
- ``boto3 stream``: ``get_object`` body streamed into ``upload_fileobj`` (a client-side copy
  without hashing: the same bytes crossing the same wire as the landing step).

Memory: one ``--big-mb`` object landed alone, first, with this process's resident set sampled
every 50 ms (``/proc/self/status``); reported as the peak above the resident set before it. The
Spark JVM is another process and holds none of the bytes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from support.environment import free_port  # noqa: E402

TENANT = "bench"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class PeakRss:
    """The highest resident set seen while the block runs (sampled every 50 ms)."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()

    def __enter__(self) -> PeakRss:
        self.before = rss_mb()
        self.peak = self.before
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def start_moto(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    import urllib.request

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1)
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("moto_server did not start")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=10)
    ap.add_argument("--mb", type=int, default=100, help="size of each object in MB")
    ap.add_argument("--big-mb", type=int, default=1024, help="the large object for memory")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    port = free_port()
    moto = start_moto(port)
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint, AWS_EC2_METADATA_DISABLED="true",
        PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable,
    )  # fmt: skip
    import boto3

    from cdf_pipeline.config import load_settings
    from cdf_pipeline.lakehouse.tables import TableNames, ensure_tables
    from cdf_pipeline.landing.land import land_tenant
    from cdf_pipeline.landing.spark_manifest import SparkManifest
    from cdf_pipeline.spark import build_session

    s3 = boto3.client("s3")
    local = Path(tempfile.mkdtemp(prefix="cdf-land-bench-"))
    try:
        spark = None
        chunk = os.urandom(1 << 20)

        def upload(bucket: str, key: str, mb: int) -> None:
            # Distinct bytes per object: each MB is the random block with a unique prefix.
            tag = uuid.uuid4().bytes
            body = b"".join(tag + chunk[len(tag) :] for _ in range(mb))
            s3.put_object(Bucket=bucket, Key=key, Body=body)

        def settings_for(bucket: str):  # type: ignore[no-untyped-def]
            return load_settings(
                "local",
                overrides={
                    "root": str(local),
                    "storage": {"raw": f"s3://{bucket}/raw"},
                    "landing": {"uri": f"s3://{bucket}/landing/{{tenant}}"},
                    "spark": {"driver_memory": "1g", "shuffle_partitions": 2},
                },
            )

        def land(bucket: str) -> tuple[float, int]:
            settings = settings_for(bucket)
            names = TableNames.of(settings)
            ensure_tables(spark, names)
            t = time.monotonic()
            summary = land_tenant(SparkManifest(spark, names), settings, TENANT)
            return time.monotonic() - t, summary.bytes_landed

        base = settings_for("unused")
        spark = build_session(base, app_name="cdf-land-bench")

        # 1. Memory: one big object, first (the resident set has not grown on other work yet).
        big = f"big-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=big)
        upload(big, f"landing/{TENANT}/suppliers/big.parquet", args.big_mb)
        with PeakRss() as mem:
            seconds, landed = land(big)
        print(
            f"big object: {args.big_mb} MB landed in {seconds:.1f} s "
            f"({landed / 2**20 / seconds:.0f} MB/s); resident set {mem.before:.0f} MB before, "
            f"peak {mem.peak:.0f} MB (+{mem.peak - mem.before:.0f} MB)"
        )
        s3.delete_object(Bucket=big, Key=f"landing/{TENANT}/suppliers/big.parquet")

        # 2. Throughput, interleaved.
        total_mb = args.files * args.mb
        results: dict[str, list[float]] = {"boto3 copy": [], "land": [], "boto3 stream": []}
        for r in range(args.rounds):
            bucket = f"round{r}-{uuid.uuid4().hex[:8]}"
            s3.create_bucket(Bucket=bucket)
            keys = [f"landing/{TENANT}/suppliers/part-{i:03d}.parquet" for i in range(args.files)]
            for key in keys:
                upload(bucket, key, args.mb)

            t = time.monotonic()
            for key in keys:
                s3.copy({"Bucket": bucket, "Key": key}, bucket, f"copy/{key}")
            results["boto3 copy"].append(time.monotonic() - t)

            seconds, landed = land(bucket)
            assert landed == total_mb << 20, (landed, total_mb)
            results["land"].append(seconds)

            t = time.monotonic()
            for key in keys:
                body = s3.get_object(Bucket=bucket, Key=key)["Body"]
                s3.upload_fileobj(body, bucket, f"stream/{key}")
            results["boto3 stream"].append(time.monotonic() - t)
            print(
                f"round {r + 1}: " + ", ".join(
                    f"{k} {v[-1]:.1f} s ({total_mb / v[-1]:.0f} MB/s)" for k, v in results.items()
                ),
                flush=True,
            )  # fmt: skip
        print(f"\n{args.files} objects x {args.mb} MB = {total_mb} MB per round, best of "
              f"{args.rounds} rounds:")  # fmt: skip
        best = {k: min(v) for k, v in results.items()}
        for k, v in best.items():
            print(f"  {k:<13} {v:6.1f} s  {total_mb / v:6.0f} MB/s  land/this = "
                  f"{best['land'] / v:.2f}")  # fmt: skip
    finally:
        if spark is not None:
            spark.stop()
        moto.send_signal(signal.SIGTERM)
        moto.wait(timeout=30)
        shutil.rmtree(local, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
