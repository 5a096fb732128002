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
from dlt.destinations.adapters import bigquery_adapter
from dlt.sources import DltResource

from . import state, timestamps
from .backfill import BackfillWalk
from .client import AigSourceError, LogsApiClient, config_hint
from .paging import CursorRows, ForwardRead, LogReader
from .ratelimit import shared_pacer
from .rows import to_row
from .settings import (
    BACKFILL_RESOURCE,
    BIGQUERY_CLUSTER_COLUMNS,
    BOUNDED_MERGE_HINT,
    CURSOR_FIELD,
    DEFAULT_API_BASE_URL,
    DEFAULT_BACKFILL_MAX_PAGES,
    DEFAULT_FORWARD_MAX_PAGES,
    DEFAULT_FORWARD_START,
    DEFAULT_FRESHNESS_THRESHOLD_SECONDS,
    DEFAULT_LOOKBACK_SECONDS,
    DEFAULT_PER_PAGE,
    DEFAULT_RATE_LIMIT_REQUESTS,
    DEFAULT_RATE_LIMIT_WINDOW_SECONDS,
    FORWARD_RESOURCE,
    LOG_COLUMNS,
    MAX_PER_PAGE,
    SOURCE_SECTION,
    TABLE_DESCRIPTION,
    TABLE_NAME,
)
from .timestamps import format_ms, moment_before_ms, parse_ms

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
    if settings["lookback_seconds"] > 0 and settings["forward_max_pages"] < 2:
        # the lookback check takes half the budget; with one page it could never run
        raise ConfigurationError(
            "forward_max_pages must be at least 2 while lookback_seconds is more than 0 (one"
            " request checks the lookback window for late logs, the rest read new logs), got"
            f" {settings['forward_max_pages']!r}: fix {config_hint('forward_max_pages')}, or set"
            " lookback_seconds to 0."
        )


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
    forward_start: str = DEFAULT_FORWARD_START,
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
        forward_start: Where the history is split when the first job runs: a duration before
            that run (`1h`, `7d`) or an ISO date or timestamp. The forward resource reads up from
            it and the backfill down from it; once recorded in state (the `origin`), it no longer
            changes.

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
    proposed_origin_ms = _parse_forward_start(forward_start)
    pacer = shared_pacer(rate_limit_requests, rate_limit_window_seconds)
    client = LogsApiClient(api_base_url, account_id, gateway_id, api_token, pacer)
    forward = aig_logs_forward(
        client,
        per_page,
        forward_max_pages,
        lookback_seconds,
        proposed_origin_ms,
        freshness_threshold_seconds,
    )
    backfill = aig_logs_history(
        client, per_page, backfill_max_pages, proposed_origin_ms, since_ms, backfill_max_seconds
    )
    for resource in (forward, backfill):
        resource.apply_hints(additional_table_hints={BOUNDED_MERGE_HINT: CURSOR_FIELD})
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


def _parse_forward_start(forward_start: str) -> int:
    try:
        return moment_before_ms(str(forward_start), timestamps.now_ms())
    except ValueError:
        raise ConfigurationError(
            "forward_start must be a duration before the first run (1h, 30m, 7d) or an ISO date"
            f" or timestamp (2026-01-31T12:00:00Z), got {forward_start!r}: fix"
            f" {config_hint('forward_start')}."
        ) from None


TABLE_HINTS: Dict[str, Any] = {
    "table_name": TABLE_NAME,
    "write_disposition": "merge",
    "primary_key": "id",
    "columns": LOG_COLUMNS,
}
"""Both resources load the same table, merged on `id`."""


def _rows(page: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    ingested_at = datetime.now(timezone.utc)
    return [to_row(item, ingested_at) for item in page]


def aig_logs_forward(
    client: LogsApiClient,
    per_page: int,
    max_pages: int,
    lookback_seconds: int,
    proposed_origin_ms: int,
    freshness_threshold_seconds: float = 0,
) -> DltResource:
    """Builds the forward resource around one API client.

    Args:
        client: Client of the gateway's Logs API.
        per_page: Logs per request.
        max_pages: Page budget of one run.
        lookback_seconds: Late-row window re-checked every run.
        proposed_origin_ms: Where to start reading when no job has recorded the origin yet.
        freshness_threshold_seconds: Recorded with the run for the freshness check.

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
        resource_state[state.LAST_RUN] = {
            "finished_at": format_ms(timestamps.now_ms()),
            "api_requests": client.requests_made,
            "rate_limited": client.rate_limited,
            "pages": reader.requests,
            "logs_fetched": fetched,
            "logs_reread": forward.rows_reread,
            "logs_unchanged_skipped": cursor_rows.unchanged,
            "page_budget": max_pages,
            "page_budget_reached": budget_reached,
            "incomplete_millisecond": reader.incomplete_note(),
            "freshness_threshold_seconds": freshness_threshold_seconds,
            "gateway_newest": format_ms(gateway_newest) if gateway_newest is not None else None,
        }

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
        walk = BackfillWalk(reader, resource_state, since_ms)
        for page in walk.pages(origin_ms):
            yield _rows(page)
        out_of_time = deadline is not None and time.monotonic() >= deadline
        resource_state[state.LAST_RUN] = {
            "finished_at": format_ms(timestamps.now_ms()),
            "api_requests": client.requests_made,
            "rate_limited": client.rate_limited,
            "pages": reader.requests,
            "logs_fetched": walk.fetched,
            "logs_new": walk.new,
            "logs_remaining_estimate": walk.remaining,
            "page_budget": max_pages,
            "page_budget_reached": reader.cut and not out_of_time,
            "time_budget_reached": reader.cut and out_of_time,
            "incomplete_millisecond": reader.incomplete_note(),
            "per_page": per_page,
            "pacing": {
                "requests": client.pacer.requests,
                "window_seconds": client.pacer.window_seconds,
            }
            if client.pacer
            else None,
        }

    return aig_logs_backfill
