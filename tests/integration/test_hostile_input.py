"""Hostile and odd raw input: every file read as the standard says, or failed alone and reported.

RFC 4180 CSV (quoted line breaks, doubled quotes, a byte-order mark, CRLF), files whose rows
cannot be accounted for, links out of the raw root, empty and header-only files.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdf_pipeline import run_record as S
from cdf_pipeline.config import Settings
from cdf_pipeline.ingest.files import EMPTY_FILE, inspect_file
from cdf_pipeline.ingest.read import read_raw
from cdf_pipeline.lakehouse.tables import TableNames
from cdf_pipeline.pipeline.silver import run_tenant
from cdf_pipeline.storage import LINK_LEAVES_ROOT, S3Config, Storage

pytestmark = [pytest.mark.spark, pytest.mark.slow]

TENANT = "hostile"
TS = "2025-05-01T00:00:00Z"
HEADER = "supplier_id,tenant_id,legal_name,country,contact_email,address_line1,source_timestamp"


def ulid(n: int) -> str:
    return f"01J{n:023d}"


#: RFC 4180 at its least friendly: a byte-order mark, CRLF line ends, a quoted field holding a
#: CRLF line break, a quoted field holding doubled quotes and a comma, an empty last field.
RFC_CSV = (
    "\ufeff" + HEADER + "\r\n"
    f'{ulid(1)},{TENANT},"Acme ""Best"" Parts, Ltd",DE,a@acme.de,'
    f'"Hauptstr. 1\r\nHinterhaus",{TS}\r\n'
    f"{ulid(2)},{TENANT},Plain GmbH,FR,c@plain.fr,,{TS}\r\n"
)

#: The quoted address as Spark reads it: the CRLF inside the quotes becomes LF.
ADDRESS = "Hauptstr. 1\nHinterhaus"

#: A stray CR line end in a file of LF line ends: the pre-check (pyarrow) ends a record at any
#: of CR, LF, CRLF; Spark's multi-line reader at the line end it detected (LF). 3 rows or 2.
MIXED_LINE_ENDS_CSV = (
    HEADER + "\n"
    f"{ulid(3)},{TENANT},Three,DE,t@three.de,,{TS}\r{ulid(4)},{TENANT},Four,DE,f@four.de,,{TS}\n"
    f"{ulid(5)},{TENANT},Five,DE,f@five.de,,{TS}\n"
)


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path


def test_spark_and_the_pre_check_read_rfc4180_alike(spark: SparkSession, tmp_path: Path) -> None:
    """Spark (multiLine) drops the BOM from the header, ends records at CRLF without keeping a
    CR, reads a quoted CRLF as LF and doubled quotes as one; the pre-check counts the same."""
    path = write(tmp_path / "rfc.csv", RFC_CSV)
    raw = inspect_file(Storage(S3Config()), "suppliers", str(path))
    assert (raw.error, raw.rows, raw.columns) == (None, 2, tuple(HEADER.split(",")))
    schema = T.StructType([T.StructField(c, T.StringType(), True) for c in HEADER.split(",")])
    expected = spark.createDataFrame(
        [
            (ulid(1), TENANT, 'Acme "Best" Parts, Ltd', "DE", "a@acme.de", ADDRESS, TS),
            (ulid(2), TENANT, "Plain GmbH", "FR", "c@plain.fr", None, TS),
        ],
        schema,
    )
    assert_df_equality(read_raw(spark, raw), expected, ignore_row_order=True)


def test_mixed_line_ends_are_counted_apart(spark: SparkSession, tmp_path: Path) -> None:
    """The one divergence this suite knows of, pinned: if a reader changes, this says so."""
    path = write(tmp_path / "mixed.csv", MIXED_LINE_ENDS_CSV)
    raw = inspect_file(Storage(S3Config()), "suppliers", str(path))
    assert raw.rows == 3
    assert read_raw(spark, raw).count() == 2


def _zero_row_parquet(path: Path) -> Path:
    cols = ["supplier_id", "tenant_id", "legal_name", "country", "contact_email"]
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({c: pa.array([], pa.string()) for c in cols})
    table = table.append_column("source_timestamp", pa.array([], pa.timestamp("us", tz="UTC")))
    pq.write_table(table, path)
    return path


def test_odd_files_fail_alone_and_the_rest_publishes(spark: SparkSession, lake: Settings) -> None:
    raw = Path(lake.raw_uri)
    folder = raw / f"tenant_id={TENANT}" / "entity=suppliers" / "ingest_date=2026-02-01"
    write(folder / "rfc.csv", RFC_CSV)
    write(folder / "mixed.csv", MIXED_LINE_ENDS_CSV)
    write(folder / "empty.csv", b"")
    write(folder / "empty.parquet", b"")
    write(folder / "header_only.csv", HEADER + "\r\n")
    _zero_row_parquet(folder / "zero_rows.parquet")
    # A link out of the raw root (the file exists and is valid: it must still not be read) ...
    outside = Path(lake.root).parent / "outside.csv"
    write(outside, f"{HEADER}\n{ulid(9)},{TENANT},Not Mine,DE,n@mine.de,,{TS}\n")
    (folder / "outside.csv").symlink_to(outside)
    # ... and one to a file inside it, which is read like any file.
    target = write(
        folder / "kept" / "linked.dat", f"{HEADER}\n{ulid(6)},{TENANT},Six,DE,s@six.de,,{TS}\n"
    )
    (folder / "linked.csv").symlink_to(target)

    run = run_tenant(spark, lake, TENANT)

    assert run.status == S.PARTIAL, run.message
    assert all(a.passed for a in run.audits), run.audits
    outcome = {Path(f.file).name: (f.status, f.rows, f.error) for f in run.files}
    assert outcome == {
        "rfc.csv": ("INGESTED", 2, None),
        "linked.csv": ("INGESTED", 1, None),
        "header_only.csv": ("INGESTED", 0, None),
        "zero_rows.parquet": ("INGESTED", 0, None),
        "mixed.csv": ("FAILED", None, "Spark read 2 rows, the pre-check counted 3"),
        "empty.csv": ("FAILED", None, EMPTY_FILE),
        "empty.parquet": ("FAILED", None, EMPTY_FILE),
        "outside.csv": ("FAILED", None, LINK_LEAVES_ROOT),
        # The link's target is listed too: not a data file, so reported, never read as one.
        "linked.dat": ("IGNORED", None, None),
    }
    counts = run.entities["suppliers"]
    assert (counts.read, counts.inserted, counts.quarantined) == (3, 3, 0)
    names = TableNames(lake.catalog.name)
    silver = spark.table(names.silver("suppliers")).where(F.col("tenant_id") == TENANT)
    expected = spark.createDataFrame(
        [
            (ulid(1), 'Acme "Best" Parts, Ltd', ADDRESS, "rfc.csv"),
            (ulid(2), "Plain GmbH", None, "rfc.csv"),
            (ulid(6), "Six", None, "linked.csv"),
        ],
        "supplier_id string, legal_name string, address_line1 string, _source_file string",
    )
    assert_df_equality(
        silver.select(*expected.columns), expected, ignore_row_order=True, ignore_nullable=True
    )
    manifest = spark.table(names.ingested_files).where(F.col("tenant_id") == TENANT)
    recorded = {
        (Path(r["file"]).name, r["status"], r["error"])
        for r in manifest.select("file", "status", "error").collect()
    }
    # A link is recorded by its real path: the one inside the root as its target.
    assert recorded == {
        ("rfc.csv", "INGESTED", None),
        ("linked.dat", "INGESTED", None),
        ("header_only.csv", "INGESTED", None),
        ("zero_rows.parquet", "INGESTED", None),
        ("mixed.csv", "FAILED", "Spark read 2 rows, the pre-check counted 3"),
        ("empty.csv", "FAILED", EMPTY_FILE),
        ("empty.parquet", "FAILED", EMPTY_FILE),
        ("outside.csv", "FAILED", LINK_LEAVES_ROOT),
        ("linked.dat", "IGNORED", None),
    }

    # The file that cannot be accounted for does not hold the tenant's later runs either.
    later = folder.parent / "ingest_date=2026-02-02" / "next.csv"
    write(later, f"{HEADER}\n{ulid(7)},{TENANT},Seven,DE,s@seven.de,,{TS}\n")
    again = run_tenant(spark, lake, TENANT)
    assert again.status == S.PARTIAL, again.message
    assert {Path(f.file).name: f.status for f in again.files}["next.csv"] == "INGESTED"
    assert again.entities["suppliers"].inserted == 1


def test_unaccounted_rows_are_never_counted(spark: SparkSession, lake: Settings) -> None:
    """A tenant whose only new file cannot be accounted for publishes nothing and holds nothing."""
    folder = Path(lake.raw_uri) / "tenant_id=mixed" / "entity=suppliers" / "ingest_date=2026-02-01"
    write(folder / "mixed.csv", MIXED_LINE_ENDS_CSV.replace(TENANT, "mixed"))
    run = run_tenant(spark, lake, "mixed")
    assert run.status == S.PARTIAL, run.message
    assert [(f.status, f.error) for f in run.files] == [
        ("FAILED", "Spark read 2 rows, the pre-check counted 3")
    ]
    assert run.entities["suppliers"].read == 0
    assert all(a.passed for a in run.audits)
    names = TableNames(lake.catalog.name)
    assert spark.table(names.silver("suppliers")).where("tenant_id = 'mixed'").count() == 0
