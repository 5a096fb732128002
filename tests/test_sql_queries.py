"""The queries in `sql/` (BigQuery dialect) run on emulated BigQuery and, transpiled by sqlglot,
on DuckDB, over the same logs loaded by the pipeline, and agree."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any, Dict, List, Tuple

import duckdb
import pytest
import sqlglot
from sqlglot import exp

from aig_source.jobs.backfill import run_backfill
from aig_source.jobs.forward import run_forward

from .bigquery_emulator import EmulatedBigQuery, query
from .conftest import PROJECT_ROOT, Workspace

SQL_FOLDER = PROJECT_ROOT / "sql"
QUERIES = sorted(SQL_FOLDER.glob("*.sql"))
TABLE_IN_FILES = "ai_gateway.aig_logs"


def read_query(path: Path) -> str:
    return path.read_text().strip().rstrip(";")


def on_duckdb(database: Path, sql: str) -> List[Tuple[Any, ...]]:
    duckdb_sql = sqlglot.transpile(sql, read="bigquery", write="duckdb")[0]
    with duckdb.connect(str(database)) as connection:
        connection.execute("SET TimeZone = 'UTC'")  # BigQuery's DATE() of a TIMESTAMP is UTC
        return connection.execute(duckdb_sql).fetchall()


def comparable(rows: List[Tuple[Any, ...]], approx: bool = False) -> List[Tuple[Any, ...]]:
    """Values as both engines agree on them: instants as epoch seconds, floats within 1e-5 (the
    engines sum floats in different orders, so a rounded sum can differ in its last digit)."""

    def value(v: Any) -> Any:
        if isinstance(v, datetime):
            return round(v.timestamp(), 3)
        if isinstance(v, date):
            return v.isoformat()
        if isinstance(v, float):
            return pytest.approx(v, abs=1e-5) if approx else v
        return v

    return [tuple(value(v) for v in row) for row in rows]


def test_queries_are_plain_bigquery_sql() -> None:
    assert {path.name for path in QUERIES} >= {"recent_logs.sql", "duplicate_ids.sql"}
    for path in QUERIES:
        tree = sqlglot.parse_one(read_query(path), read="bigquery")
        assert isinstance(tree, exp.Select), path.name
        tables = [table.sql("bigquery") for table in tree.find_all(exp.Table)]
        assert tables == [TABLE_IN_FILES], path.name
        # every query bounds created_at, so BigQuery reads only the partitions it needs
        assert any(
            column.name == "created_at" for column in tree.args["where"].find_all(exp.Column)
        ), path.name


def test_queries_agree_on_bigquery_and_duckdb(
    workspace: Workspace, bigquery: EmulatedBigQuery, tmp_path: Path
) -> None:
    api = workspace.api
    api.generate(300, hours=30)  # two or three UTC days
    bigquery_pipeline = bigquery.pipeline(tmp_path / "bigquery")
    duckdb_pipeline = workspace.pipeline()
    for pipeline in (bigquery_pipeline, duckdb_pipeline):
        run_forward(pipeline, **workspace.source_args())
        run_backfill(pipeline, **workspace.source_args())

    results: Dict[str, Any] = {}
    for path in QUERIES:
        sql = read_query(path)
        on_bigquery = query(bigquery_pipeline, sql.replace(TABLE_IN_FILES, "{table}"))
        on_local = on_duckdb(workspace.database, sql)
        assert comparable(on_bigquery) == comparable(on_local, approx=True), path.name
        results[path.name] = on_local

    in_last_day = [
        log
        for log in api.gateway().store.snapshot()
        if log.created_at_ms >= api.now_ms() - 86_400_000
    ]
    assert [row[0] for row in results["recent_logs.sql"]] == [
        log.id
        for log in sorted(in_last_day, key=lambda log: (log.created_at_ms, log.id), reverse=True)
    ][:100]
    assert results["duplicate_ids.sql"] == []
    assert sum(row[3] for row in results["daily_usage.sql"]) == 300


def test_duplicate_check_finds_a_duplicated_id(workspace: Workspace) -> None:
    workspace.api.generate(20, hours=1)
    workspace.run()
    with duckdb.connect(str(workspace.database)) as connection:
        connection.execute(
            "INSERT INTO ai_gateway.aig_logs SELECT * FROM ai_gateway.aig_logs ORDER BY id LIMIT 1"
        )
    rows = on_duckdb(workspace.database, read_query(SQL_FOLDER / "duplicate_ids.sql"))
    assert [(row[0], row[1]) for row in rows] == [(min(workspace.ids()), 2)]


pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.slow]
