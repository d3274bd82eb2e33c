"""What the silver job's two ratio targets leave for its own work, measured in one session.

    .venv/bin/python benchmarks/silver_floor.py --rows 1000000

The targets compare the job with a bare read-Parquet-and-append of the same data (B): a first load
<= 2.5 B, and a 1% change batch <= 20% of the first load, so <= 0.5 B at best. This script measures
the parts of both that no version of the job can skip, against B measured warm in the same session:

- first-load floor: each entity read, normalised and validated (every rule, the row hash),
  materialised once, and its valid rows appended to silver with lineage. No dedupe, FK check,
  audit, quarantine write or bookkeeping;
- change floor: the 1% change files read, normalised and hashed, classified against silver's
  state, new keys appended and newer versions MERGEd, as the job writes them. No validation,
  dedupe, FK check, audit, quarantine write or bookkeeping.

It prints how many seconds each target leaves for everything else the job must do.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from silver_bench import TENANT, WARMUP, bare_append, parse_args

from cdf_generator.api import generate
from cdf_pipeline.config import Settings, SparkSettings, load_settings
from cdf_pipeline.contracts import ENTITIES, Entity
from cdf_pipeline.ingest.files import RawFile, inspect_file
from cdf_pipeline.ingest.read import read_normalised
from cdf_pipeline.lakehouse import merge
from cdf_pipeline.lakehouse.tables import TableNames, ensure_tables
from cdf_pipeline.pipeline.materialise import materialise, release
from cdf_pipeline.pipeline.stage import validated_rows
from cdf_pipeline.quality.normalise import RAW
from cdf_pipeline.quality.reasons import VIOLATIONS
from cdf_pipeline.quality.rowhash import ROW_HASH, row_hash
from cdf_pipeline.spark import build_session
from cdf_pipeline.storage import Storage


def _files(raw: Path, tenant: str, entity: str) -> list[RawFile]:
    folder = raw / f"tenant_id={tenant}" / f"entity={entity}"
    storage = Storage()
    return [inspect_file(storage, entity, str(p)) for p in sorted(folder.rglob("*.parquet"))]


def first_load_floor(
    spark: SparkSession,
    settings: Settings,
    names: TableNames,
    tenant: str,
    files: dict[str, list[RawFile]],
) -> dict[str, float]:
    """Validate + materialise + append the valid rows, per entity (seconds)."""
    now = datetime.now(timezone.utc)
    seconds = {}
    for name, entity in ENTITIES.items():
        started = time.perf_counter()
        per_file = validated_rows(entity, tenant, settings, now)
        validated = materialise(read_normalised(spark, entity, files[name], per_file=per_file))
        valid = validated.where(F.size(VIOLATIONS) == 0)
        merge.append_inserts(names, entity, valid.transform(merge.with_lineage(entity, "f", now)))
        seconds[name] = time.perf_counter() - started
        release(validated)
    return seconds


def write_change(
    spark: SparkSession, names: TableNames, tenant: str, entity: Entity, files: list[RawFile]
) -> None:
    """The change's writes as the job makes them: rows classified against silver's state
    (materialised once), new keys appended, newer versions MERGEd (inner join, broadcast)."""
    now = datetime.now(timezone.utc)

    def hashed(df):  # type: ignore[no-untyped-def]
        return df.withColumn(ROW_HASH, row_hash(entity)).drop(RAW, VIOLATIONS)

    rows = read_normalised(spark, entity, files, per_file=hashed)
    rows = rows.dropDuplicates([entity.primary_key])
    current = merge.silver_state(spark, names, entity, tenant)
    state = F.broadcast(materialise(merge.state_for_keys(entity, current, rows)))
    classified = materialise(rows.transform(merge.classify(entity, state)))
    lineage = merge.with_lineage(entity, "c", now)
    outcome = F.col(merge.OUTCOME)
    inserts = classified.where(outcome == merge.INSERT).transform(lineage)
    updates = classified.where(outcome == merge.UPDATE).transform(lineage)
    merge.append_inserts(names, entity, inserts)
    limit = SparkSettings().merge_broadcast_max_bytes
    merge.merge_updates(names, entity, tenant, updates, "floor_changes", limit)
    release(classified)


def main() -> int:
    args = parse_args(__doc__)

    root = Path(tempfile.mkdtemp(prefix="cdf-silver-floor-"))
    raw = root / "raw"
    settings = load_settings("local", overrides={"root": str(root)})
    generate([TENANT], args.rows, args.rows, root_uri=str(root), seed=42)
    generate([WARMUP], 20_000, 20_000, root_uri=str(root), seed=7)
    first_files = {(t, e): _files(raw, t, e) for t in (TENANT, WARMUP) for e in ENTITIES}
    spark = build_session(settings, app_name="cdf-silver-floor")
    names = TableNames.of(settings)
    ensure_tables(spark, names)
    # Everything warm, as in silver_bench.py: the baseline's first round, and a 20k + 20k
    # tenant through both floors before the measured ones.
    cold = bare_append(spark, raw, settings.catalog.name, "floor_warmup")
    bare = bare_append(spark, raw, settings.catalog.name, "floor_baseline")

    def run_floors(tenant: str, rows: int, seed: int) -> tuple[dict[str, float], float]:
        files = {e: first_files[(tenant, e)] for e in ENTITIES}
        floor = first_load_floor(spark, settings, names, tenant, files)
        generate(
            [tenant], rows, rows, root_uri=str(root), seed=seed, batch=2,
            change_rate=args.change_rate,
        )  # fmt: skip
        known = {f.sha256 for fs in files.values() for f in fs}
        started = time.perf_counter()
        for name, entity in ENTITIES.items():
            change = [f for f in _files(raw, tenant, name) if f.sha256 not in known]
            write_change(spark, names, tenant, entity, change)
        return floor, time.perf_counter() - started

    run_floors(WARMUP, 20_000, 7)
    floor, upsert = run_floors(TENANT, args.rows, 42)
    first = sum(floor.values())

    print(
        f"data: {args.rows:,} suppliers + {args.rows:,} parts (1 tenant, 6% dirty), "
        f"{args.change_rate:.0%} change batch; {os.cpu_count()} cores"
    )
    print(f"bare read+append, warm (B):        {bare:6.1f} s   (cold warm-up round {cold:.1f} s)")
    print(
        f"first-load floor (validate + materialise + append): {first:6.1f} s = {first / bare:.2f} B"
        f"   ({', '.join(f'{n} {s:.1f} s' for n, s in floor.items())})"
    )
    print(
        f"change floor (classify + append + MERGE):          {upsert:6.1f} s"
        f" = {upsert / bare:.2f} B"
    )
    print(
        f"left for the rest of a first load at 2.5 B:  {2.5 * bare - first:6.1f} s "
        "(dedupe, FK check, audits, quarantine writes, bookkeeping)"
    )
    print(
        f"left for the rest of a change run at 0.5 B:  {0.5 * bare - upsert:6.1f} s "
        "(validation, dedupe, FK check, audits, quarantine writes, bookkeeping; "
        "0.5 B = 20% of a first load at exactly 2.5 B)"
    )
    spark.stop()
    shutil.rmtree(root, ignore_errors=True)  # about 1 GB of raw files and tables at 1M rows
    return 0


if __name__ == "__main__":
    sys.exit(main())
