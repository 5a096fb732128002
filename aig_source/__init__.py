"""dlt source for Cloudflare AI Gateway request logs (the Legacy Logs REST API).

The `aig_source` source loads table `aig_logs`, merged on `id`, from
`GET /accounts/{account_id}/ai-gateway/gateways/{gateway_id}/logs`. Its forward resource keeps a
`created_at` cursor in dlt state, re-checks a lookback window for late rows every run and pages
without drift (see `paging.py`). A faithful emulator of the API lives in `aig_source.emulator`.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any, Dict, Iterator, List, Optional, Sequence

import dlt
from dlt.common.typing import TSecretStrValue
from dlt.sources import DltResource

from . import state, timestamps
from .backfill import BackfillWalk
from .client import AigSourceError, LogsApiClient
from .config import (
    ConfigurationError,
    LogsApiSourceConfiguration,
    backfill_since_ms,
    forward_start_ms,
)
from .paging import CursorRows, ForwardRead, LogReader
from .ratelimit import shared_pacer
from .rows import to_row
from .settings import (
    BACKFILL_RESOURCE,
    CURSOR_FIELD,
    DEFAULT_API_BASE_URL,
    DEFAULT_BACKFILL_MAX_PAGES,
    DEFAULT_FORWARD_MAX_PAGES,
    DEFAULT_FORWARD_START,
    DEFAULT_LOOKBACK_SECONDS,
    DEFAULT_PER_PAGE,
    DEFAULT_RATE_LIMIT_REQUESTS,
    DEFAULT_RATE_LIMIT_WINDOW_SECONDS,
    FORWARD_RESOURCE,
    SOURCE_SECTION,
)
from .table import TABLE_HINTS, declare_table
from .timestamps import format_ms, parse_ms

__all__ = ["AigSourceError", "ConfigurationError", "LogsApiSourceConfiguration", "aig_source"]


@dlt.source(name=SOURCE_SECTION, max_table_nesting=0, spec=LogsApiSourceConfiguration)
def aig_source(
    account_id: str = dlt.config.value,
    gateway_id: str = dlt.config.value,
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
) -> Sequence[DltResource]:
    """Cloudflare AI Gateway logs of one gateway.

    Every argument is a setting of `[sources.aig_source]`, declared with its type and default in
    `config.LogsApiSourceConfiguration`, which dlt resolves and validates before this runs; the
    same section holds two settings the jobs read themselves (`log_level`,
    `freshness_threshold_seconds`).

    Args:
        account_id: Cloudflare account id (32 hex characters).
        gateway_id: AI Gateway id (slug) within the account.
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
            changes.

    Returns:
        The forward resource `aig_logs` and the backfill resource `aig_logs_backfill` (not
        selected by default), both loading table `aig_logs`, merged on `id`.
    """
    # dlt resolved and validated every argument through LogsApiSourceConfiguration
    since_ms = backfill_since_ms(backfill_since)
    proposed_origin_ms = forward_start_ms(forward_start)
    pacer = shared_pacer(rate_limit_requests, rate_limit_window_seconds)
    client = LogsApiClient(api_base_url, account_id, gateway_id, api_token, pacer)
    forward = aig_logs_forward(
        client,
        per_page,
        forward_max_pages,
        lookback_seconds,
        proposed_origin_ms,
    )
    backfill = aig_logs_history(
        client, per_page, backfill_max_pages, proposed_origin_ms, since_ms, backfill_max_seconds
    )
    return [declare_table(forward), declare_table(backfill)]


def _rows(page: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    ingested_at = datetime.now(timezone.utc)
    return [to_row(item, ingested_at) for item in page]


def _last_run(client: LogsApiClient, reader: LogReader, **progress: Any) -> Dict[str, Any]:
    """What a run did, kept in its resource's state (`last_run`) for the summary and for
    `dlt pipeline aig_logs info -v`: requests (retries included), pages (what the budget counts),
    the pace in force, and the resource's own progress."""
    pacer = client.pacer
    return {
        "finished_at": format_ms(timestamps.now_ms()),
        "api_requests": client.requests_made,
        "rate_limited": client.rate_limited,
        "pages": reader.requests,
        "pacing": {"requests": pacer.requests, "window_seconds": pacer.window_seconds}
        if pacer
        else None,
        "incomplete_millisecond": reader.incomplete_note(),
        **progress,
    }


def aig_logs_forward(
    client: LogsApiClient,
    per_page: int,
    max_pages: int,
    lookback_seconds: int,
    proposed_origin_ms: int,
) -> DltResource:
    """Builds the forward resource around one API client.

    Args:
        client: Client of the gateway's Logs API.
        per_page: Logs per request.
        max_pages: Page budget of one run.
        lookback_seconds: Late-row window re-checked every run.
        proposed_origin_ms: Where to start reading when no job has recorded the origin yet.

    Returns:
        Resource `aig_logs`, merged on `id`, with an incremental `created_at` cursor.
    """

    @dlt.resource(name=FORWARD_RESOURCE, **TABLE_HINTS)
    def aig_logs(
        created_at: dlt.sources.incremental[datetime] = dlt.sources.incremental(
            CURSOR_FIELD,
            # the first run starts at the origin in source state (`state.fix_origin`), which
            # is not known before the run; rows below the cursor are filtered by the lag
            initial_value=None,
            lag=float(lookback_seconds) or None,
            # dlt's boundary dedup by id would drop a changed log at the cursor: `CursorRows`
            # drops only unchanged ones
            primary_key=(),
            allow_external_schedulers=False,
        ),
    ) -> Iterator[List[Dict[str, Any]]]:
        """New AI Gateway logs, oldest first, plus late logs found in the lookback window.

        The `created_at` cursor is the newest log loaded. Each run reads from it (on the first
        run, from the origin shared with the backfill) up to the gateway's newest visible log,
        so a run stopped by its page budget, an error or a kill resumes exactly there; nothing
        is committed unless the load commits it.

        Yields:
            Pages of rows for table `aig_logs`.
        """
        origin_ms = state.current_origin(proposed_origin_ms)
        stored = created_at.get_state().get("last_value")
        cursor_ms = parse_ms(stored) if stored is not None else None
        resource_state = dlt.current.resource_state()
        reader = LogReader(client, per_page, max_pages)
        forward = ForwardRead(
            reader, resource_state.setdefault(state.LOOKBACK, {}), lookback_seconds
        )
        cursor_rows = CursorRows(resource_state.setdefault(state.CURSOR_ROWS, {}))
        fetched = 0
        for page in forward.pages(cursor_ms, origin_ms):
            fetched += len(page)
            fresh = cursor_rows.fresh(page)
            if fresh:
                yield _rows(fresh)
        cursor_rows.save()
        budget_reached = reader.cut or forward.window_unchecked
        gateway_newest: Optional[int] = None
        if budget_reached:
            newest = client.list_logs([], per_page=1, descending=True).rows
            gateway_newest = parse_ms(newest[0]["created_at"]) if newest else None
        elif reader.exhausted:
            # the read ended on a short page: nothing newer was visible when it ended
            gateway_newest = forward.newest_ms
        resource_state[state.LAST_RUN] = _last_run(
            client,
            reader,
            logs_fetched=fetched,
            logs_reread=forward.rows_reread,
            logs_unchanged_skipped=cursor_rows.unchanged,
            page_budget_reached=budget_reached,
            gateway_newest=format_ms(gateway_newest) if gateway_newest is not None else None,
        )

    return aig_logs


def aig_logs_history(
    client: LogsApiClient,
    per_page: int,
    max_pages: int,
    proposed_origin_ms: int,
    since_ms: Optional[int],
    max_seconds: Optional[float],
) -> DltResource:
    """Builds the backfill resource around one API client.

    Args:
        client: Client of the gateway's Logs API.
        per_page: Logs per request.
        max_pages: Page budget of one run.
        proposed_origin_ms: Where to start walking down when no job has recorded the origin yet.
        since_ms: Oldest `created_at` (epoch ms) to go back to; None for the gateway's oldest.
        max_seconds: Time budget of one run.

    Returns:
        Resource `aig_logs_backfill`, loading table `aig_logs` merged on `id`, not selected
        by default (run it with `source.with_resources("aig_logs_backfill")`).
    """

    @dlt.resource(name=BACKFILL_RESOURCE, selected=False, **TABLE_HINTS)
    def aig_logs_backfill() -> Iterator[List[Dict[str, Any]]]:
        """The gateway's history, newest first, from the origin shared with the forward resource.

        Progress (`oldest_loaded`, `done`) is kept in the resource state and committed with the
        load, so a run cut by its page or time budget, an error or a kill resumes where it
        stopped. Once it reached the bottom, later runs make no request.

        Yields:
            Pages of rows for table `aig_logs`.
        """
        origin_ms = state.current_origin(proposed_origin_ms)
        deadline = time.monotonic() + max_seconds if max_seconds else None
        reader = LogReader(client, per_page, max_pages, deadline=deadline)
        resource_state = dlt.current.resource_state()
        walk = BackfillWalk(reader, state.BackfillProgress(resource_state), since_ms)
        for page in walk.pages(origin_ms):
            yield _rows(page)
        out_of_time = deadline is not None and time.monotonic() >= deadline
        resource_state[state.LAST_RUN] = _last_run(
            client,
            reader,
            logs_fetched=walk.fetched,
            logs_new=walk.new,
            logs_remaining_estimate=walk.remaining,
            page_budget_reached=reader.cut and not out_of_time,
            time_budget_reached=reader.cut and out_of_time,
        )

    return aig_logs_backfill
