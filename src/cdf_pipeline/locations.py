"""What kind of place a configured location is (a local folder or S3), without any I/O.

Its own module so that configuration (which checks locations when loaded) and storage (which
reads and writes them) share one definition without configuration depending on storage.
"""

from __future__ import annotations

S3_SCHEMES = ("s3://", "s3a://")


def is_s3(uri: str) -> bool:
    """Whether ``uri`` is on S3 (``s3://``, or Hadoop's ``s3a://``)."""
    return uri.startswith(S3_SCHEMES)
