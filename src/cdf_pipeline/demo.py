"""``make demo``: the whole pipeline on the embedded lakehouse, twice, in a few minutes.

Generates two tenants of dirty data (30k suppliers + 30k parts each, 6% anomalies), runs the silver
job for each, prints a per-tenant summary, then runs both again to show that nothing changes.
The demo owns its root folder (``./lakehouse-demo``) and starts it afresh each time.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from cdf_pipeline.config import Settings, load_settings
from cdf_pipeline.exceptions import CdfError
from cdf_pipeline.run_record import format_summary

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

MARKER = ".cdf-demo"
TENANTS = ("acme", "globex")


def _fresh_root(root: Path) -> None:
    """Empty ``root`` if the demo made it; refuse to touch a folder it did not make."""
    if root.exists() and any(root.iterdir()):
        if not (root / MARKER).is_file():
            raise CdfError(
                f"{root} is not empty and was not made by the demo; pass another --root "
                "(the demo deletes its root folder each time it starts)"
            )
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text("made by `make demo`; deleted and rebuilt on each run\n")


def _silver_counts(spark: SparkSession, settings: Settings) -> dict[str, int]:
    from cdf_pipeline.contracts import ENTITIES
    from cdf_pipeline.lakehouse.tables import TableNames

    names = TableNames.of(settings)
    # Small demo tables: a count is cheap.
    return {name: spark.table(names.silver(name)).count() for name in ENTITIES}


def _run_each(spark: SparkSession, settings: Settings) -> int:
    """Run every demo tenant once, print its summary; the number of runs that did not succeed."""
    from cdf_pipeline.pipeline.silver import run_tenant

    failed = 0
    for tenant in TENANTS:
        summary = run_tenant(spark, settings, tenant)
        print(format_summary(summary))
        failed += summary.exit_code
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cdf_pipeline.demo", description=__doc__)
    parser.add_argument(
        "--root", default="./lakehouse-demo", help="demo folder (default %(default)s)"
    )
    parser.add_argument("--rows", type=int, default=30_000, help="suppliers and parts per tenant")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _demo(Path(args.root), args.rows)
    except CdfError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2


def _demo(root: Path, rows: int) -> int:
    from cdf_generator.api import generate
    from cdf_pipeline.spark import build_session

    started = time.monotonic()
    _fresh_root(root)
    print(
        f"== 1. generating {len(TENANTS)} tenants x ({rows:,} suppliers + {rows:,} parts) in {root}"
    )
    gen = generate(list(TENANTS), rows, rows, root_uri=str(root))
    print(f"   {len(gen.files)} raw files in {gen.seconds:.1f} s")

    settings = load_settings("local", overrides={"root": str(root)})
    print("== 2. starting Spark (local, Iceberg catalog in a SQLite file under the root)")
    spark = build_session(settings, app_name="cdf-demo")
    print("== 3. first run of the silver job, per tenant")
    failed = _run_each(spark, settings)
    before = _silver_counts(spark, settings)
    print("== 4. second run: the same input again must change nothing")
    failed += _run_each(spark, settings)
    after = _silver_counts(spark, settings)
    same = "unchanged" if before == after else "CHANGED"
    print(f"   silver rows before {before}, after {after}: {same}")
    print(f"== done in {time.monotonic() - started:.0f} s. Tables: {root}/warehouse")
    print(f"   try: cdf runs --tenant acme --root {root}")
    spark.stop()
    return 1 if failed or before != after else 0


if __name__ == "__main__":
    sys.exit(main())
