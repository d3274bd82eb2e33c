"""Discover a tenant's raw files and decide which are new, by content hash.

Raw layout: ``<raw>/tenant_id=<t>/entity=<entity>/ingest_date=YYYY-MM-DD/<file>``. A file
whose SHA-256 was already ingested for the tenant is skipped (never counted twice), whatever its
name. Each new file is checked before Spark reads it, so one corrupt file fails alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from cdf_pipeline.contracts import ENTITIES
from cdf_pipeline.storage import Storage, basename, join
from cdf_pipeline.tenants import validate_tenant_id

logger = logging.getLogger(__name__)

SUFFIXES = (".parquet", ".csv")


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


def _csv_header(storage: Storage, uri: str) -> list[str]:
    with storage.open(uri) as stream:
        first = stream.read(1 << 16)  # a header line is far shorter
    line = first.decode("utf-8").splitlines()[0] if first else ""
    return [c.strip().strip('"') for c in line.split(",")] if line else []


def _columns_and_rows(storage: Storage, uri: str) -> tuple[tuple[str, ...], int]:
    """Column names and row count, from the Parquet footer or by reading the CSV.

    This independent count is what the run's ``read`` total is audited against.
    """
    if uri.endswith(".parquet"):
        with storage.open_random(uri) as handle:
            meta = pq.read_metadata(handle)
        return tuple(meta.schema.to_arrow_schema().names), int(meta.num_rows)
    header = _csv_header(storage, uri)
    if not header or not header[0]:
        raise ValueError("the CSV file has no header line")
    with storage.open(uri) as stream:
        table = pacsv.read_csv(
            stream,
            convert_options=pacsv.ConvertOptions(
                include_columns=[header[0]], column_types={header[0]: pa.string()}
            ),
        )
    return tuple(header), int(table.num_rows)


def inspect_file(storage: Storage, entity: str, uri: str, *, sha256: str | None = None) -> RawFile:
    """Hash (unless ``sha256`` is known) and pre-check one file; a file that cannot be read
    carries ``error`` instead of rows."""
    sha = sha256 or storage.sha256(uri)
    try:
        columns, rows = _columns_and_rows(storage, uri)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        kind = uri.rsplit(".", 1)[-1]
        return RawFile(entity, uri, sha, error=f"unreadable {kind} file ({reason})")
    return RawFile(entity, uri, sha, rows=rows, columns=columns)


def discover(storage: Storage, raw_root: str, tenant: str) -> dict[str, list[str]]:
    """Every raw file URI of the tenant per entity, sorted by path (deterministic order)."""
    base = tenant_raw_dir(raw_root, tenant)
    return {name: storage.list_files(join(base, f"entity={name}"), SUFFIXES) for name in ENTITIES}
