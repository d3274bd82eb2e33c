"""``python -m cdf_pipeline.cli``: the ``cdf`` command, as tests and benchmarks start it."""

from __future__ import annotations

import sys

from cdf_pipeline.cli.main import main

sys.exit(main())
