"""The one file-I/O layer: local paths and S3 through ``pyarrow.fs``, configured once.

Everything that lists, hashes, reads footers of, copies or writes files (raw discovery, the
generator's sink, labels) goes through :class:`Storage`, so the rest of the code never branches on
a URI's scheme and one S3 client configuration serves the whole job. Spark reads the same files
through Hadoop's S3A (:func:`spark_uri`), configured from the same :class:`S3Config`.

S3 endpoint, region and path-style come from the profile and from the standard AWS variables
(``AWS_ENDPOINT_URL_S3`` > ``AWS_ENDPOINT_URL`` > profile; ``AWS_REGION`` > ``AWS_DEFAULT_REGION``
> profile). Credentials are never configured here: pyarrow's AWS SDK takes them from the default
chain (environment, ``AWS_PROFILE``, SSO, instance role).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from cdf_pipeline.exceptions import ConfigError, InputError
from cdf_pipeline.locations import is_s3

if TYPE_CHECKING:
    from cdf_pipeline.config import Settings

_CHUNK = 1 << 20
#: Seconds before an unreachable S3 endpoint is reported (pyarrow's default waits minutes).
_CONNECT_TIMEOUT_S = 5.0
#: The default of ``storage.timeout_seconds``: how long a command waits for a store that stopped
#: answering (see :class:`S3Config`).
DEFAULT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class S3Config:
    """How every component (pyarrow, boto3, S3A, S3FileIO, Glue) reaches S3."""

    endpoint: str | None = None
    region: str | None = None
    path_style: bool = False
    #: ``storage.timeout_seconds``: every client gives up on a request within a quarter of it
    #: (connection and read timeouts, retries included), so a store that stops answering fails
    #: the command within it (``store_watch`` bounds whatever retries above the clients).
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def request_timeout_s(self) -> float:
        """Seconds one request may wait for an answer (a read's silence included)."""
        return max(2.0, self.timeout_s / 4)

    @property
    def connect_timeout_s(self) -> float:
        """Seconds to open a connection."""
        return min(_CONNECT_TIMEOUT_S, self.request_timeout_s)

    @classmethod
    def resolve(
        cls,
        *,
        endpoint: str | None = None,
        region: str | None = None,
        path_style: bool | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        environ: Mapping[str, str] | None = None,
    ) -> S3Config:
        """The profile's values under the standard AWS variables.

        A custom endpoint (moto, MinIO) defaults to path-style addressing, which such servers
        need; AWS itself defaults to virtual-hosted style.
        """
        env = os.environ if environ is None else environ
        endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or endpoint
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or region
        if endpoint and urlsplit(endpoint).scheme not in ("http", "https"):
            raise ConfigError(
                f"S3 endpoint {endpoint!r} must be an http:// or https:// URL (from "
                "AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL or storage.s3_endpoint_url)"
            )
        style = bool(endpoint) if path_style is None else path_style
        return cls(
            endpoint=endpoint or None, region=region or None, path_style=style, timeout_s=timeout_s
        )


@dataclass(frozen=True)
class FileEntry:
    """A listed file: where it is, its size and when it last changed (ns since the epoch)."""

    uri: str
    size: int
    mtime_ns: int


def spark_uri(uri: str) -> str:
    """The URI Spark reads a file by: S3 through Hadoop's S3A connector, local paths as they are."""
    if uri.startswith("s3://"):
        return "s3a://" + uri[len("s3://") :]
    return uri


def canonical(uri: str) -> str:
    """One spelling per location: ``s3://bucket/key`` or an absolute local path."""
    if uri.startswith("s3a://"):
        return "s3://" + uri[len("s3a://") :]
    if is_s3(uri):
        return uri.rstrip("/") if uri.count("/") > 3 else uri
    return str(Path(uri).resolve())


def join(uri: str, *parts: str) -> str:
    """``uri/part/part`` for local paths and S3 URIs alike."""
    return "/".join([uri.rstrip("/"), *(p.strip("/") for p in parts)])


def basename(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]


def bucket_of(uri: str) -> str:
    return uri.split("://", 1)[1].split("/", 1)[0]


class Storage:
    """File operations on local paths and ``s3://`` URIs, with one S3 configuration."""

    def __init__(self, s3: S3Config | None = None) -> None:
        self.s3 = s3 or S3Config.resolve()
        self._s3fs: pafs.S3FileSystem | None = None
        self._local = pafs.LocalFileSystem()

    # --- resolution -------------------------------------------------------------------------

    def _s3(self) -> pafs.S3FileSystem:
        if self._s3fs is None:
            self._s3fs = s3_filesystem(
                self.s3, self.s3.connect_timeout_s, self.s3.request_timeout_s, attempts=2
            )
        return self._s3fs

    def fs(self, uri: str) -> tuple[pafs.FileSystem, str]:
        """The filesystem holding ``uri`` and the path within it."""
        if is_s3(uri):
            if not bucket_of(uri):
                raise InputError(f"invalid S3 URI {uri!r}: expected s3://bucket/prefix")
            return self._s3(), uri.split("://", 1)[1]
        return self._local, str(Path(uri).resolve())

    # --- reading ----------------------------------------------------------------------------

    def list_tree(
        self, uri: str, suffixes: tuple[str, ...], *, trusted_root: str | None = None
    ) -> Listing:
        """Every file below ``uri`` with one of ``suffixes``, and every link not followed.

        A missing folder or prefix has no files. Local trees are walked without following
        links: a file (or a link to one) is listed only if its real path stays below ``uri``; a
        link whose target leaves it, a broken link and a link to a folder outside it are refused
        with the reason, so nothing is dropped silently. Links to folders inside the tree are
        not descended (their files are listed where they really are). ``trusted_root``, a prefix
        of ``uri``, is the one place whose own links are trusted (the configured raw root may be
        a link); a link between it and ``uri`` (a tenant folder pointing at another tenant's)
        leaves the tree like any other. S3 has no links.
        """
        if is_s3(uri):
            found = [e.uri for e in self._s3_entries(uri) if e.uri.endswith(suffixes)]
            return Listing(found, [])
        return _walk_local(Path(os.path.abspath(uri)), suffixes, _boundary(uri, trusted_root))

    def list_files(self, uri: str, suffixes: tuple[str, ...]) -> list[str]:
        """Every file below ``uri`` with one of ``suffixes``, as URIs sorted by path (links that
        leave the tree left out: :meth:`list_tree` says which)."""
        return self.list_tree(uri, suffixes).files

    def list_entries(
        self, uri: str, *, trusted_root: str | None = None
    ) -> tuple[list[FileEntry], list[tuple[str, str]]]:
        """Every file below ``uri`` with its size and modification time, sorted by path, and the
        links refused there as (path, reason) (see :meth:`list_tree`). Reads no file's bytes."""
        if is_s3(uri):
            return self._s3_entries(uri), []
        listing = self.list_tree(uri, ("",), trusted_root=trusted_root)
        entries = []
        for path in listing.files:
            st = os.stat(path)
            entries.append(FileEntry(path, st.st_size, st.st_mtime_ns))
        return entries, listing.refused

    def _s3_entries(self, uri: str) -> list[FileEntry]:
        fs, path = self.fs(uri)
        try:
            selector = pafs.FileSelector(path, recursive=True, allow_not_found=True)
            infos = fs.get_file_info(selector)
        except OSError as exc:
            raise InputError(f"cannot list {uri}: {first_line(exc)}") from exc
        found = [
            FileEntry("s3://" + i.path, int(i.size or 0), int(i.mtime_ns or 0))
            for i in infos
            if i.type == pafs.FileType.File
        ]
        return sorted(found, key=lambda e: e.uri)

    @contextmanager
    def open(self, uri: str) -> Iterator[IO[bytes]]:
        """A binary input stream (sequential) of ``uri``."""
        fs, path = self.fs(uri)
        with fs.open_input_stream(path) as stream:
            yield stream

    def open_random(self, uri: str) -> Any:
        """A seekable input file (Parquet footers)."""
        fs, path = self.fs(uri)
        return fs.open_input_file(path)

    def sha256(self, uri: str) -> str:
        """SHA-256 of the file's bytes, streamed."""
        digest = hashlib.sha256()
        with self.open(uri) as stream:
            while block := stream.read(_CHUNK):
                digest.update(block)
        return digest.hexdigest()

    @contextmanager
    def open_output(self, uri: str) -> Iterator[IO[bytes]]:
        """A binary output stream to ``uri`` (streamed: an S3 multipart upload, not a buffer)."""
        fs, path = self.fs(uri)
        if not is_s3(uri):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        with fs.open_output_stream(path) as stream:
            yield stream

    def move(self, src: str, dst: str) -> None:
        """Move a file within one filesystem (a rename locally, copy + delete on S3)."""
        fs, src_path = self.fs(src)
        _, dst_path = self.fs(dst)
        if not is_s3(dst):
            Path(dst_path).parent.mkdir(parents=True, exist_ok=True)
        fs.move(src_path, dst_path)

    def delete(self, uri: str) -> None:
        fs, path = self.fs(uri)
        fs.delete_file(path)

    def exists(self, uri: str) -> bool:
        fs, path = self.fs(uri)
        return fs.get_file_info(path).type != pafs.FileType.NotFound

    # --- writing ----------------------------------------------------------------------------

    @contextmanager
    def staged_file(self, uri_dir: str, suffix: str) -> Iterator[Path]:
        """A local temporary file to write before :meth:`put` moves it under ``uri_dir``.

        Local destinations stage in the destination folder (so the final move is a rename);
        S3 destinations stage in the system's temporary folder.
        """
        if is_s3(uri_dir):
            folder = Path(tempfile.mkdtemp(prefix="cdf-stage-"))
        else:
            folder = Path(uri_dir)
            folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".tmp-{uuid.uuid4().hex}{suffix}"
        try:
            yield tmp
        finally:
            tmp.unlink(missing_ok=True)
            if is_s3(uri_dir):
                shutil.rmtree(folder, ignore_errors=True)

    def put(self, local: Path, uri: str) -> str:
        """Move a finished local file to ``uri`` (a rename locally, an upload to S3)."""
        if not is_s3(uri):
            os.replace(local, uri)
            return uri
        fs, path = self.fs(uri)
        try:
            pafs.copy_files(
                str(local), path, source_filesystem=self._local, destination_filesystem=fs
            )
        except OSError as exc:
            raise InputError(f"cannot write {uri}: {first_line(exc)}") from exc
        return uri

    def check_writable(self, uri: str) -> None:
        """Fail early, with one clear message, when files cannot be written under ``uri``."""
        if is_s3(uri):
            self.check_bucket(uri)
            return
        root = Path(uri)
        try:
            root.mkdir(parents=True, exist_ok=True)
            probe = root / f".cdf-write-probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise InputError(
                f"cannot write to {uri}: {exc.strerror or exc}; choose another --root"
            ) from exc

    def check_bucket(self, uri: str) -> None:
        """The bucket of ``uri`` exists and answers with these credentials."""
        bucket = bucket_of(uri)
        where = self.s3.endpoint or "AWS S3"
        try:
            info = self._s3().get_file_info(bucket)
        except OSError as exc:
            raise InputError(
                f"cannot reach bucket {bucket!r} at {where}: {first_line(exc)}; check the "
                "endpoint (AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL), the region and the "
                "credentials (AWS default chain)"
            ) from exc
        if info.type == pafs.FileType.NotFound:
            raise InputError(
                f"bucket {bucket!r} does not exist at {where}; create it or fix the root {uri}"
            )

    def check_readable(self, uri: str) -> None:
        """The credentials may read objects and list keys under ``uri`` (S3).

        Looks up a key that does not exist below ``uri``: S3 answers "not found" only to a
        caller allowed to read objects there and list the bucket (otherwise 403), so a missing
        permission fails here, in one line, instead of mid-run. Nothing is written.
        """
        fs, path = self.fs(uri)
        try:
            fs.get_file_info(f"{path.rstrip('/')}/{PREFLIGHT_PROBE}")
        except OSError as exc:
            raise InputError(
                f"cannot read under {uri}: {first_line(exc)}; the credentials need s3:ListBucket "
                "on the bucket and s3:GetObject, s3:PutObject, s3:DeleteObject below the prefix "
                "(docs/deploy-aws.md)"
            ) from exc


#: A key no run writes: looked up by :meth:`Storage.check_readable` to test permissions.
PREFLIGHT_PROBE = ".cdf-preflight-probe"

#: Why a local link is not read (reported with the file, never dropped silently).
LINK_LEAVES_ROOT = "link leaves the folder being read, not followed"
BROKEN_LINK = "broken link: its target does not exist"


@dataclass(frozen=True)
class Listing:
    """The files found below a folder, and the links refused there, as (path, reason)."""

    files: list[str]
    refused: list[tuple[str, str]]


def _boundary(uri: str, trusted_root: str | None) -> Path:
    """The real folder every listed file must stay in: ``uri`` with only ``trusted_root``'s own
    links resolved (all of ``uri``'s when no trusted root is given)."""
    if trusted_root is None:
        return Path(uri).resolve()
    below = Path(os.path.abspath(uri)).relative_to(os.path.abspath(trusted_root))
    return Path(trusted_root).resolve() / below


def _walk_local(top: Path, suffixes: tuple[str, ...], boundary: Path) -> Listing:
    """:meth:`Storage.list_tree` of a local folder (``os.scandir``, links never followed)."""
    files: list[str] = []
    refused: list[tuple[str, str]] = []
    folders = [top]
    while folders:
        folder = folders.pop()
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise InputError(f"cannot list {folder}: {exc.strerror or exc}") from exc
        for entry in entries:
            wanted = entry.name.endswith(suffixes)
            if entry.is_symlink():
                target = Path(entry.path).resolve()
                if not target.is_relative_to(boundary):
                    if wanted or target.is_dir():
                        refused.append((entry.path, LINK_LEAVES_ROOT))
                elif wanted and not target.exists():
                    refused.append((entry.path, BROKEN_LINK))
                elif wanted and target.is_file():
                    files.append(entry.path)
            elif entry.is_dir(follow_symlinks=False):
                folders.append(Path(entry.path))
            elif wanted and entry.is_file(follow_symlinks=False):
                # A plain file reached through a linked folder above it leaves the tree too.
                if Path(entry.path).resolve().is_relative_to(boundary):
                    files.append(entry.path)
                else:
                    refused.append((entry.path, LINK_LEAVES_ROOT))
    return Listing(sorted(files), sorted(refused))


def s3_filesystem(
    s3: S3Config, connect_timeout: float, request_timeout: float, *, attempts: int
) -> pafs.S3FileSystem:
    """pyarrow's S3 client for ``s3`` with these timeouts (seconds) and request attempts."""
    kw: dict[str, Any] = {
        "connect_timeout": connect_timeout,
        "request_timeout": request_timeout,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=attempts),
    }
    if s3.region:
        kw["region"] = s3.region
    if s3.endpoint:
        parts = urlsplit(s3.endpoint)
        kw["endpoint_override"] = parts.netloc
        kw["scheme"] = parts.scheme
    # pyarrow addresses buckets by path on a custom endpoint unless told otherwise.
    kw["force_virtual_addressing"] = bool(s3.endpoint) and not s3.path_style
    return pafs.S3FileSystem(**kw)


def bucket_silence(fs: pafs.S3FileSystem, bucket: str) -> str | None:
    """Why ``bucket`` does not answer through ``fs`` (gone, unreachable), or None if it does."""
    try:
        info = fs.get_file_info(bucket)
    except OSError as exc:
        return first_line(exc)
    return "the bucket does not exist" if info.type == pafs.FileType.NotFound else None


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its class name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def s3_config(settings: Settings) -> S3Config:
    """The S3 configuration of ``settings`` under the standard AWS variables."""
    st = settings.storage
    return S3Config.resolve(
        endpoint=st.s3_endpoint_url,
        region=st.s3_region,
        path_style=st.s3_path_style,
        timeout_s=st.timeout_seconds,
    )


def storage_for(settings: Settings) -> Storage:
    """The storage layer of one job (one S3 client configuration for all of it)."""
    return Storage(s3_config(settings))
