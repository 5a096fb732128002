"""A fleet of gateways, and several accounts, into one table: selection, per-gateway progress,
partial failure, concurrency under one pacer per token, kills, and accounts loading at once."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from typing import Any, Dict, List, Set

import pytest

from aig_source.config import ConfigurationError, gateway_ids
from aig_source.emulator import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_GATEWAY_ID,
    DEFAULT_TOKEN,
    LogsApiEmulator,
    RateLimit,
)
from aig_source.runner import describe_failure

from .conftest import FORWARD_SCRIPT, Workspace
from .test_backfill import DAY_MS, backfill_until_done

OTHER_ACCOUNT = "b" * 32
OTHER_TOKEN = "token-of-account-b"


def ids_of(api: LogsApiEmulator, gateway_id: str, account_id: str = DEFAULT_ACCOUNT_ID) -> Set[str]:
    return {log.id for log in api.gateway(gateway_id, account_id).store.snapshot()}


def rows_by_gateway(workspace: Workspace) -> Dict[str, Set[str]]:
    found: Dict[str, Set[str]] = {}
    for gateway_id, log_id in workspace.query("SELECT gateway_id, id FROM ai_gateway.aig_logs"):
        found.setdefault(gateway_id, set()).add(log_id)
    return found


def three_gateways(api: LogsApiEmulator) -> None:
    """Different volumes: a busy one with crowded milliseconds, a quiet one, a nearly idle one."""
    api.add_gateway("app-b")
    api.add_gateway("app-c")
    api.generate(600, hours=0.9, tie_group_size=40)
    api.generate(140, hours=0.9, gateway_id="app-b")
    api.generate(12, hours=0.9, gateway_id="app-c")


def committed(workspace: Workspace) -> Dict[str, Any]:
    """The source state the destination holds (scripts keep their own pipelines folder)."""
    pipeline = workspace.pipeline()
    pipeline.sync_destination()
    return dict(pipeline.state["sources"]["aig_source"])


def error_lines(result: subprocess.CompletedProcess) -> List[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize(
    ("configured", "expected"),
    [
        ("gw-a", ["gw-a"]),
        ("gw-a, gw-b,gw-c", ["gw-a", "gw-b", "gw-c"]),
        (["gw-a", "gw-b"], ["gw-a", "gw-b"]),
        ('["gw-a", "gw-b"]', ["gw-a", "gw-b"]),
        ("*", ["*"]),
        ("gw-a,gw-a", ["gw-a"]),
    ],
)
def test_gateway_id_takes_one_several_or_every_gateway(
    configured: Any, expected: List[str]
) -> None:
    assert gateway_ids(configured) == expected


@pytest.mark.parametrize("configured", ["", " , ", "*,gw-a", "x" * 65, 42])
def test_bad_gateway_selection_names_the_setting(configured: Any) -> None:
    with pytest.raises(ConfigurationError, match="SOURCES__AIG_SOURCE__GATEWAY_ID"):
        gateway_ids(configured)


def test_every_gateway_loads_into_one_table_each_with_its_own_cursor(workspace: Workspace) -> None:
    api = workspace.api
    three_gateways(api)

    first = workspace.run(gateway_id="*", max_pages=4)

    # the page budget is per gateway: the busy one is cut, the quiet ones catch up anyway
    assert first.budget_reached_of(DEFAULT_GATEWAY_ID)
    assert not first.budget_reached_of("app-b") and not first.budget_reached_of("app-c")
    assert rows_by_gateway(workspace)["app-b"] == ids_of(api, "app-b")
    assert rows_by_gateway(workspace)["app-c"] == ids_of(api, "app-c")
    line = first.line()
    assert "3 gateways:" in line and "app-c caught up" in line
    assert f"{DEFAULT_GATEWAY_ID} " in line and "behind (page budget reached)" in line

    summaries = [first, *workspace.run_until_caught_up(gateway_id="*", max_pages=4)]

    assert rows_by_gateway(workspace) == {
        gateway: ids_of(api, gateway) for gateway in (DEFAULT_GATEWAY_ID, "app-b", "app-c")
    }
    ids = workspace.ids()
    assert len(ids) == len(set(ids)) == 752
    assert workspace.query("SELECT DISTINCT account_id FROM ai_gateway.aig_logs") == [
        (DEFAULT_ACCOUNT_ID,)
    ]
    forward = committed(workspace)["resources"]["aig_logs"]["gateways"]
    assert set(forward) == {DEFAULT_GATEWAY_ID, "app-b", "app-c"}
    for gateway in forward:
        newest = max(log.created_at_ms for log in api.gateway(gateway).store.snapshot())
        assert summaries[-1].cursor_of(gateway) is not None
        assert abs(newest - _ms(summaries[-1].cursor_of(gateway))) == 0
    assert summaries[-1].problem() is None


def _ms(value: Any) -> int:
    from aig_source.timestamps import parse_ms

    return parse_ms(str(value))


def test_a_gateway_created_later_is_read_from_its_origin_and_its_history_backfilled(
    workspace: Workspace,
) -> None:
    api = workspace.api
    api.generate(100, hours=0.5)
    workspace.run(gateway_id="*")
    later = api.add_gateway("created-later")
    now = api.now_ms()
    history = api.generate(
        200, start_ms=now - 2 * DAY_MS, end_ms=now - 2 * 3_600_000, gateway_id="created-later"
    )
    recent = api.generate(50, hours=0.5, gateway_id="created-later")

    second = workspace.run(gateway_id="*")

    assert second.logs_new == 50, "the new gateway's forward starts at its own origin"
    assert {"created-later", DEFAULT_GATEWAY_ID} == set(second.gateways)
    origins = committed(workspace)["origins"]
    assert set(origins) == {DEFAULT_GATEWAY_ID, "created-later"}
    assert origins["created-later"] != origins[DEFAULT_GATEWAY_ID]

    summaries = backfill_until_done(workspace, source={"gateway_id": "*"})

    assert sum(s.logs_new for s in summaries) == len(history)
    assert rows_by_gateway(workspace)["created-later"] == {log.id for log in history + recent}
    assert len(later.store) == 250 and summaries[-1].done


def test_a_deleted_gateway_leaves_the_list_and_keeps_its_rows_and_state(
    workspace: Workspace,
) -> None:
    api = workspace.api
    three_gateways(api)
    workspace.run_until_caught_up(gateway_id="*", max_pages=50)
    kept = committed(workspace)["resources"]["aig_logs"]["gateways"]["app-b"]
    api.remove_gateway("app-b")
    api.generate(20, start_ms=api.now_ms() - 1000, end_ms=api.now_ms())

    after = workspace.run(gateway_id="*")

    assert after.problem() is None and after.gone == ["app-b"]
    assert "app-b gone from the account (rows and progress kept)" in after.line()
    assert after.logs_new == 20
    assert len(rows_by_gateway(workspace)["app-b"]) == 140
    assert committed(workspace)["resources"]["aig_logs"]["gateways"]["app-b"] == kept


@pytest.mark.parametrize("status", [500, 403])
def test_a_failing_gateway_holds_back_no_other_and_continues_once_healed(
    workspace: Workspace, status: int
) -> None:
    api = workspace.api
    three_gateways(api)
    selection = f"{DEFAULT_GATEWAY_ID},app-b,app-c"
    workspace.run_until_caught_up(gateway_id=selection, max_pages=50)
    before = committed(workspace)
    for gateway in (DEFAULT_GATEWAY_ID, "app-b", "app-c"):
        api.generate(30, start_ms=api.now_ms() - 20_000, end_ms=api.now_ms(), gateway_id=gateway)
    api.fail_gateway("app-b", status)

    failed = workspace.script(env=workspace.env(SOURCES__AIG_SOURCE__GATEWAY_ID=selection))

    assert failed.returncode == 1
    lines = error_lines(failed)
    assert len(lines) == 1 and lines[0].startswith("error: gateway app-b: ")
    assert str(status) in lines[0] and DEFAULT_TOKEN not in failed.stdout + failed.stderr
    assert "3 gateways:" in failed.stdout and "app-b failed (see below)" in failed.stdout
    after = committed(workspace)
    forward_before = before["resources"]["aig_logs"]["gateways"]
    forward_after = after["resources"]["aig_logs"]["gateways"]
    assert forward_after["app-b"] == forward_before["app-b"], "the failed gateway's state is kept"
    for healthy in (DEFAULT_GATEWAY_ID, "app-c"):
        assert forward_after[healthy]["cursor"] > forward_before[healthy]["cursor"]
        assert rows_by_gateway(workspace)[healthy] == ids_of(api, healthy)

    api.heal_gateway("app-b")
    healed = workspace.script(env=workspace.env(SOURCES__AIG_SOURCE__GATEWAY_ID=selection))

    assert healed.returncode == 0, healed.stderr
    assert rows_by_gateway(workspace)["app-b"] == ids_of(api, "app-b")
    ids = workspace.ids()
    assert len(ids) == len(set(ids)) == 752 + 90


def test_a_named_gateway_that_does_not_exist_fails_alone(workspace: Workspace) -> None:
    api = workspace.api
    api.generate(40, hours=0.5)

    summary = workspace.run(gateway_id=f"{DEFAULT_GATEWAY_ID},no-such-gateway")

    problem = summary.problem() or ""
    assert problem.startswith("gateway no-such-gateway: AI Gateway 'no-such-gateway' was not found")
    assert "\n" not in problem
    assert summary.logs_new == 40


def test_every_gateway_failing_fails_the_run_with_a_line_each_and_loads_nothing(
    workspace: Workspace,
) -> None:
    api = workspace.api
    api.add_gateway("app-b")
    api.generate(40, hours=0.5)
    api.generate(40, hours=0.5, gateway_id="app-b")
    api.faults.outage_status = 502

    with pytest.raises(Exception) as failure:
        workspace.run(gateway_id=f"{DEFAULT_GATEWAY_ID},app-b")

    lines = describe_failure(failure.value).splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "gateway app-b",
        f"gateway {DEFAULT_GATEWAY_ID}",
    ]
    assert not workspace.database.exists() or workspace.query(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'aig_logs'"
    ) == [(0,)]


def test_gateways_are_read_concurrently_up_to_the_bound(workspace: Workspace) -> None:
    api = workspace.api
    for index in range(5):
        api.add_gateway(f"app-{index}")
        api.generate(60, hours=0.5, gateway_id=f"app-{index}")
    api.faults.latency_seconds = 0.05

    workspace.run(gateway_id="*", max_concurrent_gateways=1)
    assert api.max_in_flight == 1
    api.generate(60, start_ms=api.now_ms() - 1000, end_ms=api.now_ms(), gateway_id="app-0")
    api.max_in_flight = 0

    workspace.run(gateway_id="*", max_concurrent_gateways=3)
    assert api.max_in_flight == 3


@pytest.mark.slow
def test_every_gateway_of_a_token_shares_its_one_pacer(workspace: Workspace) -> None:
    api = workspace.api
    for index in range(3):
        api.add_gateway(f"app-{index}")
        api.generate(300, hours=0.5, gateway_id=f"app-{index}")
    # the token's limit is half again the configured pace (room for requests that reach the
    # server late on a busy machine); per-gateway pacers would send twice the limit
    api.rate_limit = RateLimit(requests=12, window_seconds=2, block_seconds=30)

    summary = workspace.run(
        gateway_id="app-0,app-1,app-2",
        max_pages=30,
        rate_limit_requests=8,
        rate_limit_window_seconds=2.0,
    )

    assert Counter(r.status for r in api.requests)[429] == 0
    assert summary.logs_new == 900 and summary.problem() is None


@pytest.mark.slow
def test_killed_mid_run_with_several_gateways_then_rerun_is_exact(workspace: Workspace) -> None:
    api = workspace.api
    three_gateways(api)
    api.faults.latency_seconds = 0.1
    env = workspace.env(SOURCES__AIG_SOURCE__GATEWAY_ID="*")
    process = workspace.start("--max-pages", "40", env=env)
    workspace.kill_after(process, requests=8)
    assert process.returncode == -signal.SIGKILL
    api.faults.latency_seconds = 0

    rerun = workspace.script("--max-pages", "60", env=env)

    assert rerun.returncode == 0, rerun.stderr
    ids = workspace.ids()
    assert len(ids) == len(set(ids)) == 752
    assert rows_by_gateway(workspace) == {
        gateway: ids_of(api, gateway) for gateway in (DEFAULT_GATEWAY_ID, "app-b", "app-c")
    }


@pytest.mark.slow
def test_two_accounts_load_into_one_table_at_the_same_time(workspace: Workspace) -> None:
    api = workspace.api
    three_gateways(api)
    api.add_account(OTHER_ACCOUNT)
    api.add_token(OTHER_TOKEN, accounts=[OTHER_ACCOUNT])
    api.add_gateway("other-app", account_id=OTHER_ACCOUNT)
    api.generate(400, hours=0.9, gateway_id="other-app", account_id=OTHER_ACCOUNT)
    api.faults.latency_seconds = 0.02
    accounts = {
        "aig_logs_first": workspace.env(
            PIPELINE_NAME="aig_logs_first", SOURCES__AIG_SOURCE__GATEWAY_ID="*"
        ),
        "aig_logs_second": workspace.env(
            PIPELINE_NAME="aig_logs_second",
            SOURCES__AIG_SOURCE__ACCOUNT_ID=OTHER_ACCOUNT,
            SOURCES__AIG_SOURCE__API_TOKEN=OTHER_TOKEN,
            SOURCES__AIG_SOURCE__GATEWAY_ID="*",
        ),
    }

    for round_number in range(2):
        if round_number:  # both again, each continuing its own cursors
            for account, gateway in ((DEFAULT_ACCOUNT_ID, "app-b"), (OTHER_ACCOUNT, "other-app")):
                now = api.now_ms()
                api.generate(
                    10, start_ms=now - 500, end_ms=now, gateway_id=gateway, account_id=account
                )
        runs = [
            subprocess.Popen(
                [sys.executable, str(FORWARD_SCRIPT), "--max-pages", "60"],
                cwd=workspace.root,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for env in accounts.values()
        ]
        results = [run.communicate(timeout=180) for run in runs]
        assert [run.returncode for run in runs] == [0, 0], results

    counts = workspace.query(
        "SELECT account_id, COUNT(*), COUNT(DISTINCT id) FROM ai_gateway.aig_logs GROUP BY ALL"
        " ORDER BY 1"
    )
    assert counts == [(DEFAULT_ACCOUNT_ID, 762, 762), (OTHER_ACCOUNT, 410, 410)]
    states = workspace.query(
        "SELECT DISTINCT pipeline_name FROM ai_gateway._dlt_pipeline_state ORDER BY 1"
    )
    assert states == [("aig_logs_first",), ("aig_logs_second",)]
    assert "aig_logs_second forward:" in results[1][0]


def test_the_freshness_guard_names_the_gateway_that_is_behind(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = workspace.api
    three_gateways(api)
    monkeypatch.setenv("SOURCES__AIG_SOURCE__FRESHNESS_THRESHOLD_SECONDS", "600")

    summary = workspace.run(gateway_id="*", max_pages=4)

    lines = (summary.problem() or "").splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"gateway {DEFAULT_GATEWAY_ID}: the forward")
    assert "FRESHNESS_THRESHOLD_SECONDS" in lines[0]
    assert rows_by_gateway(workspace)["app-b"] == ids_of(api, "app-b"), "the others loaded"


def test_a_gateway_deleted_between_backfill_chunks_is_gone_not_failed(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aig_source.jobs import backfill as backfill_job

    api = workspace.api
    api.add_gateway("app-b")
    now = api.now_ms()
    for gateway in (DEFAULT_GATEWAY_ID, "app-b"):
        api.generate(300, start_ms=now - DAY_MS, end_ms=now - 2 * 3_600_000, gateway_id=gateway)
    monkeypatch.setattr(backfill_job, "BACKFILL_CHUNK_PAGES", 2)
    chunks: List[int] = []
    real_run_resource = backfill_job.run_resource

    def delete_after_the_first_chunk(*args: Any, **kwargs: Any) -> Any:
        loaded = real_run_resource(*args, **kwargs)
        chunks.append(1)
        if len(chunks) == 1:
            api.remove_gateway("app-b")
        return loaded

    monkeypatch.setattr(backfill_job, "run_resource", delete_after_the_first_chunk)

    summary = backfill_until_done(workspace, max_pages=40, source={"gateway_id": "*"})[-1]

    assert len(chunks) > 2, "the walk took several chunks"
    assert summary.problem() is None and summary.gone == ["app-b"]
    assert summary.progress(DEFAULT_GATEWAY_ID).done
    assert rows_by_gateway(workspace)[DEFAULT_GATEWAY_ID] == ids_of(api, DEFAULT_GATEWAY_ID)
    assert 0 < len(rows_by_gateway(workspace)["app-b"]) < 300, "its first chunk stays loaded"
