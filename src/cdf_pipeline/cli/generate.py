"""``cdf generate``: synthetic, labelled supplier and parts files for one or more tenants."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from typing import Any

from cdf_pipeline import telemetry
from cdf_pipeline.cli.common import add_json, add_profile, add_root
from cdf_pipeline.exceptions import InputError

EPILOG = """\
Files land under the root as raw/tenant_id=<t>/entity=<e>/ingest_date=<as-of>/<sha256>.<fmt>
with ground-truth labels in labels/tenant_id=<t>/entity=<e>/batch=<b>/labels.parquet.
Root: --out URI, else --root, else $CDF_ROOT, else the profile's root (./lakehouse).
--to URI writes the data files to a landing zone instead, as a customer drops them:
URI/<tenant>/<entity>/<entity>_<date>_batch<b>.<fmt>; 'cdf land --tenant <t>' moves them to raw.
With --to postgresql://user@host:port/db the rows go to <schema>.<entity> landing tables
(batch 1 replaces; a change batch updates changed rows in place and inserts new keys).
See docs/generator.md for the distributions, anomaly types and file shapes."""


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date (YYYY-MM-DD): {text!r}") from None


def register(subs: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    """Add the ``generate`` sub-command."""
    p = subs.add_parser(
        "generate",
        help="generate synthetic dirty supplier and parts files with ground-truth labels",
        description="Generate deterministic synthetic supplier and parts data with injected, "
        "labelled anomalies (numpy + pyarrow, vectorized).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--tenants", required=True, help="comma-separated tenant ids, e.g. acme,globex")
    p.add_argument("--suppliers", type=int, default=30_000, help="base supplier rows per tenant")
    p.add_argument("--parts", type=int, default=30_000, help="base part rows per tenant")
    p.add_argument(
        "--dirty-rate", type=float, default=0.06, help="share of rows with an anomaly, in [0, 0.5]"
    )
    p.add_argument("--seed", type=int, default=42, help="random seed (same seed, same bytes)")
    p.add_argument(
        "--batch",
        type=int,
        default=1,
        help="1 = first load; N >= 2 = change batch (updates, late versions, new keys)",
    )
    p.add_argument("--format", choices=("parquet", "csv"), default="parquet", help="file format")
    p.add_argument(
        "--shape",
        choices=("contract", "flat"),
        default="contract",
        help="contract = typed per the data contract; flat = every column a string",
    )
    where = p.add_mutually_exclusive_group()
    add_root(where)
    where.add_argument("--out", help="root URI: a local path or s3://bucket/prefix")
    p.add_argument(
        "--to",
        metavar="URI",
        help="write the data files to a landing zone instead of raw, as a customer would drop "
        "them: URI/<tenant>/<entity>/<entity>_<date>_batch<b>.<format> (a folder or "
        "s3://bucket/prefix/; then 'cdf land'). Labels still go under the root. A "
        "postgresql://user@host:port/db URI loads the rows into landing tables instead "
        "(password from PGPASSWORD or ~/.pgpass, never the URI; --format/--shape do not apply)",
    )
    p.add_argument(
        "--pg-schema",
        default="landing",
        metavar="TEMPLATE",
        help="landing schema for --to postgresql://...; '{tenant}' is replaced by each tenant id "
        "(required with several tenants, e.g. 'landing_{tenant}'); default landing",
    )
    add_profile(p)
    p.add_argument(
        "--as-of",
        type=_date,
        default=dt.date(2026, 1, 1),
        help="logical 'now' of batch 1 (batch b: as-of + b-1 days); default 2026-01-01",
    )
    p.add_argument(
        "--change-rate",
        type=float,
        default=0.10,
        help="rows of a change batch as a share of the base size (default 0.10)",
    )
    p.add_argument(
        "--chunk-rows",
        type=int,
        default=250_000,
        help="rows generated per step (memory knob; output is identical for any value)",
    )
    p.add_argument(
        "--s3-endpoint",
        help="S3 endpoint override (else $AWS_ENDPOINT_URL_S3 / $AWS_ENDPOINT_URL, else the "
        "profile's storage.s3_endpoint_url)",
    )
    add_json(p)
    p.set_defaults(func=run)


def _root(args: argparse.Namespace, settings_root: str) -> str:
    if args.out:
        return str(args.out)
    if args.root:
        return str(args.root)
    return os.environ.get("CDF_ROOT") or settings_root


def run(args: argparse.Namespace) -> int:
    """Generate the files; print a summary table (and JSON with ``--json``)."""
    from cdf_generator.api import generate
    from cdf_pipeline.config import load_settings
    from cdf_pipeline.storage import S3Config, Storage, s3_config
    from cdf_pipeline.tenants import parse_tenant_list

    tenants = parse_tenant_list(args.tenants)
    settings = load_settings(args.profile)
    root = _root(args, settings.root)
    if not root:
        raise InputError("empty root: pass --root DIR or --out URI")
    s3 = s3_config(settings)
    if args.s3_endpoint:
        s3 = S3Config(endpoint=args.s3_endpoint, region=s3.region, path_style=True)

    total_files = len(tenants) * 2  # one data file per (tenant, entity)
    done = 0

    def progress(line: str) -> None:
        """A bar on a terminal; one line per file otherwise (logs, CI)."""
        nonlocal done
        done += 1
        if not sys.stderr.isatty():
            print(line, file=sys.stderr, flush=True)
            return
        filled = 30 * done // total_files
        end = "\n" if done >= total_files else ""
        bar = "#" * filled + "." * (30 - filled)
        print(f"\r[{bar}] {done}/{total_files} files", end=end, file=sys.stderr, flush=True)

    to_postgres = bool(args.to) and args.to.split(":", 1)[0] in ("postgresql", "postgres")
    summary = generate(
        tenants,
        args.suppliers,
        args.parts,
        seed=args.seed,
        dirty_rate=args.dirty_rate,
        batch=args.batch,
        fmt=args.format,
        shape=args.shape,
        root_uri=root,
        as_of=args.as_of,
        change_rate=args.change_rate,
        chunk_rows=args.chunk_rows,
        storage=Storage(s3),
        progress=progress,
        landing_uri=None if to_postgres else args.to,
        pg_uri=args.to if to_postgres else None,
        pg_schema=args.pg_schema,
    )
    telemetry.finish()  # before printing: an export error must not follow the JSON line
    data = summary.to_dict()
    print(_table(data))
    if args.json:
        out = {k: data[k] for k in ("tenants", "files", "seconds", "batch")}
        out["label_files"] = data["label_files"]
        print(json.dumps(out, sort_keys=False))
    return 0


def _table(data: dict[str, Any]) -> str:
    lines = [f"{'tenant':<16} {'entity':<10} {'rows':>10} {'anomalies':>10}  top anomalies"]
    for tenant, ents in data["tenants"].items():
        for entity, s in ents.items():
            top = sorted(s["by_anomaly"].items(), key=lambda kv: -kv[1])[:3]
            tops = ", ".join(f"{k}={v}" for k, v in top)
            lines.append(f"{tenant:<16} {entity:<10} {s['rows']:>10} {s['anomalies']:>10}  {tops}")
    lines.append(
        f"batch {data['batch']}: {len(data['files'])} data files in {data['seconds']:.2f} s"
    )
    return "\n".join(lines)
