"""Where files go: a local directory or an S3 prefix; content-addressed data files.

Data is written in fixed-size row groups (``ROW_GROUP_ROWS``) whatever the generation chunk, so
the bytes, and the SHA-256 in the file name, only depend on the rows. Local files are written to a
temporary name in the destination folder and renamed; S3 objects are written to a local temporary
file, hashed, then uploaded.
"""

from __future__ import annotations

import hashlib
import os
import queue
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from cdf_pipeline.contracts import ENTITIES
from cdf_pipeline.exceptions import InputError

ROW_GROUP_ROWS = 65_536
#: snappy: zstd (level 1) files are ~35 % smaller but take ~40 % longer to write (measured).
COMPRESSION = "snappy"
#: Low-cardinality columns worth dictionary encoding; high-cardinality ones (ids, e-mails,
#: timestamps, numbers) only pay for a dictionary that overflows and is thrown away.
DICTIONARY_COLUMNS = frozenset(
    {f.name for e in ENTITIES.values() for f in e.fields if f.enum is not None}
    | {"tenant_id", "schema_version", "data_source", "terms_version", "region", "city", "state",
       "dba_name", "address_line2", "hazard_class", "certifications", "compliance_flags"}
)  # fmt: skip
#: Min/max statistics where readers prune on them; elsewhere they cost write time only.
STATISTICS_COLUMNS = frozenset({"tenant_id", "source_timestamp", "ingestion_timestamp"})


class Destination:
    """A root URI (local path or ``s3://bucket/prefix``) that files are written under."""

    def __init__(self, root_uri: str, *, s3_endpoint: str | None = None) -> None:
        self.root_uri = root_uri.rstrip("/") or "/"
        self.is_s3 = root_uri.startswith("s3://")
        self.s3_endpoint = s3_endpoint
        self._client: Any = None
        if self.is_s3:
            bucket, _, prefix = root_uri[len("s3://") :].partition("/")
            if not bucket:
                raise InputError(f"invalid S3 root {root_uri!r}: expected s3://bucket[/prefix]")
            self.bucket, self.prefix = bucket, prefix.strip("/")

    def check_writable(self) -> None:
        """Fail early, with one clear message, when the root cannot be written."""
        if self.is_s3:
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except Exception as exc:  # botocore raises many types; report the first line
                raise InputError(
                    f"cannot write to {self.root_uri}: bucket {self.bucket!r} is not reachable "
                    f"({str(exc).splitlines()[0]}); check --s3-endpoint and credentials"
                ) from exc
            return
        root = Path(self.root_uri)
        try:
            root.mkdir(parents=True, exist_ok=True)
            probe = root / f".cdf-write-probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise InputError(
                f"cannot write to {self.root_uri}: {exc.strerror or exc}"
                "; choose another --root or --out"
            ) from exc

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("s3", endpoint_url=self.s3_endpoint)
        return self._client

    def uri(self, rel: str) -> str:
        if self.is_s3:
            key = f"{self.prefix}/{rel}" if self.prefix else rel
            return f"s3://{self.bucket}/{key}"
        return str(Path(self.root_uri) / rel)

    def staging(self, rel_dir: str) -> Path:
        """A folder to write a temporary file in (the destination folder itself when local)."""
        if self.is_s3:
            return Path(tempfile.mkdtemp(prefix="cdf-gen-"))
        folder = Path(self.root_uri) / rel_dir
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def commit(self, tmp: Path, rel: str) -> str:
        """Move a finished temporary file to ``rel`` under the root; returns its URI."""
        if self.is_s3:
            key = f"{self.prefix}/{rel}" if self.prefix else rel
            try:
                self.client.upload_file(str(tmp), self.bucket, key)
            finally:
                shutil.rmtree(tmp.parent, ignore_errors=True)
        else:
            os.replace(tmp, Path(self.root_uri) / rel)
        return self.uri(rel)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class _RowGroups:
    """Re-cut a stream of tables into fixed-size, contiguous row groups."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.pending: list[pa.Table] = []
        self.count = 0

    def push(self, table: pa.Table) -> Iterable[pa.Table]:
        self.pending.append(table)
        self.count += table.num_rows
        while self.count >= self.rows:
            whole = pa.concat_tables(self.pending)
            yield whole.slice(0, self.rows).combine_chunks()
            rest = whole.slice(self.rows)
            self.pending, self.count = [rest], rest.num_rows

    def flush(self) -> Iterable[pa.Table]:
        if self.count:
            yield pa.concat_tables(self.pending).combine_chunks()
        self.pending, self.count = [], 0


def write_stream(path: Path, tables: Iterable[pa.Table], fmt: str, schema: pa.Schema) -> int:
    """Write ``tables`` (all of ``schema``) to ``path`` as Parquet or CSV; returns the row count.

    Encoding runs on a writer thread while the caller's generator builds the next chunk (Arrow
    and numpy release the GIL, so the two overlap on two cores).
    """
    writer: Any
    if fmt == "parquet":
        names = set(schema.names)
        writer = pq.ParquetWriter(
            path,
            schema,
            compression=COMPRESSION,
            use_dictionary=sorted(names & DICTIONARY_COLUMNS),
            write_statistics=sorted(names & STATISTICS_COLUMNS),
        )
    else:
        writer = pacsv.CSVWriter(path, schema)
    work: queue.Queue[pa.Table | None] = queue.Queue(maxsize=2)
    failure: list[BaseException] = []

    def drain() -> None:
        while (group := work.get()) is not None:
            if not failure:
                try:
                    writer.write_table(group)  # one row group: never above the default maximum
                except BaseException as exc:  # re-raised on the caller's thread below
                    failure.append(exc)

    thread = threading.Thread(target=drain, name="cdf-gen-writer", daemon=True)
    thread.start()
    rows = 0
    groups = _RowGroups(ROW_GROUP_ROWS)
    try:
        for table in tables:
            for group in groups.push(table):
                work.put(group)
                rows += group.num_rows
            if failure:
                break
        for group in groups.flush():
            work.put(group)
            rows += group.num_rows
    finally:
        work.put(None)
        thread.join()
        writer.close()
    if failure:
        raise failure[0]
    return rows


def write_labels(path: Path, labels: pa.Table) -> None:
    pq.write_table(labels, path, compression=COMPRESSION)
