"""The reconcile job against the emulator into DuckDB: what the forward run cannot see is found
and loaded, an agreeing window costs about a request a bucket, logs gone from the gateway are
counted and kept, and failures change nothing."""

from __future__ import annotations

import json
import logging
import math
from typing import Any, List

import pytest

from aig_source.emulator import DEFAULT_GATEWAY_ID
from aig_source.emulator.store import StoredLog
from aig_source.jobs.backfill import run_backfill
from aig_source.jobs.reconcile import ReconcileSummary, run_reconcile
from aig_source.timestamps import format_ms

from .conftest import PROJECT_ROOT, Workspace, stored_ids

RECONCILE_SCRIPT = PROJECT_ROOT / "pipelines" / "reconcile.py"
HOUR_MS = 3_600_000
FEEDBACK_READS = 2
"""A window's feedback, when no log has any: one empty filtered read each for 1 and -1."""


def load_day(workspace: Workspace, logs: int = 600) -> List[StoredLog]:
    """A day of traffic, loaded by forward runs from a forward start 25 hours back."""
    stored = workspace.api.generate(logs, hours=23)
    workspace.run_until_caught_up(forward_start="25h")
    assert len(workspace.ids()) == logs
    return stored


def reconcile(
    workspace: Workspace, gateway_id: str = DEFAULT_GATEWAY_ID, **kwargs: Any
) -> ReconcileSummary:
    return run_reconcile(
        workspace.pipeline(), **kwargs, **workspace.source_args(gateway_id=gateway_id)
    )


def figures(summary: ReconcileSummary) -> dict:
    return summary.totals[DEFAULT_GATEWAY_ID]


def list_requests(workspace: Workspace) -> int:
    return len(workspace.api.logs_requests())


def test_an_agreeing_window_costs_one_request_a_bucket(workspace: Workspace) -> None:
    load_day(workspace)
    before = list_requests(workspace)

    summary = reconcile(workspace, since="24h")

    window = summary.window
    assert window is not None and window.bucket_ms == HOUR_MS
    buckets = math.ceil((window.end_ms - window.start_ms) / HOUR_MS)
    assert figures(summary)["buckets_checked"] == buckets in (24, 25)
    # a count per bucket, and one filtered read each for thumbs up and thumbs down
    assert figures(summary)["feedback_requests"] == FEEDBACK_READS
    assert figures(summary)["reconcile_requests"] == buckets + FEEDBACK_READS
    assert list_requests(workspace) - before == buckets + FEEDBACK_READS
    assert figures(summary)["logs_missing_loaded"] == 0 and summary.problem() is None
    assert summary.line().endswith(
        f"; gateway {DEFAULT_GATEWAY_ID} agrees (feedback 0 up, 0 down (0 changed),"
        f" {buckets} buckets, {buckets + FEEDBACK_READS} requests)."
    )


def test_a_log_visible_long_after_newer_ones_is_loaded_by_reconcile_not_forward(
    workspace: Workspace,
) -> None:
    load_day(workspace)
    api = workspace.api
    late = api.make_log(api.now_ms() - 30 * 60_000)  # 30 minutes back, beyond the lookback
    api.add_logs([late])

    workspace.run()
    assert late.id not in workspace.ids()

    summary = reconcile(workspace)

    assert late.id in workspace.ids()
    assert figures(summary)["logs_missing_loaded"] == 1
    assert summary.logs_new == 1 and summary.logs_fetched >= 1
    assert sorted(workspace.ids()) == sorted(stored_ids(api))
    # the one bucket that differs holds fewer logs than a page: one read finds the late log
    buckets = figures(summary)["buckets_checked"]
    assert figures(summary)["reconcile_requests"] == buckets + 1 + FEEDBACK_READS


def test_missing_logs_in_several_hours_are_found_by_bisection(workspace: Workspace) -> None:
    stored = load_day(workspace, logs=1500)
    lost = [stored[i] for i in (40, 400, 777, 1100, 1401)]
    with workspace.pipeline().sql_client() as client:
        ids = ", ".join(f"'{log.id}'" for log in lost)
        client.execute_sql(f"DELETE FROM ai_gateway.aig_logs WHERE id IN ({ids})")
    assert len(workspace.ids()) == 1495

    summary = reconcile(workspace)

    assert figures(summary)["logs_missing_loaded"] == 5
    assert figures(summary)["buckets_differing"] == len(
        {log.created_at_ms // HOUR_MS for log in lost}
    )
    assert sorted(workspace.ids()) == sorted(log.id for log in stored)
    # about log2(logs per bucket / per page) counts per missing log, then one page read
    per_missing = math.ceil(math.log2(1500 / 23 / 50)) + 2
    assert (
        figures(summary)["reconcile_requests"]
        <= figures(summary)["buckets_checked"] + 5 * per_missing
    )
    # a second run finds everything in agreement
    again = reconcile(workspace)
    assert figures(again)["logs_missing_loaded"] == 0 and figures(again)["buckets_differing"] == 0


def test_logs_gone_from_the_gateway_are_counted_and_kept(workspace: Workspace) -> None:
    stored = load_day(workspace)
    gone = stored[100:130]
    workspace.api.gateway().store.delete(gone)

    summary = reconcile(workspace)

    assert figures(summary)["logs_gone_kept"] == 30
    assert figures(summary)["logs_missing_loaded"] == 0
    assert len(workspace.ids()) == 600, "reconcile never deletes from the table"
    assert "30 gone from the gateway (kept)" in summary.line()
    assert summary.problem() is None


def test_a_budget_too_small_fails_naming_where_and_the_rerun_continues(
    workspace: Workspace,
) -> None:
    load_day(workspace)
    since = format_ms((workspace.api.now_ms() - 24 * HOUR_MS) // HOUR_MS * HOUR_MS)

    first = reconcile(workspace, since=since, max_requests=10)

    problem = first.problem()
    assert problem is not None and problem.startswith(
        f"gateway {DEFAULT_GATEWAY_ID}: reconcile stopped by its budget of 10 requests;"
    )
    assert figures(first)["buckets_checked"] == 10
    window = first.window
    assert window is not None
    buckets = math.ceil((window.end_ms - window.start_ms) / HOUR_MS)

    second = reconcile(workspace, since=since)

    assert second.problem() is None
    # it continued where the first stopped instead of checking the first ten buckets again
    assert figures(second)["buckets_checked"] == buckets - 10
    assert figures(second)["reconcile_requests"] == buckets - 10 + FEEDBACK_READS


def test_a_persistent_5xx_exits_1_in_one_line_and_changes_nothing(workspace: Workspace) -> None:
    load_day(workspace)
    workspace.api.fail_gateway(DEFAULT_GATEWAY_ID, 503)
    before = sorted(workspace.ids())

    result = workspace.script(script=RECONCILE_SCRIPT)

    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "503" in errors[0], result.stderr
    assert sorted(workspace.ids()) == before


@pytest.mark.parametrize("option", ["--since", "--max-requests"])
def test_bad_arguments_are_refused(workspace: Workspace, option: str) -> None:
    value = "soon" if option == "--since" else "0"
    result = workspace.script(option, value, script=RECONCILE_SCRIPT)
    assert result.returncode != 0
    assert option in result.stderr


def test_refresh_replaces_metadata_edited_after_loading(
    workspace: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    stored = load_day(workspace)
    edited = stored[-50]
    edited.fields["metadata"] = json.dumps({"team": "edited-later"})

    def metadata_of_edited() -> Any:
        rows = workspace.query(
            f"SELECT CAST(metadata AS VARCHAR) FROM ai_gateway.aig_logs WHERE id = '{edited.id}'"
        )
        return json.loads(rows[0][0]) if rows[0][0] else None

    plain = reconcile(workspace)
    assert figures(plain)["buckets_differing"] == 0  # counts agree: an edit is invisible to them
    assert metadata_of_edited() != {"team": "edited-later"}

    caplog.set_level(logging.INFO, logger="aig_source")
    refreshed = reconcile(workspace, refresh=True)

    assert metadata_of_edited() == {"team": "edited-later"}
    window = refreshed.window
    assert window is not None and window.refresh
    in_window = [log for log in stored if window.start_ms <= log.created_at_ms < window.end_ms]
    assert figures(refreshed)["logs_reread"] == len(in_window)
    assert figures(refreshed)["logs_missing_loaded"] == 0
    assert sorted(workspace.ids()) == sorted(log.id for log in stored)
    assert "refreshed" in refreshed.line()
    # it said beforehand what the refresh would take, from the table's count of the window
    buckets = math.ceil((window.end_ms - window.start_ms) / HOUR_MS)
    expected = math.ceil(len(in_window) / 50) + buckets
    estimate = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refresh:")]
    assert estimate and f"takes about {expected:,} requests" in estimate[0]
    assert figures(refreshed)["reconcile_requests"] <= expected


def feedback_of(workspace: Workspace) -> dict:
    return dict(
        workspace.query("SELECT id, feedback FROM ai_gateway.aig_logs WHERE feedback IS NOT NULL")
    )


def test_feedback_is_loaded_changed_and_removed(workspace: Workspace) -> None:
    stored = load_day(workspace)
    up, down, later = stored[-5], stored[-6], stored[-7]
    up.feedback, down.feedback = 1, -1

    first = reconcile(workspace)

    assert feedback_of(workspace) == {up.id: 1, down.id: -1}
    assert figures(first)["feedback_changed"] == 2
    # two filtered reads (thumbs up, thumbs down) of one page each: cost follows the logs with
    # feedback, not the window
    assert figures(first)["feedback_requests"] == 2
    assert "feedback 1 up, 1 down (2 changed)" in first.line()

    up.feedback, down.feedback, later.feedback = -1, None, 1
    second = reconcile(workspace)

    assert feedback_of(workspace) == {up.id: -1, later.id: 1}
    assert figures(second)["feedback_changed"] == 3
    assert reconcile(workspace).totals[DEFAULT_GATEWAY_ID]["feedback_changed"] == 0


def test_feedback_survives_the_other_jobs_reading_its_log_again(workspace: Workspace) -> None:
    api = workspace.api
    stored = api.generate(400, hours=20)
    workspace.run_until_caught_up(forward_start="1h")  # the forward job reads the last hour
    history = run_backfill(workspace.pipeline(), max_pages=100, **workspace.source_args())
    assert history.done and len(workspace.ids()) == 400
    old = stored[10]  # hours below the origin: the backfill's
    recent = api.make_log(api.now_ms() - 3 * 60_000)  # in the forward run's lookback window
    api.add_logs([recent])
    workspace.run()
    old.feedback, recent.feedback = -1, 1
    reconcile(workspace)
    assert feedback_of(workspace) == {old.id: -1, recent.id: 1}

    # a late log right before the recent one makes the forward run re-read the window's tail
    api.add_logs([api.make_log(recent.created_at_ms - 500)])
    forward = workspace.run()
    assert forward.last_run_of(DEFAULT_GATEWAY_ID)["logs_reread"] >= 1
    assert feedback_of(workspace) == {old.id: -1, recent.id: 1}

    # a reset backfill reads the whole history below the origin again
    again = run_backfill(workspace.pipeline(), reset=True, max_pages=100, **workspace.source_args())
    assert again.logs_fetched == history.logs_fetched > 300
    assert feedback_of(workspace) == {old.id: -1, recent.id: 1}


@pytest.mark.slow
def test_a_kill_mid_reconcile_loses_nothing_and_the_rerun_completes(workspace: Workspace) -> None:
    stored = load_day(workspace, logs=1200)
    lost = stored[::60]  # twenty logs, about one an hour
    with workspace.pipeline().sql_client() as client:
        ids = ", ".join(f"'{log.id}'" for log in lost)
        client.execute_sql(f"DELETE FROM ai_gateway.aig_logs WHERE id IN ({ids})")

    process = workspace.start(script=RECONCILE_SCRIPT)
    workspace.kill_after(process, requests=30)

    after_kill = workspace.ids()
    assert len(after_kill) == len(set(after_kill)) <= 1200
    rerun = workspace.script(script=RECONCILE_SCRIPT)
    assert rerun.returncode == 0, rerun.stderr
    ids_now = workspace.ids()
    assert sorted(ids_now) == sorted(log.id for log in stored)
    assert f"gateway {DEFAULT_GATEWAY_ID} " in rerun.stdout and "agrees" in rerun.stdout


def test_all_starts_at_the_oldest_log_loaded(workspace: Workspace) -> None:
    stored = workspace.api.generate(200, hours=70)  # three days: daily buckets
    workspace.run_until_caught_up(forward_start="72h")

    summary = reconcile(workspace, all_history=True)

    window = summary.window
    assert window is not None and window.bucket_ms == 24 * HOUR_MS
    oldest = min(log.created_at_ms for log in stored)
    assert window.start_ms == oldest // window.bucket_ms * window.bucket_ms
    assert figures(summary)["buckets_checked"] == math.ceil(
        (window.end_ms - window.start_ms) / window.bucket_ms
    )
    assert summary.problem() is None and figures(summary)["logs_missing_loaded"] == 0


def test_all_on_an_empty_table_says_to_run_forward_first(workspace: Workspace) -> None:
    result = workspace.script("--all", script=RECONCILE_SCRIPT)

    assert result.returncode == 1
    assert result.stderr == (
        "error: Nothing to reconcile: table aig_logs has no logs yet. Run pipelines/forward.py"
        " first.\n"
    )


def test_on_an_empty_destination_it_loads_the_whole_window(workspace: Workspace) -> None:
    api = workspace.api
    # older than the last minute, which the window leaves to the forward job
    stored = api.generate(120, hours=3, end_ms=api.now_ms() - 120_000)

    summary = reconcile(workspace, since="6h")

    assert sorted(workspace.ids()) == sorted(log.id for log in stored)
    assert figures(summary)["logs_missing_loaded"] == 120 and summary.problem() is None


def test_every_gateway_of_the_fleet_is_reconciled_on_its_own(workspace: Workspace) -> None:
    api = workspace.api
    api.add_gateway("app-b")
    end = api.now_ms() - 120_000
    first = api.generate(300, hours=20, end_ms=end)
    second = api.generate(200, hours=20, end_ms=end, gateway_id="app-b")
    workspace.run_until_caught_up(gateway_id="*", forward_start="21h")
    lost = [first[7], second[11], second[150]]
    with workspace.pipeline().sql_client() as client:
        ids = ", ".join(f"'{log.id}'" for log in lost)
        client.execute_sql(f"DELETE FROM ai_gateway.aig_logs WHERE id IN ({ids})")
    second[40].feedback = 1

    summary = reconcile(workspace, gateway_id="*")

    assert summary.totals[DEFAULT_GATEWAY_ID]["logs_missing_loaded"] == 1
    assert summary.totals["app-b"]["logs_missing_loaded"] == 2
    assert summary.totals["app-b"]["feedback_up"] == 1
    assert summary.totals[DEFAULT_GATEWAY_ID]["feedback_up"] == 0
    assert feedback_of(workspace) == {second[40].id: 1}
    rows = workspace.query("SELECT gateway_id, COUNT(*) FROM ai_gateway.aig_logs GROUP BY ALL")
    assert sorted(rows) == [("app-b", 200), (DEFAULT_GATEWAY_ID, 300)]
    assert "2 gateways: app-b now agrees (2 missing logs loaded" in summary.line()
    assert f"{DEFAULT_GATEWAY_ID} now agrees (1 missing logs loaded" in summary.line()
