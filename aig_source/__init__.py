"""dlt source for Cloudflare AI Gateway request logs (the Legacy Logs REST API).

The `aig_source` source loads table `aig_logs`, merged on `id`, from
`GET /accounts/{account_id}/ai-gateway/gateways/{gateway_id}/logs`. Its forward resource keeps a
`created_at` cursor in dlt state, re-checks a lookback window for late rows every run and pages
without drift (see `paging.py`). A faithful emulator of the API lives in `aig_source.emulator`.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, Iterator, List, Optional, Sequence

import dlt
from dlt.common.typing import TSecretStrValue
from dlt.destinations.adapters import bigquery_adapter
from dlt.sources import DltResource

from .backfill import BackfillWalk
from .client import AigSourceError, LogsApiClient, config_hint
from .paging import CursorRows, ForwardRead, LogReader
from .ratelimit import shared_pacer
from .rows import to_row
from .settings import (
    BACKFILL_RESOURCE,
    BIGQUERY_CLUSTER_COLUMNS,
    CURSOR_FIELD,
    DEFAULT_API_BASE_URL,
    DEFAULT_BACKFILL_MAX_PAGES,
    DEFAULT_FORWARD_MAX_PAGES,
    DEFAULT_FRESHNESS_THRESHOLD_SECONDS,
    DEFAULT_LOOKBACK_SECONDS,
    DEFAULT_PER_PAGE,
    DEFAULT_RATE_LIMIT_REQUESTS,
    DEFAULT_RATE_LIMIT_WINDOW_SECONDS,
    FORWARD_INITIAL_WINDOW_SECONDS,
    FORWARD_RESOURCE,
    LOG_COLUMNS,
    MAX_PER_PAGE,
    SOURCE_SECTION,
    TABLE_DESCRIPTION,
    TABLE_NAME,
)
from .timestamps import format_ms, now_ms, parse_ms

__all__ = ["AigSourceError", "ConfigurationError", "aig_source"]


class ConfigurationError(AigSourceError):
    """A source setting has an invalid value."""


def _validate(**settings: Any) -> None:
    """One-line errors naming the setting to fix, before any request is made."""
    rules = {
        "per_page": (lambda v: 1 <= v <= MAX_PER_PAGE, f"must be between 1 and {MAX_PER_PAGE}"),
        "forward_max_pages": (lambda v: v >= 1, "must be at least 1"),
        "backfill_max_pages": (lambda v: v >= 1, "must be at least 1"),
        "lookback_seconds": (lambda v: v >= 0, "must be 0 or more"),
        "freshness_threshold_seconds": (lambda v: v >= 0, "must be 0 (off) or more"),
        "rate_limit_requests": (lambda v: v >= 1, "must be at least 1"),
        "rate_limit_window_seconds": (lambda v: v > 0, "must be more than 0"),
        "api_base_url": (
            lambda v: str(v).startswith(("http://", "https://")),
            "must be an http(s) URL",
        ),
        "gateway_id": (lambda v: 0 < len(v) <= 64, "must be 1 to 64 characters"),
    }
    for key, value in settings.items():
        valid, requirement = rules[key]
        if not valid(value):
            raise ConfigurationError(f"{key} {requirement}, got {value!r}: fix {config_hint(key)}.")


@dlt.source(name=SOURCE_SECTION, max_table_nesting=0)
def aig_source(
    account_id: str = dlt.config.value,
    gateway_id: str = dlt.config.value,
    api_token: TSecretStrValue = dlt.secrets.value,
    api_base_url: str = DEFAULT_API_BASE_URL,
    per_page: int = DEFAULT_PER_PAGE,
    forward_max_pages: int = DEFAULT_FORWARD_MAX_PAGES,
    lookback_seconds: int = DEFAULT_LOOKBACK_SECONDS,
    freshness_threshold_seconds: float = DEFAULT_FRESHNESS_THRESHOLD_SECONDS,
    backfill_max_pages: int = DEFAULT_BACKFILL_MAX_PAGES,
    backfill_since: Optional[str] = None,
    backfill_max_seconds: Optional[float] = None,
    rate_limit_requests: int = DEFAULT_RATE_LIMIT_REQUESTS,
    rate_limit_window_seconds: float = DEFAULT_RATE_LIMIT_WINDOW_SECONDS,
) -> Sequence[DltResource]:
    """Cloudflare AI Gateway logs of one gateway.

    Args:
        account_id: Cloudflare account id (32 hex characters).
        gateway_id: AI Gateway id (slug) within the account.
        api_token: API token with the "AI Gateway Read" permission. Secret.
        api_base_url: Cloudflare API base URL; point it at the emulator for local runs.
        per_page: Logs per request, 1 to 50 (the API's maximum, and the cheapest).
        forward_max_pages: Request budget of one forward run; a run that reaches it stops
            cleanly and the next run continues from its cursor.
        lookback_seconds: Window before the cursor re-checked every run for logs that became
            visible late; any it finds are loaded and merged on `id`.
        freshness_threshold_seconds: A forward run that ends further than this behind the
            gateway's newest log fails (exit 1), so a stuck or starved schedule is noticed;
            0 turns the check off.
        backfill_max_pages: Request budget of one backfill run.
        backfill_since: ISO date or timestamp the backfill goes no further back than.
        backfill_max_seconds: Time budget of one backfill run; it stops cleanly when spent.
        rate_limit_requests: Requests this process may make per rate-limit window, shared by
            every request (Cloudflare allows 1,200 per 300 s per token, and blocks the token for
            300 s beyond that; the default leaves room for the dashboard and other jobs).
        rate_limit_window_seconds: The rate-limit window.

    Returns:
        The forward resource `aig_logs` and the backfill resource `aig_logs_backfill` (not
        selected by default), both loading table `aig_logs`, merged on `id`.
    """
    _validate(
        gateway_id=gateway_id,
        api_base_url=api_base_url,
        per_page=per_page,
        forward_max_pages=forward_max_pages,
        backfill_max_pages=backfill_max_pages,
        lookback_seconds=lookback_seconds,
        freshness_threshold_seconds=freshness_threshold_seconds,
        rate_limit_requests=rate_limit_requests,
        rate_limit_window_seconds=rate_limit_window_seconds,
    )
    since_ms = _parse_since(backfill_since)
    pacer = shared_pacer(rate_limit_requests, rate_limit_window_seconds)
    client = LogsApiClient(api_base_url, account_id, gateway_id, api_token, pacer)
    forward = aig_logs_forward(
        client, per_page, forward_max_pages, lookback_seconds, freshness_threshold_seconds
    )
    backfill = aig_logs_history(
        client, per_page, backfill_max_pages, since_ms, backfill_max_seconds
    )
    for resource in (forward, backfill):
        # BigQuery table layout, applied when dlt creates the table; other destinations ignore it
        bigquery_adapter(
            resource,
            partition=CURSOR_FIELD,
            cluster=list(BIGQUERY_CLUSTER_COLUMNS),
            table_description=TABLE_DESCRIPTION,
        )
    return [forward, backfill]


def _parse_since(since: Optional[str]) -> Optional[int]:
    if since is None or not str(since).strip():
        return None
    try:
        return parse_ms(str(since) if "T" in str(since) else f"{since}T00:00:00Z")
    except ValueError:
        raise ConfigurationError(
            f"backfill_since must be an ISO date or timestamp (2026-01-31 or"
            f" 2026-01-31T12:00:00Z), got {since!r}: fix {config_hint('backfill_since')}."
        ) from None


TABLE_HINTS: Dict[str, Any] = {
    "table_name": TABLE_NAME,
    "write_disposition": "merge",
    "primary_key": "id",
    "columns": LOG_COLUMNS,
}
"""Both resources load the same table, merged on `id`."""


def _initial_cursor() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0) - timedelta(
        seconds=FORWARD_INITIAL_WINDOW_SECONDS
    )


def _rows(page: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    ingested_at = datetime.now(timezone.utc)
    return [to_row(item, ingested_at) for item in page]


def aig_logs_forward(
    client: LogsApiClient,
    per_page: int,
    max_pages: int,
    lookback_seconds: int,
    freshness_threshold_seconds: float = 0,
) -> DltResource:
    """Builds the forward resource around one API client.

    Args:
        client: Client of the gateway's Logs API.
        per_page: Logs per request.
        max_pages: Request budget of one run.
        lookback_seconds: Late-row window re-checked every run.
        freshness_threshold_seconds: Recorded with the run for the freshness check.

    Returns:
        Resource `aig_logs`, merged on `id`, with an incremental `created_at` cursor.
    """

    initial_cursor = _initial_cursor()

    @dlt.resource(name=FORWARD_RESOURCE, **TABLE_HINTS)
    def aig_logs(
        created_at: dlt.sources.incremental[datetime] = dlt.sources.incremental(
            CURSOR_FIELD,
            initial_value=initial_cursor,
            lag=float(lookback_seconds) or None,
            allow_external_schedulers=False,
        ),
    ) -> Iterator[List[Dict[str, Any]]]:
        """New AI Gateway logs, oldest first, plus late logs found in the lookback window.

        The `created_at` cursor is the newest log loaded. Each run reads from it up to the
        gateway's newest visible log, so a run stopped by its page budget, an error or a kill
        resumes exactly there; nothing is committed unless the load commits it.

        Yields:
            Pages of rows for table `aig_logs`.
        """
        stored = created_at.get_state().get("last_value")
        cursor_ms = parse_ms(stored) if stored is not None else None
        initial_ms = parse_ms(initial_cursor)
        state = dlt.current.resource_state()
        reader = LogReader(client, per_page, max_pages)
        forward = ForwardRead(reader, state.setdefault("lookback", {}), lookback_seconds)
        cursor_rows = CursorRows(state.setdefault("cursor_rows", {}))
        fetched = 0
        for page in forward.pages(cursor_ms, initial_ms):
            fetched += len(page)
            fresh = cursor_rows.fresh(page)
            if fresh:
                yield _rows(fresh)
        cursor_rows.save()
        newest_ms = forward.newest_ms
        if reader.cut or forward.window_unchecked:
            newest = client.list_logs([], per_page=1, descending=True).rows
            newest_ms = parse_ms(newest[0]["created_at"]) if newest else newest_ms
        state["last_run"] = {
            "finished_at": format_ms(now_ms()),
            "api_requests": client.requests_made,
            "rate_limited": client.rate_limited,
            "logs_fetched": fetched,
            "logs_reread": forward.rows_reread,
            "logs_unchanged_skipped": cursor_rows.unchanged,
            "page_budget": max_pages,
            "page_budget_reached": reader.cut or forward.window_unchecked,
            "freshness_threshold_seconds": freshness_threshold_seconds,
            "gateway_newest": format_ms(newest_ms) if newest_ms is not None else None,
        }

    return aig_logs


def aig_logs_history(
    client: LogsApiClient,
    per_page: int,
    max_pages: int,
    since_ms: Optional[int],
    max_seconds: Optional[float],
) -> DltResource:
    """Builds the backfill resource around one API client.

    Args:
        client: Client of the gateway's Logs API.
        per_page: Logs per request.
        max_pages: Request budget of one run.
        since_ms: Oldest `created_at` (epoch ms) to go back to; None for the gateway's oldest.
        max_seconds: Time budget of one run.

    Returns:
        Resource `aig_logs_backfill`, loading table `aig_logs` merged on `id`, not selected
        by default (run it with `source.with_resources("aig_logs_backfill")`).
    """

    @dlt.resource(name=BACKFILL_RESOURCE, selected=False, **TABLE_HINTS)
    def aig_logs_backfill() -> Iterator[List[Dict[str, Any]]]:
        """The gateway's history, newest first, from where the forward resource started.

        Progress (`oldest_loaded`, `done`) is kept in the resource state and committed with the
        load, so a run cut by its page or time budget, an error or a kill resumes where it
        stopped. Once it reached the bottom, later runs make no request.

        Yields:
            Pages of rows for table `aig_logs`.
        """
        sources = dlt.current.source_state().get("resources", {})
        forward_cursor = sources.get(FORWARD_RESOURCE, {}).get("incremental", {})
        forward_start = forward_cursor.get(CURSOR_FIELD, {}).get("initial_value")
        start_ms = parse_ms(forward_start) if forward_start is not None else now_ms()
        deadline = time.monotonic() + max_seconds if max_seconds else None
        reader = LogReader(client, per_page, max_pages, deadline=deadline)
        state = dlt.current.resource_state()
        walk = BackfillWalk(reader, state, since_ms)
        for page in walk.pages(start_ms):
            yield _rows(page)
        out_of_time = deadline is not None and time.monotonic() >= deadline
        state["last_run"] = {
            "finished_at": format_ms(now_ms()),
            "api_requests": client.requests_made,
            "rate_limited": client.rate_limited,
            "logs_fetched": walk.fetched,
            "logs_new": walk.new,
            "logs_remaining_estimate": walk.remaining,
            "page_budget": max_pages,
            "page_budget_reached": reader.cut and not out_of_time,
            "time_budget_reached": reader.cut and out_of_time,
            "per_page": per_page,
            "pacing": {
                "requests": client.pacer.requests,
                "window_seconds": client.pacer.window_seconds,
            }
            if client.pacer
            else None,
        }

    return aig_logs_backfill
