"""dlt source for Cloudflare AI Gateway request logs (the Legacy Logs REST API).

The `aig_source` source loads table `aig_logs`, merged on `id`, from
`GET /accounts/{account_id}/ai-gateway/gateways/{gateway_id}/logs`. Its forward resource keeps a
`created_at` cursor in dlt state, re-checks a lookback window for late rows every run and pages
without drift (see `paging.py`). A faithful emulator of the API lives in `aig_source.emulator`.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Dict, Iterator, List

import dlt
from dlt.common.typing import TSecretStrValue
from dlt.sources import DltResource

from .client import AigSourceError, LogsApiClient, config_hint
from .paging import ForwardRead, LogReader
from .rows import to_row
from .settings import (
    CURSOR_FIELD,
    DEFAULT_API_BASE_URL,
    DEFAULT_FORWARD_MAX_PAGES,
    DEFAULT_LOOKBACK_SECONDS,
    DEFAULT_PER_PAGE,
    FORWARD_INITIAL_WINDOW_SECONDS,
    FORWARD_RESOURCE,
    LOG_COLUMNS,
    MAX_PER_PAGE,
    SOURCE_SECTION,
    TABLE_NAME,
)
from .timestamps import format_ms, parse_ms

__all__ = ["AigSourceError", "ConfigurationError", "aig_source"]


class ConfigurationError(AigSourceError):
    """A source setting has an invalid value."""


def _validate(
    gateway_id: str, api_base_url: str, per_page: int, forward_max_pages: int, lookback_seconds: int
) -> None:
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise ConfigurationError(
            f"per_page must be between 1 and {MAX_PER_PAGE}, got {per_page}: fix"
            f" {config_hint('per_page')}."
        )
    if forward_max_pages < 1:
        raise ConfigurationError(
            f"forward_max_pages must be at least 1, got {forward_max_pages}: fix"
            f" {config_hint('forward_max_pages')}."
        )
    if lookback_seconds < 0:
        raise ConfigurationError(
            f"lookback_seconds must be 0 or more, got {lookback_seconds}: fix"
            f" {config_hint('lookback_seconds')}."
        )
    if not api_base_url.startswith(("http://", "https://")):
        raise ConfigurationError(
            f"api_base_url must be an http(s) URL, got '{api_base_url}': fix"
            f" {config_hint('api_base_url')}."
        )
    if not gateway_id or len(gateway_id) > 64:
        raise ConfigurationError(
            f"gateway_id must be 1 to 64 characters: fix {config_hint('gateway_id')}."
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
) -> DltResource:
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

    Returns:
        The forward resource, loading table `aig_logs`.
    """
    _validate(gateway_id, api_base_url, per_page, forward_max_pages, lookback_seconds)
    client = LogsApiClient(api_base_url, account_id, gateway_id, api_token)
    return aig_logs_forward(client, per_page, forward_max_pages, lookback_seconds)


def _initial_cursor() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0) - timedelta(
        seconds=FORWARD_INITIAL_WINDOW_SECONDS
    )


def aig_logs_forward(
    client: LogsApiClient, per_page: int, max_pages: int, lookback_seconds: int
) -> DltResource:
    """Builds the forward resource around one API client.

    Args:
        client: Client of the gateway's Logs API.
        per_page: Logs per request.
        max_pages: Request budget of one run.
        lookback_seconds: Late-row window re-checked every run.

    Returns:
        Resource `aig_logs`, merged on `id`, with an incremental `created_at` cursor.
    """

    initial_cursor = _initial_cursor()

    @dlt.resource(
        name=FORWARD_RESOURCE,
        table_name=TABLE_NAME,
        write_disposition="merge",
        primary_key="id",
        columns=LOG_COLUMNS,
    )
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
        fetched = 0
        for page in forward.pages(cursor_ms, initial_ms):
            ingested_at = datetime.now(timezone.utc)
            fetched += len(page)
            yield [to_row(item, ingested_at) for item in page]
        newest_ms = forward.newest_ms
        if reader.cut or forward.window_unchecked:
            newest = client.list_logs([], per_page=1, descending=True).rows
            newest_ms = parse_ms(newest[0]["created_at"]) if newest else newest_ms
        state["last_run"] = {
            "finished_at": format_ms(int(datetime.now(timezone.utc).timestamp() * 1000)),
            "api_requests": client.requests_made,
            "logs_fetched": fetched,
            "logs_reread": forward.rows_reread,
            "page_budget": max_pages,
            "page_budget_reached": reader.cut or forward.window_unchecked,
            "gateway_newest": format_ms(newest_ms) if newest_ms is not None else None,
        }

    return aig_logs
