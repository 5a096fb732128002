"""dlt source for the old Worker's BigQuery (or DuckDB) table: its history into `aig_logs`.

The `worker_history` source reads the Worker's `aig_logs_raw` once, in whole UTC days
(`warehouse.py`), and loads one row per id into the same table, schema and state as the Logs
API source (`aig_source`): merged on `id`, tagged with the configured `gateway_id` and
`account_id`, `metadata` null (the Worker never stored it) and `imported_from` naming the
Worker's table. Ids the table already holds are left as they are, so an import run again
changes nothing, and a forward or backfill run that reads the same logs from the API merges
over the imported rows (gaining their metadata, `imported_from` null).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Dict, Iterator, List, Optional

import dlt
from dlt.sources import DltResource

from ..client import AigSourceError, config_hint
from ..config import gateway_ids
from ..settings import (
    ALL_GATEWAYS,
    IMPORT_COLUMNS,
    IMPORTED_FROM_COLUMN,
    IMPORTED_FROM_PREFIX,
    SOURCE_SECTION,
    WORKER_IMPORT_RESOURCE,
)
from ..state import IMPORTS
from ..table import TABLE_HINTS, declare_table
from .warehouse import WORKER_COPIES, ImportChunk, WorkerTable

__all__ = ["worker_history"]


@dlt.source(
    section=SOURCE_SECTION,
    # the schema (and so the state) of the Logs API source: one table `aig_logs`, one schema
    schema=dlt.Schema(SOURCE_SECTION),
    max_table_nesting=0,
)
def worker_history(
    worker: WorkerTable,
    chunk: Optional[ImportChunk],
    target: Optional[str] = None,
    account_id: str = dlt.config.value,
    gateway_id: Any = dlt.config.value,
) -> Any:
    """The rows of one chunk of days of the Worker's table.

    Args:
        worker: The Worker's table (`warehouse.WorkerTable`).
        chunk: The whole UTC days this load reads (None: only resolves and checks the
            settings).
        target: The qualified `aig_logs` when it exists: ids it holds in those days are not
            read again.
        account_id: The Cloudflare account of the Worker's gateway (`[sources.aig_source]`).
        gateway_id: The one gateway the Worker read (`[sources.aig_source]`, or `--gateway-id`).

    Returns:
        The resource `aig_logs_worker_import`.
    """
    gateway = single_gateway(gateway_id)
    if chunk is None:
        return []
    return aig_logs_worker_import(worker, chunk, target, account_id, gateway)


def single_gateway(gateway_id: Any) -> str:
    """The one gateway a Worker read; its rows carry it."""
    ids = gateway_ids(gateway_id)
    if len(ids) != 1 or ids[0] == ALL_GATEWAYS:
        raise AigSourceError(
            f"The Worker read one gateway, but gateway_id is {gateway_id!r}: name it with"
            f" --gateway-id, or set {config_hint('gateway_id')} to that one gateway."
        )
    return ids[0]


def aig_logs_worker_import(
    worker: WorkerTable,
    chunk: ImportChunk,
    target: Optional[str],
    account_id: str,
    gateway_id: str,
) -> DltResource:
    imported_from = IMPORTED_FROM_PREFIX + worker.name
    hints = {**TABLE_HINTS, "columns": {**TABLE_HINTS["columns"], **IMPORT_COLUMNS}}

    @dlt.resource(name=WORKER_IMPORT_RESOURCE, **hints)
    def rows() -> Iterator[List[Dict[str, Any]]]:
        imports = dlt.current.resource_state().setdefault(IMPORTS, {})
        if chunk.fresh:
            imports[worker.name] = {}
        progress = imports.setdefault(worker.name, {})
        now = datetime.now(timezone.utc)
        read = copies = 0
        for batch in worker.rows(chunk, target) if chunk.stored else ():
            for row in batch:
                copies += int(row.pop(WORKER_COPIES)) - 1
                row["gateway_id"], row["account_id"] = gateway_id, account_id
                row[IMPORTED_FROM_COLUMN] = imported_from
                if row.get("ingested_at") is None:
                    row["ingested_at"] = now
            read += len(batch)
            yield batch
        progress["loaded_through"] = chunk.last_day.isoformat()
        progress["finished"] = chunk.last
        progress["gateway_id"], progress["account_id"] = gateway_id, account_id
        for key, count in (
            ("rows_stored", chunk.stored),
            ("logs_imported", read),
            ("copies_dropped", copies),
            ("already_loaded", chunk.stored - read - copies),
        ):
            progress[key] = int(progress.get(key, 0)) + count
        if chunk.last:
            progress["finished_at"] = now.strftime("%Y-%m-%dT%H:%M:%SZ")

    return declare_table(rows)
