"""`pipelines/status.py`: each gateway's progress from the state in the destination, on a fresh
pipelines folder, for a healthy, a behind, a stale and a never-run pipeline, as lines and JSON,
with its exit codes; on DuckDB and emulated BigQuery."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Dict

import pytest

from aig_source.emulator import DEFAULT_GATEWAY_ID
from aig_source.jobs.backfill import run_backfill
from aig_source.jobs.forward import run_forward
from aig_source.jobs.reconcile import run_reconcile
from aig_source.jobs.status import pipeline_status
from aig_source.runner import make_pipeline
from aig_source.timestamps import format_ms

from .bigquery_emulator import EmulatedBigQuery
from .conftest import PROJECT_ROOT, Workspace

STATUS_SCRIPT = PROJECT_ROOT / "pipelines" / "status.py"


def status(workspace: Workspace, *args: str, **env: str) -> Any:
    """The status script on a fresh pipelines folder: state only in the destination."""
    fresh = workspace.root / f"fresh_{time.monotonic_ns()}"
    return workspace.script(
        *args, script=STATUS_SCRIPT, env=workspace.env(DLT_DATA_DIR=str(fresh), **env)
    )


def as_json(workspace: Workspace, **env: str) -> Dict[str, Any]:
    result = status(workspace, "--json", **env)
    figures: Dict[str, Any] = json.loads(result.stdout)
    figures["exit"] = result.returncode
    return figures


def newest_loaded(workspace: Workspace) -> str:
    (newest,) = workspace.query("SELECT epoch_ms(MAX(created_at)) FROM ai_gateway.aig_logs")[0]
    return format_ms(int(newest))


def test_a_healthy_pipeline_reads_ok_and_exits_0(workspace: Workspace) -> None:
    workspace.api.generate(120, hours=0.5)
    workspace.run()

    result = status(workspace)
    figures = as_json(workspace)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("aig_logs: duckdb dataset ai_gateway, freshness threshold 1h 00m;")
    assert lines[1].startswith(
        f"gateway {DEFAULT_GATEWAY_ID}: ok; cursor {newest_loaded(workspace)}, 0s behind the"
        " gateway's newest log at the last run; last forward run 20"
    )
    assert "backfill not started" in lines[1]
    assert figures["exit"] == 0 and figures["healthy"] is True
    gateway = figures["gateways"][DEFAULT_GATEWAY_ID]
    assert gateway["verdict"] == "ok" and gateway["cursor"] == newest_loaded(workspace)
    assert gateway["behind_seconds"] == 0.0 and gateway["last_run"]["logs_fetched"] == 120
    assert 0 <= gateway["last_run_age_seconds"] < 60


def test_a_pipeline_behind_the_gateway_exits_1_naming_it(workspace: Workspace) -> None:
    workspace.api.generate(600, hours=3)
    summary = workspace.run(forward_start="4h", forward_max_pages=2, lookback_seconds=0)
    assert summary.page_budget_reached

    result = status(workspace, SOURCES__AIG_SOURCE__FRESHNESS_THRESHOLD_SECONDS="600")
    figures = as_json(workspace, SOURCES__AIG_SOURCE__FRESHNESS_THRESHOLD_SECONDS="600")

    assert result.returncode == 1
    assert f"gateway {DEFAULT_GATEWAY_ID}: behind; cursor" in result.stdout
    (error,) = result.stderr.strip().splitlines()
    assert error.startswith(f"error: gateway {DEFAULT_GATEWAY_ID}: 2h ")
    assert error.endswith(
        "behind the gateway's newest log at the last run, more than the 10m 00s allowed"
        " (SOURCES__AIG_SOURCE__FRESHNESS_THRESHOLD_SECONDS)."
    )
    gateway = figures["gateways"][DEFAULT_GATEWAY_ID]
    assert figures["exit"] == 1 and figures["healthy"] is False
    assert gateway["verdict"] == "behind" and gateway["behind_seconds"] > 7000
    assert gateway["last_run"]["page_budget_reached"] is True


def test_a_pipeline_whose_runs_stopped_is_stale(workspace: Workspace) -> None:
    workspace.api.generate(50, hours=0.5)
    workspace.run()
    time.sleep(2.2)

    result = status(workspace, SOURCES__AIG_SOURCE__FRESHNESS_THRESHOLD_SECONDS="2")

    assert result.returncode == 1
    assert f"gateway {DEFAULT_GATEWAY_ID}: stale;" in result.stdout
    assert re.fullmatch(
        f"error: gateway {DEFAULT_GATEWAY_ID}: no forward run for \\d+s, more than the 2s"
        " allowed: is its schedule running\\?",
        result.stderr.strip(),
    ), result.stderr
    # the check off: only a failing or never-run gateway fails it
    assert status(workspace, SOURCES__AIG_SOURCE__FRESHNESS_THRESHOLD_SECONDS="0").returncode == 0


def test_a_never_run_pipeline_exits_1(workspace: Workspace) -> None:
    nothing = status(workspace, SOURCES__AIG_SOURCE__GATEWAY_ID="*")
    configured = status(workspace)
    figures = as_json(workspace)

    assert nothing.returncode == 1
    assert "no gateway has been read yet: run python pipelines/forward.py." in nothing.stdout
    assert nothing.stderr.strip() == "error: no gateway has been read yet."
    assert configured.returncode == 1
    assert (
        f"gateway {DEFAULT_GATEWAY_ID}: never run; no forward run has loaded it yet"
        in configured.stdout
    )
    assert configured.stderr.strip() == f"error: gateway {DEFAULT_GATEWAY_ID}: never run."
    assert figures["gateways"][DEFAULT_GATEWAY_ID]["verdict"] == "never run"


def test_backfill_progress_and_reconcile_are_shown(workspace: Workspace) -> None:
    api = workspace.api
    api.generate(900, hours=20)
    workspace.run(forward_start="1h")
    run_backfill(workspace.pipeline(), max_pages=4, **workspace.source_args())
    run_reconcile(workspace.pipeline(), since="2h", **workspace.source_args())

    result = status(workspace)
    gateway = as_json(workspace)["gateways"][DEFAULT_GATEWAY_ID]

    assert result.returncode == 0, result.stderr
    backfill = gateway["backfill"]
    # four pages of 50, the boundary re-reads aside
    assert backfill["done"] is False and 150 <= backfill["loaded"] <= 200
    assert backfill["logs_left"] > 500 and backfill["eta_seconds"] > 0
    assert (
        f"backfill reached {backfill['oldest_loaded']}, about {backfill['logs_left']:,} logs left"
        in result.stdout
    )
    assert gateway["reconcile"]["window_done"] is True
    assert "last reconcile 20" in result.stdout and "(window checked, 0 missing" in result.stdout


@pytest.mark.slow
def test_status_on_emulated_bigquery_from_a_fresh_folder(
    workspace: Workspace, bigquery: EmulatedBigQuery, tmp_path: Path
) -> None:
    workspace.api.generate(80, hours=0.5)
    loaded = bigquery.pipeline(tmp_path / "first")
    run_forward(loaded, **workspace.source_args())
    fresh = make_pipeline(
        destination=loaded.destination,
        pipelines_dir=str(tmp_path / "fresh"),
        dataset_name=loaded.dataset_name,
    )

    report = pipeline_status(fresh, as_json=True)

    figures = json.loads(report.line())
    assert report.problem() is None and figures["healthy"] is True
    assert figures["destination"] == "bigquery"
    gateway = figures["gateways"][DEFAULT_GATEWAY_ID]
    assert gateway["verdict"] == "ok" and gateway["last_run"]["logs_fetched"] == 80
