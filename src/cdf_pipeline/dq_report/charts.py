"""The report's charts as Vega-Lite specs, built with Altair from :mod:`facts`.

Altair checks each spec against the Vega-Lite schema (in the tests, ``VALIDATE``); the page
renders it with the Vega JavaScript inlined (``page.py``), so it needs nothing from the network.
Data is inline (``alt.Data(values=...)``): a few points per run, never rows of a table. Each
builder returns None when it would have nothing to draw (the page says so in words instead).
"""

from __future__ import annotations

from typing import Any

import altair as alt

from cdf_pipeline import run_record as S
from cdf_pipeline.dq_report.facts import Run, TenantFacts
from cdf_pipeline.lakehouse.quarantine import OPEN, RESOLVED

Spec = dict[str, Any]

WIDTH = 560
HEIGHT = 180
#: Every status a run can end with, in a fixed order and colour, so charts read alike.
STATUSES = (
    S.SUCCEEDED,
    S.PARTIAL,
    S.NOTHING_NEW,
    S.AUDIT_FAILED,
    S.FAILED,
    S.BUSY,
    S.UNKNOWN_TENANT,
)
STATUS_COLOURS = ("#2e7d32", "#9e9d24", "#90a4ae", "#ef6c00", "#c62828", "#6a1b9a", "#37474f")
STATUS_SCALE = alt.Scale(domain=list(STATUSES), range=list(STATUS_COLOURS))
#: Validate each spec against the Vega-Lite schema as it is built. Off in production: jsonschema
#: walks every inline data value too (0.37 s of a tenant's 0.4 s of chart building, measured on
#: 50 runs); the tests build every chart with it on (tests/unit/test_report_charts.py).
VALIDATE = False
RUN_AXIS = alt.Axis(labelAngle=-40, labelLimit=120, title="run (oldest first)")


def _iso(run: Run) -> str:
    """ISO-8601 in UTC (the session's time zone is UTC, so collected timestamps are naive UTC)."""
    stamp = run.started_at.isoformat(timespec="seconds")
    return stamp if run.started_at.tzinfo else stamp + "Z"


def _spec(chart: alt.TopLevelMixin) -> Spec:
    spec: Spec = chart.to_dict(validate=VALIDATE)
    return spec


def _run_order(runs: list[Run]) -> list[str]:
    return [r.run_id for r in runs]


def pass_rate(t: TenantFacts) -> Spec | None:
    """Pass rate per run over time, a point per run that staged rows, and the gate's threshold
    (a run under it is AUDIT_FAILED: silver was left unchanged)."""
    runs = t.data_runs()
    if not runs:
        return None
    values = [
        {"started_at": _iso(r), "pass_rate": r.pass_rate, "run_id": r.run_id, "status": r.status}
        for r in runs
    ]
    base = alt.Chart().encode(  # data once, on the layer (not copied into each mark's layer)
        x=alt.X("started_at:T", title="run started (UTC)", scale=alt.Scale(type="utc")),
        y=alt.Y("pass_rate:Q", title="pass rate", scale=alt.Scale(domain=[0, 1])),
    )
    line = base.mark_line(color="#1565c0")
    points = base.mark_point(filled=True, size=60).encode(
        color=alt.Color("status:N", scale=STATUS_SCALE, legend=alt.Legend(title="status")),
        tooltip=["run_id:N", "status:N", alt.Tooltip("pass_rate:Q", format=".2%")],
    )
    gate = (
        alt.Chart(alt.Data(values=[{"threshold": t.threshold}]))
        .mark_rule(color="#c62828", strokeDash=[6, 4])
        .encode(y="threshold:Q", tooltip=[alt.Tooltip("threshold:Q", format=".0%")])
    )
    layers = alt.layer(line, points, gate, data=alt.Data(values=values))
    return _spec(layers.properties(width=WIDTH, height=HEIGHT))


def rules_per_run(t: TenantFacts) -> Spec | None:
    """Quarantined rows per rule per run, stacked (a row failing two rules counts in both)."""
    runs = t.data_runs()
    values = [
        {"run_id": r.run_id, "rule": rule, "rows": n}
        for r in runs
        for rule, n in sorted(r.violations.items())
        if n > 0
    ]
    if not values:
        return None
    chart = (
        alt.Chart(alt.Data(values=values))
        .mark_bar()
        .encode(
            x=alt.X("run_id:N", sort=_run_order(runs), axis=RUN_AXIS),
            y=alt.Y("rows:Q", stack="zero", title="quarantined rows"),
            color=alt.Color("rule:N", legend=alt.Legend(title="rule", columns=2)),
            tooltip=["run_id:N", "rule:N", "rows:Q"],
        )
        .properties(width=WIDTH, height=HEIGHT)
    )
    return _spec(chart)


def quarantine_state(t: TenantFacts) -> Spec | None:
    """Open against resolved quarantine rows per entity (resolved: promoted once a late parent
    arrived, or sent again and landed)."""
    values = [
        {"entity": entity, "status": status, "rows": n}
        for (entity, status), (n, _) in sorted(t.quarantine.items())
        if n > 0
    ]
    if not values:
        return None
    chart = (
        alt.Chart(alt.Data(values=values))
        .mark_bar()
        .encode(
            y=alt.Y("entity:N", title=None),
            x=alt.X("rows:Q", stack="zero", title="quarantine rows"),
            color=alt.Color(
                "status:N",
                scale=alt.Scale(domain=[OPEN, RESOLVED], range=["#ef6c00", "#2e7d32"]),
            ),
            tooltip=["entity:N", "status:N", "rows:Q"],
        )
        .properties(width=WIDTH, height=80)
    )
    return _spec(chart)


def file_outcomes(t: TenantFacts) -> Spec | None:
    """Files per run by outcome (INGESTED, FAILED; STAGED: read by a run whose audit held the
    publish, so read again next run)."""
    runs = [r for r in t.runs if r.files]
    counts: dict[tuple[str, str], int] = {}
    for r in runs:
        for f in r.files:
            key = (r.run_id, str(f["status"]))
            counts[key] = counts.get(key, 0) + 1
    if not counts:
        return None
    values = [{"run_id": k[0], "outcome": k[1], "files": n} for k, n in sorted(counts.items())]
    chart = (
        alt.Chart(alt.Data(values=values))
        .mark_bar()
        .encode(
            x=alt.X("run_id:N", sort=_run_order(runs), axis=RUN_AXIS),
            y=alt.Y("files:Q", stack="zero", title="files"),
            color=alt.Color(
                "outcome:N",
                scale=alt.Scale(  # SKIPPED, IGNORED: where the run record lists them
                    domain=["INGESTED", "STAGED", "SKIPPED", "IGNORED", "FAILED"],
                    range=["#2e7d32", "#90a4ae", "#b0bec5", "#cfd8dc", "#c62828"],
                ),
            ),
            tooltip=["run_id:N", "outcome:N", "files:Q"],
        )
        .properties(width=WIDTH, height=HEIGHT)
    )
    return _spec(chart)


def durations(t: TenantFacts) -> Spec | None:
    """Each run's duration, coloured by its status."""
    if not t.runs:
        return None
    values = [
        {"run_id": r.run_id, "seconds": round(r.duration_s, 1), "status": r.status} for r in t.runs
    ]
    chart = (
        alt.Chart(alt.Data(values=values))
        .mark_bar()
        .encode(
            x=alt.X("run_id:N", sort=_run_order(t.runs), axis=RUN_AXIS),
            y=alt.Y("seconds:Q", title="duration (s)"),
            color=alt.Color("status:N", scale=STATUS_SCALE),
            tooltip=["run_id:N", "status:N", "seconds:Q"],
        )
        .properties(width=WIDTH, height=HEIGHT)
    )
    return _spec(chart)


def compare_pass_rates(tenants: list[TenantFacts]) -> Spec | None:
    """Each tenant's latest pass rate against its own gate threshold."""
    values = []
    for t in tenants:
        runs = t.data_runs()
        if runs:
            values.append(
                {"tenant": t.tenant, "pass_rate": runs[-1].pass_rate, "threshold": t.threshold}
            )
    if not values:
        return None
    base = alt.Chart().encode(y=alt.Y("tenant:N", title=None))
    bars = base.mark_bar(color="#1565c0").encode(
        x=alt.X("pass_rate:Q", title="latest pass rate", scale=alt.Scale(domain=[0, 1])),
        tooltip=["tenant:N", alt.Tooltip("pass_rate:Q", format=".2%")],
    )
    gate = base.mark_tick(color="#c62828", thickness=2).encode(x="threshold:Q")
    return _spec(alt.layer(bars, gate, data=alt.Data(values=values)).properties(width=WIDTH))


def compare_open(tenants: list[TenantFacts]) -> Spec | None:
    """Open quarantine rows per tenant: where the fixing work is."""
    values = [{"tenant": t.tenant, "open": t.open_rows()} for t in tenants]
    if not values:
        return None
    chart = (
        alt.Chart(alt.Data(values=values))
        .mark_bar(color="#ef6c00")
        .encode(
            y=alt.Y("tenant:N", title=None),
            x=alt.X("open:Q", title="open quarantine rows"),
            tooltip=["tenant:N", "open:Q"],
        )
        .properties(width=WIDTH)
    )
    return _spec(chart)


def compare_statuses(tenants: list[TenantFacts]) -> Spec | None:
    """Runs per status per tenant in the period."""
    counts: dict[tuple[str, str], int] = {}
    for t in tenants:
        for r in t.runs:
            counts[(t.tenant, r.status)] = counts.get((t.tenant, r.status), 0) + 1
    if not counts:
        return None
    values = [{"tenant": k[0], "status": k[1], "runs": n} for k, n in sorted(counts.items())]
    chart = (
        alt.Chart(alt.Data(values=values))
        .mark_bar()
        .encode(
            y=alt.Y("tenant:N", title=None),
            x=alt.X("runs:Q", stack="zero", title="runs"),
            color=alt.Color("status:N", scale=STATUS_SCALE),
            tooltip=["tenant:N", "status:N", "runs:Q"],
        )
        .properties(width=WIDTH)
    )
    return _spec(chart)
