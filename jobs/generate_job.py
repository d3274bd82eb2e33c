"""Entry point for the generator (``python jobs/generate_job.py --tenants acme ...``).

Same code path as ``cdf generate``.
"""

from __future__ import annotations

import sys

from cdf_pipeline.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["generate", *sys.argv[1:]]))
