"""Discover a tenant's raw files and decide which are new, by content hash.

Raw layout: ``<raw>/tenant_id=<t>/entity=<suppliers|parts>/ingest_date=YYYY-MM-DD/<file>``. A file
whose SHA-256 was already ingested for the tenant is skipped (never counted twice), whatever its
name. Each new file is checked before Spark reads it, so one corrupt file fails alone.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from cdf_pipeline.contracts import ENTITIES
from cdf_pipeline.exceptions import InputError
from cdf_pipeline.tenants import validate_tenant_id

logger = logging.getLogger(__name__)

SUFFIXES = (".parquet", ".csv")
_CHUNK = 1 << 20


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
        return Path(self.path).name

    @property
    def fmt(self) -> str:
        return "csv" if self.path.endswith(".csv") else "parquet"


def tenant_raw_dir(raw_root: str, tenant: str) -> Path:
    """The tenant's raw folder (the tenant id is validated, so it cannot escape ``raw_root``)."""
    if "://" in raw_root:
        raise InputError(
            f"raw location {raw_root} is remote: this build reads raw files from local paths only "
            "(Spark here has no S3 connector); use the local profile or a local --root"
        )
    return Path(raw_root) / f"tenant_id={validate_tenant_id(tenant)}"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _columns(path: Path) -> tuple[str, ...]:
    """Column names from the Parquet footer or the CSV header line."""
    if path.suffix == ".parquet":
        return tuple(pq.read_schema(path).names)
    with path.open("r", encoding="utf-8") as fh:
        header = fh.readline().rstrip("\r\n")
    return tuple(c.strip().strip('"') for c in header.split(",")) if header else ()


def _row_count(path: Path) -> int:
    """Rows in the file, read from the Parquet footer or by counting CSV records.

    This independent count is what the run's ``read`` total is audited against.
    """
    if path.suffix == ".parquet":
        return int(pq.read_metadata(path).num_rows)
    import pyarrow as pa
    import pyarrow.csv as pacsv

    with path.open("r", encoding="utf-8") as fh:
        header = fh.readline().rstrip("\r\n").split(",")
    if not header or not header[0]:
        raise ValueError("the CSV file has no header line")
    first = header[0].strip('"')
    table = pacsv.read_csv(
        path,
        convert_options=pacsv.ConvertOptions(
            include_columns=[first], column_types={first: pa.string()}
        ),
    )
    return int(table.num_rows)


def inspect_file(entity: str, path: Path) -> RawFile:
    """Hash and pre-check one file; a file that cannot be read carries ``error`` instead of rows."""
    sha = sha256_of(path)
    try:
        rows = _row_count(path)
        columns = _columns(path)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return RawFile(
            entity, str(path), sha, error=f"unreadable {path.suffix[1:]} file ({reason})"
        )
    return RawFile(entity, str(path), sha, rows=rows, columns=columns)


def discover(raw_root: str, tenant: str) -> dict[str, list[Path]]:
    """Every raw file of the tenant per entity, sorted by path (deterministic order)."""
    base = tenant_raw_dir(raw_root, tenant)
    found: dict[str, list[Path]] = {}
    for name in ENTITIES:
        folder = base / f"entity={name}"
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
        found[name] = files
    return found
