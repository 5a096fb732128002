"""Logpush files into BigQuery: end to end into emulated BigQuery (`bqemulator` on 127.0.0.1)
through dlt's real BigQuery destination (the Logpush columns, metadata as JSON, a re-delivered
batch merged, the files loaded once, a forward run of the Logs API merging into the same table),
and the SQL that adds the Logpush columns to an existing table, parsed as BigQuery's.

What the emulator cannot show: dlt adds columns to an existing BigQuery table with
`ALTER TABLE ... ADD COLUMN ... OPTIONS(description=...)`, which the emulator drops without an
error (and then answers queries of those columns with no rows), so the end-to-end test loads
Logpush files first and the parsed SQL covers the other order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

from aig_source.emulator.logpush import PLAIN
from aig_source.jobs.forward import run_forward
from aig_source.jobs.logpush import run_logpush
from aig_source.logpush import logpush_files
from aig_source.logpush.settings import LOGPUSH_COLUMNS
from aig_source.settings import TABLE_NAME

from .bigquery_emulator import EmulatedBigQuery, query
from .conftest import Workspace
from .logpush import FIRST_DAY, GATEWAYS, local_workspace, truth
from .test_bigquery_layout import normalized_for_bigquery

pytest.importorskip("google.cloud.bigquery", reason="needs the bigquery extra")


@pytest.mark.slow
def test_logpush_rows_land_in_bigquery_and_the_api_rows_merge_beside_them(
    workspace: Workspace, bigquery: EmulatedBigQuery, tmp_path: Path
) -> None:
    space = local_workspace(tmp_path / "logpush")
    job = space.job(scheme=PLAIN, seed=31)
    files = job.push_days(GATEWAYS, FIRST_DAY, 2, 2, 15)
    job.redeliver(files[1])
    pipeline = bigquery.pipeline(tmp_path)

    summary = run_logpush(pipeline, **space.source_args())

    assert summary.problem() is None and (summary.records, summary.new_rows) == (75, 60)
    rows = query(pipeline, "SELECT gateway_id, created_at, TO_JSON_STRING(metadata) FROM {table}")
    found = sorted(
        (gateway, created, None if meta in (None, "null") else json.loads(meta))
        for gateway, created, meta in rows
    )
    assert found == truth(space.bucket)
    again = run_logpush(pipeline, **space.source_args())
    assert (again.files_loaded, again.records) == (0, 0)

    workspace.api.generate(40, hours=0.5)
    assert run_forward(pipeline, **workspace.source_args()).logs_new == 40
    assert query(
        pipeline, "SELECT COUNT(*), COUNT(DISTINCT id), COUNT(logpush_file) FROM {table}"
    ) == [(100, 100, 60)]


def test_the_logpush_columns_are_added_to_an_existing_table_with_bigquery_sql(
    workspace: Workspace, tmp_path: Path
) -> None:
    pipeline = normalized_for_bigquery(workspace, tmp_path)  # the Logs API's table
    space = local_workspace(tmp_path / "logpush")
    space.job(scheme=PLAIN, seed=33).push_days(GATEWAYS, FIRST_DAY, 1, 1, 5)
    pipeline.extract(logpush_files(**space.source_args()), loader_file_format="jsonl")
    pipeline.normalize()
    columns = pipeline.default_schema.tables[TABLE_NAME]["columns"]
    added = [columns[name] for name in LOGPUSH_COLUMNS]
    client = pipeline.destination_client()
    statements = client._get_table_update_sql(TABLE_NAME, added, True)  # type: ignore[attr-defined]
    assert len(statements) == 1
    tree = sqlglot.parse_one(statements[0], read="bigquery")
    assert isinstance(tree, exp.Alter) and tree.this.name == TABLE_NAME
    names = [action.this.name for action in tree.args["actions"]]
    assert names == list(LOGPUSH_COLUMNS)
    assert "OPTIONS (description='Model the caller asked for" in " ".join(statements[0].split())
