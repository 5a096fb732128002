"""The emulated Worker's table (`aig_source.emulator.worker`) in a test pipeline's destination."""

from __future__ import annotations

from typing import Dict, Sequence

import dlt

from aig_source.emulator.store import StoredLog
from aig_source.emulator.worker import (
    WORKER_TABLE,
    WORKER_VIEW,
    WorkerHistory,
    evicted_logs,
    worker_history,
    worker_statements,
)
from aig_source.views import dialect_of
from aig_source.worker.warehouse import dataset_parts

__all__ = ["WorkerHistory", "create_worker_objects", "evicted_logs", "fill_worker_table"]


def _dataset(pipeline: dlt.Pipeline, dataset: str) -> str:
    """`project.dataset` (or `catalog.schema`) of `dataset`, created if missing."""
    dialect = dialect_of(pipeline)
    with pipeline.sql_client() as client:
        project, _ = dataset_parts(client, dialect)
        if dialect.name == "bigquery":
            client.native_connection.create_dataset(f"{project}.{dataset}", exists_ok=True)
        else:
            client.execute_sql(f'CREATE SCHEMA IF NOT EXISTS "{dataset}"')
    return f"{project}.{dataset}"


def create_worker_objects(
    pipeline: dlt.Pipeline, dataset: str, with_view: bool = True
) -> Dict[str, str]:
    """The Worker's empty table (and view) in `dataset`; returns their qualified names."""
    qualified = _dataset(pipeline, dataset)
    with pipeline.sql_client() as client:
        for statement in worker_statements(
            dialect_of(pipeline).name, qualified, with_view=with_view
        ):
            client.execute_sql(statement)
    return {"table": f"{qualified}.{WORKER_TABLE}", "view": f"{qualified}.{WORKER_VIEW}"}


def fill_worker_table(
    pipeline: dlt.Pipeline,
    table: str,
    logs: Sequence[StoredLog],
    evicted: Sequence[StoredLog] = (),
    duplicates: int = 0,
) -> WorkerHistory:
    """Streams `logs` and `evicted` into the Worker's `table`, `duplicates` ids twice."""
    history = worker_history([*logs, *evicted], duplicates=duplicates)
    dataset = table.rsplit(".", 1)[0]
    statements = worker_statements(dialect_of(pipeline).name, dataset, history, create=False)
    with pipeline.sql_client() as client:
        for statement in statements:
            client.execute_sql(statement)
    return history
