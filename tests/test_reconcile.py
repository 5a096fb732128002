"""The reconcile job against the emulator into DuckDB: what the forward run cannot see is found
and loaded, an agreeing window costs about a request a bucket, logs gone from the gateway are
counted and kept, and failures change nothing."""

from __future__ import annotations

import math
from typing import Any, List

import pytest

from aig_source.emulator import DEFAULT_GATEWAY_ID
from aig_source.emulator.store import StoredLog
from aig_source.jobs.reconcile import ReconcileSummary, run_reconcile
from aig_source.timestamps import format_ms

from .conftest import PROJECT_ROOT, Workspace, stored_ids

RECONCILE_SCRIPT = PROJECT_ROOT / "pipelines" / "reconcile.py"
HOUR_MS = 3_600_000


def load_day(workspace: Workspace, logs: int = 600) -> List[StoredLog]:
    """A day of traffic, loaded by forward runs from a forward start 25 hours back."""
    stored = workspace.api.generate(logs, hours=23)
    workspace.run_until_caught_up(forward_start="25h")
    assert len(workspace.ids()) == logs
    return stored


def reconcile(workspace: Workspace, **kwargs: Any) -> ReconcileSummary:
    return run_reconcile(workspace.pipeline(), **kwargs, **workspace.source_args())


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
    assert figures(summary)["reconcile_requests"] == buckets
    assert list_requests(workspace) - before == buckets
    assert figures(summary)["logs_missing_loaded"] == 0 and summary.problem() is None
    assert f"{DEFAULT_GATEWAY_ID} agrees ({buckets} buckets, {buckets} requests)" in summary.line()


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
    assert sorted(workspace.ids()) == sorted(stored_ids(api))
    # one bucket differs: halved down to a page of logs, then read
    buckets = figures(summary)["buckets_checked"]
    assert (
        figures(summary)["reconcile_requests"] <= buckets + math.ceil(math.log2(600 / 24 / 50)) + 2
    )


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
    assert figures(second)["reconcile_requests"] == buckets - 10


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
