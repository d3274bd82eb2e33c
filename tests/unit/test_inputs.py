"""What a run says about its files without reading them: drift notes and each object's outcome."""

from __future__ import annotations

from cdf_pipeline.contracts import ENTITIES
from cdf_pipeline.ingest.files import (
    HIDDEN_FOLDER,
    HIDDEN_NAME,
    NOT_DATA,
    WRITER_MARKER,
    RawFile,
    Unread,
    classify,
    duplicate_columns,
    file_format,
)
from cdf_pipeline.pipeline.inputs import NAME_CHARS, NOTE_NAMES, drift_note


def test_a_drift_note_names_the_first_columns_and_counts_the_rest() -> None:
    sent = (*ENTITIES["suppliers"].field_names, *(f"x{i}" for i in range(10_000)))
    note = drift_note(RawFile("suppliers", "/raw/f.csv", "", columns=sent), "ignore")
    listed = ", ".join(f"x{i}" for i in range(NOTE_NAMES))
    assert note == f"extra columns {listed} and {10_000 - NOTE_NAMES} more (ignored)"


def test_a_drift_note_cuts_a_long_name_short() -> None:
    """A header's name can be as long as a field (a data row read as a header, say)."""
    long = "x" * 50_000_000
    sent = (*ENTITIES["suppliers"].field_names, long)
    note = drift_note(RawFile("suppliers", "/raw/f.csv", "", columns=sent), "ignore")
    assert note == f"extra columns {'x' * NAME_CHARS}… (ignored)"


def test_a_short_drift_note_lists_every_column() -> None:
    sent = tuple(c for c in ENTITIES["suppliers"].field_names if c != "legal_name")
    note = drift_note(RawFile("suppliers", "/raw/f.csv", "", columns=(*sent, "a")), "quarantine")
    missing = "missing required columns legal_name (rows quarantined)"
    assert note == f"{missing}; extra columns a (rows quarantined)"


def test_each_listed_object_is_read_or_says_why_not() -> None:
    folder = "s3://b/raw/tenant_id=t/entity=suppliers"
    verdicts = {
        name: classify(folder, f"{folder}/ingest_date=2026-01-01/{name}")
        for name in ["a.parquet", "B.PARQUET", "c.Csv", "_x.parquet", "..parquet", "notes.txt",
                     "_SUCCESS", ".part-0.parquet.crc", "_temporary/0/p.parquet"]
    }  # fmt: skip
    assert verdicts == {
        "a.parquet": None,
        "B.PARQUET": None,
        "c.Csv": None,
        "_x.parquet": Unread(HIDDEN_NAME, failed=True),
        "..parquet": Unread(HIDDEN_NAME, failed=True),
        "notes.txt": Unread(NOT_DATA),
        "_SUCCESS": Unread(WRITER_MARKER),
        ".part-0.parquet.crc": Unread(WRITER_MARKER),
        "_temporary/0/p.parquet": Unread(HIDDEN_FOLDER),
    }
    assert [file_format(n) for n in ("x.PARQUET", "y.CSV", "z.txt")] == ["parquet", "csv", None]


def test_columns_a_scan_cannot_tell_apart_are_named() -> None:
    assert duplicate_columns(["a", "b"]) is None
    assert duplicate_columns(["id", "x", "id"]) == "duplicate column id (the header names it twice)"
    assert duplicate_columns(["id", "ID"]) == (
        "columns id and ID differ only in case, and Spark matches column names ignoring case: "
        "drop or rename one"
    )
