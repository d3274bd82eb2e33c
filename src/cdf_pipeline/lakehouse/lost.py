"""Recognising a lost table: a catalog entry whose current metadata file no longer exists.

Apart from :mod:`.recovery` (which finds and repairs lost tables, and needs the table names)
because ``tables.ensure_tables`` turns the error into one line too: both import this, and it
imports neither.
"""

from __future__ import annotations

import logging
import re

from cdf_pipeline.exceptions import LostTableError
from cdf_pipeline.storage import canonical

logger = logging.getLogger(__name__)

#: The command that repairs a lost table, as the error of any command that meets one names it.
REPAIR_HINT = (
    "run 'cdf maintain --repair' (with this command's --profile and --root) to re-register it from "
    "its newest surviving metadata file, adding --drop-broken to drop it when none survives (the "
    "next run then rebuilds it from the raw files)"
)

_METADATA_FILE = re.compile(r"(\S+\.metadata\.json)\b")
_NOT_FOUND = re.compile(r"NotFoundException: [^\n]*?(\S+\.metadata\.json)")


def lost_table_error(table: str, missing: str) -> LostTableError:
    """The one-line error of a command that met a lost table."""
    return LostTableError(
        f"table {table} is lost: its catalog entry points at metadata file {missing}, which no "
        f"longer exists; {REPAIR_HINT}",
        table=table,
        missing=missing,
    )


def missing_metadata_file(exc: BaseException) -> str | None:
    """The table metadata file that ``exc`` says does not exist, if it says so.

    Iceberg reports a missing file as ``NotFoundException`` naming it (``Location does not
    exist: s3://...`` from S3FileIO, ``Failed to open input stream for file: ...`` from
    HadoopFileIO); ``exc`` is a py4j or pyspark wrapper of it, or of an exception it caused.
    """
    java = getattr(exc, "java_exception", None) or getattr(exc, "_origin", None)
    try:
        while java is not None:
            if java.getClass().getSimpleName() in ("NotFoundException", "FileNotFoundException"):
                found = _METADATA_FILE.search(str(java.getMessage() or ""))
                if found:
                    return _plain(found.group(1))
            java = java.getCause()
    except Exception:  # the gateway may be gone: the text below still names the file
        logger.debug("could not walk the Java causes of %s", type(exc).__name__, exc_info=True)
    found = _NOT_FOUND.search(str(exc))
    return _plain(found.group(1)) if found else None


def _plain(location: str) -> str:
    """A location as the storage layer spells it (``s3a://`` -> ``s3://``; ``file:`` dropped)."""
    if location.startswith("file:"):
        location = "/" + location.removeprefix("file:").lstrip("/")
    return canonical(location)
