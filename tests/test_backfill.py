"""The backfill resource and script: history, bounds, resets, kills, eviction, pacing."""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any, List

import pytest

from aig_source import backfill as backfill_module
from aig_source import timestamps
from aig_source.emulator import DEFAULT_GATEWAY_ID, LogsApiEmulator, RateLimit
from aig_source.jobs import backfill as backfill_job
from aig_source.jobs.backfill import BackfillSummary, run_backfill
from aig_source.timestamps import format_ms, parse_ms

from .conftest import BACKFILL_SCRIPT, Workspace, run_demo, stored_ids

DAY_MS = 86_400_000


def backfill(workspace: Workspace, **kwargs: Any) -> BackfillSummary:
    source_args = workspace.source_args(**kwargs.pop("source", {}))
    return run_backfill(workspace.pipeline(), **kwargs, **source_args)


def backfill_until_done(
    workspace: Workspace, max_runs: int = 60, **kwargs: Any
) -> List[BackfillSummary]:
    summaries = []
    for _ in range(max_runs):
        summaries.append(backfill(workspace, **kwargs))
        if summaries[-1].done:
            return summaries
    raise AssertionError(f"backfill not done after {max_runs} runs")


def history(api: LogsApiEmulator, count: int, days: float = 3) -> None:
    """`count` logs spread over the `days` before the last hour (which forward runs cover)."""
    now = api.now_ms()
    api.generate(count, start_ms=now - int(days * DAY_MS), end_ms=now - 2 * 3_600_000)


@pytest.mark.slow
def test_forward_and_backfill_together_load_everything_exactly_once(workspace: Workspace) -> None:
    api = workspace.api
    history(api, 2500)
    api.generate(300, hours=0.9)
    workspace.run_until_caught_up()

    summaries = backfill_until_done(workspace, max_pages=10)

    assert len(summaries) >= 5
    assert all(not s.done for s in summaries[:-1]) and summaries[-1].done
    assert "page budget of 10 reached" in summaries[0].line()
    assert "logs left" in summaries[0].line()
    assert "done: reached the gateway's oldest log" in summaries[-1].line()
    ids = workspace.ids()
    assert len(ids) == len(set(ids)) == 2800
    assert sorted(ids) == sorted(stored_ids(api))
    assert sum(s.logs_new for s in summaries) == 2500
    assert summaries[-1].logs_gone == 0

    later = backfill(workspace)

    assert later.done and later.api_requests == 0 and later.logs_fetched == 0


def test_backfill_before_any_forward_run_starts_at_now(workspace: Workspace) -> None:
    api = workspace.api
    history(api, 300)
    api.generate(100, hours=0.5)

    backfill_until_done(workspace)
    workspace.run()

    assert sorted(workspace.ids()) == sorted(stored_ids(api))


def test_since_bounds_the_walk_and_an_earlier_since_continues(workspace: Workspace) -> None:
    api = workspace.api
    history(api, 900, days=4)
    workspace.run()
    since = format_ms(api.now_ms() - 2 * DAY_MS)

    summaries = backfill_until_done(workspace, since=since)

    loaded = workspace.query("SELECT MIN(created_at) FROM ai_gateway.aig_logs")[0][0]
    assert format_ms(int(loaded.timestamp() * 1000)) >= since
    assert f"reached --since {since}" in summaries[-1].line()
    assert backfill(workspace, since=since).api_requests == 0

    backfill_until_done(workspace)

    ids = workspace.ids()
    assert len(ids) == len(set(ids)) and sorted(ids) == sorted(stored_ids(api))


def test_reset_starts_over_without_duplicating(workspace: Workspace) -> None:
    api = workspace.api
    history(api, 400)
    workspace.run()
    backfill_until_done(workspace)

    again = backfill(workspace, reset=True, max_pages=3)

    assert not again.done and again.api_requests == 3 and again.logs_fetched > 100
    assert again.logs_new == 0
    backfill_until_done(workspace)
    ids = workspace.ids()
    assert len(ids) == len(set(ids)) == 400


def crowded_history(api: LogsApiEmulator, before: int, tied: int, after: int) -> None:
    """`tied` logs on one millisecond two days ago, `before` and `after` it in the hour around."""
    stamp = api.now_ms() - 2 * DAY_MS
    api.generate(before, start_ms=stamp - 3_600_000, end_ms=stamp)
    api.add_logs([api.make_log(stamp) for _ in range(tied)])
    api.generate(after, start_ms=stamp + 1, end_ms=stamp + 3_600_000)


def test_ties_across_page_boundaries_in_history(workspace: Workspace) -> None:
    crowded_history(workspace.api, before=60, tied=75, after=60)
    workspace.run()

    summaries = backfill_until_done(workspace, max_pages=2, source={"per_page": 10})

    assert len(summaries) > 5
    ids = workspace.ids()
    assert len(ids) == len(set(ids)) == 195


def test_empty_gateway_is_done_at_once(workspace: Workspace) -> None:
    first = backfill(workspace)

    assert first.done and first.api_requests == 1 and first.logs_fetched == 0
    assert backfill(workspace).api_requests == 0


def test_eviction_while_the_backfill_pages(workspace: Workspace) -> None:
    api = workspace.api
    capped = api.gateway()
    capped.store.capacity, capped.store.strategy = 3000, "DELETE_OLDEST"
    history(api, 2800)
    api.generate(200, hours=0.5)
    workspace.run()
    api.faults.latency_seconds = 0.01
    api.start_live_traffic(400)  # each new log evicts the oldest while the backfill pages
    try:
        summaries = backfill_until_done(workspace, max_pages=15)
    finally:
        api.stop_live_traffic()
    api.faults.latency_seconds = 0

    workspace.run_until_caught_up()
    survivors = set(stored_ids(api))
    loaded = set(workspace.ids())
    assert capped.store.evicted > 200
    assert survivors <= loaded, "every surviving log was loaded"
    assert summaries[-1].logs_gone > 0
    assert "were gone (evicted" in summaries[-1].line()


@pytest.mark.slow
def test_killed_mid_run_then_resumed(workspace: Workspace) -> None:
    api = workspace.api
    history(api, 1500)
    workspace.run()
    api.faults.latency_seconds = 0.1
    process = workspace.start("--max-pages", "40", script=BACKFILL_SCRIPT)
    workspace.kill_after(process, requests=6)
    api.faults.latency_seconds = 0

    for _ in range(10):
        rerun = workspace.script(script=BACKFILL_SCRIPT)
        assert rerun.returncode == 0, rerun.stderr
        if "done:" in rerun.stdout:
            break
    ids = workspace.ids()
    assert len(ids) == len(set(ids)) == 1500


def test_time_budget_stops_cleanly(workspace: Workspace) -> None:
    api = workspace.api
    history(api, 1000)
    workspace.run()
    api.faults.latency_seconds = 0.2

    summary = backfill(workspace, max_minutes=0.02)

    assert not summary.done and 0 < summary.api_requests < 10
    assert "time budget reached" in summary.line()
    api.faults.latency_seconds = 0
    backfill_until_done(workspace)
    assert len(set(workspace.ids())) == 1000


@pytest.mark.slow
def test_pacing_keeps_a_long_backfill_free_of_429s(workspace: Workspace) -> None:
    api = workspace.api
    api.rate_limit = RateLimit(requests=20, window_seconds=2.0, block_seconds=30.0)
    history(api, 1800)
    started = time.monotonic()

    summaries = backfill_until_done(
        workspace,
        max_pages=200,
        source={"rate_limit_requests": 20, "rate_limit_window_seconds": 2.0},
    )

    elapsed = time.monotonic() - started
    statuses = Counter(r.status for r in api.requests)
    assert statuses[429] == 0
    assert summaries[-1].done and len(set(workspace.ids())) == 1800
    requests = statuses[200]
    assert requests >= 37
    # paced: about 10 requests per second, not as fast as the emulator answers
    assert elapsed >= (requests - 20) / 10 * 0.9


@pytest.mark.slow
def test_a_429_despite_pacing_pauses_and_slows_down(workspace: Workspace) -> None:
    api = workspace.api
    api.rate_limit = RateLimit(requests=10, window_seconds=1.0, block_seconds=1.0)
    history(api, 4000)

    summaries = backfill_until_done(
        workspace,
        max_pages=12,
        source={"rate_limit_requests": 15, "rate_limit_window_seconds": 1.0},
    )

    assert summaries[-1].done and len(set(workspace.ids())) == 4000
    assert any("answered 429" in s.line() for s in summaries)
    budgets = [s.last_run["pacing"]["requests"] for s in summaries]
    assert budgets == sorted(budgets, reverse=True) and budgets[-1] < 40, (
        "each run builds a new source; the slow-down must outlive it"
    )
    served = [r for r in api.requests if "/logs" in r.path]
    last_429 = max(index for index, r in enumerate(served) if r.status == 429)
    assert last_429 < len(served) / 2, "once slowed down, later runs stay under the limit"
    after = [r.at for r in served[last_429 + 1 :]]
    busiest = max(len([t for t in after[i:] if t < start + 1.0]) for i, start in enumerate(after))
    # the pacer's slots are at most 10 per 1.02 s where they leave the client; arrival times at
    # the server drift by a few ms on a loaded machine (two test workers), which can put one
    # more request into a second. Without the slow-down it would be 15.
    assert busiest <= 11, f"{busiest} requests in one second after slowing down"


def test_progress_lines_during_long_runs(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(backfill_module, "PROGRESS_EVERY_SECONDS", 0.0)
    history(workspace.api, 300)

    with caplog.at_level(logging.INFO, logger="aig_source"):
        backfill_until_done(workspace)

    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("backfill:")]
    assert progress and "reached" in progress[0]


def test_script_help_summary_and_state_in_dlt_info(workspace: Workspace) -> None:
    history(workspace.api, 200)
    helped = workspace.script("--help", script=BACKFILL_SCRIPT)
    assert helped.returncode == 0
    for option in ("--max-pages", "--since", "--max-minutes", "--reset", "--demo"):
        assert option in helped.stdout

    ran = workspace.script(script=BACKFILL_SCRIPT)
    info = workspace.dlt_info()

    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("aig_logs backfill: 200 logs fetched (200 new")
    assert "done: reached the gateway's oldest log" in ran.stdout
    assert "aig_logs_backfill" in info.stdout
    assert '"oldest_loaded"' in info.stdout and '"done": true' in info.stdout


def test_invalid_since_names_the_setting(workspace: Workspace) -> None:
    from aig_source.runner import describe_failure

    with pytest.raises(Exception) as failure:
        backfill(workspace, since="last tuesday")
    message = describe_failure(failure.value)
    assert "SOURCES__AIG_SOURCE__BACKFILL_SINCE" in message and "last tuesday" in message


@pytest.mark.slow
def test_backfill_demo_runs(tmp_path: Path) -> None:
    result = run_demo(BACKFILL_SCRIPT, tmp_path)

    assert result.returncode == 0, result.stderr
    last_backfill = [line for line in result.stdout.splitlines() if " backfill: " in line][-1]
    assert "3 gateways: demo-gateway done; search-api done; support-bot done" in last_backfill
    assert "answered 429" not in result.stdout


def test_backfill_first_and_forward_hours_later_leave_no_gap(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = workspace.api
    history(api, 300)
    api.generate(400, hours=4)
    real_now_ms = timestamps.now_ms
    # the backfill runs four hours before the forward's first run
    monkeypatch.setattr(timestamps, "now_ms", lambda: real_now_ms() - 4 * 3_600_000)
    backfill_until_done(workspace)
    monkeypatch.setattr(timestamps, "now_ms", real_now_ms)

    workspace.run_until_caught_up(max_pages=100)

    ids = workspace.ids()
    assert len(ids) == len(set(ids)) == 700, "the old forward started at its own now - 1 h"
    assert sorted(ids) == sorted(stored_ids(api))


def test_forward_first_then_backfill_split_at_one_origin(workspace: Workspace) -> None:
    api = workspace.api
    logs = api.generate(500, hours=6)
    workspace.run_until_caught_up(max_pages=100, forward_start="2h")
    origin = workspace.pipeline().state["sources"]["aig_source"]["origins"][DEFAULT_GATEWAY_ID]
    below = [log for log in logs if log.created_at_ms < parse_ms(origin)]

    summaries = backfill_until_done(workspace, source={"forward_start": "10m"})

    assert summaries[0].state["start"] == origin, "a later forward_start does not move it"
    assert sum(s.logs_new for s in summaries) == len(below)
    assert sorted(workspace.ids()) == sorted(stored_ids(api))


@pytest.mark.slow
def test_resuming_inside_a_crowded_millisecond_reports_no_logs_gone(
    workspace: Workspace,
) -> None:
    crowded_history(workspace.api, before=500, tied=75, after=200)
    workspace.run()

    summaries = backfill_until_done(workspace, max_pages=3, source={"per_page": 10})

    assert len(set(workspace.ids())) == 775
    assert all(s.logs_gone == 0 for s in summaries), [s.logs_gone for s in summaries]
    assert summaries[-1].state["loaded"] == summaries[-1].state["expected"] == 775
    estimates = [s.last_run["logs_remaining_estimate"] for s in summaries[:-1]]
    loaded_after = [sum(s.logs_new for s in summaries[: i + 1]) for i in range(len(estimates))]
    for estimate, loaded in zip(estimates, loaded_after, strict=True):
        assert estimate == 775 - loaded


def test_eviction_is_counted_once_and_exactly(workspace: Workspace) -> None:
    api = workspace.api
    history(api, 600)
    workspace.run()
    first = backfill(workspace, max_pages=3)
    assert first.logs_gone == 0
    oldest = sorted(api.gateway().store.snapshot(), key=lambda log: log.created_at_ms)[:50]
    api.gateway().store.delete(oldest)

    summaries = backfill_until_done(workspace, max_pages=3)

    assert all(s.logs_gone == 50 for s in summaries), [s.logs_gone for s in summaries]
    assert summaries[-1].state["loaded"] == 550


def test_the_page_budget_counts_pages_not_retries(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backfill_job, "BACKFILL_CHUNK_PAGES", 10)
    api = workspace.api
    history(api, 1500)
    workspace.run()
    api.faults.server_errors = 3

    summary = backfill(workspace, max_pages=15)

    assert summary.pages == 15 and summary.api_requests == 18
    assert summary.logs_fetched >= 15 * 49, "every page of the budget read logs"
