"""`pipelines/report.py`: the page from the demo database in a real browser with no network, its
embedded figures against SQL and Python over the table itself, and the errors it gives."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import duckdb
import pytest

from aig_source.client import AigSourceError
from aig_source.jobs.report import write_report
from aig_source.report_page import CHARTS, DATA_ELEMENT_ID, render_report

from .browser import Browser, browser  # noqa: F401 - the fixture
from .conftest import FORWARD_SCRIPT, REPORT_SCRIPT, Workspace, run_demo, run_python
from .insight import bare_model, nearest_rank
from .test_upgrade import restore_previous_version


class DataScript(HTMLParser):
    """Reads the text of the page's `<script type="application/json" id="aig-report-data">`."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = False
        self.found: List[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, Optional[str]]]) -> None:
        if tag == "script":
            self.scripts += 1
            self.inside = dict(attrs).get("id") == DATA_ELEMENT_ID
            if self.inside:
                self.found.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self.inside = False

    def handle_data(self, data: str) -> None:
        if self.inside:
            self.found[-1] += data


def embedded_figures(page: str) -> Dict[str, Any]:
    parser = DataScript()
    parser.feed(page)
    assert len(parser.found) == 1
    figures: Dict[str, Any] = json.loads(parser.found[0])
    return figures


@dataclass
class Demo:
    folder: Path
    runs: List[subprocess.CompletedProcess]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """A folder where the forward demo ran twice, as a user trying it again would: its
    database and its report."""
    folder = tmp_path_factory.mktemp("demo")
    return Demo(folder, [run_demo(FORWARD_SCRIPT, folder) for _ in range(2)])


@pytest.fixture(scope="module")
def demo_folder(demo: Demo) -> Path:
    assert all(run.returncode == 0 for run in demo.runs), demo.runs[-1].stderr
    return demo.folder


@pytest.mark.slow
def test_demo_runs_without_cloudflare_config_and_ends_with_the_report(demo: Demo) -> None:
    report = demo.folder / "aig_logs_report.html"
    for result in demo.runs:
        assert result.returncode == 0, result.stderr
        assert "3 gateways (demo-gateway, support-bot, search-api)" in result.stdout
        assert re.search(
            "3 gateways: demo-gateway caught up; search-api caught up; support-bot caught up",
            result.stdout,
        )
        assert "demo: per gateway" in result.stdout and "cost_usd" in result.stdout
        # the second demo starts over rather than mixing two emulated histories
        assert re.search(r"demo: 3,9\d\d rows, 3,9\d\d distinct ids", result.stdout)
        loaded = re.search(r"demo: ([\d,]+) rows, ([\d,]+) distinct ids", result.stdout)
        assert loaded and loaded.group(1) == loaded.group(2)
        assert result.stdout.splitlines()[-1] == (
            f"demo: report of the last 30 days written to {report}; open it in a browser"
            " (again any time: pipelines/report.py --demo)"
        )
    assert (demo.folder / "aig_logs_demo.duckdb").exists() and report.exists()


@pytest.mark.slow
def test_the_query_the_demo_suggests_runs_with_what_the_install_brought(demo: Demo) -> None:
    suggested = re.search(r"distinct ids, .* Query it with: (.+)$", demo.runs[-1].stdout, re.M)
    assert suggested, demo.runs[-1].stdout

    result = subprocess.run(
        suggested.group(1), shell=True, cwd=demo.folder, capture_output=True, text=True
    )

    assert result.returncode == 0, result.stderr
    assert "gateway_id" in result.stdout and "requests" in result.stdout


def demo_env(folder: Path) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION"))}
    env["DLT_DATA_DIR"] = str(folder / "dlt_data")
    return env


def utc_day_sql(column: str = "created_at") -> str:
    return f"CAST(timezone('UTC', {column}) AS DATE)"


def table_rows(database: Path, start: str, end: str) -> List[Dict[str, Any]]:
    """The period's logs straight from the table, not the views."""
    with duckdb.connect(str(database), read_only=True) as connection:
        cursor = connection.execute(
            f"SELECT {utc_day_sql()} AS day, gateway_id, provider, model, success, cached,"
            " status_code, duration, tokens_in, tokens_out, cost, CAST(metadata AS VARCHAR)"
            f" AS metadata FROM ai_gateway.aig_logs WHERE {utc_day_sql()}"
            f" BETWEEN DATE '{start}' AND DATE '{end}'"
        )
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


@pytest.mark.slow
def test_demo_report_opens_offline_with_its_charts_drawn(
    demo_folder: Path,
    browser: Browser,  # noqa: F811
) -> None:
    report = demo_folder / "aig_logs_report.html"

    opened = browser.open(report)
    page = opened.page
    page.wait_for_function(
        f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {2 * len(CHARTS)}"
    )

    assert opened.requests == [report.resolve().as_uri()] and opened.refused == []
    assert opened.errors == []
    for element_id, title, _ in CHARTS:
        panel = page.locator(f"section#{element_id}")
        assert panel.locator("h2").inner_text() == title
        # a chart is drawn when its SVG holds marks: bars, lines or areas with a shape
        marks = panel.locator(
            ".main-svg .bars path, .main-svg .scatterlayer path.js-line,"
            " .main-svg .scatterlayer path.js-fill"
        )
        assert marks.count() > 0, element_id
        assert panel.locator(".main-svg").first.bounding_box()["width"] > 300
    cards = page.locator(".card .value").all_inner_texts()
    assert len(cards) == 6 and all(card and card != "-" for card in cards)

    shot = page.screenshot(full_page=True)
    census = browser.colour_census(shot)
    assert census["colours"] > 200 and census["not_background"] > 0.1, census
    (demo_folder / "report.png").write_bytes(shot)
    page.close()


@pytest.mark.slow
def test_demo_report_figures_equal_sql_over_the_table(demo_folder: Path) -> None:
    page = (demo_folder / "aig_logs_report.html").read_text()
    figures = embedded_figures(page)
    period = figures["period"]
    assert period["days"] == 30
    assert date.fromisoformat(period["end"]) - date.fromisoformat(period["start"]) == timedelta(29)
    rows = table_rows(demo_folder / "aig_logs_demo.duckdb", period["start"], period["end"])
    assert len(rows) > 1000

    headline = figures["headline"]
    assert headline["requests"] == len(rows)
    assert headline["errors"] == sum(row["success"] is False for row in rows)
    assert headline["cached_requests"] == sum(row["cached"] is True for row in rows)
    assert headline["tokens"] == sum((r["tokens_in"] or 0) + (r["tokens_out"] or 0) for r in rows)
    assert headline["cost"] == pytest.approx(sum(row["cost"] or 0 for row in rows))
    assert headline["error_rate"] == pytest.approx(headline["errors"] / len(rows))
    durations = [row["duration"] for row in rows if row["duration"] is not None]
    assert headline["p95_ms"] == nearest_rank(durations, 95)
    assert headline["gateways"] == len({row["gateway_id"] for row in rows}) == 3

    per_day: Dict[str, int] = defaultdict(int)
    for row in rows:
        per_day[row["day"].isoformat()] += 1
    assert {day["day"]: day["requests"] for day in figures["daily"]} == per_day
    assert len(per_day) >= 14  # the demo's two weeks

    per_gateway: Dict[str, float] = defaultdict(float)
    for row in rows:
        per_gateway[row["gateway_id"]] += row["cost"] or 0
    assert {g["gateway_id"]: pytest.approx(g["cost"]) for g in figures["gateways"]} == per_gateway

    by_model: Dict[Tuple[str, str], List[int]] = defaultdict(list)
    for row in rows:
        model = bare_model(row["provider"], row["model"])
        by_model[(row["provider"], str(model))].append(row["duration"])
    latency = {(r["provider"], r["model"]): r for r in figures["latency_by_model"]}
    assert latency.keys() == by_model.keys()
    for key, values in by_model.items():
        assert [latency[key][f"p{p}_ms"] for p in (50, 95, 99)] == [
            nearest_rank(values, p) for p in (50, 95, 99)
        ]

    tags: Dict[Tuple[str, Any], float] = defaultdict(float)
    for row in rows:
        for key, value in (json.loads(row["metadata"]) if row["metadata"] else {}).items():
            text = value if isinstance(value, str) else json.dumps(value)
            tags[(key, text)] += row["cost"] or 0
    top = sorted(tags.items(), key=lambda item: -item[1])[: len(figures["cost_by_metadata"])]
    shown = [(t["metadata_key"], t["metadata_value"]) for t in figures["cost_by_metadata"]]
    assert [cost for _, cost in top] == pytest.approx(
        [t["cost"] for t in figures["cost_by_metadata"]]
    )
    assert all(
        tags[tag] == pytest.approx(t["cost"])
        for tag, t in zip(shown, figures["cost_by_metadata"], strict=True)
    )

    statuses: Dict[int, int] = defaultdict(int)
    for row in rows:
        if row["success"] is False:
            statuses[row["status_code"]] += 1
    assert {e["status_code"]: e["requests"] for e in figures["errors_by_status"]} == statuses


@pytest.mark.slow
def test_report_script_on_the_demo_database(demo_folder: Path) -> None:
    output = demo_folder / "out" / "week.html"

    result = run_python(
        str(REPORT_SCRIPT),
        "--demo",
        "--days",
        "7",
        "--output",
        str(output),
        cwd=demo_folder,
        env=demo_env(demo_folder),
    )

    assert result.returncode == 0, result.stderr
    assert re.fullmatch(
        rf"aig_logs report: {re.escape(str(output))} \(\S+ to \S+, [\d,]+ requests, \$[\d.,]+,"
        r" 3 gateways\)\n",
        result.stdout,
    )
    progress = result.stderr.splitlines()
    assert (
        progress[0].startswith("report: daily (1/") and progress[-1] == "report: drawing the charts"
    )
    assert embedded_figures(output.read_text())["period"]["days"] == 7


def test_report_without_a_table_fails_in_one_line(tmp_path: Path) -> None:
    env = demo_env(tmp_path)
    env["DESTINATION__DUCKDB__CREDENTIALS"] = str(tmp_path / "aig_logs.duckdb")

    result = run_python(str(REPORT_SCRIPT), cwd=tmp_path, env=env)
    demo = run_python(str(REPORT_SCRIPT), "--demo", cwd=tmp_path, env=env)

    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(
        "error: No table aig_logs in dataset ai_gateway of duckdb"
    )
    assert "Run pipelines/forward.py first" in result.stderr
    assert demo.returncode == 1
    assert demo.stderr == (
        "error: No demo database aig_logs_demo.duckdb in this folder:"
        " run pipelines/forward.py --demo first.\n"
    )
    assert not (tmp_path / "aig_logs_report.html").exists()
    assert not (tmp_path / "aig_logs_demo.duckdb").exists()


def test_report_on_an_older_versions_table_asks_for_a_forward_run(workspace: Workspace) -> None:
    restore_previous_version(workspace)  # 0.1.0's table and state: no views yet

    with pytest.raises(AigSourceError, match="No analysis views in dataset ai_gateway of duckdb"):
        write_report(workspace.pipeline(), str(workspace.root / "r.html"), progress=lambda _: None)

    workspace.run()  # writes the views, and fills gateway_id into the old rows
    summary = write_report(
        workspace.pipeline(), str(workspace.root / "r.html"), days=3650, progress=lambda _: None
    )
    total = workspace.query("SELECT COUNT(*) FROM ai_gateway.aig_logs")[0][0]
    assert summary.figures["headline"]["requests"] == total > 600
    assert [g["gateway_id"] for g in summary.figures["gateways"]] == ["demo-gateway"]


def test_page_keeps_hostile_text_inert() -> None:
    """Tag values come from whoever calls the gateway: they must not end the data element or
    become markup."""
    hostile = "</script><script>alert(1)</script><b>&amp;"
    figures = {
        "period": {"start": "2026-11-01", "end": "2026-11-01", "days": 1},
        "generated_at": "2026-11-01T00:00:00Z",
        "destination": "duckdb",
        "dataset": "ai_gateway",
        "headline": {
            "requests": 1,
            "cost": 0.5,
            "tokens_in": 1,
            "tokens_out": 1,
            "tokens": 2,
            "errors": 0,
            "error_rate": 0.0,
            "cached_requests": 0,
            "cache_hit_rate": 0.0,
            "estimated_cache_savings": 0.0,
            "p50_ms": 5,
            "p95_ms": 5,
            "p99_ms": 5,
            "gateways": 1,
        },
        "daily": [
            {
                "day": "2026-11-01",
                "requests": 1,
                "errors": 0,
                "cached_requests": 0,
                "tokens_in": 1,
                "tokens_out": 1,
                "cost": 0.5,
                "error_rate": 0.0,
                "cache_hit_rate": 0.0,
            }
        ],
        "cost_by_model_daily": [
            {"day": "2026-11-01", "provider": "p", "model": hostile, "requests": 1, "cost": 0.5}
        ],
        "latency_by_model": [
            {
                "provider": "p",
                "model": hostile,
                "requests": 1,
                "p50_ms": 5,
                "p95_ms": 5,
                "p99_ms": 5,
            }
        ],
        "cost_by_metadata": [
            {"metadata_key": hostile, "metadata_value": hostile, "requests": 1, "cost": 0.5}
        ],
        "gateways": [{"gateway_id": hostile, "requests": 1, "errors": 0, "cost": 0.5}],
        "errors_by_status": [],
    }

    page = render_report(figures)

    assert embedded_figures(page) == figures
    parser = DataScript()
    parser.feed(page)
    # plotly.js, the data, one script per chart with data, the resize: no script of the tag's
    assert "<script>alert(1)" not in page and parser.scripts == 3 + 6
