"""Discover a tenant's raw files and decide which are new, by content hash.

Raw layout: ``<raw>/tenant_id=<t>/entity=<entity>/ingest_date=YYYY-MM-DD/<file>``. A file
whose SHA-256 was already ingested for the tenant is skipped (never counted twice), whatever its
name. Each new file is checked before Spark reads it, so one corrupt file fails alone.

CSV is read as RFC 4180 has it, here and by Spark (``ingest/read.py``): fields quoted with ``"``,
a quote inside one doubled, line breaks (LF or CRLF) inside quoted fields, CRLF or LF line ends,
an optional UTF-8 byte-order mark. Both readers agree on where a record ends, so the pre-check's
count is the count Spark reads (the run checks that too, per file).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from cdf_pipeline.contracts import ENTITIES
from cdf_pipeline.exceptions import InputError
from cdf_pipeline.storage import Listing, Storage, basename, join
from cdf_pipeline.tenants import validate_tenant_id

logger = logging.getLogger(__name__)

SUFFIXES = (".parquet", ".csv")

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

    @property
    def name(self) -> str:
        return basename(self.path)

    @property
    def fmt(self) -> str:
        return "csv" if self.path.endswith(".csv") else "parquet"


def tenant_raw_dir(raw_root: str, tenant: str) -> str:
    """The tenant's raw folder or prefix (the id is validated, so it cannot escape ``raw_root``)."""
    return join(raw_root, f"tenant_id={validate_tenant_id(tenant)}")


def _csv_columns_and_rows(storage: Storage, uri: str) -> tuple[tuple[str, ...], int]:
    """The header's column names (quotes, BOM and line ends handled by the parser) and the
    number of records, counted in a stream of the first column read as text (constant memory,
    no type inference that a later block could contradict)."""
    with storage.open(uri) as stream:
        header = pacsv.open_csv(stream, parse_options=CSV_PARSE).schema.names
    if not header or not header[0]:
        raise ValueError("the CSV file has no header line")
    first = header[0]
    convert = pacsv.ConvertOptions(include_columns=[first], column_types={first: pa.string()})
    rows = 0
    with storage.open(uri) as stream:
        for batch in pacsv.open_csv(stream, parse_options=CSV_PARSE, convert_options=convert):
            rows += batch.num_rows
    return tuple(header), rows


def _columns_and_rows(storage: Storage, uri: str) -> tuple[tuple[str, ...], int]:
    """Column names and row count, from the Parquet footer or by reading the CSV.

    This independent count is what the run's ``read`` total is audited against.
    """
    if uri.endswith(".parquet"):
        with storage.open_random(uri) as handle:
            meta = pq.read_metadata(handle)
        return tuple(meta.schema.to_arrow_schema().names), int(meta.num_rows)
    return _csv_columns_and_rows(storage, uri)


def inspect_file(storage: Storage, entity: str, uri: str, *, sha256: str | None = None) -> RawFile:
    """Hash (unless ``sha256`` is known) and pre-check one file; a file that cannot be read
    carries ``error`` instead of rows."""
    sha = sha256 or storage.sha256(uri)
    if sha == EMPTY_SHA256:
        return RawFile(entity, uri, sha, error=EMPTY_FILE)
    try:
        columns, rows = _columns_and_rows(storage, uri)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        kind = uri.rsplit(".", 1)[-1]
        return RawFile(entity, uri, sha, error=f"unreadable {kind} file ({reason})")
    return RawFile(entity, uri, sha, rows=rows, columns=columns)


def discover(storage: Storage, raw_root: str, tenant: str) -> dict[str, Listing]:
    """Every raw file URI of the tenant per entity, sorted by path (deterministic order), and the
    links refused there (a link whose target leaves the tenant's entity folder is not read:
    it could point at another tenant's files or anywhere on the host)."""
    base = tenant_raw_dir(raw_root, tenant)
    return {
        name: storage.list_tree(join(base, f"entity={name}"), SUFFIXES, trusted_root=raw_root)
        for name in ENTITIES
    }


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
