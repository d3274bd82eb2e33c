"""``cdf jars``: the JVM jars a profile needs, as ``--packages`` coordinates or resolved files.

``make install`` runs ``cdf jars --all --resolve`` so the first run downloads nothing; a cluster
launch takes ``spark-submit --packages "$(cdf jars --profile aws)"``.
"""

from __future__ import annotations

import argparse

from cdf_pipeline import jars
from cdf_pipeline.cli.common import add_profile
from cdf_pipeline.config import load_settings


def register(subs: argparse._SubParsersAction) -> None:
    p = subs.add_parser(
        "jars",
        help="list (or download) the Spark jars a profile needs",
        description="Print the Maven coordinates of the jars a profile needs, comma-separated "
        "for spark-submit --packages; with --resolve, download them (and their dependencies) "
        "into Ivy's cache and print the local files, comma-separated for --jars. "
        f"With {jars.JARS_DIR_ENV} set, files come from that folder and nothing is downloaded.",
    )
    which = p.add_mutually_exclusive_group()
    add_profile(which)
    which.add_argument("--all", action="store_true", help="every jar any profile may need")
    p.add_argument("--resolve", action="store_true", help="download and print local jar files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cdf_pipeline.spark import needed_jars

    wanted = list(jars.ALL_JARS) if args.all else needed_jars(load_settings(args.profile))
    if args.resolve:
        print(",".join(str(p) for p in jars.resolve(wanted)))
    else:
        print(jars.coordinates(wanted))
    return 0
