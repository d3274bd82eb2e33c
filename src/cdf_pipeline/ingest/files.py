"""Discover a tenant's raw objects, give each one an outcome, and pre-check the new ones.

Raw layout: ``<raw>/tenant_id=<t>/entity=<entity>/ingest_date=YYYY-MM-DD/<file>``. Every object
found there is either read (a ``.parquet`` or ``.csv`` name, in any case) or reported with the
reason it is not (:func:`classify`): nothing found is dropped silently. A file whose SHA-256 was
already ingested for the tenant is skipped (never counted twice), whatever its name; the hash and
the pre-check (:func:`inspect_file`) run on executors, where the data is
(:mod:`cdf_pipeline.ingest.inspect_job`), never in a driver loop.

CSV is read as RFC 4180 has it, here and by Spark (``ingest/read.py``): fields quoted with ``"``,
a quote inside one doubled, line breaks (LF or CRLF) inside quoted fields, CRLF or LF line ends,
an optional UTF-8 byte-order mark. Both readers agree on where a record ends, so the pre-check's
count is the count Spark reads (the run checks that too, per file).
"""

from __future__ import annotations

import codecs
import hashlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from cdf_pipeline.contracts import ENTITIES
from cdf_pipeline.exceptions import InputError
from cdf_pipeline.locations import is_s3
from cdf_pipeline.storage import FileEntry, Storage, basename, join
from cdf_pipeline.tenants import validate_tenant_id

logger = logging.getLogger(__name__)

#: The formats read, by file extension (matched in any case: ``.PARQUET`` is Parquet).
FORMATS = {".parquet": "parquet", ".csv": "csv"}

#: Why a data file with a hidden name fails: Spark leaves such names out of every read.
HIDDEN_NAME = (
    "the name starts with '_' or '.', which Spark treats as hidden and never reads; "
    "rename the file (cdf land names files by their content)"
)
NOT_DATA = "not a data file: the job reads .parquet and .csv files only (in any case)"
WRITER_MARKER = "a writer's marker or checksum file (no data)"
HIDDEN_FOLDER = "inside a folder whose name starts with '_' or '.' (a writer's temporary output)"

#: The SHA-256 of no bytes: a 0-byte file (its hash alone tells, before anything is read).
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
EMPTY_FILE = "empty file: 0 bytes, not a CSV header or a Parquet footer"

#: RFC 4180 (``"`` quotes, doubled inside a field) with line breaks inside quoted fields.
CSV_PARSE = pacsv.ParseOptions(
    delimiter=",", quote_char='"', double_quote=True, escape_char=False, newlines_in_values=True
)


@dataclass(frozen=True)
class RawFile:
    """One raw file of a tenant and entity, with its content hash and row count."""

    entity: str
    path: str
    sha256: str
    rows: int | None = None
    error: str | None = None
    columns: tuple[str, ...] = ()
    #: The Parquet footer's Arrow type of each column (empty for CSV: every column is text).
    types: tuple[str, ...] = ()
    #: Size and modification time as listed: with the path, how a known file is recognised.
    size: int = 0
    mtime_ns: int = 0

    @property
    def name(self) -> str:
        return basename(self.path)

    @property
    def fmt(self) -> str:
        return file_format(self.path) or "parquet"

    @property
    def shape(self) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
        """What one scan can read together: the format, the column names and their types."""
        return (self.fmt, self.columns, self.types)


def file_format(path: str) -> str | None:
    """The format a file is read as, from its extension in any case (None: not read)."""
    name = basename(path).lower()
    return next((fmt for ext, fmt in FORMATS.items() if name.endswith(ext)), None)


def _is_marker(name: str) -> bool:
    """Files that common writers leave beside their data (Spark's ``_SUCCESS`` and ``.crc``
    checksums, Hadoop committers' ``_committed_``/``_started_``, ``.DS_Store``)."""
    lower = name.lower()
    return (
        name in ("_SUCCESS", ".DS_Store")
        or lower.endswith(".crc")
        or name.startswith(("_committed_", "_started_"))
    )


def _relative(folder: str, uri: str) -> str:
    """``uri`` below ``folder`` (as listed: local folders absolute), else its name."""
    base = (folder if is_s3(folder) else os.path.abspath(folder)).rstrip("/") + "/"
    return uri[len(base) :] if uri.startswith(base) else basename(uri)


@dataclass(frozen=True)
class Unread:
    """Why a listed object is not read: not data (ignored), or data it cannot read (failed)."""

    reason: str
    failed: bool = False


def classify(folder: str, path: str) -> Unread | None:
    """Whether an object listed below ``folder`` (an entity's raw folder) is read (None), or
    why not."""
    name = basename(path)
    if any(part.startswith(("_", ".")) for part in _relative(folder, path).split("/")[:-1]):
        return Unread(HIDDEN_FOLDER)
    if _is_marker(name):
        return Unread(WRITER_MARKER)
    if file_format(name) is None:
        return Unread(NOT_DATA)
    if name.startswith(("_", ".")):
        return Unread(HIDDEN_NAME, failed=True)
    return None


def duplicate_columns(columns: Iterable[str]) -> str | None:
    """Why a file's columns cannot be read (a name repeated, or two names differing only in
    case: Spark matches column names ignoring case), else None."""
    seen: dict[str, str] = {}
    for name in columns:
        other = seen.get(name.lower())
        if other == name:
            return f"duplicate column {name} (the header names it twice)"
        if other is not None:
            return (
                f"columns {other} and {name} differ only in case, and Spark matches column "
                "names ignoring case: drop or rename one"
            )
        seen[name.lower()] = name
    return None


def tenant_raw_dir(raw_root: str, tenant: str) -> str:
    """The tenant's raw folder or prefix (the id is validated, so it cannot escape ``raw_root``)."""
    return join(raw_root, f"tenant_id={validate_tenant_id(tenant)}")


#: The CSV pre-check's first block size; doubled up to the last while a field does not fit.
_CSV_BLOCKS = (1 << 24, 1 << 26, 1 << 28, 1 << 30)
NOT_UTF8 = (
    "the file is not valid UTF-8 text; send it as UTF-8, or declare the tenant's encoding "
    "(storage.csv_encoding in conf/tenants/<tenant>.yaml): text is never landed with "
    "replacement characters"
)


def not_encoded(encoding: str) -> str:
    """Why a CSV file fails when its bytes are not text in the tenant's declared encoding."""
    if codecs.lookup(encoding).name == "utf-8":
        return NOT_UTF8
    return f"the file is not valid {encoding} text (the tenant's storage.csv_encoding)"


class FileRefused(ValueError):
    """A file the job will not read, with a reason meant for the customer who sent it."""


def _csv_header(storage: Storage, uri: str, block: int, encoding: str) -> list[str]:
    options = pacsv.ReadOptions(block_size=block, encoding=encoding)
    with storage.open(uri) as stream:
        reader = pacsv.open_csv(stream, read_options=options, parse_options=CSV_PARSE)
        return list(reader.schema.names)


def _csv_count(storage: Storage, uri: str, header: list[str], block: int, encoding: str) -> int:
    """Records counted in a stream with every column read as text: constant memory, no type
    inference that a later block could contradict, and every byte checked to be UTF-8."""
    convert = pacsv.ConvertOptions(column_types={c: pa.string() for c in header})
    options = pacsv.ReadOptions(block_size=block, encoding=encoding)
    rows = 0
    with storage.open(uri) as stream:
        reader = pacsv.open_csv(
            stream, read_options=options, parse_options=CSV_PARSE, convert_options=convert
        )
        for batch in reader:
            rows += batch.num_rows
    return rows


def _csv_columns_and_rows(storage: Storage, uri: str, encoding: str) -> tuple[tuple[str, ...], int]:
    """The header's column names (quotes, BOM and line ends handled by the parser) and the
    number of records. A record longer than the reader's block is read with a larger block
    (an RFC 4180 file may hold a field of any length); text that is not UTF-8 is refused."""
    for i, block in enumerate(_CSV_BLOCKS):
        try:
            header = _csv_header(storage, uri, block, encoding)
            if not header or not header[0]:
                raise FileRefused("the CSV file has no header line")
            if why := duplicate_columns(header):
                raise FileRefused(why)
            return tuple(header), _csv_count(storage, uri, header, block, encoding)
        except pa.ArrowInvalid as exc:
            text = str(exc)
            if "UTF8" in text or "UTF-8" in text:
                raise FileRefused(not_encoded(encoding)) from exc
            if "straddl" not in text or i == len(_CSV_BLOCKS) - 1:
                raise
    raise AssertionError("unreachable")


def _parquet_columns_and_rows(
    storage: Storage, uri: str
) -> tuple[tuple[str, ...], int, tuple[str, ...]]:
    with storage.open_random(uri) as handle:
        meta = pq.read_metadata(handle)
    schema = meta.schema.to_arrow_schema()
    if why := duplicate_columns(schema.names):
        raise FileRefused(why)
    return tuple(schema.names), int(meta.num_rows), tuple(str(t) for t in schema.types)


def _columns_and_rows(
    storage: Storage, uri: str, encoding: str = "utf-8"
) -> tuple[tuple[str, ...], int, tuple[str, ...]]:
    """Column names, row count and (Parquet) column types, from the footer or the CSV text.

    This independent count is what the run's ``read`` total is audited against.
    """
    if file_format(uri) == "csv":
        return (*_csv_columns_and_rows(storage, uri, encoding), ())
    return _parquet_columns_and_rows(storage, uri)


def inspect_file(
    storage: Storage,
    entity: str,
    uri: str,
    *,
    sha256: str | None = None,
    encoding: str = "utf-8",
) -> RawFile:
    """Hash (unless ``sha256`` is known) and pre-check one file (a CSV file as text in
    ``encoding``); a file that cannot be read carries ``error`` instead of rows."""
    sha = sha256 or storage.sha256(uri)
    if sha == EMPTY_SHA256:
        return RawFile(entity, uri, sha, error=EMPTY_FILE)
    try:
        columns, rows, types = _columns_and_rows(storage, uri, encoding)
    except FileRefused as exc:
        return RawFile(entity, uri, sha, error=str(exc))
    except Exception as exc:
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        kind = file_format(uri) or uri.rsplit(".", 1)[-1]
        return RawFile(entity, uri, sha, error=f"unreadable {kind} file ({reason})")
    return RawFile(entity, uri, sha, rows=rows, columns=columns, types=types)


@dataclass(frozen=True)
class Found:
    """The objects below a tenant's entity folder: listed files and the links refused there."""

    files: list[FileEntry]
    refused: list[tuple[str, str]]


def discover(storage: Storage, raw_root: str, tenant: str) -> dict[str, Found]:
    """Every object of the tenant per entity with its size and modification time, sorted by
    path (deterministic order), and the links refused there (a link whose target leaves the
    tenant's entity folder is not read: it could point at another tenant's files or anywhere on
    the host). Listing reads no file's bytes."""
    found = {}
    for name in ENTITIES:
        where = entity_dir(raw_root, tenant, name)
        entries, refused = storage.list_entries(where, trusted_root=raw_root)
        found[name] = Found(entries, refused)
    return found


def entity_dir(raw_root: str, tenant: str, entity: str) -> str:
    """The folder or prefix of one entity of a tenant's raw files."""
    return join(tenant_raw_dir(raw_root, tenant), f"entity={entity}")


def raw_tenants(storage: Storage, raw_root: str) -> list[str]:
    """Ids of the tenants with a ``tenant_id=<t>`` folder or prefix under ``raw_root`` (sorted;
    folders whose id is not a valid tenant id are skipped with a warning)."""
    import pyarrow.fs as pafs

    from cdf_pipeline.exceptions import InvalidTenantError

    fs, base = storage.fs(raw_root)
    try:
        infos = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    except OSError as exc:
        raise InputError(f"cannot list tenants under {raw_root}: {exc}") from exc
    found = []
    for info in infos:
        name = info.base_name
        if info.type != pafs.FileType.Directory or not name.startswith("tenant_id="):
            continue
        try:
            found.append(validate_tenant_id(name.removeprefix("tenant_id=")))
        except InvalidTenantError:
            logger.warning("skipping %s under %s: not a valid tenant id", name, raw_root)
    return sorted(found)
