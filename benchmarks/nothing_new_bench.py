"""A run with nothing new costs the same whatever the tenant's history, and reads no data bytes.

    PYTHONPATH=src .venv/bin/python benchmarks/nothing_new_bench.py --files 10,1000 --repeat 5

For each file count, a tenant gets that many small ingested Parquet files (``--rows`` suppliers
each, one first load), then ``--repeat`` runs that find nothing new are timed in the same warm
session. The data bytes each of those runs read are counted: every driver-side open of a file
(the storage layer's ``open`` / ``open_random``, wrapped) and the bytes of every file handed to
the executors' hash-and-pre-check job. Printed per file count: the median and max seconds of a
nothing-new run, and the bytes read; then the ratio of the medians.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cdf_pipeline.config import load_settings
from cdf_pipeline.lakehouse.sqlite_catalog import ensure_catalog_file
from cdf_pipeline.pipeline import inputs
from cdf_pipeline.pipeline.silver import run_tenant
from cdf_pipeline.spark import build_session, catalog_options
from cdf_pipeline.storage import Storage

#: 2023-11-14, in microseconds since the epoch.
TS_US = 1_700_000_000_000_000


class ByteCounter:
    """Data bytes a run reads: driver-side opens, and files sent to the executors' job."""

    def __init__(self) -> None:
        self.driver_opens = 0
        self.executor_bytes = 0

    def install(self) -> None:
        real_open, real_random = Storage.open, Storage.open_random
        real_inspect = inputs.inspect_files

        def counted_open(storage: Storage, uri: str) -> Any:
            self.driver_opens += 1
            return real_open(storage, uri)

        def counted_random(storage: Storage, uri: str) -> Any:
            self.driver_opens += 1
            return real_random(storage, uri)

        def counted_inspect(spark: Any, s3: Any, files: list[Any], *args: Any) -> Any:
            self.executor_bytes += sum(f.size for f in files)
            return real_inspect(spark, s3, files, *args)

        Storage.open = counted_open  # type: ignore[method-assign]
        Storage.open_random = counted_random  # type: ignore[method-assign]
        inputs.inspect_files = counted_inspect


def write_files(folder: Path, tenant: str, count: int, rows: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        ids = [f"01J{(i * rows + r):023d}" for r in range(rows)]
        table = pa.table(
            {
                "supplier_id": ids,
                "tenant_id": [tenant] * rows,
                "legal_name": [f"S {x}" for x in ids],
                "country": ["DE"] * rows,
                "contact_email": [f"s{n}@example.com" for n in range(rows)],
                "source_timestamp": pa.array([TS_US] * rows, pa.timestamp("us", "UTC")),
            }
        )
        pq.write_table(table, folder / f"file-{i:05d}.parquet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", default="10,1000", help="file counts, comma-separated")
    parser.add_argument("--rows", type=int, default=5, help="rows per file")
    parser.add_argument("--repeat", type=int, default=5, help="nothing-new runs per file count")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="cdf-nothing-new-"))
    settings = load_settings("local", overrides={"root": str(root)})
    ensure_catalog_file(settings.sqlite_catalog_path)  # type: ignore[arg-type]
    spark = build_session(settings, app_name="nothing-new-bench")
    for key, value in catalog_options(settings).items():
        spark.conf.set(key, value)
    counter = ByteCounter()
    counter.install()
    medians = {}
    heads = ("first load s", "median s", "max s", "driver opens", "executor bytes")
    print(f"{'files':>6} " + " ".join(f"{h:>{len(h) + 1}}" for h in heads))
    for count in [int(n) for n in args.files.split(",")]:
        tenant = f"t{count}"
        tree = Path(settings.raw_uri) / f"tenant_id={tenant}" / "entity=suppliers"
        folder = tree / "ingest_date=2026-01-01"
        write_files(folder, tenant, count, args.rows)
        started = time.perf_counter()
        first = run_tenant(spark, settings, tenant)
        first_s = time.perf_counter() - started
        assert first.status == "SUCCEEDED", first.message
        counter.driver_opens = counter.executor_bytes = 0
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            run = run_tenant(spark, settings, tenant)
            times.append(time.perf_counter() - started)
            assert run.status == "NOTHING_NEW" and run.skipped_files == count, run.message
        medians[count] = median(times)
        print(
            f"{count:>6} {first_s:>13.2f} {median(times):>9.3f} {max(times):>6.3f} "
            f"{counter.driver_opens:>13} {counter.executor_bytes:>15}"
        )
    counts = sorted(medians)
    ratio = medians[counts[-1]] / medians[counts[0]]
    print(f"median ratio {counts[-1]} files / {counts[0]} files: {ratio:.2f}")
    spark.stop()


if __name__ == "__main__":
    main()
