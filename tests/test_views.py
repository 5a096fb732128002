"""The analysis views on DuckDB, checked against figures computed in Python from the emulator's
logs; how they are kept (created, left alone, replaced); and, on the BigQuery SQL, that a filter
on `day` reaches the partitioned scan."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Tuple

import duckdb
import pytest
import sqlglot
from sqlglot import exp

from aig_source.emulator import LogsApiEmulator
from aig_source.emulator.traffic import PROVIDER_PREFIXED_MODELS_SINCE_MS, logged_model_name
from aig_source.settings import CURSOR_FIELD
from aig_source.views import BIGQUERY, DUCKDB, VIEW_NAMES, VIEWS, ensure_views

from .conftest import Workspace
from .insight import (
    GATEWAYS,
    Fetch,
    Logged,
    check_views,
    iso,
    load_history,
)


@dataclass
class Loaded:
    workspace: Workspace
    logged: List[Logged]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    """Three months of two gateways' logs, loaded once for the tests that only read them."""
    with LogsApiEmulator() as api:
        workspace = Workspace(tmp_path_factory.mktemp("views"), api)
        start, logged = load_history(api)
        workspace.run_until_caught_up(
            gateway_id=",".join(GATEWAYS), forward_start=iso(start - 1000)
        )
        yield Loaded(workspace, logged)


def far_from_utc(workspace: Workspace) -> Fetch:
    """Reads the database in a session whose time zone is UTC+14: the views must still speak
    of UTC days."""

    def fetch(sql: str) -> List[Tuple[Any, ...]]:
        with duckdb.connect(str(workspace.database), read_only=True) as connection:
            connection.execute("SET TimeZone = 'Pacific/Kiritimati'")
            return connection.execute(sql.format(dataset="ai_gateway")).fetchall()

    return fetch


def test_views_hold_the_figures_of_the_loaded_logs(loaded: Loaded) -> None:
    workspace, logged = loaded.workspace, loaded.logged

    rows = workspace.query("SELECT COUNT(*) FROM ai_gateway.aig_logs")[0][0]
    assert rows == len(logged)
    check_views(far_from_utc(workspace), logged, exact_percentiles=True)
    # the history spans the renaming: raw model names of both forms are in the table
    raw = {r[0] for r in workspace.query("SELECT DISTINCT model FROM ai_gateway.aig_logs")}
    assert any("/" in m and not m.startswith("@") for m in raw) and any("/" not in m for m in raw)


def test_metadata_edge_cases_become_one_row_per_top_level_key(loaded: Loaded) -> None:
    workspace = loaded.workspace
    found = {
        (key, value)
        for key, value in workspace.query(
            "SELECT DISTINCT metadata_key, metadata_value FROM ai_gateway.aig_cost_by_metadata"
        )
    }
    assert ("user", "alice") in found and ("n", "3") in found and ("beta", "true") in found
    assert ("user", None) in found  # a JSON null is NULL, its row still counts
    assert ("team", 'o\'neil "quoted"') in found and ("émoji", "✓") in found
    nested = {json.dumps(json.loads(v), sort_keys=True) for k, v in found if k == "nested"}
    assert nested == {json.dumps({"x": 1, "y": [1, 2]}, sort_keys=True)}
    # every top-level key set on a log (the busy day's logs keep the generator's own tags)
    assert {k for k, _ in found} >= {"user", "team", "n", "beta", "nested", "list", "env", "émoji"}


def view_comments(workspace: Workspace) -> Dict[str, str]:
    return dict(
        workspace.query(
            "SELECT view_name, comment FROM duckdb_views() WHERE schema_name = 'ai_gateway'"
        )
    )


def test_views_are_written_once_and_replaced_when_missing_or_changed(workspace: Workspace) -> None:
    workspace.api.generate(30, hours=0.5)
    workspace.run()
    comments = view_comments(workspace)
    assert sorted(comments) == sorted(VIEW_NAMES)
    assert all("aig-logs view " in comment for comment in comments.values())

    pipeline = workspace.pipeline()
    assert ensure_views(pipeline) == []  # unchanged: no DDL

    with duckdb.connect(str(workspace.database)) as connection:
        connection.execute("DROP VIEW ai_gateway.aig_errors_daily")
        # what an older definition looks like: another query, another fingerprint
        connection.execute("CREATE OR REPLACE VIEW ai_gateway.aig_usage_daily AS SELECT 1 AS day")
        connection.execute(
            "COMMENT ON VIEW ai_gateway.aig_usage_daily IS 'old (aig-logs view 0123456789abcdef)'"
        )
    workspace.api.generate(5, hours=0.01)
    workspace.run()

    assert view_comments(workspace) == comments
    columns = [r[0] for r in workspace.query("DESCRIBE ai_gateway.aig_usage_daily")]
    assert columns == [
        "day",
        "gateway_id",
        "provider",
        "model",
        "requests",
        "errors",
        "cached_requests",
        "tokens_in",
        "tokens_out",
        "cost",
    ]
    errors = "SELECT COALESCE(SUM(requests), 0) FROM ai_gateway.aig_errors_daily"
    failed = "SELECT COUNT(*) FROM ai_gateway.aig_logs WHERE NOT success"
    assert workspace.query(errors) == workspace.query(failed)


def test_emulator_names_models_with_their_provider_from_september_2026() -> None:
    before, after = PROVIDER_PREFIXED_MODELS_SINCE_MS - 1, PROVIDER_PREFIXED_MODELS_SINCE_MS
    assert logged_model_name("openai", "gpt-4o", before) == "gpt-4o"
    assert logged_model_name("openai", "gpt-4o", after) == "openai/gpt-4o"


# --- BigQuery: the filter on day reaches the partitioned scan -------------------------------

TABLE = "`aig-project`.`ai_gateway`.`aig_logs`"


def _select_of(node: exp.Expression) -> exp.Select:
    select = node if isinstance(node, exp.Select) else node.find(exp.Select)
    assert isinstance(select, exp.Select)
    return select


def day_reaches_scan(select: exp.Select) -> exp.Expression:
    """Follows the output column `day` of a view's SELECT down to the scan of `aig_logs`, checking
    that nothing on the way stops a filter on it being applied below (a filter on a grouping key
    commutes with the GROUP BY; window functions, LIMIT, DISTINCT ON and outer joins would not);
    returns the expression `day` stands for at the scan."""
    assert not select.args.get("limit") and not any(s.find(exp.Window) for s in select.selects)
    for join in select.args.get("joins") or []:
        # the metadata views' UNNESTs: each row's own keys, a filter on the row's day commutes
        assert join.side in ("", None) and isinstance(join.this, exp.Unnest), join.sql("bigquery")
    projection = next(s for s in select.selects if s.alias_or_name == "day")
    definition = projection.this if isinstance(projection, exp.Alias) else projection
    source = select.args["from_"].this if "from_" in select.args else select.args["from"].this
    if isinstance(source, exp.Subquery):
        assert isinstance(definition, exp.Column) and definition.name == "day"
        return day_reaches_scan(_select_of(source.this))
    assert isinstance(source, exp.Table) and source.name == "aig_logs"
    group = select.args.get("group")
    if group is not None:
        keys = group.expressions
        position = select.selects.index(projection) + 1
        assert any(
            key == definition or (isinstance(key, exp.Literal) and int(key.this) == position)
            for key in keys
        ), "day must be a grouping key for a filter on it to pass the GROUP BY"
    return definition


@pytest.mark.parametrize("view", VIEWS, ids=lambda view: view.name)
def test_bigquery_view_filtered_by_day_prunes_partitions(view: Any) -> None:
    sql = view.select(BIGQUERY, TABLE)
    trees = sqlglot.parse(sql, read="bigquery")
    assert len(trees) == 1 and not isinstance(trees[0], exp.Command)

    at_scan = day_reaches_scan(_select_of(trees[0]))

    # what the filter becomes at the scan: a constant range on DATE(created_at), the table's
    # partitioning expression (PARTITION BY DATE(`created_at`)), which is what prunes
    assert isinstance(at_scan, exp.Date) or at_scan.sql("bigquery").upper() == "DATE(CREATED_AT)"
    assert at_scan.sql("bigquery") == f"DATE({CURSOR_FIELD})"


def test_the_pruning_check_fails_for_a_view_that_hides_day() -> None:
    """The control: a view whose `day` is computed above a window function is refused."""
    hidden = (
        "SELECT day, requests FROM (SELECT DATE(created_at) AS day, COUNT(*) OVER () AS requests"
        f" FROM {TABLE}) AS t"
    )
    with pytest.raises(AssertionError):
        day_reaches_scan(_select_of(sqlglot.parse_one(hidden, read="bigquery")))
    not_grouped = f"SELECT MIN(DATE(created_at)) AS day FROM {TABLE} GROUP BY gateway_id"
    with pytest.raises(AssertionError):
        day_reaches_scan(_select_of(sqlglot.parse_one(not_grouped, read="bigquery")))


@pytest.mark.parametrize("view", VIEWS, ids=lambda view: view.name)
def test_a_filter_pushed_to_the_scan_gives_the_same_rows(loaded: Loaded, view: Any) -> None:
    """What BigQuery's optimiser does with `WHERE day BETWEEN ...` on a view, done by hand on
    DuckDB: the same filter applied at the scan instead returns the same rows."""
    workspace = loaded.workspace
    days = sorted(r[0] for r in workspace.query(f"SELECT DISTINCT day FROM ai_gateway.{view.name}"))
    assert len(days) >= 3
    first, last = days[1].isoformat(), days[-2].isoformat()
    table = '"ai_gateway"."aig_logs"'
    scanned = (
        f"(SELECT * FROM {table} WHERE {DUCKDB.day} BETWEEN DATE '{first}' AND DATE '{last}')"
        " AS aig_logs"
    )
    pushed = view.select(DUCKDB, scanned)
    filtered = (
        f"SELECT * FROM ai_gateway.{view.name} WHERE day BETWEEN DATE '{first}' AND DATE '{last}'"
    )
    expected = sorted(workspace.query(filtered), key=repr)
    assert expected and sorted(workspace.query(pushed), key=repr) == expected
    assert len(workspace.query(f"SELECT * FROM ai_gateway.{view.name}")) > len(expected)
