"""Every object under a tenant's raw tree gets an outcome, one bad file fails alone, and a
known file is recognised from the listing without reading a byte of it.

The hostile corpus is generated here (no checked-in binaries): names Spark hides, upper-case
extensions, case-duplicate and repeated columns, nanosecond timestamps (pandas' default), a
struct where text is wanted, Latin-1 text, writers' marker files, files that are not data.
"""

from __future__ import annotations

import csv
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from cdf_pipeline import run_record as S
from cdf_pipeline.config import Settings
from cdf_pipeline.ingest import files as raw_files
from cdf_pipeline.ingest.read import by_shape, read_normalised
from cdf_pipeline.lakehouse.tables import TableNames
from cdf_pipeline.orchestration.quarantine import export_open
from cdf_pipeline.pipeline import inputs
from cdf_pipeline.pipeline.silver import run_tenant
from cdf_pipeline.storage import Storage, storage_for

pytestmark = [pytest.mark.spark, pytest.mark.slow]

TENANT = "odd"
TS = datetime(2025, 5, 1, 12, 30, 15, 123456, tzinfo=timezone.utc)
#: One field's length in ``long.csv``: read, then quarantined for its length.
LONG_FIELD = 50 * 1024 * 1024
COLUMNS = ["supplier_id", "tenant_id", "legal_name", "country", "contact_email"]


def ulid(n: int) -> str:
    return f"01J{n:023d}"


def suppliers(first: int, n: int, *, tenant: str = TENANT) -> dict[str, list[Any]]:
    """``n`` valid supplier rows (ids from ``first``) in the columns a minimal file sends."""
    ids = range(first, first + n)
    return {
        "supplier_id": [ulid(i) for i in ids],
        "tenant_id": [tenant] * n,
        "legal_name": [f"Supplier {i}" for i in ids],
        "country": ["DE"] * n,
        "contact_email": [f"s{i}@example.com" for i in ids],
    }


def write_parquet(path: Path, columns: dict[str, Any], ts_unit: str = "us") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(next(iter(columns.values())))
    table = pa.table(columns).append_column(
        "source_timestamp", pa.array([TS] * n, pa.timestamp(ts_unit, tz="UTC"))
    )
    pq.write_table(table, path)
    return path


def write_bytes(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def folder_of(lake: Settings, tenant: str = TENANT, day: str = "2026-03-01") -> Path:
    return Path(lake.raw_uri) / f"tenant_id={tenant}" / "entity=suppliers" / f"ingest_date={day}"


def hostile_corpus(folder: Path) -> dict[str, tuple[str, str | None]]:
    """Write the corpus; return each file's expected (status, reason or None)."""
    write_parquet(folder / "good.parquet", suppliers(1, 5))
    write_parquet(folder / "suppliers.PARQUET", suppliers(10, 10))
    write_parquet(folder / "nanos.parquet", suppliers(30, 3), ts_unit="ns")
    nested = suppliers(40, 2)
    nested["legal_name"] = [{"x": "Acme", "y": 0}, {"x": "Beta", "y": 1}]
    write_parquet(folder / "nested.parquet", nested)
    write_parquet(folder / "_extra.parquet", suppliers(50, 2))
    write_parquet(folder / "..parquet", suppliers(60, 2))
    cased = suppliers(70, 2)
    cased["Supplier_ID"] = cased["supplier_id"]
    write_parquet(folder / "cased.parquet", cased)
    header = "supplier_id,tenant_id,supplier_id,legal_name,source_timestamp\n"
    write_bytes(folder / "repeated.csv", (header + f"{ulid(80)},{TENANT},x,A,{TS}\n").encode())
    latin = "supplier_id,tenant_id,legal_name,country,contact_email,source_timestamp\n"
    latin += f"{ulid(90)},{TENANT},Müller Präzisionsteile GmbH,DE,m@mueller.de,2025-05-01\n"
    write_bytes(folder / "latin1.csv", latin.encode("latin-1"))
    # RFC 4180 sets no limit on a field: 50 MB in one (longer than the CSV readers' blocks).
    long = latin.splitlines()[0] + "\n"
    long += f"{ulid(95)},{TENANT},{'x' * LONG_FIELD},DE,l@long.de,2025-05-01\n"
    write_bytes(folder / "long.csv", long.encode())
    write_bytes(folder / "notes.txt", b"sent by the ERP export\n")
    write_bytes(folder / "_SUCCESS", b"")
    write_bytes(folder / "_temporary" / "0" / "part-0.parquet", b"partial")
    return {
        "good.parquet": ("INGESTED", None),
        "suppliers.PARQUET": ("INGESTED", None),
        "nanos.parquet": ("INGESTED", None),
        "nested.parquet": ("INGESTED", None),
        "_extra.parquet": ("FAILED", raw_files.HIDDEN_NAME),
        "..parquet": ("FAILED", raw_files.HIDDEN_NAME),
        "cased.parquet": (
            "FAILED",
            "columns supplier_id and Supplier_ID differ only in case, and Spark matches column "
            "names ignoring case: drop or rename one",
        ),
        "repeated.csv": ("FAILED", "duplicate column supplier_id (the header names it twice)"),
        "latin1.csv": ("FAILED", raw_files.NOT_UTF8),
        "long.csv": ("INGESTED", None),
        "notes.txt": ("IGNORED", raw_files.NOT_DATA),
        "_SUCCESS": ("IGNORED", raw_files.WRITER_MARKER),
        "part-0.parquet": ("IGNORED", raw_files.HIDDEN_FOLDER),
    }


def outcomes(run: S.RunSummary) -> dict[str, tuple[str, str | None]]:
    return {Path(f.file).name: (f.status, f.error or f.note) for f in run.files}


def test_every_object_gets_an_outcome_and_bad_files_fail_alone(
    spark: SparkSession, lake: Settings
) -> None:
    expected = hostile_corpus(folder_of(lake))

    run = run_tenant(spark, lake, TENANT)

    assert run.status == S.PARTIAL, run.message
    assert outcomes(run) == expected
    assert all(a.passed for a in run.audits), run.audits
    names = TableNames(lake.catalog.name)
    silver = spark.table(names.silver("suppliers")).where(F.col("tenant_id") == TENANT)
    published = [ulid(i) for i in [*range(1, 6), *range(10, 20), *range(30, 33)]]
    expected_silver = spark.createDataFrame(
        [(i, TS) for i in published], "supplier_id string, source_timestamp timestamp"
    )
    # Nanosecond timestamps are read to the microsecond, not refused; .PARQUET is Parquet.
    assert_df_equality(
        silver.select("supplier_id", "source_timestamp"),
        expected_silver,
        ignore_row_order=True,
        ignore_nullable=True,
    )
    # A struct sent where the contract wants text is a type violation, never its rendering;
    # a 50 MB name is read and quarantined for its length.
    quarantined = spark.table(names.quarantine("suppliers")).where(F.col("tenant_id") == TENANT)
    codes = quarantined.select(
        "supplier_id", F.expr("transform(_violations, v -> v.rule)").alias("rules")
    )
    expected_codes = spark.createDataFrame(
        [(ulid(40), ["legal_name.type", "legal_name.required"]),
         (ulid(41), ["legal_name.type", "legal_name.required"]),
         (ulid(95), ["legal_name.too_long"])],
        "supplier_id string, rules array<string>",
    )  # fmt: skip
    assert_df_equality(
        codes, expected_codes, ignore_row_order=True, ignore_nullable=True, ignore_column_order=True
    )
    manifest = spark.table(names.ingested_files).where(F.col("tenant_id") == TENANT)
    recorded = {(Path(r["file"]).name, r["status"]) for r in manifest.collect()}
    assert recorded == {(name, status) for name, (status, _) in expected.items()}


def test_a_known_file_is_never_read_again(
    spark: SparkSession, lake: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Known files are recognised from the listing: no byte of them is read, on the driver or
    by the executors' inspection; the same bytes under a new name are hashed once, skipped
    and recorded, so the next listing knows them too."""
    folder = folder_of(lake)
    for i in range(6):
        write_parquet(folder / f"batch-{i}.parquet", suppliers(100 + 10 * i, 10))
    write_bytes(folder / "readme.md", b"# raw files\n")
    first = run_tenant(spark, lake, TENANT)
    assert first.status == S.SUCCEEDED, first.message

    inspected: list[list[str]] = []
    real_inspect = inputs.inspect_files

    def counting_inspect(spark: SparkSession, s3: Any, files: list[Any], *args: Any) -> Any:
        inspected.append([Path(f.path).name for f in files])
        return real_inspect(spark, s3, files, *args)

    opened: list[str] = []

    def no_reads(self: Storage, uri: str) -> Any:
        opened.append(uri)
        raise AssertionError(f"the driver read {uri}")

    monkeypatch.setattr(inputs, "inspect_files", counting_inspect)
    monkeypatch.setattr(Storage, "open", no_reads)
    monkeypatch.setattr(Storage, "open_random", no_reads)

    again = run_tenant(spark, lake, TENANT)
    assert (again.status, again.skipped_files, again.files) == (S.NOTHING_NEW, 6, [])
    assert (inspected, opened) == ([[]], [])

    # The same bytes under a new name: hashed (by the executors), skipped, recorded.
    copy = folder_of(lake, day="2026-03-02") / "resent.parquet"
    copy.parent.mkdir(parents=True)
    copy.write_bytes((folder / "batch-0.parquet").read_bytes())
    resent = run_tenant(spark, lake, TENANT)
    assert (resent.status, resent.skipped_files) == (S.NOTHING_NEW, 7)
    assert inspected[-1] == ["resent.parquet"]
    names = TableNames(lake.catalog.name)
    manifest = spark.table(names.ingested_files).where(F.col("tenant_id") == TENANT)
    statuses = {(Path(r["file"]).name, r["status"]) for r in manifest.collect()}
    assert ("resent.parquet", "SKIPPED") in statuses
    assert ("readme.md", "IGNORED") in statuses
    assert len(statuses) == 8
    third = run_tenant(spark, lake, TENANT)
    assert (third.status, third.skipped_files, inspected[-1]) == (S.NOTHING_NEW, 7, [])
    assert opened == []


def test_a_manifest_without_listing_keys_is_upgraded_once(
    spark: SparkSession, lake: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows written before the listing keys existed: their files are hashed once more, found
    ingested, recorded as SKIPPED with their keys, and never read after that."""
    folder = folder_of(lake)
    for i in range(3):
        write_parquet(folder / f"old-{i}.parquet", suppliers(200 + 10 * i, 4))
    assert run_tenant(spark, lake, TENANT).status == S.SUCCEEDED
    names = TableNames(lake.catalog.name)
    spark.sql(f"UPDATE {names.ingested_files} SET size = NULL, mtime_ns = NULL")

    inspected: list[int] = []
    real_inspect = inputs.inspect_files

    def counting_inspect(spark: SparkSession, s3: Any, files: list[Any], *args: Any) -> Any:
        inspected.append(len(files))
        return real_inspect(spark, s3, files, *args)

    monkeypatch.setattr(inputs, "inspect_files", counting_inspect)
    upgraded = run_tenant(spark, lake, TENANT)
    assert (upgraded.status, upgraded.skipped_files) == (S.NOTHING_NEW, 3)
    later = run_tenant(spark, lake, TENANT)
    assert (later.status, later.skipped_files) == (S.NOTHING_NEW, 3)
    assert inspected == [3, 0]
    silver = spark.table(names.silver("suppliers")).where(F.col("tenant_id") == TENANT)
    assert silver.count() == 12


def test_many_files_of_one_shape_are_one_scan(spark: SparkSession, tmp_path: Path) -> None:
    """Forty files alike are read by one scan, each row still carrying its own file."""
    storage = Storage()
    files = []
    for i in range(40):
        path = write_parquet(tmp_path / f"f {i:02d}%.parquet", suppliers(1000 + 2 * i, 2))
        files.append(raw_files.inspect_file(storage, "suppliers", str(path)))
    odd = write_parquet(tmp_path / "other.parquet", {**suppliers(5000, 2), "extra": [1, 2]})
    files.append(raw_files.inspect_file(storage, "suppliers", str(odd)))
    assert [len(g) for g in by_shape(files)] == [40, 1]

    from cdf_pipeline.contracts import ENTITIES

    # Shapes differ in columns, so the row as sent (a struct of each shape) cannot be unioned.
    df = read_normalised(spark, ENTITIES["suppliers"], files, per_file=lambda d: d.drop("_raw"))
    assert df is not None
    plan = df._jdf.queryExecution().executedPlan().toString()
    assert plan.count("FileScan parquet") == 2
    per_file = df.groupBy("_source_file").count()
    expected = spark.createDataFrame(
        [(f"f {i:02d}%.parquet", 2) for i in range(40)] + [("other.parquet", 2)],
        "_source_file string, count long",
    )
    assert_df_equality(per_file, expected, ignore_row_order=True, ignore_nullable=True)


def test_a_tenant_declares_its_csv_encoding(
    spark: SparkSession, lake: Settings, tmp_path: Path
) -> None:
    """Latin-1 text fails under the default (above); declared, it lands as sent, and the
    tenant's quarantine export is written in it, to be fixed and sent back the same way."""
    name = "Müller Präzisionsteile GmbH"
    text = "supplier_id,tenant_id,legal_name,country,contact_email,source_timestamp\n"
    text += f"{ulid(95)},{TENANT},{name},DE,m@mueller.de,2025-05-01T00:00:00Z\n"
    text += f"{ulid(96)},{TENANT},Größe AG,DE,not an address,2025-05-01T00:00:00Z\n"
    write_bytes(folder_of(lake) / "latin1.csv", text.encode("latin-1"))
    declared = {**lake.storage.model_dump(), "csv_encoding": "latin-1"}  # validated as loaded
    storage = type(lake.storage).model_validate(declared)
    tenant_lake = lake.model_copy(update={"storage": storage})
    run = run_tenant(spark, tenant_lake, TENANT)
    assert run.status == S.SUCCEEDED, run.message
    names = TableNames(lake.catalog.name)
    silver = spark.table(names.silver("suppliers")).where(F.col("tenant_id") == TENANT)
    expected = spark.createDataFrame([(ulid(95), name)], "supplier_id string, legal_name string")
    assert_df_equality(silver.select("supplier_id", "legal_name"), expected, ignore_nullable=True)

    out = tmp_path / "open.csv"
    assert export_open(spark, names, storage_for(tenant_lake), TENANT, "suppliers", out,
                       encoding="latin-1") == 1  # fmt: skip
    with out.open(newline="", encoding="latin-1") as f:
        (row,) = list(csv.DictReader(f))
    assert (row["supplier_id"], row["legal_name"]) == (ulid(96), "Größe AG")
    assert "contact_email" in row["reasons"]


def test_a_file_whose_data_cannot_be_read_fails_alone(spark: SparkSession, lake: Settings) -> None:
    """A footer that reads well over data that does not: the scan fails on it, and it fails
    alone, named, while the file of the same shape beside it publishes."""
    folder = folder_of(lake)
    write_parquet(folder / "good.parquet", suppliers(1, 50))
    bad = write_parquet(folder / "bad.parquet", suppliers(100, 2000))
    data = bytearray(bad.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little") + 8  # the footer and its length, at the end
    for i in range(8, len(data) - footer - 8):  # every byte of the column chunks, garbled
        data[i] = (data[i] * 7 + 13) % 256
    bad.write_bytes(bytes(data))

    run = run_tenant(spark, lake, TENANT)

    assert run.status == S.PARTIAL, run.message
    outcome = outcomes(run)
    assert outcome["good.parquet"] == ("INGESTED", None)
    status, reason = outcome["bad.parquet"]
    assert status == "FAILED" and reason is not None
    assert reason.startswith("unreadable parquet file (Spark could not read it: ")
    assert run.entities["suppliers"].inserted == 50
