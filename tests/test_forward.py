"""The forward resource end to end: real HTTP to the emulator, real DuckDB."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from aig_source.emulator import LogsApiEmulator, RateLimit
from aig_source.timestamps import format_ms, parse_ms

from .bigquery_emulator import answering
from .conftest import Workspace, stored_ids

HOUR_MS = 3_600_000


def test_end_to_end_loads_every_log_once_with_declared_types(workspace: Workspace) -> None:
    api = workspace.api
    logs = api.generate(400, hours=0.8)

    summary = workspace.run()

    assert sorted(workspace.ids()) == sorted(log.id for log in logs)
    assert summary.logs_fetched == 400 and summary.logs_new == 400
    assert not summary.page_budget_reached
    assert summary.cursor == format_ms(max(log.created_at_ms for log in logs))
    types = dict(
        workspace.query(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_name = 'aig_logs'"
        )
    )
    assert types["created_at"] == "TIMESTAMP WITH TIME ZONE"
    assert types["metadata"] == "JSON"
    assert types["cost"] == "DOUBLE" and types["tokens_in"] == "BIGINT"
    assert types["success"] == "BOOLEAN" and types["id"] == "VARCHAR"
    assert types["ingested_at"] == "TIMESTAMP WITH TIME ZONE"


def test_metadata_and_fields_round_trip_exactly(workspace: Workspace) -> None:
    api = workspace.api
    log = api.make_log(api.now_ms() - 60_000)
    log.fields["metadata"] = json.dumps(
        {"user": "u_1", "n": 3, "ratio": 0.125, "beta": True, "off": False}
    )
    log.fields["tokens_in"] = None
    bare = api.make_log(api.now_ms() - 30_000)
    bare.fields.pop("metadata", None)
    api.add_logs([log, bare])

    workspace.run()

    rows = dict(workspace.query("SELECT id, CAST(metadata AS VARCHAR) FROM ai_gateway.aig_logs"))
    assert json.loads(rows[log.id]) == {
        "user": "u_1",
        "n": 3,
        "ratio": 0.125,
        "beta": True,
        "off": False,
    }
    assert rows[bare.id] is None
    (created_at, tokens_in, cost) = workspace.query(
        f"SELECT created_at, tokens_in, cost FROM ai_gateway.aig_logs WHERE id = '{log.id}'"
    )[0]
    assert parse_ms(created_at) == log.created_at_ms
    assert tokens_in is None
    assert cost == pytest.approx(log.fields["cost"])


def test_second_run_loads_nothing_new_and_costs_few_requests(workspace: Workspace) -> None:
    workspace.api.generate(300, hours=0.5)
    first = workspace.run()

    second = workspace.run()

    assert second.logs_new == 0
    assert second.cursor == first.cursor
    # one lookback check plus one short page
    assert second.api_requests <= 2
    assert len(workspace.ids()) == 300
    # the newest log, read again from the inclusive cursor, is unchanged: it is not merged again
    # (on BigQuery a DELETE that removes a row is billed for its whole partition)
    assert second.logs_fetched >= 1
    assert second.load_info is not None
    tables = {
        job.job_file_info.table_name
        for package in second.load_info.load_packages
        for job in package.jobs["completed_jobs"]
    }
    assert "aig_logs" not in tables


def test_newest_log_changed_since_loaded_is_merged_again(workspace: Workspace) -> None:
    workspace.api.generate(30, hours=0.2)
    workspace.run()
    newest = workspace.api.gateway().store.snapshot()[-1]
    newest.fields["cost"] = 1.25

    second = workspace.run()

    assert second.logs_new == 0
    rows = workspace.query(f"SELECT cost FROM ai_gateway.aig_logs WHERE id = '{newest.id}'")
    assert rows == [(1.25,)]


def test_new_logs_after_a_first_run_are_loaded(workspace: Workspace) -> None:
    api = workspace.api
    api.generate(200, hours=0.5)
    first = workspace.run()
    later = api.generate(150, start_ms=parse_ms(first.cursor) + 1, end_ms=api.now_ms() + 20_000)
    api.advance(25)

    summary = workspace.run()

    assert summary.logs_new == 150
    assert set(log.id for log in later) <= set(workspace.ids())
    assert len(workspace.ids()) == 350


def add_tie(api: LogsApiEmulator, tied: int, around: int) -> None:
    """`tied` logs on one millisecond ten minutes ago, `around` more in the minute on each side."""
    stamp = api.now_ms() - 600_000
    api.generate(around, start_ms=stamp - 60_000, end_ms=stamp)
    api.add_logs([api.make_log(stamp) for _ in range(tied)])
    api.generate(around, start_ms=stamp + 1, end_ms=stamp + 60_000)


def test_more_than_a_page_of_logs_on_one_millisecond(workspace: Workspace) -> None:
    api = workspace.api
    add_tie(api, tied=135, around=40)

    workspace.run(per_page=50)

    ids = workspace.ids()
    assert len(ids) == len(set(ids)) == 215
    assert sorted(ids) == sorted(stored_ids(api))


@pytest.mark.slow
def test_page_budget_cuts_inside_a_tie_and_the_next_runs_resume(workspace: Workspace) -> None:
    add_tie(workspace.api, tied=45, around=30)

    summaries = workspace.run_until_caught_up(max_pages=2, per_page=10)

    assert len(summaries) > 3
    assert all(s.page_budget_reached for s in summaries[:-1])
    ids = workspace.ids()
    assert len(ids) == len(set(ids)) == 105


@pytest.mark.slow
def test_page_budget_resumes_without_gap_or_duplicate(workspace: Workspace) -> None:
    workspace.api.generate(700, hours=0.9)

    summaries = workspace.run_until_caught_up(max_pages=3)

    assert summaries[0].page_budget_reached and summaries[0].behind_seconds > 0
    assert "page budget of 3 reached" in summaries[0].line()
    assert "caught up" in summaries[-1].line()
    ids = workspace.ids()
    assert len(ids) == len(set(ids)) == 700
    assert sum(s.logs_new for s in summaries) == 700


def test_late_row_inside_the_lookback_window_is_loaded(workspace: Workspace) -> None:
    api = workspace.api
    api.generate(300, hours=0.5)
    first = workspace.run()
    cursor_ms = parse_ms(first.cursor)
    late_inside = api.make_log(cursor_ms - 90_000)
    late_outside = api.make_log(cursor_ms - 900_000)
    api.add_logs([late_inside, late_outside])

    summary = workspace.run(lookback_seconds=300)

    ids = set(workspace.ids())
    assert late_inside.id in ids
    # Older than the lookback window: documented as the backfill's job, not the forward run's.
    assert late_outside.id not in ids
    assert summary.logs_new == 1
    # found by bisecting counts, not by re-reading the whole window
    assert summary.api_requests <= 12


def test_rows_that_become_visible_late_are_all_loaded(workspace: Workspace) -> None:
    api = workspace.api
    api.generate(500, hours=0.05, max_visibility_delay_ms=60_000)
    workspace.run()
    visible_first = len(workspace.ids())
    assert visible_first < 500
    api.advance(61)

    summaries = workspace.run_until_caught_up(max_runs=3)

    ids = workspace.ids()
    assert len(ids) == len(set(ids)) == 500
    assert sum(s.logs_new for s in summaries) == 500 - visible_first


def test_rate_limit_retry_after_is_honoured(workspace: Workspace) -> None:
    api = workspace.api
    api.rate_limit = RateLimit(requests=4, window_seconds=1.0, block_seconds=1.0)
    api.generate(400, hours=0.5)

    summary = workspace.run()

    statuses = Counter(r.status for r in api.requests)
    assert statuses[429] >= 1
    assert summary.logs_new == 400
    assert len(set(workspace.ids())) == 400


def test_rate_limit_block_longer_than_allowed_wait_fails_clearly(workspace: Workspace) -> None:
    api = workspace.api
    api.generate(100, hours=0.5)
    workspace.run()
    api.generate(50, hours=0.01)
    api.rate_limit = RateLimit(requests=1, window_seconds=300, block_seconds=300)
    state_before = workspace.pipeline().state["sources"]

    with pytest.raises(Exception) as failure:
        workspace.run()

    from aig_source.runner import describe_failure

    message = describe_failure(failure.value)
    assert "rate limit" in message and "300 s" in message and "\n" not in message
    assert workspace.pipeline().state["sources"] == state_before
    assert len(workspace.ids()) == 100


@pytest.mark.parametrize("status", [500, 502, 503])
def test_bursts_of_server_errors_are_retried(workspace: Workspace, status: int) -> None:
    api = workspace.api
    api.generate(200, hours=0.5)
    api.faults.server_errors = 3
    api.faults.server_error_status = status

    summary = workspace.run()

    assert Counter(r.status for r in api.requests)[status] == 3
    assert summary.logs_new == 200


def test_malformed_json_and_timeouts_are_retried(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNTIME__REQUEST_TIMEOUT", "0.5")
    api = workspace.api
    api.generate(200, hours=0.5)
    api.faults.malformed = 2
    api.faults.slow_requests = 1
    api.faults.slow_seconds = 1.5

    summary = workspace.run()

    assert summary.logs_new == 200
    assert len(set(workspace.ids())) == 200


def test_dropped_connections_are_retried(workspace: Workspace) -> None:
    api = workspace.api
    api.generate(100, hours=0.5)
    api.faults.dropped_connections = 2

    assert workspace.run().logs_new == 100


def test_unknown_gateway_and_account_fail_with_clear_errors(workspace: Workspace) -> None:
    from aig_source.runner import describe_failure

    with pytest.raises(Exception) as gateway_failure:
        workspace.run(gateway_id="no-such-gateway")
    message = describe_failure(gateway_failure.value)
    assert "no-such-gateway" in message and "SOURCES__AIG_SOURCE__GATEWAY_ID" in message

    with pytest.raises(Exception) as account_failure:
        workspace.run(account_id="ffffffffffffffffffffffffffffffff")
    message = describe_failure(account_failure.value)
    assert "SOURCES__AIG_SOURCE__ACCOUNT_ID" in message and "7003" in message


@pytest.mark.parametrize(
    ("setting", "value", "env_name"),
    [
        ("per_page", 80, "SOURCES__AIG_SOURCE__PER_PAGE"),
        ("forward_max_pages", 0, "SOURCES__AIG_SOURCE__FORWARD_MAX_PAGES"),
        ("lookback_seconds", -5, "SOURCES__AIG_SOURCE__LOOKBACK_SECONDS"),
        ("api_base_url", "ftp://example", "SOURCES__AIG_SOURCE__API_BASE_URL"),
    ],
)
def test_invalid_values_name_the_setting(
    workspace: Workspace, setting: str, value: object, env_name: str
) -> None:
    from aig_source.runner import describe_failure

    with pytest.raises(Exception) as failure:
        workspace.run(**{setting: value})
    message = describe_failure(failure.value)
    assert env_name in message and str(value) in message
    assert not workspace.api.requests


def test_fresh_pipelines_folder_restores_state_from_duckdb(workspace: Workspace) -> None:
    api = workspace.api
    api.generate(300, hours=0.5)
    first = workspace.run(pipelines_folder="machine_a")
    api.generate(40, start_ms=parse_ms(first.cursor) + 1, end_ms=api.now_ms() + 5_000)
    api.advance(6)

    summary = workspace.run(pipelines_folder="machine_b")

    assert summary.logs_new == 40
    assert summary.api_requests <= 3, "restored the cursor rather than starting over"
    assert parse_ms(summary.cursor) > parse_ms(first.cursor)
    assert len(set(workspace.ids())) == 340


def test_new_api_fields_become_columns_and_declared_types_never_drift(
    workspace: Workspace,
) -> None:
    api = workspace.api
    api.generate(20, hours=0.2)
    workspace.run()
    odd = api.make_log(api.now_ms() - 1_000)
    odd.fields["cost"] = "0.25"
    odd.fields["tokens_in"] = 12.0
    odd.fields["dlp_action"] = "FLAG"
    api.add_logs([odd])

    workspace.run()

    columns = {
        row[0]
        for row in workspace.query(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'aig_logs'"
        )
    }
    assert "dlp_action" in columns
    assert not [c for c in columns if "__v_" in c], "no variant columns"
    cost, tokens_in, dlp = workspace.query(
        f"SELECT cost, tokens_in, dlp_action FROM ai_gateway.aig_logs WHERE id = '{odd.id}'"
    )[0]
    assert (cost, tokens_in, dlp) == (0.25, 12, "FLAG")


def test_updated_row_is_replaced_not_duplicated(workspace: Workspace) -> None:
    api = workspace.api
    api.generate(50, hours=0.2)
    workspace.run()
    newest = api.gateway().store.snapshot()[-1]
    newest.fields["metadata"] = json.dumps({"patched": True})

    workspace.run()

    rows = workspace.query(
        f"SELECT CAST(metadata AS VARCHAR) FROM ai_gateway.aig_logs WHERE id = '{newest.id}'"
    )
    assert len(rows) == 1 and json.loads(rows[0][0]) == {"patched": True}


def test_filters_are_sent_as_one_json_array(workspace: Workspace) -> None:
    api = workspace.api
    api.generate(10, hours=0.2)
    workspace.run()

    for served in api.logs_requests():
        assert list(served.query) == [
            "per_page",
            "page",
            "order_by",
            "order_by_direction",
            "filters",
        ]
        filters = json.loads(served.query["filters"][0])
        assert isinstance(filters, list) and filters[0]["key"] == "created_at"
        assert served.query["order_by_direction"] == ["asc"]


@pytest.mark.slow
def test_steady_state_cost_is_close_to_the_floor(workspace: Workspace) -> None:
    """Requests per 1,000 new logs when each run follows five minutes of traffic whose rows
    become visible up to 3 s late (some only after the run that should have seen them)."""
    api: LogsApiEmulator = workspace.api
    api.generate(100, hours=0.1)
    workspace.run()
    requests = new = 0
    for _ in range(4):
        start = api.now_ms()
        api.advance(300)
        api.generate(1000, start_ms=start, end_ms=api.now_ms(), max_visibility_delay_ms=3_000)
        summary = workspace.run(forward_max_pages=100)
        requests += summary.api_requests
        new += summary.logs_new
    api.advance(5)
    final = workspace.run()
    requests, new = requests + final.api_requests, new + final.logs_new

    assert new == 4000
    assert len(set(workspace.ids())) == 4100
    assert requests / (new / 1000) < 24


def test_unstable_order_inside_a_millisecond_is_rescanned_until_complete(
    workspace: Workspace,
) -> None:
    api = workspace.api
    api.tie_order = "shuffled"
    add_tie(api, tied=400, around=30)

    summary = workspace.run(max_pages=400)

    ids = workspace.ids()
    assert len(ids) == len(set(ids)) == 460, "three passes (the old bound) left logs behind"
    assert summary.problem() is None and summary.incomplete_millisecond is None


def test_a_millisecond_that_cannot_be_read_completely_fails_and_keeps_the_cursor(
    workspace: Workspace,
) -> None:
    api = workspace.api
    api.tie_order = "evasive"
    stamp = api.now_ms() - 600_000
    add_tie(api, tied=120, around=30)

    summary = workspace.run(max_pages=200)

    problem = summary.problem()
    assert problem is not None and format_ms(stamp) in problem
    assert "120 logs share the millisecond" in problem and "119" in problem
    assert summary.cursor is not None and parse_ms(summary.cursor) <= stamp
    loaded = set(workspace.ids())
    newer = {log.id for log in api.gateway().store.snapshot() if log.created_at_ms > stamp}
    assert not loaded & newer, "nothing after the incomplete millisecond is loaded"

    api.tie_order = "stable"
    workspace.run_until_caught_up(max_pages=200)

    ids = workspace.ids()
    assert len(ids) == len(set(ids)) == 180
    assert sorted(ids) == sorted(stored_ids(api))


def test_incomplete_millisecond_is_one_error_line_and_exit_1(workspace: Workspace) -> None:
    api = workspace.api
    api.tie_order = "evasive"
    add_tie(api, tied=60, around=5)

    result = workspace.script("--max-pages", "100")

    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "60 logs share the millisecond" in errors[0], result.stderr
    assert "aig_logs forward:" in result.stdout


def test_lookback_zero_still_replaces_a_changed_log_at_the_cursor(workspace: Workspace) -> None:
    api = workspace.api
    logs = api.generate(30, hours=0.5)
    workspace.run(lookback_seconds=0)
    newest = max(logs, key=lambda log: log.created_at_ms)
    newest.fields["metadata"] = json.dumps({"team": "changed"})

    workspace.run(lookback_seconds=0)

    rows = workspace.query(
        f"SELECT CAST(metadata AS VARCHAR) FROM ai_gateway.aig_logs WHERE id = '{newest.id}'"
    )
    assert [json.loads(row[0]) for row in rows] == [{"team": "changed"}]


def test_one_page_budget_with_a_lookback_is_refused_clearly(workspace: Workspace) -> None:
    with pytest.raises(Exception) as raised:
        workspace.run(max_pages=1)

    message = str(raised.value)
    assert "forward_max_pages must be at least 2" in message
    assert "SOURCES__AIG_SOURCE__FORWARD_MAX_PAGES" in message and "lookback_seconds" in message

    workspace.api.generate(20, hours=0.5)
    assert workspace.run(max_pages=1, lookback_seconds=0).logs_new == 20


@pytest.mark.parametrize("forward_start", ["3h", "2026-01-01"])
def test_forward_start_sets_where_the_first_run_reads_from(
    workspace: Workspace, forward_start: str
) -> None:
    api = workspace.api
    logs = api.generate(200, hours=5)
    start_ms = (
        api.now_ms() - 3 * HOUR_MS if forward_start == "3h" else parse_ms("2026-01-01T00:00:00Z")
    )

    workspace.run_until_caught_up(max_pages=100, forward_start=forward_start)

    expected = {log.id for log in logs if log.created_at_ms >= start_ms}
    assert set(workspace.ids()) == expected


def test_invalid_forward_start_names_the_setting(workspace: Workspace) -> None:
    with pytest.raises(Exception) as raised:
        workspace.run(forward_start="yesterday")

    assert "forward_start must be a duration" in str(raised.value)
    assert "SOURCES__AIG_SOURCE__FORWARD_START" in str(raised.value)


def test_a_wrong_api_base_url_is_named_not_taken_for_a_missing_gateway(
    workspace: Workspace,
) -> None:
    from aig_source.runner import describe_failure

    wrong_path = workspace.api.base_url.replace("/client/v4", "/v4")
    with pytest.raises(Exception) as failure:
        workspace.run(api_base_url=wrong_path)
    message = describe_failure(failure.value)
    assert "was not found in account" not in message
    assert "/v4/accounts/" in message and "SOURCES__AIG_SOURCE__API_BASE_URL" in message
    assert "code 7000: No route for that URI" in message

    html = "<html><body>Not Found</body></html>"
    with answering(404, html) as other_server, pytest.raises(Exception) as failure:
        workspace.run(api_base_url=other_server)
    message = describe_failure(failure.value)
    assert "text/html" in message and "Not Found" in message
    assert "SOURCES__AIG_SOURCE__API_BASE_URL" in message
    assert "was not found in account" not in message


def test_a_failed_row_count_fails_the_run_instead_of_counting_negative_logs(
    workspace: Workspace,
) -> None:
    import duckdb

    from aig_source.runner import count_rows

    workspace.api.generate(20, hours=0.5)
    workspace.run()
    with duckdb.connect(str(workspace.database)) as connection:
        connection.execute("ALTER TABLE ai_gateway.aig_logs RENAME TO aig_logs_kept")
        connection.execute(
            "CREATE VIEW ai_gateway.aig_logs AS SELECT * FROM ai_gateway.aig_logs_kept"
            " WHERE error('the warehouse refused the query') IS NULL"
        )

    with pytest.raises(Exception, match="the warehouse refused the query"):
        count_rows(workspace.pipeline())


def test_the_gateways_newest_log_is_reported_only_when_known(workspace: Workspace) -> None:
    api = workspace.api
    logs = api.generate(400, hours=0.9)
    newest = format_ms(max(log.created_at_ms for log in logs))

    cut = workspace.run(max_pages=2)
    caught_up = workspace.run_until_caught_up(max_pages=50)[-1]

    assert cut.page_budget_reached and cut.gateway_newest == newest, "probed when cut"
    assert parse_ms(cut.cursor or "") < parse_ms(newest) and cut.behind_seconds > 0
    assert caught_up.gateway_newest == caught_up.cursor == newest
    assert caught_up.behind_seconds == 0


def test_an_empty_gateway_leaves_the_cursor_unset_and_says_so(workspace: Workspace) -> None:
    summary = workspace.run()

    assert summary.cursor is None and summary.logs_fetched == 0
    assert "no logs in the gateway at or after the origin yet" in summary.line()
    workspace.api.generate(10, hours=0.5)
    assert workspace.run().logs_new == 10, "the origin recorded by the empty run still holds"


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_a_pass_that_finds_nothing_new_by_chance_does_not_end_the_rescan(
    workspace: Workspace, seed: int
) -> None:
    api = workspace.api
    api.tie_order = "shuffled"
    api._rng.seed(seed)
    add_tie(api, tied=130, around=5)  # three pages: a pass often misses the last few ids

    summary = workspace.run(max_pages=400)

    assert summary.incomplete_millisecond is None
    assert len(set(workspace.ids())) == 140
