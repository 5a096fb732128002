"""Switching from the old Worker, on DuckDB: its table (made with its own DDL, holding duplicates,
nulls and several days) imported into `aig_logs`, a second import changing nothing, forward and
backfill runs over the same logs merging without duplicates, the Worker's view where the
pipeline's table belongs stopping every script with one line, and the read's cost stated."""

from __future__ import annotations

import json
from datetime import date
from typing import Any, List, Tuple

import pytest
import sqlglot

from aig_source.emulator import DEFAULT_ACCOUNT_ID, DEFAULT_GATEWAY_ID
from aig_source.jobs.backfill import run_backfill
from aig_source.jobs.migrate_worker import ImportSummary, run_import
from aig_source.runner import describe_failure
from aig_source.views import BIGQUERY
from aig_source.worker.warehouse import (
    DayRows,
    Relation,
    WorkerTable,
    chunks_of,
    parse_reference,
    rename_statement,
)

from .conftest import PROJECT_ROOT, Workspace
from .worker import WorkerHistory, create_worker_objects, evicted_logs, fill_worker_table

MIGRATE_SCRIPT = PROJECT_ROOT / "pipelines" / "migrate_worker.py"
SETUP_SCRIPT = PROJECT_ROOT / "pipelines" / "setup.py"
WORKER_DATASET = "worker_ds"
ROWS = "SELECT * EXCLUDE (_dlt_load_id, _dlt_id) FROM ai_gateway.aig_logs ORDER BY id"


def worker_setup(workspace: Workspace, logs: int = 300, days: float = 3) -> WorkerHistory:
    """The gateway's logs over `days`, and the Worker's table holding them, 40 logs the gateway
    has since evicted, and 25 ids stored twice."""
    stored = workspace.api.generate(logs, hours=days * 24)
    pipeline = workspace.pipeline()
    names = create_worker_objects(pipeline, WORKER_DATASET)
    return fill_worker_table(
        pipeline, names["table"], stored, evicted=evicted_logs(stored[:40]), duplicates=25
    )


def import_worker(workspace: Workspace, **kwargs: Any) -> ImportSummary:
    lines: List[str] = []
    summary = run_import(
        workspace.pipeline(),
        WORKER_DATASET,
        progress=lines.append,
        account_id=DEFAULT_ACCOUNT_ID,
        gateway_id=DEFAULT_GATEWAY_ID,
        **kwargs,
    )
    summary.printed = lines  # type: ignore[attr-defined]
    return summary


def table_rows(workspace: Workspace) -> List[Tuple[Any, ...]]:
    return workspace.query(ROWS)


def test_import_keeps_one_row_per_id_the_newest_copy_mapped_to_this_table(
    workspace: Workspace,
) -> None:
    history = worker_setup(workspace)
    newest = history.newest_copies()

    summary = import_worker(workspace, chunk_rows=150)

    assert summary.loads >= 3  # several loads of whole days, each committing its progress
    assert summary.progress is not None and summary.progress["finished"] is True
    assert summary.progress["rows_stored"] == len(history.rows) == 365
    assert summary.progress["logs_imported"] == len(newest) == 340
    assert summary.progress["copies_dropped"] == 25
    assert summary.progress["already_loaded"] == 0
    assert summary.new_rows == 340
    assert summary.line().startswith(
        f"aig_logs migrate_worker: 340 logs imported from aig_logs.{WORKER_DATASET}.aig_logs_raw"
        " (365 rows stored there: 25 repeated copies of a log dropped, 0 already in aig_logs);"
        " 340 new rows in this run"
    )
    loaded = {
        row[0]: row
        for row in workspace.query(
            "SELECT id, gateway_id, account_id, duration, cost, tokens_in, metadata,"
            " imported_from, epoch_ms(created_at), epoch_ms(ingested_at), status_code, success"
            " FROM ai_gateway.aig_logs"
        )
    }
    assert set(loaded) == set(newest)
    for log_id, copy in newest.items():
        row = loaded[log_id]
        assert row[1:3] == (DEFAULT_GATEWAY_ID, DEFAULT_ACCOUNT_ID)
        assert row[3] == (None if copy["duration"] is None else round(copy["duration"]))
        assert row[4] == copy["cost"] and row[5] == copy["tokens_in"]  # the newest copy's values
        assert row[6] is None  # the Worker never stored metadata
        assert row[7] == f"worker:aig_logs.{WORKER_DATASET}.aig_logs_raw"
        assert row[8] == int(copy["created_at"].timestamp() * 1000)
        assert row[9] == int(copy["ingested_at"].timestamp() * 1000)
        assert row[10:] == (copy["status_code"], copy["success"])
    # nulls the Worker stored stay null
    assert any(copy["tokens_in"] is None for copy in newest.values())
    # the analysis views read imported rows like any other
    (requests,) = workspace.query("SELECT SUM(requests) FROM ai_gateway.aig_usage_daily")[0]
    assert requests == 340


def test_a_second_import_changes_nothing_and_again_adds_only_what_is_missing(
    workspace: Workspace,
) -> None:
    worker_setup(workspace)
    import_worker(workspace)
    before = workspace.query("SELECT * FROM ai_gateway.aig_logs ORDER BY id")

    second = import_worker(workspace)

    assert second.already_done and second.loads == 0
    assert "was imported already (340 logs" in second.line()
    assert workspace.query("SELECT * FROM ai_gateway.aig_logs ORDER BY id") == before

    again = import_worker(workspace, again=True)

    assert again.progress is not None
    assert again.progress["logs_imported"] == 0 and again.progress["already_loaded"] == 365
    assert again.new_rows == 0
    assert workspace.query("SELECT * FROM ai_gateway.aig_logs ORDER BY id") == before


def test_forward_and_backfill_merge_over_imported_rows_gaining_metadata(
    workspace: Workspace,
) -> None:
    history = worker_setup(workspace)
    import_worker(workspace)
    api_logs = {log.id: log for log in workspace.api.gateway().store.snapshot()}

    workspace.run_until_caught_up(forward_start="2h")
    backfill = run_backfill(workspace.pipeline(), **workspace.source_args())

    assert backfill.done
    rows = workspace.query(
        "SELECT id, COUNT(*) AS copies, ANY_VALUE(CAST(metadata AS VARCHAR)),"
        " ANY_VALUE(imported_from), ANY_VALUE(duration) FROM ai_gateway.aig_logs GROUP BY id"
    )
    assert all(copies == 1 for _, copies, *_ in rows)  # no duplicate id
    assert {row[0] for row in rows} == set(history.newest_copies())
    for log_id, _, metadata, imported_from, duration in rows:
        log = api_logs.get(log_id)
        if log is None:  # evicted from the gateway: only the Worker's copy exists, kept
            assert log_id.startswith("evicted-") and imported_from is not None
            continue
        assert imported_from is None  # replaced by the API's row
        assert duration == log.fields["duration"]
        expected = log.fields.get("metadata")
        assert (json.loads(metadata) if metadata else None) == (
            json.loads(expected) if expected else None
        )
    assert sum(1 for row in rows if row[2]) > 200  # most logs gained their metadata


def test_import_after_forward_runs_leaves_the_api_rows_as_they_are(workspace: Workspace) -> None:
    worker_setup(workspace, logs=200, days=2)
    workspace.run_until_caught_up(forward_start="3d")
    from_api = table_rows(workspace)

    summary = import_worker(workspace)

    assert summary.progress is not None
    assert summary.progress["logs_imported"] == 40  # only the evicted ones were missing
    assert summary.new_rows == 40
    after = [row for row in table_rows(workspace) if not row[0].startswith("evicted-")]
    # the same rows, with the import's column added at the end, null on every one of them
    width = len(from_api[0])
    assert [row[:width] for row in after] == from_api
    assert {row[width:] for row in after} == {(None,)}


def test_a_crash_mid_import_loses_and_duplicates_nothing(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = worker_setup(workspace)
    real_rows = WorkerTable.rows
    calls = []

    def crash_on_the_second_chunk(self: WorkerTable, *args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        if len(calls) == 2:
            raise ConnectionError("connection to the warehouse lost")
        return real_rows(self, *args, **kwargs)

    monkeypatch.setattr(WorkerTable, "rows", crash_on_the_second_chunk)
    with pytest.raises(Exception) as crashed:
        import_worker(workspace, chunk_rows=150)
    assert "connection to the warehouse lost" in describe_failure(crashed.value)
    first = workspace.query("SELECT COUNT(*) FROM ai_gateway.aig_logs")[0][0]
    assert 0 < first < 340  # the first load committed with its progress

    monkeypatch.setattr(WorkerTable, "rows", real_rows)
    resumed = import_worker(workspace, chunk_rows=150)

    assert resumed.progress is not None and resumed.progress["finished"]
    assert resumed.new_rows == 340 - first
    assert workspace.query("SELECT COUNT(*), COUNT(DISTINCT id) FROM ai_gateway.aig_logs")[0] == (
        340,
        340,
    )
    assert {row[0] for row in table_rows(workspace)} == set(history.newest_copies())


def test_dry_run_states_the_read_and_loads_nothing(workspace: Workspace) -> None:
    worker_setup(workspace)

    result = workspace.script("--from", WORKER_DATASET, "--dry-run", script=MIGRATE_SCRIPT)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"The import reads 365 rows of aig_logs.{WORKER_DATASET}.aig_logs_raw once (DuckDB:"
        " nothing is billed).",
        "aig_logs migrate_worker: dry run, nothing read or loaded.",
    ]
    tables = workspace.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'ai_gateway'"
    )
    assert tables == []


def test_the_script_imports_then_says_so_again(workspace: Workspace) -> None:
    worker_setup(workspace)

    first = workspace.script("--from", f"{WORKER_DATASET}.aig_logs_raw", script=MIGRATE_SCRIPT)
    second = workspace.script("--from", f"{WORKER_DATASET}.aig_logs_raw", script=MIGRATE_SCRIPT)

    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "340 logs imported" in first.stdout.splitlines()[-1]
    assert "was imported already" in second.stdout.splitlines()[-1]


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        (
            "worker_ds.nope",
            "The Worker's table aig_logs.worker_ds.nope was not found: check --from",
        ),
        ("a.b.c.d", "--from 'a.b.c.d' does not name a table"),
        ("ai_gateway._dlt_loads", "is not the Worker's table of logs: it has no id or created_at"),
    ],
)
def test_a_wrong_worker_table_fails_with_one_line(
    workspace: Workspace, reference: str, message: str
) -> None:
    worker_setup(workspace, logs=20, days=1)
    workspace.run(forward_start="2d")

    result = workspace.script("--from", reference, script=MIGRATE_SCRIPT)

    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr


def test_a_fleet_configuration_needs_the_worker_gateway_named(workspace: Workspace) -> None:
    worker_setup(workspace, logs=20, days=1)

    result = workspace.script(
        "--from",
        WORKER_DATASET,
        script=MIGRATE_SCRIPT,
        env=workspace.env(SOURCES__AIG_SOURCE__GATEWAY_ID="*"),
    )
    named = workspace.script(
        "--from",
        WORKER_DATASET,
        "--gateway-id",
        "worker-gateway",
        script=MIGRATE_SCRIPT,
        env=workspace.env(SOURCES__AIG_SOURCE__GATEWAY_ID="*"),
    )

    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: The Worker read one gateway, but gateway_id is '*': name it with --gateway-id,"
        " or set SOURCES__AIG_SOURCE__GATEWAY_ID (or gateway_id under [sources.aig_source] in"
        " .dlt/config.toml) to that one gateway."
    )
    assert named.returncode == 0, named.stderr
    assert workspace.query("SELECT DISTINCT gateway_id FROM ai_gateway.aig_logs") == [
        ("worker-gateway",)
    ]


def test_the_worker_view_where_the_table_belongs_stops_every_script_with_one_line(
    workspace: Workspace,
) -> None:
    worker_setup(workspace, logs=30, days=1)
    same_dataset = workspace.env(DATASET_NAME=WORKER_DATASET)
    scripts = ["forward.py", "backfill.py", "reconcile.py", "report.py", "migrate_worker.py"]
    expected = (
        f"error: Dataset {WORKER_DATASET} already holds a view aig_logs that this pipeline did"
        " not create (by its look, the old Worker's deduplicating view), so this pipeline's"
        f" table aig_logs cannot be created there. Load into a new dataset (recommended; the"
        f" Worker's objects stay as they are): set dataset_name (env DATASET_NAME, e.g."
        f" {WORKER_DATASET}_logs), then import the Worker's history with: python"
        f" pipelines/migrate_worker.py --from {WORKER_DATASET}.aig_logs_raw. Or rename it"
        f' first: ALTER VIEW "{WORKER_DATASET}"."aig_logs" RENAME TO aig_logs_worker;'
    )

    for name in scripts:
        args = ["--from", WORKER_DATASET] if name == "migrate_worker.py" else []
        result = workspace.script(*args, script=PROJECT_ROOT / "pipelines" / name, env=same_dataset)
        assert result.returncode == 1, name
        assert result.stderr.strip() == expected, name
    check = workspace.script("--check", script=SETUP_SCRIPT, env=same_dataset)
    assert check.returncode == 1
    assert f"FAIL  Table aig_logs: Dataset {WORKER_DATASET} already holds a view" in check.stdout

    # the statement it names works: the view moves aside and the pipeline loads there
    workspace.query_write(f'ALTER VIEW "{WORKER_DATASET}"."aig_logs" RENAME TO aig_logs_worker')
    result = workspace.script(env=same_dataset)
    assert result.returncode == 0, result.stderr
    views = workspace.query(
        f"SELECT view_name FROM duckdb_views() WHERE schema_name = '{WORKER_DATASET}'"
        " AND view_name = 'aig_logs_worker'"
    )
    assert views == [("aig_logs_worker",)]


def test_a_worker_table_named_aig_logs_is_detected_too(workspace: Workspace) -> None:
    pipeline = workspace.pipeline()
    with pipeline.sql_client() as client:
        client.execute_sql('CREATE SCHEMA "ai_gateway"')
        client.execute_sql(
            'CREATE TABLE "ai_gateway"."aig_logs" (id VARCHAR, created_at TIMESTAMPTZ,'
            " ingested_at TIMESTAMPTZ)"
        )

    result = workspace.script()

    assert result.returncode == 1
    assert (
        "already holds a table aig_logs that this pipeline did not create (by its look, the old"
        " Worker's table)" in result.stderr
    )
    assert 'ALTER TABLE "ai_gateway"."aig_logs" RENAME TO aig_logs_worker;' in result.stderr


def missing_ids(workspace: Workspace) -> List[Tuple[Any, ...]]:
    sql = (PROJECT_ROOT / "sql" / "worker" / "missing_ids.sql").read_text().strip().rstrip(";")
    sql = sql.replace("worker_dataset.", f"{WORKER_DATASET}.")
    duckdb_sql = sqlglot.transpile(sql, read="bigquery", write="duckdb")[0]
    return workspace.query(duckdb_sql)


def test_the_missing_ids_check_finds_what_the_import_has_not_loaded(workspace: Workspace) -> None:
    history = worker_setup(workspace, logs=120, days=2)
    workspace.run(forward_start="1h")  # the newest logs only, from the API
    missing_before = missing_ids(workspace)

    import_worker(workspace)

    # everything but the newest hour, which the forward run read
    assert {row[0] for row in missing_before} < set(history.newest_copies())
    assert len(missing_before) > 100
    assert missing_ids(workspace) == []


def test_loads_hold_whole_days_up_to_the_chunk_and_a_larger_day_alone() -> None:
    days = [DayRows(date(2026, 11, d), rows) for d, rows in [(1, 40), (2, 50), (3, 200), (4, 5)]]

    chunks = chunks_of(days, max_rows=100)

    assert [(c.first_day.day, c.last_day.day, c.stored, c.last) for c in chunks] == [
        (1, 2, 90, False),
        (3, 3, 200, False),
        (4, 4, 5, True),
    ]
    assert chunks[0].start.isoformat() == "2026-11-01T00:00:00+00:00"
    assert chunks[0].end.isoformat() == "2026-11-03T00:00:00+00:00"


def test_worker_table_references_default_the_project_and_table() -> None:
    assert parse_reference("worker", "proj") == ("proj", "worker", "aig_logs_raw")
    assert parse_reference("worker.raw", "proj") == ("proj", "worker", "raw")
    assert parse_reference("`my-proj.worker.raw`", "proj") == ("my-proj", "worker", "raw")


def test_the_rename_of_a_bigquery_view_recreates_it_from_its_own_sql() -> None:
    view = Relation(
        name="p.w.aig_logs",
        kind="view",
        columns={"id": "STRING"},
        view_sql="SELECT * EXCEPT(rn)\nFROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY id\n"
        "  ORDER BY created_at DESC) AS rn FROM `p.w.aig_logs_raw`) WHERE rn = 1",
    )
    commented = Relation(
        name="p.w.aig_logs", kind="view", columns={}, view_sql="SELECT 1 -- the Worker's"
    )
    table = Relation(name="p.w.aig_logs", kind="table", columns={"id": "STRING"})

    assert rename_statement(BIGQUERY, view, ("p", "w")) == (
        "CREATE VIEW `p.w.aig_logs_worker` AS SELECT * EXCEPT(rn) FROM (SELECT *, ROW_NUMBER()"
        " OVER (PARTITION BY id ORDER BY created_at DESC) AS rn FROM `p.w.aig_logs_raw`) WHERE"
        " rn = 1; DROP VIEW `p.w.aig_logs`;"
    )
    assert rename_statement(BIGQUERY, commented, ("p", "w")) == (
        "CREATE VIEW `p.w.aig_logs_worker` AS <the SQL of p.w.aig_logs>; DROP VIEW `p.w.aig_logs`;"
    )
    assert rename_statement(BIGQUERY, table, ("p", "w")) == (
        "ALTER TABLE `p.w.aig_logs` RENAME TO aig_logs_worker;"
    )
