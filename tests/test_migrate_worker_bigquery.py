"""Switching from the old Worker on emulated BigQuery (`bqemulator` on 127.0.0.1): its table made
with its own DDL in its own dataset, imported through dlt's real BigQuery destination, imported
again without change, then merged over by forward and backfill runs; its view where the
pipeline's table belongs detected before anything loads.

What the emulator cannot show: the dry run's byte figure (it answers every dry run with 0 bytes,
real BigQuery with the bytes the query bills) and a view's SQL (`tables.get` returns none, so
the suggested rename names the view's SQL instead of quoting it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

import pytest

from aig_source import destinations
from aig_source.client import AigSourceError
from aig_source.emulator import DEFAULT_ACCOUNT_ID, DEFAULT_GATEWAY_ID
from aig_source.jobs.backfill import run_backfill
from aig_source.jobs.forward import run_forward
from aig_source.jobs.migrate_worker import run_import
from aig_source.runner import make_pipeline

from .bigquery_emulator import PROJECT, EmulatedBigQuery, query
from .conftest import Workspace
from .worker import create_worker_objects, evicted_logs, fill_worker_table

pytest.importorskip("google.cloud.bigquery", reason="needs the bigquery extra")
pytestmark = pytest.mark.slow


def test_worker_history_into_bigquery_then_forward_and_backfill_merge_over_it(
    workspace: Workspace, bigquery: EmulatedBigQuery, tmp_path: Path
) -> None:
    stored = workspace.api.generate(150, hours=60)
    pipeline = bigquery.pipeline(tmp_path)
    worker_dataset = f"{pipeline.dataset_name}_worker"
    names = create_worker_objects(pipeline, worker_dataset)
    history = fill_worker_table(
        pipeline, names["table"], stored, evicted=evicted_logs(stored[:20]), duplicates=15
    )
    lines: List[str] = []

    summary = run_import(
        pipeline,
        worker_dataset,
        progress=lines.append,
        chunk_rows=80,
        account_id=DEFAULT_ACCOUNT_ID,
        gateway_id=DEFAULT_GATEWAY_ID,
    )

    assert lines == [
        f"The import reads 0 rows of {PROJECT}.{worker_dataset}.aig_logs_raw once: BigQuery bills"
        " 0 B for it (dry run; $0.00 at $6.25/TiB, less inside the monthly free TiB); each of its"
        " queries (one for the list of days, one per load of up to 500,000 rows) bills at least"
        " 10.0 MiB per table it reads."
    ]  # the emulator keeps no row count in the table's metadata and bills nothing
    assert summary.loads >= 2 and summary.progress is not None
    assert summary.progress["logs_imported"] == 170 and summary.progress["copies_dropped"] == 15
    assert query(pipeline, "SELECT COUNT(*), COUNT(DISTINCT id) FROM {table}") == [(170, 170)]
    newest = history.newest_copies()
    loaded = query(
        pipeline,
        "SELECT id, duration, cost, metadata, imported_from, gateway_id, account_id FROM {table}",
    )
    for log_id, duration, cost, metadata, imported_from, gateway_id, account_id in loaded:
        copy = newest[log_id]
        assert duration == (None if copy["duration"] is None else round(copy["duration"]))
        assert cost == copy["cost"] and metadata is None
        assert imported_from == f"worker:{PROJECT}.{worker_dataset}.aig_logs_raw"
        assert (gateway_id, account_id) == (DEFAULT_GATEWAY_ID, DEFAULT_ACCOUNT_ID)
    before = query(pipeline, "SELECT * FROM {table} ORDER BY id")

    again = run_import(
        pipeline,
        worker_dataset,
        again=True,
        progress=lines.append,
        account_id=DEFAULT_ACCOUNT_ID,
        gateway_id=DEFAULT_GATEWAY_ID,
    )

    assert again.new_rows == 0 and again.progress is not None
    assert again.progress["logs_imported"] == 0 and again.progress["already_loaded"] == 185
    assert query(pipeline, "SELECT * FROM {table} ORDER BY id") == before

    run_forward(pipeline, forward_start="2h", **workspace.source_args())
    backfill = run_backfill(pipeline, **workspace.source_args())

    assert backfill.done
    assert query(pipeline, "SELECT COUNT(*), COUNT(DISTINCT id) FROM {table}") == [(170, 170)]
    merged = query(
        pipeline, "SELECT id, TO_JSON_STRING(metadata), imported_from FROM {table} ORDER BY id"
    )
    api_logs = {log.id: log for log in stored}
    for log_id, metadata, imported_from in merged:
        if log_id.startswith("evicted-"):
            assert imported_from is not None  # the gateway no longer has it: the Worker's copy
            continue
        assert imported_from is None
        expected = api_logs[log_id].fields.get("metadata")
        assert json.loads(metadata or "null") == (json.loads(expected) if expected else None)


def test_the_worker_view_in_the_dataset_stops_the_run_before_anything_loads(
    workspace: Workspace, bigquery: EmulatedBigQuery, tmp_path: Path
) -> None:
    workspace.api.generate(20, hours=1)
    setup = bigquery.pipeline(tmp_path)
    worker_dataset = f"{setup.dataset_name}_worker"
    create_worker_objects(setup, worker_dataset)
    pipeline = make_pipeline(
        destination=destinations.bigquery(location="US"),
        pipelines_dir=str(tmp_path / "same_dataset"),
        dataset_name=worker_dataset,
    )

    with pytest.raises(AigSourceError) as stopped:
        run_forward(pipeline, **workspace.source_args())

    qualified = f"{PROJECT}.{worker_dataset}"
    assert str(stopped.value) == (
        f"Dataset {worker_dataset} already holds a view aig_logs that this pipeline did not"
        " create (by its look, the old Worker's deduplicating view), so this pipeline's table"
        " aig_logs cannot be created there. Load into a new dataset (recommended; the Worker's"
        " objects stay as they are): set dataset_name (env DATASET_NAME, e.g."
        f" {worker_dataset}_logs), then import the Worker's history with: python"
        f" pipelines/migrate_worker.py --from {qualified}.aig_logs_raw. Or rename it first:"
        f" CREATE VIEW `{qualified}.aig_logs_worker` AS <the SQL of {qualified}.aig_logs>;"
        f" DROP VIEW `{qualified}.aig_logs`;"
    )
    with pipeline.sql_client() as client:
        tables = [t.table_id for t in client.native_connection.list_tables(qualified)]
    assert sorted(tables) == ["aig_logs", "aig_logs_raw"]  # nothing of this pipeline's
