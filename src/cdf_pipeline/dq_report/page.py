"""The report as one HTML file: Jinja2 renders the page, and the Vega JavaScript goes in inline.

Why this pair: Altair writes Vega-Lite specs (small JSON) and ``vl-convert-python`` ships the
vega-embed bundle (Vega, Vega-Lite, vega-embed; ~0.9 MB) inside its wheel, so the page carries
every script it runs and fetches nothing: it opens from a file, an e-mail or an air-gapped share.
Plotly would be as offline, but its one script is 4.8 MB, near the whole file's 5 MB budget.
The bundle is included once per page, whatever the number of charts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

import jinja2

from cdf_pipeline import __version__
from cdf_pipeline.dq_report import charts
from cdf_pipeline.dq_report.facts import (
    ORIGINAL_CHARS,
    SAMPLED_RULES,
    SAMPLES_PER_RULE,
    VALUE_CHARS,
    TenantFacts,
)


@dataclass
class TenantPage:
    """One tenant's section: its facts and the ids of its chart specs (None: nothing to draw)."""

    facts: TenantFacts
    specs: dict[str, str | None] = field(default_factory=dict)
    moves: list[tuple[str, int, int]] = field(default_factory=list)
    latest_pass_rate: float | None = None
    failed_files: int = 0


@cache
def _vega_bundle() -> tuple[str, str, str]:
    """(vega-embed bundle, Vega version, Vega-Lite version), matching Altair's schema."""
    import altair as alt
    import vl_convert as vlc

    vl_version = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    # The stub wants a snippet; without one the bundle defines the globals vegaEmbed, vega, ...
    bundle: str = vlc.javascript_bundle(vl_version=vl_version)  # type: ignore[call-arg]
    if "</script" in bundle.lower():  # would end the inline <script> early
        raise RuntimeError("the vega-embed bundle contains '</script': cannot inline it")
    return bundle, vlc.get_vega_version(), alt.SCHEMA_VERSION


@cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("cdf_pipeline.dq_report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("report.html.j2")


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.2%}"


def _when(value: datetime | None) -> str:
    return "" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


def _num(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


class _Specs:
    """Collects chart specs under unique element ids, as JSON safe inside ``<script>``."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, name: str, spec: dict[str, Any] | None) -> str | None:
        if spec is None:
            return None
        spec_id = f"spec-{len(self.items)}-{name}"
        text = json.dumps(spec, separators=(",", ":"), default=str)
        # "</" would close the <script> holding the spec; "<\/" is the same JSON string.
        self.items.append((spec_id, text.replace("</", "<\\/")))
        return spec_id


def render(
    tenants: list[TenantFacts], *, title: str, catalog: str, generated_at: str, since: str | None
) -> str:
    """The whole report as one self-contained HTML document."""
    specs = _Specs()
    pages = []
    for t in tenants:
        page = TenantPage(t, moves=t.rule_moves())
        runs = t.data_runs()
        page.latest_pass_rate = runs[-1].pass_rate if runs else None
        page.failed_files = t.manifest_failed()
        name = t.tenant
        page.specs = {
            "pass_rate": specs.add(f"{name}-pass-rate", charts.pass_rate(t)),
            "rules": specs.add(f"{name}-rules", charts.rules_per_run(t)),
            "quarantine": specs.add(f"{name}-quarantine", charts.quarantine_state(t)),
            "files": specs.add(f"{name}-files", charts.file_outcomes(t)),
            "durations": specs.add(f"{name}-durations", charts.durations(t)),
        }
        pages.append(page)
    lake = {
        "pass_rates": specs.add("lake-pass-rates", charts.compare_pass_rates(tenants)),
        "open": specs.add("lake-open", charts.compare_open(tenants)),
        "statuses": specs.add("lake-statuses", charts.compare_statuses(tenants)),
    }
    bundle, vega_version, vegalite_version = _vega_bundle()
    return _template().render(
        title=title,
        catalog=catalog,
        generated_at=generated_at,
        since=since,
        tenants=pages,
        lake=lake,
        specs=specs.items,
        pct=_pct,
        num=_num,
        when=_when,
        version=__version__,
        vega_js=bundle,
        vega_version=vega_version,
        vegalite_version=vegalite_version,
        samples_per_rule=SAMPLES_PER_RULE,
        value_chars=VALUE_CHARS,
        sampled_rules=SAMPLED_RULES,
        original_chars=ORIGINAL_CHARS,
    )
