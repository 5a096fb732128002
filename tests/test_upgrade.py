"""Tables and state written by earlier versions continue with this one.

Each fixture was made by that version's own code:
- `previous_version_state.tar.gz` by 0.1.0 (`fixtures/make_previous_version_state.py`): three
  backfill runs, then a first forward run four hours later, which left three hours of logs that
  neither read. This version must carry the state forward, read that gap once, and load every
  log exactly once.
- `single_gateway_state.tar.gz` by the last single-gateway version, commit f42dc4f
  (`fixtures/make_single_gateway_state.py`): a forward cursor behind the gateway, lookback counts
  and a backfill cut mid-way, and rows without `gateway_id` and `account_id`. This version must
  fill those columns once, continue every cursor where it was, and re-read nothing it need not.
"""

from __future__ import annotations

import gzip
import json
import tarfile
from pathlib import Path
from typing import Any, Dict

import pytest

from aig_source.client import AigSourceError
from aig_source.emulator import DEFAULT_ACCOUNT_ID, DEFAULT_GATEWAY_ID, StoredLog
from aig_source.emulator.logpush import PLAIN
from aig_source.jobs.logpush import run_logpush
from aig_source.jobs.migrate_worker import run_import
from aig_source.jobs.reconcile import run_reconcile
from aig_source.runner import describe_failure
from aig_source.state import BACKFILL_GAP, ORIGINS, ROWS_TO_FILL
from aig_source.timestamps import parse_ms
from aig_source.views import VIEW_NAMES

from .conftest import Workspace, merge_statements, stored_ids
from .logpush import FIRST_DAY, GATEWAYS, local_workspace
from .test_backfill import backfill_until_done
from .worker import create_worker_objects, fill_worker_table

FIXTURES = Path(__file__).parent / "fixtures"
FIXTURE = FIXTURES / "previous_version_state.tar.gz"
SINGLE_GATEWAY_FIXTURE = FIXTURES / "single_gateway_state.tar.gz"


def restore_previous_version(workspace: Workspace, fixture: Path = FIXTURE) -> None:
    with tarfile.open(fixture) as archive:
        archive.extractall(workspace.root, filter="data")
    logs = json.loads(gzip.decompress((workspace.root / "logs.json.gz").read_bytes()))
    workspace.api.add_logs([StoredLog(**log) for log in logs])


def committed_source_state(workspace: Workspace) -> Dict[str, Any]:
    """The source state as the DuckDB file holds it (what a fresh machine restores)."""
    pipeline = workspace.pipeline("inspect")
    pipeline.sync_destination()
    return dict(pipeline.state["sources"]["aig_source"])


def test_previous_versions_table_and_state_continue_without_gap_or_duplicate(
    workspace: Workspace,
) -> None:
    restore_previous_version(workspace)
    api = workspace.api
    before = set(workspace.ids())
    assert len(before) == 654 and len(stored_ids(api)) == 1200
    newest_ms = max(log.created_at_ms for log in api.gateway().store.snapshot())
    api.generate(40, start_ms=newest_ms + 1, end_ms=api.now_ms())  # logs since that version ran
    old = committed_source_state(workspace)["resources"]
    forward_start = old["aig_logs"]["incremental"]["created_at"]["initial_value"]

    # a fresh machine, as on GitHub Actions: state comes from the DuckDB file
    workspace.run_until_caught_up(max_pages=50)
    state = workspace.pipeline().state["sources"]["aig_source"]
    backfill = state["resources"]["aig_logs_backfill"]["gateways"][DEFAULT_GATEWAY_ID]
    assert parse_ms(state[ORIGINS][DEFAULT_GATEWAY_ID]) == parse_ms(forward_start)
    assert parse_ms(backfill[BACKFILL_GAP]["low"]) == parse_ms(backfill["start"])

    summaries = backfill_until_done(workspace, max_pages=6)

    ids = workspace.ids()
    assert len(ids) == len(set(ids)) == 1240
    assert sorted(ids) == sorted(stored_ids(api))
    assert before <= set(ids)
    final = summaries[-1].state
    assert BACKFILL_GAP not in final and final["gone"] == 0
    # the table's schema, stored by that version without the merge hint, now carries it
    delete = [s for s in merge_statements(workspace.pipeline()) if s.startswith("DELETE")]
    assert delete and '"created_at" BETWEEN' in delete[0]


def test_single_gateway_table_and_state_carry_over_to_their_gateway(workspace: Workspace) -> None:
    restore_previous_version(workspace, SINGLE_GATEWAY_FIXTURE)
    api = workspace.api
    old = committed_source_state(workspace)
    old_forward, old_backfill = old["resources"]["aig_logs"], old["resources"]["aig_logs_backfill"]
    old_cursor_ms = parse_ms(old_forward["incremental"]["created_at"]["last_value"])
    before = set(workspace.ids())
    assert len(before) == 715 and workspace.query(
        "SELECT COUNT(*) FROM information_schema.columns WHERE column_name = 'gateway_id'"
    ) == [(0,)]
    newer = [log.id for log in api.gateway().store.snapshot() if log.created_at_ms > old_cursor_ms]
    assert newer and not set(newer) & before

    first = workspace.run(max_pages=50)

    # the cursor continued: the run loaded exactly the logs after it, and read little else
    assert first.logs_new == len(newer)
    assert first.logs_fetched <= len(newer) + 50
    assert workspace.query(
        "SELECT gateway_id, account_id, COUNT(*) FROM ai_gateway.aig_logs GROUP BY ALL"
    ) == [(DEFAULT_GATEWAY_ID, DEFAULT_ACCOUNT_ID, 715 + len(newer))]
    state = committed_source_state(workspace)
    assert ROWS_TO_FILL not in state and "origin" not in state
    assert state[ORIGINS] == {DEFAULT_GATEWAY_ID: old["origin"]}
    forward = state["resources"]["aig_logs"]
    assert set(forward) == {"gateways", "last_run"} and list(forward["gateways"]) == [
        DEFAULT_GATEWAY_ID
    ]
    backfill = state["resources"]["aig_logs_backfill"]["gateways"][DEFAULT_GATEWAY_ID]
    assert backfill["oldest_loaded"] == old_backfill["oldest_loaded"]
    assert backfill["loaded"] == old_backfill["loaded"] == 246

    # the backfill resumes where that version stopped: it reads only what it had left
    summaries = backfill_until_done(workspace, max_pages=10)
    assert sum(s.logs_fetched for s in summaries) <= old_backfill["expected"] - 246 + 10
    ids = workspace.ids()
    assert len(ids) == len(set(ids)) == len(stored_ids(api))
    assert workspace.query("SELECT COUNT(*) FROM ai_gateway.aig_logs WHERE gateway_id IS NULL") == [
        (0,)
    ]


def test_single_gateway_state_with_a_list_of_gateways_says_how_to_carry_it_over(
    workspace: Workspace,
) -> None:
    restore_previous_version(workspace, SINGLE_GATEWAY_FIXTURE)
    workspace.api.add_gateway("second")

    with pytest.raises(Exception) as failure:
        workspace.run(gateway_id="*")

    message = describe_failure(failure.value)
    assert "SOURCES__AIG_SOURCE__GATEWAY_ID" in message and "one gateway" in message
    assert "\n" not in message
    assert workspace.query("SELECT COUNT(*) FROM ai_gateway.aig_logs") == [(715,)]


def test_first_run_after_the_upgrade_with_no_new_logs_still_fills_the_rows(
    workspace: Workspace,
) -> None:
    """An idle gateway: the first run of this version loads no row, so dlt adds no column; the
    upgrade adds them itself, fills them, and the views can be written."""
    restore_previous_version(workspace)

    summary = workspace.run()

    assert summary.logs_new == 0
    columns = {row[0] for row in workspace.query("DESCRIBE ai_gateway.aig_logs")}
    assert {"gateway_id", "account_id"} <= columns
    assert workspace.query(
        "SELECT gateway_id, account_id, COUNT(*) FROM ai_gateway.aig_logs GROUP BY ALL"
    ) == [(DEFAULT_GATEWAY_ID, DEFAULT_ACCOUNT_ID, 654)]
    views = workspace.query("SELECT COUNT(*) FROM duckdb_views() WHERE schema_name = 'ai_gateway'")
    assert views == [(len(VIEW_NAMES),)]
    assert ROWS_TO_FILL not in committed_source_state(workspace)


def test_reconcile_adds_feedback_to_a_previous_versions_table(workspace: Workspace) -> None:
    """0.1.0's table has no feedback column. A reconcile after the carry-over still gets it
    (dlt adds declared columns only to tables a load writes rows to), and writes the feedback."""
    restore_previous_version(workspace)
    loaded = set(workspace.ids())
    rated = next(log for log in workspace.api.gateway().store.snapshot() if log.id in loaded)
    rated.feedback = 1

    # its rows have no gateway_id until a forward run carries them over: reconcile says so
    with pytest.raises(AigSourceError, match=r"Run pipelines/forward\.py once first"):
        run_reconcile(workspace.pipeline(), all_history=True, **workspace.source_args())
    assert workspace.run().logs_new == 0  # the carry-over, loading no row

    summary = run_reconcile(workspace.pipeline(), all_history=True, **workspace.source_args())

    assert summary.totals[DEFAULT_GATEWAY_ID]["feedback_up"] == 1
    columns = {row[0] for row in workspace.query("DESCRIBE ai_gateway.aig_logs")}
    assert "feedback" in columns
    assert workspace.query(
        "SELECT id, feedback FROM ai_gateway.aig_logs WHERE feedback IS NOT NULL"
    ) == [(rated.id, 1)]
    assert loaded <= set(workspace.ids())
    assert workspace.query("SELECT COUNT(*) FROM ai_gateway.aig_logs WHERE gateway_id IS NULL") == [
        (0,)
    ]


def test_the_worker_import_onto_a_previous_versions_table_and_state(workspace: Workspace) -> None:
    """A 0.1.0 table and state, then the Worker's history imported before any run of this
    version: the import adds only the logs the table lacks, and the first forward run still
    carries the old state and rows over to their gateway."""
    restore_previous_version(workspace)
    before = set(workspace.ids())
    pipeline = workspace.pipeline()
    names = create_worker_objects(pipeline, "worker_ds")
    logs = workspace.api.gateway().store.snapshot()
    history = fill_worker_table(pipeline, names["table"], logs, duplicates=10)

    summary = run_import(
        workspace.pipeline(),
        "worker_ds",
        progress=lambda line: None,
        account_id=DEFAULT_ACCOUNT_ID,
        gateway_id=DEFAULT_GATEWAY_ID,
    )

    progress = summary.progress
    assert progress is not None and progress["rows_stored"] == len(history.rows)
    assert progress["logs_imported"] == summary.new_rows == len(logs) - len(before)
    # the ids 0.1.0 loaded were left as they are, their Worker copies counted as already loaded
    assert progress["already_loaded"] >= len(before)
    assert workspace.query(
        "SELECT COUNT(*) FROM ai_gateway.aig_logs WHERE imported_from IS NULL"
    ) == [(len(before),)]

    workspace.run()  # the first run of this version: the carry-over

    state = committed_source_state(workspace)
    assert DEFAULT_GATEWAY_ID in state["resources"]["aig_logs"]["gateways"]
    assert ROWS_TO_FILL not in state and DEFAULT_GATEWAY_ID in state[ORIGINS]
    everything = len(stored_ids(workspace.api))
    assert workspace.query(
        "SELECT COUNT(*), COUNT(DISTINCT id), COUNT(gateway_id) FROM ai_gateway.aig_logs"
    ) == [(everything, everything, everything)]


def test_logpush_files_onto_a_single_gateway_versions_table_and_state(
    workspace: Workspace, tmp_path: Path
) -> None:
    """The last single-gateway version's table and state, then Logpush files of two other
    gateways loaded before any Logs API run of this version: the files add their rows and
    columns, and the first forward run still carries the old state and rows over."""
    restore_previous_version(workspace, SINGLE_GATEWAY_FIXTURE)
    before = set(workspace.ids())
    old = committed_source_state(workspace)
    old_cursor_ms = parse_ms(
        old["resources"]["aig_logs"]["incremental"]["created_at"]["last_value"]
    )
    newer = [
        log.id
        for log in workspace.api.gateway().store.snapshot()
        if log.created_at_ms > old_cursor_ms
    ]
    space = local_workspace(tmp_path / "logpush")
    space.job(scheme=PLAIN, seed=41).push_days(GATEWAYS, FIRST_DAY, 1, 2, 10)

    summary = run_logpush(workspace.pipeline(), **space.source_args())

    assert summary.problem() is None and summary.new_rows == 20
    assert workspace.query(
        "SELECT gateway_id, COUNT(*) FROM ai_gateway.aig_logs GROUP BY ALL ORDER BY ALL"
    ) == [(GATEWAYS[0], 10), (GATEWAYS[1], 10), (None, len(before))]

    first = workspace.run(max_pages=50)

    assert first.logs_new == len(newer)
    assert workspace.query(
        "SELECT gateway_id, COUNT(*) FROM ai_gateway.aig_logs GROUP BY ALL ORDER BY ALL"
    ) == [(GATEWAYS[0], 10), (GATEWAYS[1], 10), (DEFAULT_GATEWAY_ID, len(before) + len(newer))]
    state = committed_source_state(workspace)
    assert ROWS_TO_FILL not in state and DEFAULT_GATEWAY_ID in state[ORIGINS]
    assert state["resources"]["aig_logs_logpush"]["last_run"]["files_loaded"] == 2
