"""BigQuery table layout, checked offline: dlt's normalized schema and the DDL it would run.

No BigQuery is reached: the pipeline extracts and normalizes against the emulator with dlt's
real BigQuery destination configured with placeholder credentials, and the CREATE TABLE that
dlt's BigQuery client generates is parsed with sqlglot in the BigQuery dialect.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import dlt
import pytest
import sqlglot
from sqlglot import exp

from aig_source import aig_source
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
        destination=dlt.destinations.bigquery(credentials=PLACEHOLDER_CREDENTIALS, location="EU"),
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
