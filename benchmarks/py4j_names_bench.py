"""What a Column costs to build from Python, before and after the session's single imports.

    PYTHONPATH=src .venv/bin/python benchmarks/py4j_names_bench.py --exprs 3000 --rounds 3

Every ``F.col``/``F.lit``/``F.when`` looks its JVM class up by simple name (``functions``), and
Py4J tries the gateway's wildcard imports one by one: each wrong guess is a class-loader miss
that searches every jar on the classpath (PySpark's own jars and the Iceberg runtime here).
``cdf_pipeline.spark`` imports those classes by full name when it builds a session. This script
starts a session the plain way (PySpark's imports only, the profile's jars), times building
``F.col(x) + F.lit(1)`` (after a warm-up), applies the library's imports, and times it again:
the same JVM, one run, so the ratio is what the imports change. Printed: microseconds per
expression for each, per round, and the median ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
from statistics import median

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from cdf_pipeline import spark as cdf_spark
from cdf_pipeline.config import load_settings


def per_expression_us(n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        F.col(f"c{i % 7}") + F.lit(1)
    return (time.perf_counter() - started) / n * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exprs", type=int, default=3000, help="expressions per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    settings = load_settings("local")
    builder = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false")
    builder = builder.config("spark.jars", cdf_spark.session_options(settings)["spark.jars"])
    session = builder.getOrCreate()
    per_expression_us(args.exprs)  # warm-up: JIT, first lookups
    before = [per_expression_us(args.exprs) for _ in range(args.rounds)]
    cdf_spark._import_hot_classes(session)
    after = [per_expression_us(args.exprs) for _ in range(args.rounds)]
    for i, (b, a) in enumerate(zip(before, after, strict=True), 1):
        print(f"round {i}: PySpark's imports {b:7.0f} us, with the single imports {a:7.0f} us")
    ratio = median(a / b for b, a in zip(before, after, strict=True))
    print(
        f"\n{args.exprs:,} expressions per measurement; median {median(before):.0f} us -> "
        f"{median(after):.0f} us per F.col(x) + F.lit(1); ratio {ratio:.2f}"
    )
    session.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
