"""``cdf report``: the data-quality report as one self-contained HTML file (``dq_report``)."""

from __future__ import annotations

import argparse
import json

from cdf_pipeline.cli.common import add_common, report, settings_from_args
from cdf_pipeline.dq_report.build import parse_since
from cdf_pipeline.orchestration.report import write_report
from cdf_pipeline.tenants import validate_tenant_id

DESCRIPTION = """\
Write one static HTML file (no network needed to open it: scripts and styles inline) from
ops.runs, ops.ingested_files and the quarantine tables: per tenant the pass rate of each run
against the publish gate, quarantined rows per rule per run and the rules that moved most, open
and resolved quarantine with the oldest open rows, file outcomes and schema drift, run durations
and statuses with run and trace ids, and a small sample of open rows per rule; and a page that
compares the tenants. It only reads (no lease, no table created).

exit codes: 0 written, 2 bad arguments, an empty or missing lakehouse, an unknown tenant, a
--since in the future, a lakehouse of an older layout."""


def register(subs: argparse._SubParsersAction) -> None:
    p = subs.add_parser(
        "report",
        help="the data-quality report: one self-contained HTML file",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--tenant", help="only this tenant (default: every tenant with runs)")
    p.add_argument(
        "--since",
        metavar="WHEN",
        help="only runs from then on: YYYY-MM-DD or an ISO-8601 time (UTC unless it says)",
    )
    # dest is not "out": main._start_telemetry reads args.out as a root (cdf generate's --out).
    p.add_argument(
        "--out",
        dest="report_file",
        default="cdf-report.html",
        metavar="FILE.html",
        help="where to write it (default: cdf-report.html)",
    )
    add_common(p, tenant=False)
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    tenant = validate_tenant_id(args.tenant) if args.tenant else None
    since = parse_since(args.since)
    settings = settings_from_args(args, tenant)

    def threshold(t: str) -> float:
        return settings_from_args(args, t).quality.min_pass_rate

    done = write_report(
        settings, args.report_file, tenant=tenant, since=since, threshold_for=threshold
    )
    summary = {
        "report": str(done.path),
        "tenants": done.tenants,
        "runs": done.runs,
        "bytes": done.size_bytes,
    }
    text = (
        f"wrote {done.path} ({len(done.tenants)} tenant(s), {done.runs} run(s), "
        f"{done.size_bytes / 1e6:.2f} MB)"
    )
    report(text, json.dumps(summary), as_json=args.json)  # with --json: the JSON line last
    return 0
