"""The reconcile job: proves each gateway's window in the table matches the gateway, loading what
it lacks (see `reconcile.py` for how), in chunks of buckets that each commit."""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Set, Tuple

import dlt
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from .. import aig_source
from ..client import AigSourceError
from ..config import LogsApiSourceConfiguration, resolve_source_configuration
from ..reconcile import FEEDBACK_VALUES, ReconcileWindow, TableLogs
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
from ..state import LAST_RUN, ROWS_TO_FILL, has_single_gateway_state, source_state_of
from ..table import table_declared
from ..timestamps import format_ms, moment_before_ms, now_ms
from ..upgrade import add_missing_columns
from ..views import dialect_of

logger = logging.getLogger(__name__)

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
FEEDBACK_COLUMN = "feedback"
COUNTED = (
    "buckets_checked",
    "buckets_differing",
    "logs_missing_loaded",
    "logs_gone_kept",
    "logs_reread",
    "reconcile_requests",
    "feedback_requests",
)


class WarehouseTable:
    """The table's side of a reconcile: counts per bucket and the logs of a range, by SQL."""

    def __init__(self, pipeline: dlt.Pipeline) -> None:
        self.pipeline = pipeline
        dialect = dialect_of(pipeline)
        self.epoch_ms = dialect.epoch_ms
        self.timestamp = dialect.timestamp
        self._lock = threading.Lock()  # gateways are reconciled in threads; one query at a time
        self._feedback: Dict[str, Tuple[int, int, Dict[str, int]]] = {}

    def _query(self, sql: str, gateway_id: str, start_ms: int, end_ms: int) -> List[Any]:
        if not table_declared(self.pipeline):
            return []
        with self._lock, self.pipeline.sql_client() as client:
            table = client.make_qualified_table_name(TABLE_NAME)
            bounded = f"FROM {table} WHERE gateway_id = %s AND {self._between(start_ms, end_ms)}"
            try:
                return list(client.execute_sql(sql.format(bounded=bounded), gateway_id) or [])
            except DatabaseUndefinedRelation:
                return []

    def _between(self, start_ms: int, end_ms: int) -> str:
        start, end = (self.timestamp.format(format_ms(ms)) for ms in (start_ms, end_ms))
        return f"created_at >= {start} AND created_at < {end}"

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

    def record_feedback(
        self, gateway_id: str, start_ms: int, end_ms: int, feedback: Dict[str, int]
    ) -> None:
        with self._lock:
            self._feedback[gateway_id] = (start_ms, end_ms, feedback)

    def write_feedback(self) -> Dict[str, Dict[str, int]]:
        """Writes the feedback recorded since the last call into the table, in place: only rows
        whose value differs change (a removed feedback goes back to null). Returns per gateway
        the logs with thumbs up, down, and the rows changed."""
        with self._lock:
            recorded, self._feedback = self._feedback, {}
        written: Dict[str, Dict[str, int]] = {}
        if recorded:
            add_missing_columns(self.pipeline, [FEEDBACK_COLUMN])
        for gateway_id, (start_ms, end_ms, wanted) in recorded.items():
            current = {
                str(log_id): int(value)
                for log_id, value in self._query(
                    f"SELECT id, {FEEDBACK_COLUMN} {{bounded}} AND {FEEDBACK_COLUMN} IS NOT NULL",
                    gateway_id,
                    start_ms,
                    end_ms,
                )
            }
            stored = self._stored(gateway_id, start_ms, end_ms, list(wanted))
            wanted = {log_id: value for log_id, value in wanted.items() if log_id in stored}
            changed = {
                log_id: wanted.get(log_id)
                for log_id in set(current) | set(wanted)
                if current.get(log_id) != wanted.get(log_id)
            }
            if changed:
                self._update_feedback(gateway_id, start_ms, end_ms, changed)
            written[gateway_id] = {
                "feedback_up": sum(value == 1 for value in wanted.values()),
                "feedback_down": sum(value == -1 for value in wanted.values()),
                "feedback_changed": len(changed),
            }
        return written

    def _stored(self, gateway_id: str, start_ms: int, end_ms: int, ids: List[str]) -> Set[str]:
        """Which of `ids` the table holds in the range (only those can take feedback)."""
        if not ids:
            return set()
        rows = self._query(
            f"SELECT id {{bounded}} AND id IN ({_id_list(ids)})", gateway_id, start_ms, end_ms
        )
        return {str(log_id) for (log_id,) in rows}

    def _update_feedback(
        self, gateway_id: str, start_ms: int, end_ms: int, changed: Dict[str, Optional[int]]
    ) -> None:
        cases = " ".join(
            f"WHEN id IN ({_id_list([i for i, v in changed.items() if v == value])}) THEN {value}"
            for value in FEEDBACK_VALUES
            if value in changed.values()
        )
        with self._lock, self.pipeline.sql_client() as client:
            table = client.make_qualified_table_name(TABLE_NAME)
            client.execute_sql(
                f"UPDATE {table} SET {FEEDBACK_COLUMN} = CASE {cases} ELSE NULL END"
                f" WHERE gateway_id = %s AND {self._between(start_ms, end_ms)}"
                f" AND id IN ({_id_list(list(changed))})",
                gateway_id,
            )

    def window_count(self, start_ms: int, end_ms: int) -> int:
        """Logs of every gateway in the window."""
        if not table_declared(self.pipeline):
            return 0
        with self._lock, self.pipeline.sql_client() as client:
            table = client.make_qualified_table_name(TABLE_NAME)
            rows = client.execute_sql(
                f"SELECT COUNT(*) FROM {table} WHERE {self._between(start_ms, end_ms)}"
            )
        return int(rows[0][0]) if rows else 0

    def logs(self, gateway_id: str, start_ms: int, end_ms: int) -> TableLogs:
        rows = self._query(
            f"SELECT {self.epoch_ms} AS stamp, id {{bounded}} ORDER BY stamp, id",
            gateway_id,
            start_ms,
            end_ms,
        )
        return [(int(stamp), str(log_id)) for stamp, log_id in rows]


def _id_list(ids: List[str]) -> str:
    """Log ids as a SQL list of string constants."""
    return ", ".join("'" + log_id.replace("'", "''") + "'" for log_id in sorted(ids))


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


def refresh_estimate(
    table: WarehouseTable, window: ReconcileWindow, settings: LogsApiSourceConfiguration
) -> str:
    """What a `--refresh` of the window will take, from the table's count of its logs."""
    logs = table.window_count(window.start_ms, window.end_ms)
    buckets = math.ceil((window.end_ms - window.start_ms) / window.bucket_ms)
    requests = math.ceil(logs / settings.per_page) + buckets
    seconds = requests / settings.rate_limit_requests * settings.rate_limit_window_seconds
    return (
        f"reading the whole window again takes about {requests:,} requests ({logs:,} logs loaded"
        f" in it, {buckets} buckets), about {format_duration(seconds)} at"
        f" {settings.rate_limit_requests} requests per {settings.rate_limit_window_seconds:g} s;"
        f" the budget is {window.max_requests:,} requests per gateway"
    )


def _oldest_loaded_ms(pipeline: dlt.Pipeline) -> Optional[int]:
    if not table_declared(pipeline):
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

    def counts_text(self) -> str:
        refreshed = bool(self.window and self.window.refresh)
        loaded = "merged" if refreshed else "loaded, the rest left as they were"
        return (
            f"{self.pipeline_name} {self.job}: {self.logs_fetched:,} logs read"
            f" ({self.logs_new:,} missing, {loaded}), {self.api_requests:,} API requests"
        )

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
            state = "now agrees" if figures["logs_missing_loaded"] else "agrees"
        else:
            state = "still unchecked from " + str(self.last_run_of(gateway_id).get("checked_until"))
        if "feedback_up" in figures:
            parts.append(
                f"feedback {figures['feedback_up']:,} up, {figures['feedback_down']:,} down"
                f" ({figures['feedback_changed']:,} changed)"
            )
        parts.append(
            f"{figures['buckets_checked']} buckets, {figures['reconcile_requests']} requests"
        )
        return f"{state} ({', '.join(parts)})"

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
        if not self.fleet and self.gateways:
            gateway_id = next(iter(self.gateways))
            return text + f"; gateway {gateway_id} {self.describe(gateway_id)}."
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
    settings = resolve_source_configuration(**source_args)
    rows = rows_before_run(pipeline)
    committed = source_state_of(pipeline)
    if has_single_gateway_state(committed) or committed.get(ROWS_TO_FILL):
        # reconcile reads the table by gateway_id, which the older version's rows do not have
        # until the upgrade of a forward or backfill run fills it in
        raise AigSourceError(
            f"Table {TABLE_NAME} and its state were written by an older version, whose rows have"
            " no gateway_id yet. Run pipelines/forward.py once first (it carries them over),"
            " then reconcile."
        )
    budget = max_requests or DEFAULT_RECONCILE_MAX_REQUESTS
    window = reconcile_window(pipeline, since, all_history, now_ms(), budget, refresh)
    table = WarehouseTable(pipeline)
    if refresh:
        logger.info("refresh: %s", refresh_estimate(table, window, settings))
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
        for gateway_id, feedback in table.write_feedback().items():
            totals.totals.setdefault(gateway_id, dict.fromkeys(COUNTED, 0)).update(feedback)
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
