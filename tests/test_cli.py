"""`pipelines/forward.py` as users run it: exit codes, one-line errors, kills, state and demo."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Optional

import dlt
import pytest

from aig_source.emulator import DEFAULT_GATEWAY_ID

from .conftest import (
    PROJECT_ROOT,
    Workspace,
    merge_statements,
    run_python,
    stored_ids,
)

DISTINCTIVE_TOKEN = "cfat-WRONG-7f3a9c1e5b2d4e6f8a0b1c2d3e4f5a6b"


LOG_LINE = re.compile(r"\d\d:\d\d:\d\d (INFO|WARNING) ")


def error_lines(result: subprocess.CompletedProcess) -> list:
    """The run's error lines; anything else on stderr must be one of the pipeline's own log lines
    (`12:00:01 INFO analysis views written: ...`), never a traceback or dlt's noise."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if not LOG_LINE.match(line)]
    assert all(line.startswith("error:") for line in errors) or len(errors) <= 1, result.stderr
    return errors


def test_help(workspace: Workspace) -> None:
    result = workspace.script("--help")
    assert result.returncode == 0
    assert "--demo" in result.stdout and "--max-pages" in result.stdout


def test_run_prints_one_summary_line(workspace: Workspace) -> None:
    workspace.api.generate(120, hours=0.5)

    result = workspace.script()

    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("aig_logs forward: 120 logs fetched (120 new")
    assert "API requests" in lines[0] and "cursor" in lines[0] and "caught up" in lines[0]
    assert sorted(workspace.ids()) == sorted(stored_ids(workspace.api))


def test_wrong_token_fails_clearly_and_never_prints_it(workspace: Workspace) -> None:
    workspace.api.generate(10, hours=0.5)

    result = workspace.script(env=workspace.env(SOURCES__AIG_SOURCE__API_TOKEN=DISTINCTIVE_TOKEN))

    assert result.returncode == 1
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    assert "rejected the API token" in lines[0] and "SOURCES__AIG_SOURCE__API_TOKEN" in lines[0]
    assert DISTINCTIVE_TOKEN not in result.stdout + result.stderr
    assert DISTINCTIVE_TOKEN[5:20] not in result.stdout + result.stderr


@pytest.mark.parametrize("script", ["forward.py", "backfill.py", "reconcile.py"])
def test_missing_config_names_the_keys_and_suggests_demo(tmp_path: Path, script: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION"))}
    env["DLT_DATA_DIR"] = str(tmp_path / "dlt_data")

    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "pipelines" / script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 1
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    for name in ("ACCOUNT_ID", "GATEWAY_ID", "API_TOKEN"):
        assert f"SOURCES__AIG_SOURCE__{name}" in lines[0]
    # a command that exists, whichever script was run (reconcile.py has no --demo)
    assert lines[0].endswith(
        "To try the pipeline without a Cloudflare account, run: python pipelines/forward.py --demo"
    )


def test_persistent_failure_exits_nonzero_and_the_next_run_has_no_gap(
    workspace: Workspace,
) -> None:
    api = workspace.api
    api.generate(200, hours=0.5)
    assert workspace.script().returncode == 0
    state_sql = "SELECT version, state FROM ai_gateway._dlt_pipeline_state ORDER BY version"
    state_before = workspace.query(state_sql)
    api.generate(120, start_ms=api.now_ms() - 20_000, end_ms=api.now_ms())
    api.faults.outage_status = 503

    failed = workspace.script()

    assert failed.returncode == 1
    lines = error_lines(failed)
    assert len(lines) == 1 and "kept failing" in lines[0] and "503" in lines[0]
    assert len(workspace.ids()) == 200
    assert workspace.query(state_sql) == state_before, "cursor unchanged"

    api.faults.outage_status = None
    healed = workspace.script()

    assert healed.returncode == 0, healed.stderr
    ids = workspace.ids()
    assert len(ids) == len(set(ids)) == 320
    assert sorted(ids) == sorted(stored_ids(api))


@pytest.mark.slow
def test_killed_mid_run_then_rerun_is_complete_without_duplicates(workspace: Workspace) -> None:
    api = workspace.api
    api.generate(1500, hours=0.9)
    api.faults.latency_seconds = 0.15
    process = workspace.start("--max-pages", "40")
    workspace.kill_after(process, requests=8)
    assert process.returncode == -signal.SIGKILL
    api.faults.latency_seconds = 0

    rerun = workspace.script("--max-pages", "60")

    assert rerun.returncode == 0, rerun.stderr
    ids = workspace.ids()
    assert len(ids) == len(set(ids)) == 1500


def test_dlt_pipeline_info_shows_each_gateways_cursor(workspace: Workspace) -> None:
    # the project's own .dlt/config.toml, as a user's checkout has it
    shutil.copytree(PROJECT_ROOT / ".dlt", workspace.root / ".dlt")
    workspace.api.generate(60, hours=0.5)
    assert workspace.script().returncode == 0

    result = workspace.dlt_info()

    assert result.returncode == 0, result.stderr
    assert "aig_logs" in result.stdout
    info = result.stdout
    gateway = info[info.index(f'"{DEFAULT_GATEWAY_ID}": {{') :]
    assert gateway.split("\n")[1].strip().startswith('"cursor": "20'), gateway[:200]
    assert "destination_type: aig_source.destinations.duckdb" in result.stdout
    assert "differs" not in result.stdout + result.stderr, result.stderr
    # without -v too: no warning of any kind about the destination
    brief = workspace.dlt_info(verbose=False)
    assert brief.returncode == 0, brief.stderr
    assert "destination_type: aig_source.destinations.duckdb" in brief.stdout
    for output in (result, brief):
        assert "WARNING" not in output.stdout + output.stderr, output.stderr


def test_dlt_attach_builds_the_bounded_merge_destination(workspace: Workspace) -> None:
    shutil.copytree(PROJECT_ROOT / ".dlt", workspace.root / ".dlt")
    workspace.api.generate(30, hours=0.5)
    assert workspace.script().returncode == 0
    pipelines_dir = str(workspace.root / "dlt_data" / "pipelines")
    probe = (
        "import dlt; from aig_source.destinations import duckdb;"
        f" p = dlt.attach('aig_logs', pipelines_dir={pipelines_dir!r});"
        " print(type(p.destination).__module__, isinstance(p.destination, duckdb))"
    )

    result = run_python("-c", probe, cwd=workspace.root, env=workspace.env())

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["aig_source.destinations", "True"]
    assert "differs" not in result.stderr


@pytest.mark.parametrize("destination_type", ["aig_source.destinations.duckdb", "duckdb", None])
def test_destination_type_selects_the_bounded_merge_destination(
    workspace: Workspace, destination_type: Optional[str]
) -> None:
    api = workspace.api
    api.generate(30, hours=0.5)
    env = workspace.env()
    if destination_type is not None:
        env["DESTINATION_TYPE"] = destination_type
    assert workspace.script(env=env).returncode == 0
    newest = api.gateway().store.snapshot()[-1]
    newest.fields["cost"] = 9.5  # re-read and changed: merged again
    api.generate(5, hours=0.01)

    result = workspace.script(env=env)

    assert result.returncode == 0, result.stderr
    assert len(workspace.ids()) == 35
    pipeline = dlt.attach("aig_logs", pipelines_dir=str(workspace.root / "dlt_data" / "pipelines"))
    assert pipeline.state["destination_type"] == "aig_source.destinations.duckdb"
    delete = [s for s in merge_statements(pipeline) if s.startswith("DELETE")]
    assert delete and '"created_at" BETWEEN' in delete[0], delete


def test_dlts_stock_destination_is_refused_nowhere_but_merges_unbounded(
    workspace: Workspace,
) -> None:
    """The bound is this project's; dlt's own destination still loads, with dlt's own merge."""
    api = workspace.api
    api.generate(30, hours=0.5)
    env = workspace.env(DESTINATION_TYPE="dlt.destinations.duckdb")
    assert workspace.script(env=env).returncode == 0
    api.gateway().store.snapshot()[-1].fields["cost"] = 9.5
    api.generate(5, hours=0.01)

    assert workspace.script(env=env).returncode == 0

    pipeline = dlt.attach("aig_logs", pipelines_dir=str(workspace.root / "dlt_data" / "pipelines"))
    delete = [s for s in merge_statements(pipeline) if s.startswith("DELETE")]
    assert delete and "BETWEEN" not in delete[0], "the control: the check above can fail"


def test_bigquery_selected_without_credentials_fails_clearly(workspace: Workspace) -> None:
    workspace.api.generate(10, hours=0.5)

    result = workspace.script(env=workspace.env(DESTINATION_TYPE="bigquery"))

    assert result.returncode == 1
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    assert "DESTINATION__BIGQUERY__CREDENTIALS" in lines[0]
    assert "SOURCES__AIG_SOURCE__CREDENTIALS" not in lines[0]


def test_falling_behind_fails_the_scheduled_run_after_loading(workspace: Workspace) -> None:
    workspace.api.generate(1500, hours=0.9)
    strict = workspace.env(SOURCES__AIG_SOURCE__FRESHNESS_THRESHOLD_SECONDS="600")

    behind = workspace.script("--max-pages", "2", env=strict)

    assert behind.returncode == 1
    assert behind.stdout.startswith("aig_logs forward:") and "behind" in behind.stdout
    lines = error_lines(behind)
    assert len(lines) == 1, behind.stderr
    assert "FRESHNESS_THRESHOLD_SECONDS" in lines[0] and "FORWARD_MAX_PAGES" in lines[0]
    assert len(workspace.ids()) > 0, "what was read is loaded all the same"

    relaxed = workspace.env(SOURCES__AIG_SOURCE__FRESHNESS_THRESHOLD_SECONDS="0")
    assert workspace.script("--max-pages", "2", env=relaxed).returncode == 0


def test_log_level_from_config_controls_the_pipelines_log_lines(workspace: Workspace) -> None:
    api = workspace.api
    api.generate(100, hours=0.3)
    assert workspace.script().returncode == 0
    late = api.make_log(api.now_ms() - 30_000)

    def run_with_a_late_log(level: str) -> subprocess.CompletedProcess:
        api.add_logs([api.make_log(late.created_at_ms)])
        return workspace.script(env=workspace.env(SOURCES__AIG_SOURCE__LOG_LEVEL=level))

    quiet = run_with_a_late_log("WARNING")
    chatty = run_with_a_late_log("info")

    assert quiet.returncode == 0 and quiet.stderr == ""
    assert chatty.returncode == 0 and error_lines(chatty) == []
    assert any(
        f"INFO gateway {DEFAULT_GATEWAY_ID}: lookback:" in line
        for line in chatty.stderr.splitlines()
    ), chatty.stderr


def test_invalid_log_level_names_the_setting(workspace: Workspace) -> None:
    result = workspace.script(env=workspace.env(SOURCES__AIG_SOURCE__LOG_LEVEL="LOUD"))

    assert result.returncode == 1
    assert error_lines(result) == [
        "error: log_level must be one of DEBUG, INFO, WARNING, ERROR, not 'LOUD': set"
        " SOURCES__AIG_SOURCE__LOG_LEVEL (or log_level under [sources.aig_source] in"
        " .dlt/config.toml)."
    ]
