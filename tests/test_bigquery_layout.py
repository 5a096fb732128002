"""BigQuery table layout and SQL, checked offline: the normalized schema and the statements dlt
would run.

No BigQuery is reached: the pipeline extracts and normalizes against the Logs API emulator with
this project's BigQuery destination (dlt's, with the range-bounded merge) configured with
placeholder credentials. The DDL and merge SQL its client generates (without connecting) are
parsed with sqlglot in the BigQuery dialect, linted for BigQuery's rules, and compared with
`tests/golden/bigquery_aig_logs.sql`. dlt is pinned; after upgrading it, run
`pytest tests/test_bigquery_layout.py --update-golden` and review the diff of that file.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List

import dlt
import pytest
import sqlglot
from sqlglot import exp

from aig_source import aig_source, destinations
from aig_source.settings import BIGQUERY_CLUSTER_COLUMNS, LOG_COLUMNS, TABLE_NAME

from .conftest import Workspace

pytest.importorskip("google.cloud.bigquery", reason="needs the bigquery extra")

PLACEHOLDER_CREDENTIALS = {
    "project_id": "aig-offline",
    "client_email": "loader@aig-offline.iam.gserviceaccount.com",
    "private_key": "-----BEGIN PRIVATE KEY-----\nplaceholder\n-----END PRIVATE KEY-----\n",
}


def normalized_for_bigquery(workspace: Workspace, tmp_path: Path) -> dlt.Pipeline:
    workspace.api.generate(40, hours=0.5)
    pipeline = dlt.pipeline(
        "aig_logs_bigquery_offline",
        destination=destinations.bigquery(credentials=PLACEHOLDER_CREDENTIALS, location="EU"),
        dataset_name="ai_gateway",
        pipelines_dir=str(tmp_path / "pipelines"),
    )
    source = aig_source(**workspace.source_args()).with_resources("aig_logs")
    pipeline.extract(source, loader_file_format="jsonl")
    pipeline.normalize()
    return pipeline


def create_table_sql(pipeline: dlt.Pipeline) -> str:
    table = pipeline.default_schema.tables[TABLE_NAME]
    # the client is not opened: generating SQL needs no connection
    client = pipeline.destination_client()
    statements: List[str] = client._get_table_update_sql(  # type: ignore[attr-defined]
        TABLE_NAME, list(table["columns"].values()), False
    )
    assert len(statements) == 1
    return statements[0]


def test_schema_hints_for_bigquery(workspace: Workspace, tmp_path: Path) -> None:
    pipeline = normalized_for_bigquery(workspace, tmp_path)

    table = pipeline.default_schema.tables[TABLE_NAME]
    columns: Dict[str, Dict[str, Any]] = table["columns"]  # type: ignore[assignment]

    assert table["write_disposition"] == "merge"
    assert [name for name, c in columns.items() if c.get("primary_key")] == ["id"]
    assert [name for name, c in columns.items() if c.get("x-bigquery-partition")] == ["created_at"]
    assert table["x-bigquery-cluster-columns"] == list(BIGQUERY_CLUSTER_COLUMNS)  # type: ignore[typeddict-item]
    assert table["x-bigquery-table-description"]  # type: ignore[typeddict-item]
    for name, hint in LOG_COLUMNS.items():
        assert columns[name]["data_type"] == hint["data_type"], name
        assert columns[name].get("description") == hint.get("description"), name


def test_create_table_parses_and_follows_bigquery_rules(
    workspace: Workspace, tmp_path: Path
) -> None:
    sql = create_table_sql(normalized_for_bigquery(workspace, tmp_path))

    statement = sqlglot.parse_one(sql, read="bigquery")

    assert isinstance(statement, exp.Create) and not isinstance(statement, exp.Command)
    column_types = {
        column.name: column.args["kind"].sql("bigquery")
        for column in statement.find_all(exp.ColumnDef)
    }
    assert column_types["created_at"] == "TIMESTAMP"
    assert column_types["metadata"] == "JSON"
    assert column_types["id"] == "STRING" and column_types["cost"] == "FLOAT64"
    partition = statement.find(exp.PartitionedByProperty)
    assert partition is not None
    assert partition.sql("bigquery").replace("`", "") == "PARTITION BY DATE(created_at)"
    cluster = statement.find(exp.ClusterProperty)
    assert cluster is not None
    clustered = [expression.name for expression in cluster.expressions]
    assert clustered == list(BIGQUERY_CLUSTER_COLUMNS)
    assert len(clustered) <= 4, "BigQuery allows at most 4 cluster columns"
    assert all(column_types[name] != "JSON" for name in clustered), "JSON cannot cluster"
    assert column_types[partition.find(exp.Column).name] in ("TIMESTAMP", "DATE")  # type: ignore[union-attr]


GOLDEN_SQL = Path(__file__).parent / "golden" / "bigquery_aig_logs.sql"
BATCH_RANGE = (
    datetime(2026, 11, 29, 12, 0, 0, tzinfo=timezone.utc),
    datetime(2026, 11, 29, 12, 5, 1, tzinfo=timezone.utc),
)
NEW_COLUMN = {"name": "gateway_region", "data_type": "text", "nullable": True}


def generated_sql(pipeline: dlt.Pipeline) -> Dict[str, List[str]]:
    """Every statement kind a run executes against `aig_logs`, generated without a connection."""
    from aig_source.destinations.bigquery_client import TimeRangeBigQueryMergeJob

    client = pipeline.destination_client()
    prepared = client.prepare_load_table(TABLE_NAME)  # type: ignore[attr-defined]
    merge_job = TimeRangeBigQueryMergeJob.bounded_to(BATCH_RANGE, "d.`created_at`")
    return {
        "create": [create_table_sql(pipeline)],
        "add column": client._get_table_update_sql(  # type: ignore[attr-defined]
            TABLE_NAME, [NEW_COLUMN], True
        ),
        "merge": merge_job.generate_sql([prepared], client.sql_client),  # type: ignore[attr-defined]
    }


def render(statements: Dict[str, List[str]]) -> str:
    blocks = []
    for title, sql in statements.items():
        body = "\n".join(" ".join(s.split()).rstrip(";") + ";" for s in sql)
        blocks.append(f"-- {title}\n{body}\n")
    return "\n".join(blocks)


def test_generated_sql_matches_the_reviewed_golden_file(
    workspace: Workspace, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    rendered = render(generated_sql(normalized_for_bigquery(workspace, tmp_path)))

    if request.config.getoption("--update-golden"):
        GOLDEN_SQL.parent.mkdir(exist_ok=True)
        GOLDEN_SQL.write_text(rendered)
    assert rendered == GOLDEN_SQL.read_text(), (
        "dlt generates different BigQuery SQL: review it, then run pytest --update-golden"
    )


def test_every_statement_parses_and_the_merge_reads_a_constant_range(
    workspace: Workspace, tmp_path: Path
) -> None:
    statements = generated_sql(normalized_for_bigquery(workspace, tmp_path))
    trees = {
        title: [sqlglot.parse_one(sql, read="bigquery") for sql in sql_list]
        for title, sql_list in statements.items()
    }
    for title, parsed in trees.items():
        for tree in parsed:
            assert not isinstance(tree, exp.Command), f"sqlglot could not parse the {title} SQL"

    keep, delete, insert = trees["merge"]
    assert isinstance(delete, exp.Delete) and isinstance(insert, exp.Insert)
    # feedback is kept: each replaced row's value is copied into staging first, within the range
    assert isinstance(keep, exp.Update) and keep.this.name == TABLE_NAME
    assert "ai_gateway_staging" in keep.this.sql("bigquery")
    assert [e.this.name for e in keep.expressions] == ["feedback"]
    assert keep.args["where"].find(exp.Between) is not None
    assert delete.this.name == TABLE_NAME and delete.this.alias == "d"
    # WHERE <range> AND EXISTS(...): the range is a top-level conjunct, so BigQuery can prune
    where = delete.args["where"].this
    assert isinstance(where, exp.And)
    conjuncts = list(where.flatten())
    assert isinstance(conjuncts[-1], exp.Exists)
    ranges = [c for c in conjuncts if isinstance(c, exp.Between)]
    assert len(ranges) == 1
    target_column = ranges[0].this
    assert isinstance(target_column, exp.Column)
    assert (target_column.table, target_column.name) == ("d", "created_at")
    for bound, expected in zip(
        (ranges[0].args["low"], ranges[0].args["high"]), BATCH_RANGE, strict=True
    ):
        assert not list(bound.find_all(exp.Column)), "the bound must be a constant"
        assert bound.find(exp.Literal).this == expected.isoformat(sep=" ")  # type: ignore[union-attr]
    # the insert reads staging only, never the target
    sources = {table.db for table in insert.expression.find_all(exp.Table)}
    assert sources == {"ai_gateway_staging"}
    alter = trees["add column"][0]
    assert isinstance(alter, exp.Alter)
    assert "gateway_region" in alter.sql("bigquery")
