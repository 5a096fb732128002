"""The reconcile job: proves each gateway's window in the table matches the gateway, loading what
it lacks (see `reconcile.py` for how), in chunks of buckets that each commit."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import dlt
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from .. import aig_source
from ..client import AigSourceError
from ..config import resolve_source_configuration
from ..reconcile import ReconcileWindow, TableLogs
from ..runner import JobSummary, Loaded, format_duration, rows_before_run, run_resource
from ..settings import (
    DEFAULT_RECONCILE_MAX_REQUESTS,
    DEFAULT_RECONCILE_WINDOW,
    RECONCILE_CHUNK_BUCKETS,
    RECONCILE_HOURLY_UP_TO_SECONDS,
    RECONCILE_RESOURCE,
    RECONCILE_SETTLE_SECONDS,
    TABLE_NAME,
)
from ..state import LAST_RUN
from ..timestamps import format_ms, moment_before_ms, now_ms
from ..views import dialect_of

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
COUNTED = (
    "buckets_checked",
    "buckets_differing",
    "logs_missing_loaded",
    "logs_gone_kept",
    "logs_reread",
    "reconcile_requests",
)


class WarehouseTable:
    """The table's side of a reconcile: counts per bucket and the logs of a range, by SQL."""

    def __init__(self, pipeline: dlt.Pipeline) -> None:
        self.pipeline = pipeline
        self.epoch_ms = dialect_of(pipeline).epoch_ms
        self._lock = threading.Lock()  # gateways are reconciled in threads; one query at a time

    def _query(self, sql: str, gateway_id: str, start_ms: int, end_ms: int) -> List[Any]:
        if TABLE_NAME not in self.pipeline.default_schema.tables:
            return []
        with self._lock, self.pipeline.sql_client() as client:
            table = client.make_qualified_table_name(TABLE_NAME)
            bounded = (
                f"FROM {table} WHERE gateway_id = %s"
                f" AND created_at >= TIMESTAMP '{format_ms(start_ms)}'"
                f" AND created_at < TIMESTAMP '{format_ms(end_ms)}'"
            )
            try:
                return list(client.execute_sql(sql.format(bounded=bounded), gateway_id) or [])
            except DatabaseUndefinedRelation:
                return []

    def bucket_counts(
        self, gateway_id: str, start_ms: int, end_ms: int, bucket_ms: int
    ) -> Dict[int, int]:
        rows = self._query(
            f"SELECT FLOOR(({self.epoch_ms} - {start_ms}) / {bucket_ms}) AS bucket,"
            " COUNT(*) AS logs {bounded} GROUP BY bucket",
            gateway_id,
            start_ms,
            end_ms,
        )
        return {int(bucket): int(logs) for bucket, logs in rows}

    def logs(self, gateway_id: str, start_ms: int, end_ms: int) -> TableLogs:
        rows = self._query(
            f"SELECT {self.epoch_ms} AS stamp, id {{bounded}} ORDER BY stamp, id",
            gateway_id,
            start_ms,
            end_ms,
        )
        return [(int(stamp), str(log_id)) for stamp, log_id in rows]


def reconcile_window(
    pipeline: dlt.Pipeline,
    since: Optional[str],
    all_history: bool,
    now: int,
    max_requests: int,
    refresh: bool,
) -> ReconcileWindow:
    """The window of a run: from `since` (a duration before now, or a date or timestamp) or the
    table's oldest log (`all_history`), to a minute ago; hourly buckets up to two days, daily
    beyond, the start floored to a bucket edge so that a rerun of the same window continues."""
    end_ms = (now - RECONCILE_SETTLE_SECONDS * 1000) // 1000 * 1000
    if all_history:
        oldest = _oldest_loaded_ms(pipeline)
        if oldest is None:
            raise AigSourceError(
                f"Nothing to reconcile: table {TABLE_NAME} has no logs yet. Run"
                " pipelines/forward.py first."
            )
        start_ms = oldest
    else:
        text = since or DEFAULT_RECONCILE_WINDOW
        try:
            start_ms = moment_before_ms(text, now)
        except ValueError:
            raise AigSourceError(
                f"--since must be a duration (24h, 7d) or an ISO date or timestamp, got {text!r}."
            ) from None
    bucket_ms = HOUR_MS if end_ms - start_ms <= RECONCILE_HOURLY_UP_TO_SECONDS * 1000 else DAY_MS
    start_ms = start_ms // bucket_ms * bucket_ms
    if start_ms >= end_ms:
        raise AigSourceError(f"--since {since} is not before the window's end {format_ms(end_ms)}.")
    return ReconcileWindow(
        start_ms, end_ms, bucket_ms, max_requests, RECONCILE_CHUNK_BUCKETS, refresh=refresh
    )


def _oldest_loaded_ms(pipeline: dlt.Pipeline) -> Optional[int]:
    if not pipeline.default_schema_name or TABLE_NAME not in pipeline.default_schema.tables:
        return None
    epoch_ms = dialect_of(pipeline).epoch_ms
    with pipeline.sql_client() as client:
        table = client.make_qualified_table_name(TABLE_NAME)
        rows = client.execute_sql(f"SELECT MIN({epoch_ms}) FROM {table}")
    return int(rows[0][0]) if rows and rows[0][0] is not None else None


@dataclass
class ReconcileSummary(JobSummary):
    """What one reconcile run (one or more chunks) found and repaired, per gateway."""

    window: Optional[ReconcileWindow] = None
    totals: Dict[str, Dict[str, int]] = field(default_factory=dict)

    job = "reconcile"

    def add(self, loaded: Loaded) -> None:
        """Counts one chunk: the base counts, plus each gateway's reconcile figures summed over
        the chunks that read it."""
        read = set(loaded.state.get(LAST_RUN, {}).get("gateways", ()))
        super().add(loaded)
        for gateway_id in read & set(self.gateways):
            last_run = self.last_run_of(gateway_id)
            counted = self.totals.setdefault(gateway_id, dict.fromkeys(COUNTED, 0))
            for key in COUNTED:
                counted[key] += int(last_run.get(key, 0))

    def last_run_done(self, gateway_id: str) -> bool:
        return bool(self.last_run_of(gateway_id).get("window_done"))

    def budget_reached(self, gateway_id: str) -> bool:
        return bool(self.last_run_of(gateway_id).get("budget_reached"))

    def describe(self, gateway_id: str) -> str:
        figures = self.totals.get(gateway_id, dict.fromkeys(COUNTED, 0))
        parts = []
        if figures["logs_missing_loaded"]:
            parts.append(f"{figures['logs_missing_loaded']:,} missing logs loaded")
        if figures["logs_gone_kept"]:
            parts.append(f"{figures['logs_gone_kept']:,} gone from the gateway (kept)")
        if self.last_run_done(gateway_id):
            state = "agrees" if not parts else "now agrees"
        else:
            state = "still unchecked from " + str(self.last_run_of(gateway_id).get("checked_until"))
        detail = f"{figures['buckets_checked']} buckets, {figures['reconcile_requests']} requests"
        return f"{state} ({', '.join([*parts, detail])})"

    def line(self) -> str:
        text = self.counts_text()
        window = self.window
        if window is not None:
            unit = "hourly" if window.bucket_ms == HOUR_MS else "daily"
            text += (
                f"; window {format_ms(window.start_ms)} to {format_ms(window.end_ms)}"
                f" ({format_duration((window.end_ms - window.start_ms) / 1000)}, {unit} buckets"
                f"{', refreshed' if window.refresh else ''})"
            )
        if not self.gateways and not self.failed:
            return text + "; no gateway to read."
        return text + "; " + self.gateway_parts(self.describe) + "."

    def problem(self) -> Optional[str]:
        lines = self.failure_lines()
        for gateway_id in sorted(self.gateways):
            if not self.last_run_done(gateway_id):
                checked = self.last_run_of(gateway_id).get("checked_until")
                budget = self.window.max_requests if self.window else 0
                lines.append(
                    f"gateway {gateway_id}: reconcile stopped by its budget of {budget:,} requests;"
                    f" the window is checked up to {checked}, not beyond. Run it again with the"
                    " same --since (it continues there) or raise --max-requests."
                )
        return "\n".join(lines) or None


def run_reconcile(
    pipeline: dlt.Pipeline,
    since: Optional[str] = None,
    all_history: bool = False,
    refresh: bool = False,
    max_requests: Optional[int] = None,
    **source_args: Any,
) -> ReconcileSummary:
    """Reconciles every selected gateway's window with the table and summarises it.

    Args:
        pipeline: The `aig_logs` pipeline (`runner.make_pipeline`).
        since: The window's start: a duration before now (`24h`, `7d`) or an ISO date or
            timestamp; the last 24 hours when None.
        all_history: From the table's oldest log instead.
        refresh: Read the whole window, not only the buckets whose counts differ.
        max_requests: Requests of this run, per gateway (default 1,000).
        **source_args: Settings over the configuration (`config.LogsApiSourceConfiguration`).

    Returns:
        The run's summary, over all its chunks.
    """
    resolve_source_configuration(**source_args)
    rows = rows_before_run(pipeline)
    budget = max_requests or DEFAULT_RECONCILE_MAX_REQUESTS
    window = reconcile_window(pipeline, since, all_history, now_ms(), budget, refresh)
    table = WarehouseTable(pipeline)
    totals = ReconcileSummary(pipeline_name=pipeline.pipeline_name, window=window)
    budgets: Dict[str, int] = {}
    only: Optional[List[str]] = None
    while True:
        source = aig_source(**source_args).with_resources(RECONCILE_RESOURCE)
        source.resources[RECONCILE_RESOURCE].bind(
            window=window, table=table, budgets=budgets, only=only
        )
        loaded = run_resource(pipeline, source, RECONCILE_RESOURCE, rows)
        rows = loaded.rows_after
        totals.add(loaded)
        read = loaded.state.get(LAST_RUN, {}).get("gateways", ())
        for gateway_id in read:
            spent = totals.totals.get(gateway_id, {}).get("reconcile_requests", 0)
            budgets[gateway_id] = budget - spent
        only = [
            g
            for g in read
            if g in totals.gateways
            and not totals.last_run_done(g)
            and not totals.budget_reached(g)
            and budgets[g] > 0
        ]
        if not only:
            return totals
