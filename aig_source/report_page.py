"""The report as one self-contained HTML page: headline figures, Plotly charts, and the figures
themselves as JSON (`<script type="application/json" id="aig-report-data">`).

Plotly's JavaScript is inlined once, so the page opens with no network: no script, style, font
or image is fetched. Charts are interactive (hover for values, click a legend entry to hide a
series, drag to zoom).
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from typing import Any, Dict, Optional

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from .settings import TOP_MODELS

DATA_ELEMENT_ID = "aig-report-data"
COLORS = [
    "#f6821f",  # Cloudflare orange
    "#2563eb",
    "#16a34a",
    "#9333ea",
    "#dc2626",
    "#0891b2",
    "#ca8a04",
    "#db2777",
    "#64748b",
]
CHART_HEIGHT = 340
OTHER = "other"

STYLE = """
:root { color-scheme: light; --ink: #1f2937; --muted: #6b7280; --line: #e5e7eb; }
* { box-sizing: border-box; }
body { margin: 0; font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
  color: var(--ink); background: #f8fafc; }
header { padding: 24px 32px 8px; }
h1 { margin: 0 0 4px; font-size: 22px; }
h2 { margin: 0 0 8px; font-size: 15px; font-weight: 600; }
.sub { color: var(--muted); font-size: 13px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px;
  padding: 16px 32px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 14px 16px; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase;
  letter-spacing: .04em; }
.card .value { font-size: 24px; font-weight: 650; margin-top: 4px; }
.card .note { color: var(--muted); font-size: 12px; margin-top: 2px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 16px;
  padding: 8px 32px 32px; }
.panel { min-width: 0; background: #fff; border: 1px solid var(--line); border-radius: 10px;
  padding: 14px; }
.empty { color: var(--muted); padding: 40px 0; text-align: center; }
footer { color: var(--muted); font-size: 12px; padding: 0 32px 32px; }
"""


def _label(text: Any) -> str:
    # Plotly renders a few HTML tags in labels; text from the logs (models, tags) is shown as is
    return html.escape("(none)" if text is None else str(text))


def _money(value: Optional[float]) -> str:
    if value is None:
        return "-"
    return f"${value:,.2f}" if abs(value) >= 1 else f"${value:,.4f}"


def _percent(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _count(value: Optional[float]) -> str:
    if value is None:
        return "-"
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.1f}{unit}"
    return f"{value:,.0f}"


def _layout(figure: go.Figure, **overrides: Any) -> go.Figure:
    layout: Dict[str, Any] = {
        "template": "plotly_white",
        "colorway": COLORS,
        "height": CHART_HEIGHT,
        "margin": {"l": 56, "r": 16, "t": 16, "b": 40},
        "legend": {"orientation": "h", "y": -0.18},
        "hovermode": "x unified",
        "font": {"family": "-apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif"},
    }
    figure.update_layout(**{**layout, **overrides})
    return figure


def model_label(row: Dict[str, Any]) -> str:
    return f"{row['provider']}/{row['model']}" if row.get("provider") else str(row["model"])


def cost_by_model_chart(figures: Dict[str, Any]) -> Optional[go.Figure]:
    rows = figures["cost_by_model_daily"]
    if not rows:
        return None
    totals: Dict[str, float] = defaultdict(float)
    for row in rows:
        totals[model_label(row)] += row["cost"] or 0
    top = sorted(totals, key=lambda name: -totals[name])[:TOP_MODELS]
    days = [row["day"] for row in figures["daily"]]
    series: Dict[str, Dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for row in rows:
        name = model_label(row)
        series[name if name in top else OTHER][row["day"]] += row["cost"] or 0
    figure = go.Figure()
    for name in [*top, OTHER]:
        if name in series:
            figure.add_bar(
                name=_label(name),
                x=days,
                y=[series[name].get(day, 0) for day in days],
                hovertemplate="%{y:$,.4f}",
            )
    return _layout(figure, barmode="stack", yaxis={"tickprefix": "$", "title": "cost (USD)"})


def requests_chart(figures: Dict[str, Any]) -> Optional[go.Figure]:
    daily = figures["daily"]
    if not daily:
        return None
    days = [row["day"] for row in daily]
    figure = go.Figure()
    figure.add_bar(
        name="requests",
        x=days,
        y=[row["requests"] for row in daily],
        marker_color=COLORS[1],
        hovertemplate="%{y:,}",
    )
    figure.add_scatter(
        name="error rate",
        x=days,
        y=[row["error_rate"] for row in daily],
        yaxis="y2",
        mode="lines+markers",
        line={"color": COLORS[4], "width": 2},
        hovertemplate="%{y:.1%}",
    )
    return _layout(
        figure,
        yaxis={"title": "requests"},
        yaxis2={
            "title": "error rate",
            "overlaying": "y",
            "side": "right",
            "tickformat": ".0%",
            "rangemode": "tozero",
            "showgrid": False,
        },
    )


def latency_chart(figures: Dict[str, Any]) -> Optional[go.Figure]:
    rows = [row for row in figures["latency_by_model"] if row["p50_ms"] is not None]
    if not rows:
        return None
    rows = sorted(rows, key=lambda row: row["p95_ms"] or 0)  # the slowest on top
    names = [_label(model_label(row)) for row in rows]
    figure = go.Figure()
    for key, color in (("p50_ms", COLORS[2]), ("p95_ms", COLORS[0]), ("p99_ms", COLORS[4])):
        figure.add_bar(
            name=key.split("_")[0],
            orientation="h",
            y=names,
            x=[row[key] for row in rows],
            marker_color=color,
            hovertemplate="%{x:,} ms",
        )
    return _layout(
        figure,
        barmode="group",
        height=max(CHART_HEIGHT, 30 * len(rows) + 80),
        xaxis={"title": "ms"},
        hovermode="y unified",
        margin={"l": 260, "r": 16, "t": 16, "b": 40},
        legend={"orientation": "h", "y": -0.12, "traceorder": "normal"},
    )


def cache_chart(figures: Dict[str, Any]) -> Optional[go.Figure]:
    daily = figures["daily"]
    if not daily:
        return None
    figure = go.Figure()
    figure.add_scatter(
        name="cache hit rate",
        x=[row["day"] for row in daily],
        y=[row["cache_hit_rate"] for row in daily],
        mode="lines+markers",
        fill="tozeroy",
        line={"color": COLORS[5], "width": 2},
        hovertemplate="%{y:.1%}",
    )
    return _layout(figure, yaxis={"tickformat": ".0%", "rangemode": "tozero"}, showlegend=False)


def metadata_chart(figures: Dict[str, Any]) -> Optional[go.Figure]:
    rows = figures["cost_by_metadata"]
    if not rows:
        return None
    rows = list(reversed(rows))  # the largest on top of a horizontal bar chart
    figure = go.Figure()
    figure.add_bar(
        orientation="h",
        x=[row["cost"] for row in rows],
        y=[_label(f"{row['metadata_key']}={row['metadata_value']}") for row in rows],
        customdata=[row["requests"] for row in rows],
        marker_color=COLORS[3],
        hovertemplate="%{x:$,.4f} over %{customdata:,} requests<extra></extra>",
    )
    return _layout(
        figure,
        height=max(CHART_HEIGHT, 22 * len(rows) + 60),
        xaxis={"tickprefix": "$"},
        hovermode="closest",
        showlegend=False,
        margin={"l": 200, "r": 16, "t": 16, "b": 40},
    )


def gateway_chart(figures: Dict[str, Any]) -> Optional[go.Figure]:
    rows = figures["gateways"]
    if not rows:
        return None
    figure = go.Figure()
    figure.add_bar(
        x=[_label(row["gateway_id"]) for row in rows],
        y=[row["cost"] for row in rows],
        customdata=[[row["requests"], row["errors"]] for row in rows],
        marker_color=COLORS[0],
        hovertemplate=(
            "%{y:$,.4f}, %{customdata[0]:,} requests, %{customdata[1]:,} errors<extra></extra>"
        ),
    )
    return _layout(figure, yaxis={"tickprefix": "$"}, hovermode="closest", showlegend=False)


def errors_chart(figures: Dict[str, Any]) -> Optional[go.Figure]:
    rows = figures["errors_by_status"]
    if not rows:
        return None
    figure = go.Figure()
    figure.add_bar(
        x=[_label(row["status_code"]) for row in rows],
        y=[row["requests"] for row in rows],
        marker_color=COLORS[4],
        hovertemplate="HTTP %{x}: %{y:,} requests<extra></extra>",
    )
    return _layout(figure, xaxis={"type": "category"}, hovermode="closest", showlegend=False)


CHARTS = [
    ("cost-by-model", "Cost per day by model", cost_by_model_chart),
    ("requests", "Requests and error rate per day", requests_chart),
    ("latency", "Latency p50 / p95 / p99 by model (ms)", latency_chart),
    ("cache", "Cache hit rate per day", cache_chart),
    ("cost-by-tag", "Cost by metadata tag (top 20 key=value)", metadata_chart),
    ("cost-by-gateway", "Cost per gateway", gateway_chart),
    ("errors", "Errors by status code", errors_chart),
]
"""Each chart of the page: its element id, title and how it is drawn from the figures."""


def _cards(figures: Dict[str, Any]) -> str:
    headline = figures["headline"]
    p95 = headline["p95_ms"]
    cards = [
        ("Requests", _count(headline["requests"]), f"{headline['gateways']} gateways"),
        (
            "Cost",
            _money(headline["cost"]),
            f"{_money(headline['estimated_cache_savings'])} saved by the cache (est.)",
        ),
        (
            "Tokens",
            _count(headline["tokens"]),
            f"{_count(headline['tokens_in'])} in, {_count(headline['tokens_out'])} out",
        ),
        ("Error rate", _percent(headline["error_rate"]), f"{headline['errors']:,} errors"),
        (
            "Cache hit rate",
            _percent(headline["cache_hit_rate"]),
            f"{headline['cached_requests']:,} cached",
        ),
        (
            "p95 latency",
            "-" if p95 is None else f"{p95:,.0f} ms",
            "-" if headline["p50_ms"] is None else f"p50 {headline['p50_ms']:,.0f} ms",
        ),
    ]
    return "\n".join(
        f'<div class="card"><div class="label">{html.escape(label)}</div>'
        f'<div class="value">{html.escape(value)}</div>'
        f'<div class="note">{html.escape(note)}</div></div>'
        for label, value, note in cards
    )


def _panel(element_id: str, title: str, figure: Optional[go.Figure]) -> str:
    if figure is None:
        body = '<div class="empty">no data in this period</div>'
    else:
        body = figure.to_html(
            full_html=False,
            include_plotlyjs=False,
            div_id=f"chart-{element_id}",
            default_width="100%",
            default_height=f"{figure.layout.height or CHART_HEIGHT}px",
            config={"displaylogo": False, "responsive": True},
        )
    return f'<section class="panel" id="{element_id}"><h2>{html.escape(title)}</h2>{body}</section>'


def embedded_json(figures: Dict[str, Any]) -> str:
    """The figures as JSON safe inside a `<script>` element."""
    text = json.dumps(figures, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_report(figures: Dict[str, Any]) -> str:
    """The whole page for the report's figures."""
    period = figures["period"]
    panels = "\n".join(
        _panel(element_id, title, draw(figures)) for element_id, title, draw in CHARTS
    )
    title = f"AI Gateway report, {period['start']} to {period['end']}"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{STYLE}</style>
<script>{get_plotlyjs()}</script>
<script type="application/json" id="{DATA_ELEMENT_ID}">{embedded_json(figures)}</script>
</head>
<body>
<header>
<h1>{html.escape(title)}</h1>
<div class="sub">{period["days"]} UTC days, dataset {html.escape(figures["dataset"])} on
{html.escape(figures["destination"])}, generated {html.escape(figures["generated_at"])}</div>
</header>
<div class="cards">
{_cards(figures)}
</div>
<main class="grid">
{panels}
</main>
<footer>Figures from the analysis views (aig_usage_daily, aig_cost_by_metadata, aig_errors_daily,
aig_cache_daily) and, for percentiles over the whole period, from table aig_logs. Charts by
Plotly. Costs are Cloudflare's estimates in USD.</footer>
<script>
// each chart was drawn as the page was parsed, before the grid had all its columns
window.addEventListener("load", function () {{
  document.querySelectorAll(".js-plotly-plot").forEach(function (chart) {{
    Plotly.Plots.resize(chart);
  }});
}});
</script>
</body>
</html>
"""
