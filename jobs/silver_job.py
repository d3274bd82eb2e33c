"""spark-submit entry point for the silver job of one tenant.

    spark-submit jobs/silver_job.py --tenant acme --profile local [--root DIR] [--json]

Same code path as ``cdf run``: parse arguments, load settings, run, exit with the run's status.
"""

from __future__ import annotations

import sys

from cdf_pipeline.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
