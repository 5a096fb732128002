"""The Worker import job: the old Worker's table into `aig_logs`, stated first, then read once in
loads of whole days, each committing its progress with its rows (see `worker`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Optional

import dlt

from ..runner import rows_before_run, run_resource
from ..settings import IMPORT_CHUNK_ROWS, TABLE_NAME, WORKER_IMPORT_RESOURCE
from ..state import IMPORTS, resource_state_of
from ..table import table_declared
from ..worker import worker_history
from ..worker.warehouse import ImportChunk, ReadEstimate, WorkerTable, chunks_of

Progress = Callable[[str], None]


def stdout_progress(line: str) -> None:
    print(line, flush=True)


@dataclass
class ImportSummary:
    """One import run: what it read and loaded, and the import's progress after it."""

    pipeline_name: str
    worker_table: str
    estimate: ReadEstimate
    dry_run: bool = False
    already_done: bool = False
    loads: int = 0
    days: int = 0
    new_rows: int = 0
    progress: Optional[Dict[str, Any]] = None
    ignored_columns: tuple = ()

    def line(self) -> str:
        head = f"{self.pipeline_name} migrate_worker"
        if self.dry_run:
            return f"{head}: dry run, nothing read or loaded."
        progress = self.progress or {}
        if self.already_done:
            return (
                f"{head}: {self.worker_table} was imported already"
                f" ({int(progress.get('logs_imported', 0)):,} logs, finished"
                f" {progress.get('finished_at', '?')}); nothing read or loaded. Run with"
                " --again to read it again (only ids the table lacks are added)."
            )
        text = (
            f"{head}: {int(progress.get('logs_imported', 0)):,} logs imported from"
            f" {self.worker_table} ({int(progress.get('rows_stored', 0)):,} rows stored there:"
            f" {int(progress.get('copies_dropped', 0)):,} repeated copies of a log dropped,"
            f" {int(progress.get('already_loaded', 0)):,} already in {TABLE_NAME});"
            f" {self.new_rows:,} new rows in this run, {self.days:,} days in {self.loads:,}"
            f" load{'s' if self.loads != 1 else ''}; gateway {progress.get('gateway_id')}"
        )
        if self.ignored_columns:
            text += f"; not imported (no such column here): {', '.join(self.ignored_columns)}"
        return text + "."

    def problem(self) -> Optional[str]:
        return None


def import_progress(pipeline: dlt.Pipeline, worker_table: str) -> Dict[str, Any]:
    """The committed progress of importing `worker_table` (empty before the first load)."""
    progress: Dict[str, Any] = (
        resource_state_of(pipeline, WORKER_IMPORT_RESOURCE).get(IMPORTS, {}).get(worker_table, {})
    )
    return progress


def run_import(
    pipeline: dlt.Pipeline,
    worker_table: str,
    gateway_id: Optional[str] = None,
    dry_run: bool = False,
    again: bool = False,
    chunk_rows: int = IMPORT_CHUNK_ROWS,
    progress: Progress = stdout_progress,
    **source_args: Any,
) -> ImportSummary:
    """Imports the Worker's table into `aig_logs` and summarises it.

    Args:
        pipeline: The `aig_logs` pipeline (`runner.make_pipeline`).
        worker_table: `--from`: `PROJECT.DATASET.TABLE`, `DATASET.TABLE` or `DATASET`.
        gateway_id: The Worker's gateway, over the configured `gateway_id`.
        dry_run: State what the read bills, and stop.
        again: Read a table already imported once more (only ids the table lacks are added).
        chunk_rows: Stored rows per load, in whole days.
        **source_args: `account_id` or `gateway_id` over the configuration.

    Returns:
        The run's summary.
    """
    if gateway_id:
        source_args["gateway_id"] = gateway_id
    rows_before = rows_before_run(pipeline)  # syncs, and stops if aig_logs is the Worker's
    worker = WorkerTable(pipeline, worker_table)
    # resolves and checks the account and gateway before the estimate is printed
    worker_history(worker=worker, chunk=None, **source_args)
    estimate = worker.estimate()
    progress(estimate.line())
    summary = ImportSummary(
        pipeline.pipeline_name, worker.name, estimate, ignored_columns=tuple(worker.ignored)
    )
    if dry_run:
        summary.dry_run = True
        return summary
    done = import_progress(pipeline, worker.name)
    if done.get("finished") and not again:
        summary.already_done, summary.progress = True, done
        return summary
    resume_after = None if again else done.get("loaded_through")
    days = [day for day in worker.days() if resume_after is None or str(day.day) > resume_after]
    # with nothing (more) stored, one load records the import as finished
    today = datetime.now(timezone.utc).date()
    chunks = chunks_of(days, chunk_rows) or [ImportChunk(today, today, 0, True)]
    chunks[0] = replace(chunks[0], fresh=resume_after is None)
    target = _target(pipeline)
    for chunk in chunks:
        source = worker_history(worker=worker, chunk=chunk, target=target, **source_args)
        loaded = run_resource(pipeline, source, WORKER_IMPORT_RESOURCE, rows_before)
        target = target or _target(pipeline)
        rows_before = loaded.rows_after
        summary.new_rows += loaded.new_rows
        summary.loads += 1
        summary.days += (chunk.last_day - chunk.first_day).days + 1 if chunk.stored else 0
        summary.progress = import_progress(pipeline, worker.name)
    return summary


def _target(pipeline: dlt.Pipeline) -> Optional[str]:
    """The qualified `aig_logs` once it exists (a chunk's read skips the ids it holds)."""
    if not table_declared(pipeline):
        return None
    with pipeline.sql_client() as client:
        name: str = client.make_qualified_table_name(TABLE_NAME)
    return name
