"""``python -m moto.server`` with one signature-check fix, for IAM-enforcing tests.

With IAM enforcement on, moto recomputes each request's SigV4 signature with botocore, and
botocore leaves ``User-Agent`` out of what it signs. The AWS SDK for Java v1, which Hadoop's S3A
uses to read raw files in Spark, signs ``User-Agent``; moto then computes another signature and
answers 403 (``SignatureDoesNotMatch``) to every S3A request. In this server process only,
``User-Agent`` is taken off botocore's list of unsigned headers: moto then checks exactly the
headers a request says it signed (boto3, pyarrow and the SDK v2 do not sign it, so nothing
changes for them). Run as ``python tests/servers/moto_signing.py -H 127.0.0.1 -p PORT``.
"""

from __future__ import annotations

import botocore.auth
from moto.server import main

if __name__ == "__main__":
    if "user-agent" in botocore.auth.SIGNED_HEADERS_BLACKLIST:
        botocore.auth.SIGNED_HEADERS_BLACKLIST.remove("user-agent")
    main()
