"""dlt source for Cloudflare AI Gateway request logs (the Legacy Logs REST API).

The `aig_source` source loads table `aig_logs`, merged on `id`, from
`GET /accounts/{account_id}/ai-gateway/gateways/{gateway_id}/logs` of one gateway, several, or
every gateway of the account (`gateway_id = "*"`), each with its own progress (`fleet.py`). Its
forward resource keeps a `created_at` cursor per gateway in dlt state, re-checks a lookback
window for late rows every run and pages without drift (see `paging.py`). A faithful emulator of
the API lives in `aig_source.emulator`.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import dlt
from dlt.common.typing import TSecretStrValue
from dlt.sources import DltResource

from . import state, timestamps
from .backfill import BackfillWalk
from .batches import rows_for_load
from .client import AigSourceError, LogsApiClient
from .config import (
    ConfigurationError,
    LogsApiSourceConfiguration,
    backfill_since_ms,
    forward_start_ms,
)
from .fleet import FleetRead, open_fleet
from .paging import CursorRows, ForwardRead, LogReader
from .ratelimit import shared_pacer
from .reconcile import ReconcileWindow, TableSide, WindowReconcile, window_of
from .settings import (
    BACKFILL_RESOURCE,
    DEFAULT_API_BASE_URL,
    DEFAULT_BACKFILL_MAX_PAGES,
    DEFAULT_FORWARD_MAX_PAGES,
    DEFAULT_FORWARD_START,
    DEFAULT_LOOKBACK_SECONDS,
    DEFAULT_MAX_CONCURRENT_GATEWAYS,
    DEFAULT_PER_PAGE,
    DEFAULT_RATE_LIMIT_REQUESTS,
    DEFAULT_RATE_LIMIT_WINDOW_SECONDS,
    FORWARD_RESOURCE,
    RECONCILE_RESOURCE,
    SOURCE_SECTION,
)
from .table import TABLE_HINTS, declare_table
from .timestamps import format_ms, parse_ms

__all__ = ["AigSourceError", "ConfigurationError", "LogsApiSourceConfiguration", "aig_source"]


@dlt.source(name=SOURCE_SECTION, max_table_nesting=0, spec=LogsApiSourceConfiguration)
def aig_source(
    account_id: str = dlt.config.value,
    gateway_id: Any = dlt.config.value,
    api_token: TSecretStrValue = dlt.secrets.value,
    api_base_url: str = DEFAULT_API_BASE_URL,
    per_page: int = DEFAULT_PER_PAGE,
    forward_max_pages: int = DEFAULT_FORWARD_MAX_PAGES,
    lookback_seconds: int = DEFAULT_LOOKBACK_SECONDS,
    backfill_max_pages: int = DEFAULT_BACKFILL_MAX_PAGES,
    backfill_since: Optional[str] = None,
    backfill_max_seconds: Optional[float] = None,
    rate_limit_requests: int = DEFAULT_RATE_LIMIT_REQUESTS,
    rate_limit_window_seconds: float = DEFAULT_RATE_LIMIT_WINDOW_SECONDS,
    forward_start: str = DEFAULT_FORWARD_START,
    max_concurrent_gateways: int = DEFAULT_MAX_CONCURRENT_GATEWAYS,
) -> Sequence[DltResource]:
    """Cloudflare AI Gateway logs of one gateway, several, or all of an account's.

    Every argument is a setting of `[sources.aig_source]`, declared with its type and default in
    `config.LogsApiSourceConfiguration`, which dlt resolves and validates before this runs; the
    same section holds two settings the jobs read themselves (`log_level`,
    `freshness_threshold_seconds`).

    Args:
        account_id: Cloudflare account id (32 hex characters).
        gateway_id: AI Gateway id (slug) within the account; several (a list, or ids separated
            by commas); or `*` for every gateway of the account, listed again on every run.
        api_token: API token with the "AI Gateway Read" permission. Secret.
        api_base_url: Cloudflare API base URL; point it at the emulator for local runs.
        per_page: Logs per request, 1 to 50 (the API's maximum, and the cheapest).
        forward_max_pages: Page budget of one forward run (list requests; retries are not
            counted); a run that reaches it stops cleanly and the next run continues from its
            cursor. At least 2 while `lookback_seconds` is more than 0.
        lookback_seconds: Window before the cursor re-checked every run for logs that became
            visible late; any it finds are loaded and merged on `id`.
        backfill_max_pages: Page budget of one backfill run.
        backfill_since: ISO date or timestamp the backfill goes no further back than.
        backfill_max_seconds: Time budget of one backfill run; it stops cleanly when spent.
        rate_limit_requests: Requests this process may make per rate-limit window, shared by
            every request (Cloudflare allows 1,200 per 300 s per token, and blocks the token for
            300 s beyond that; the default leaves room for the dashboard and other jobs).
        rate_limit_window_seconds: The rate-limit window.
        forward_start: Where the history is split when the first job runs: a duration before
            that run (`1h`, `7d`) or an ISO date or timestamp. The forward resource reads up from
            it and the backfill down from it; once recorded in state (the `origin`), it no longer
            changes. Each gateway has its own origin, fixed when it is first read.
        max_concurrent_gateways: Gateways read at once; all of them share the token's pacer.

    Returns:
        The forward resource `aig_logs`, and the backfill resource `aig_logs_backfill` and the
        reconcile resource `aig_logs_reconcile` (neither selected by default), all loading table
        `aig_logs`, merged on `id`.
    """
    # dlt resolved and validated every argument through LogsApiSourceConfiguration
    since_ms = backfill_since_ms(backfill_since)
    proposed_origin_ms = forward_start_ms(forward_start)
    configured: List[str] = list(gateway_id)  # a list: the spec's on_resolved normalised it
    pacer = shared_pacer(rate_limit_requests, rate_limit_window_seconds, str(api_token))
    client = LogsApiClient(api_base_url, account_id, configured[0], api_token, pacer)

    def fleet(only: Optional[List[str]] = None) -> FleetRead:
        return open_fleet(client, configured, proposed_origin_ms, max_concurrent_gateways, only)

    forward = aig_logs_forward(fleet, per_page, forward_max_pages, lookback_seconds)
    backfill = aig_logs_history(fleet, per_page, backfill_max_pages, since_ms, backfill_max_seconds)
    reconcile = aig_logs_reconciliation(fleet, per_page)
    return [declare_table(forward), declare_table(backfill), declare_table(reconcile)]


def _last_run(
    client: LogsApiClient,
    pages: int,
    incomplete: Optional[Dict[str, Any]] = None,
    **progress: Any,
) -> Dict[str, Any]:
    """What a run did, kept in its resource's state (`last_run`) for the summary and for
    `dlt pipeline aig_logs info -v`: requests (retries included), pages (what the budget counts),
    the pace in force, and the resource's own progress."""
    pacer = client.pacer
    return {
        "finished_at": format_ms(timestamps.now_ms()),
        "api_requests": client.requests_made,
        "rate_limited": client.rate_limited,
        "pages": pages,
        "pacing": {"requests": pacer.requests, "window_seconds": pacer.window_seconds}
        if pacer
        else None,
        "incomplete_millisecond": incomplete,
        **progress,
    }


def aig_logs_forward(
    fleet: Callable[..., FleetRead],
    per_page: int,
    max_pages: int,
    lookback_seconds: int,
) -> DltResource:
    """Builds the forward resource.

    Args:
        fleet: Opens the run's read of the selected gateways (`fleet.open_fleet`).
        per_page: Logs per request.
        max_pages: Page budget of one run, per gateway.
        lookback_seconds: Late-row window re-checked every run.

    Returns:
        Resource `aig_logs`, merged on `id`, with a `created_at` cursor per gateway.
    """

    def read_gateway(
        client: LogsApiClient, progress: state.State, origin_ms: int
    ) -> Iterator[List[Dict[str, Any]]]:
        # first among the gateway's keys, where `dlt pipeline aig_logs info -v` shows it first
        stored = progress.setdefault(state.CURSOR, None)
        cursor_ms = parse_ms(stored) if stored is not None else None
        reader = LogReader(client, per_page, max_pages)
        forward = ForwardRead(reader, progress.setdefault(state.LOOKBACK, {}), lookback_seconds)
        cursor_rows = CursorRows(progress.setdefault(state.CURSOR_ROWS, {}))
        fetched = 0
        newest_loaded_ms = cursor_ms
        for page in forward.pages(cursor_ms, origin_ms):
            fetched += len(page)
            fresh = cursor_rows.fresh(page)
            if fresh:
                newest_in_page = max(parse_ms(item["created_at"]) for item in fresh)
                newest_loaded_ms = max(newest_loaded_ms or newest_in_page, newest_in_page)
                yield fresh
        cursor_rows.save()
        if newest_loaded_ms is not None:
            progress[state.CURSOR] = format_ms(newest_loaded_ms)
        budget_reached = reader.cut or forward.window_unchecked
        gateway_newest: Optional[int] = None
        if budget_reached:
            newest = client.list_logs([], per_page=1, descending=True).rows
            gateway_newest = parse_ms(newest[0]["created_at"]) if newest else None
        elif reader.exhausted:
            # the read ended on a short page: nothing newer was visible when it ended
            gateway_newest = forward.newest_ms
        progress[state.LAST_RUN] = _last_run(
            client,
            reader.requests,
            reader.incomplete_note(),
            logs_fetched=fetched,
            logs_reread=forward.rows_reread,
            logs_unchanged_skipped=cursor_rows.unchanged,
            page_budget_reached=budget_reached,
            gateway_newest=format_ms(gateway_newest) if gateway_newest is not None else None,
        )

    @dlt.resource(name=FORWARD_RESOURCE, **TABLE_HINTS)
    def aig_logs() -> Iterator[List[Dict[str, Any]]]:
        """New AI Gateway logs of each gateway, oldest first, plus late logs found in its
        lookback window.

        Each gateway's cursor is its newest log loaded. Each run reads from it (on a gateway's
        first run, from its origin, shared with the backfill) up to the gateway's newest visible
        log, so a run stopped by the page budget, an error or a kill resumes exactly there;
        nothing is committed unless the load commits it.

        Yields:
            Pages of rows for table `aig_logs`.
        """
        read = fleet()
        yield from rows_for_load(read.pages(read_gateway))
        dlt.current.resource_state()[state.LAST_RUN] = read.outcome()

    return aig_logs


def aig_logs_history(
    fleet: Callable[..., FleetRead],
    per_page: int,
    max_pages: int,
    since_ms: Optional[int],
    max_seconds: Optional[float],
) -> DltResource:
    """Builds the backfill resource.

    Args:
        fleet: Opens the run's read of the selected gateways (`fleet.open_fleet`).
        per_page: Logs per request.
        max_pages: Page budget of one run, per gateway.
        since_ms: Oldest `created_at` (epoch ms) to go back to; None for the gateway's oldest.
        max_seconds: Time budget of one run.

    Returns:
        Resource `aig_logs_backfill`, loading table `aig_logs` merged on `id`, not selected
        by default (run it with `source.with_resources("aig_logs_backfill")`).
    """

    @dlt.resource(name=BACKFILL_RESOURCE, selected=False, **TABLE_HINTS)
    def aig_logs_backfill(only: Optional[List[str]] = None) -> Iterator[List[Dict[str, Any]]]:
        """Each gateway's history, newest first, from its origin shared with the forward
        resource.

        Each gateway's progress (`oldest_loaded`, `done`) is kept in the resource state and
        committed with the load, so a run cut by its page or time budget, an error or a kill
        resumes where it stopped. Once a gateway's walk reached the bottom, later runs make no
        request for it.

        Args:
            only: Read only these of the selected gateways (a long run's later chunks read only
                those the previous chunk cut); with `*`, one deleted meanwhile is still gone.

        Yields:
            Pages of rows for table `aig_logs`.
        """
        deadline = time.monotonic() + max_seconds if max_seconds else None

        def read_gateway(
            client: LogsApiClient, progress: state.State, origin_ms: int
        ) -> Iterator[List[Dict[str, Any]]]:
            reader = LogReader(client, per_page, max_pages, deadline=deadline)
            walk = BackfillWalk(reader, state.BackfillProgress(progress), since_ms)
            yield from walk.pages(origin_ms)
            out_of_time = deadline is not None and time.monotonic() >= deadline
            progress[state.LAST_RUN] = _last_run(
                client,
                reader.requests,
                reader.incomplete_note(),
                logs_fetched=walk.fetched,
                logs_new=walk.new,
                logs_remaining_estimate=walk.remaining,
                page_budget_reached=reader.cut and not out_of_time,
                time_budget_reached=reader.cut and out_of_time,
            )

        read = fleet(only)
        yield from rows_for_load(read.pages(read_gateway))
        dlt.current.resource_state()[state.LAST_RUN] = read.outcome()

    return aig_logs_backfill


def aig_logs_reconciliation(fleet: Callable[..., FleetRead], per_page: int) -> DltResource:
    """Builds the reconcile resource.

    Args:
        fleet: Opens the run's read of the selected gateways (`fleet.open_fleet`).
        per_page: Logs per request of the reads (the counts ask for one).

    Returns:
        Resource `aig_logs_reconcile`, loading table `aig_logs` merged on `id`, not selected by
        default; the reconcile job binds its window, its view of the table and its budgets.
    """

    @dlt.resource(name=RECONCILE_RESOURCE, selected=False, **TABLE_HINTS)
    def aig_logs_reconcile(
        window: Optional[ReconcileWindow] = None,
        table: Optional[TableSide] = None,
        budgets: Optional[Dict[str, int]] = None,
        only: Optional[List[str]] = None,
    ) -> Iterator[List[Dict[str, Any]]]:
        """The logs each gateway holds in the window that the table lacks (all of the window's
        logs with `refresh`), found by comparing counts per bucket (see `reconcile.py`).

        Each gateway's progress through the window (`window.checked_until`) is committed with the
        load, so a run cut by its budget, an error or a kill continues there when run again for
        the same window start.

        Args:
            window: The window, its buckets and budgets (`reconcile.ReconcileWindow`).
            table: Counts and ids of the logs the table holds (`reconcile.TableSide`).
            budgets: Requests left to each gateway in this run; `window.max_requests` when absent.
            only: Read only these of the selected gateways (the gateways a chunk left unfinished).

        Yields:
            Pages of rows for table `aig_logs`.
        """
        if window is None or table is None:
            raise AigSourceError("aig_logs_reconcile runs through the reconcile job (reconcile.py)")
        left = budgets or {}

        def read_gateway(
            client: LogsApiClient, progress: state.State, origin_ms: int
        ) -> Iterator[List[Dict[str, Any]]]:
            start_ms, end_ms, resume_ms = window_of(progress, window.start_ms, window.end_ms)
            check = WindowReconcile(
                client,
                table,
                client.gateway_id,
                per_page,
                left.get(client.gateway_id, window.max_requests),
                refresh=window.refresh,
            )
            yield from check.buckets(resume_ms, end_ms, window.bucket_ms, window.max_buckets)
            checked_ms = check.checked_until_ms or resume_ms
            if checked_ms >= end_ms:
                # the window's last chunk: its feedback, written by the job after the load
                feedback = check.feedback(start_ms, end_ms)
                if feedback is None:
                    checked_ms = min(checked_ms, end_ms - 1)
                else:
                    table.record_feedback(client.gateway_id, start_ms, end_ms, feedback)
            progress["window"] = {
                "start": format_ms(start_ms),
                "end": format_ms(end_ms),
                "checked_until": format_ms(checked_ms),
                "bucket_seconds": window.bucket_ms // 1000,
                "refresh": window.refresh,
            }
            progress[state.LAST_RUN] = _last_run(
                client,
                check.requests,
                logs_fetched=check.reread,
                window_done=checked_ms >= end_ms,
                **check.outcome(),
            )

        read = fleet(only)
        yield from rows_for_load(read.pages(read_gateway))
        dlt.current.resource_state()[state.LAST_RUN] = read.outcome()

    return aig_logs_reconcile
