"""Lost tables without Spark: the missing file named from Iceberg's error, the survivor chosen."""

from __future__ import annotations

from pathlib import Path

from cdf_pipeline.lakehouse.lost import missing_metadata_file
from cdf_pipeline.lakehouse.recovery import metadata_version, newest_survivor
from cdf_pipeline.storage import S3Config, Storage

GONE = "s3://lake/warehouse/silver.db/suppliers/metadata/00007-9f1c.metadata.json"


def _trace(*causes: str) -> RuntimeError:
    """An error carrying a Java trace as py4j prints it, outermost exception first."""
    lines = [f"{'Caused by: ' if i else ''}{c}\n\tat org.apache.iceberg.X.y(X.java:1)"
             for i, c in enumerate(causes)]  # fmt: skip
    return RuntimeError("An error occurred while calling o123.sql.\n" + "\n".join(lines))


def test_the_missing_metadata_file_is_read_from_icebergs_not_found_exception() -> None:
    s3 = _trace(
        "org.apache.spark.sql.AnalysisException: wrapped",
        f"org.apache.iceberg.exceptions.NotFoundException: Location does not exist: {GONE}",
        "software.amazon.awssdk.services.s3.model.NoSuchKeyException: The specified key does not "
        "exist.",
    )
    assert missing_metadata_file(s3) == GONE
    local = "/data/lake/warehouse/silver/suppliers/metadata/00001-a.metadata.json"
    hadoop = _trace(
        "org.apache.iceberg.exceptions.NotFoundException: Failed to open input stream for file: "
        f"file:{local}",
        f"java.io.FileNotFoundException: File file:{local} does not exist",
    )
    assert missing_metadata_file(hadoop) == local
    s3a = _trace(f"o.a.i.e.NotFoundException: Location does not exist: s3a{GONE[2:]}")
    assert missing_metadata_file(s3a) == GONE


def test_other_failures_name_no_missing_file() -> None:
    assert missing_metadata_file(_trace(f"S3Exception: Access Denied reading {GONE}")) is None
    data_file = "NotFoundException: Location does not exist: s3://lake/x/data/a.parquet"
    assert missing_metadata_file(_trace(data_file)) is None
    assert missing_metadata_file(ValueError("no Java here")) is None


def test_versions_come_from_the_file_names() -> None:
    assert metadata_version(GONE) == 7
    assert metadata_version("/t/metadata/v12.metadata.json") == 12
    assert metadata_version("/t/metadata/v3.gz.metadata.json") == 3
    assert metadata_version("/t/metadata/snap-1-a.avro") is None


def test_the_newest_older_metadata_file_survives(tmp_path: Path) -> None:
    folder = tmp_path / "metadata"
    folder.mkdir()
    for name in ("00002-b.metadata.json", "00005-c.metadata.json", "00009-d.metadata.json",
                 "snap-1-x.avro", "00006-e.metadata.json.tmp"):  # fmt: skip
        (folder / name).write_text("{}")
    storage = Storage(S3Config())
    missing = str(folder / "00007-a.metadata.json")
    # 00009 was written by a commit the catalog never took: not a state the table had.
    assert newest_survivor(storage, missing) == str(folder / "00005-c.metadata.json")
    assert newest_survivor(storage, str(folder / "00002-z.metadata.json")) is None
