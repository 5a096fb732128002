"""The settings of the Logs API source: one typed configspec, resolved by dlt.

dlt resolves it from `[sources.aig_source]` in `.dlt/config.toml` and `.dlt/secrets.toml`, or
from `SOURCES__AIG_SOURCE__*` environment variables; the source (`aig_source`), the jobs and the
setup checks all read it, and `on_resolved` rejects a bad value with one line naming the fix
before any request is made.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any, Callable, Dict, List, Optional, Tuple

from dlt.common.configuration import configspec, resolve_configuration
from dlt.common.configuration.specs import BaseConfiguration
from dlt.common.typing import TSecretStrValue

from . import timestamps
from .client import AigSourceError, config_hint
from .settings import (
    ALL_GATEWAYS,
    DEFAULT_API_BASE_URL,
    DEFAULT_BACKFILL_MAX_PAGES,
    DEFAULT_FORWARD_MAX_PAGES,
    DEFAULT_FORWARD_START,
    DEFAULT_FRESHNESS_THRESHOLD_SECONDS,
    DEFAULT_LOG_LEVEL,
    DEFAULT_LOOKBACK_SECONDS,
    DEFAULT_MAX_CONCURRENT_GATEWAYS,
    DEFAULT_PER_PAGE,
    DEFAULT_RATE_LIMIT_REQUESTS,
    DEFAULT_RATE_LIMIT_WINDOW_SECONDS,
    LOG_LEVELS,
    MAX_PER_PAGE,
    SOURCE_SECTION,
)

SECTIONS = ("sources", SOURCE_SECTION)


class ConfigurationError(AigSourceError):
    """A source setting has an invalid value."""


@configspec
class LoggingConfiguration(BaseConfiguration):
    """The level of the pipeline's own log lines on stderr (late logs found, pacing, backfill
    progress); dlt's own logging follows `[runtime] log_level`."""

    log_level: str = DEFAULT_LOG_LEVEL

    def on_resolved(self) -> None:
        level = str(self.log_level).upper()
        if level not in LOG_LEVELS:
            raise ConfigurationError(
                f"log_level must be one of {', '.join(LOG_LEVELS)}, not {self.log_level!r}: set"
                f" {config_hint('log_level')}."
            )
        self.log_level = level


_Rule = Tuple[Callable[[Any], bool], str]

_RULES: Dict[str, _Rule] = {
    "api_base_url": (
        lambda v: str(v).startswith(("http://", "https://")),
        "must be an http(s) URL",
    ),
    "per_page": (lambda v: 1 <= v <= MAX_PER_PAGE, f"must be between 1 and {MAX_PER_PAGE}"),
    "forward_max_pages": (lambda v: v >= 1, "must be at least 1"),
    "backfill_max_pages": (lambda v: v >= 1, "must be at least 1"),
    "lookback_seconds": (lambda v: v >= 0, "must be 0 or more"),
    "freshness_threshold_seconds": (lambda v: v >= 0, "must be 0 (off) or more"),
    "max_concurrent_gateways": (lambda v: v >= 1, "must be at least 1"),
    "rate_limit_requests": (lambda v: v >= 1, "must be at least 1"),
    "rate_limit_window_seconds": (lambda v: v > 0, "must be more than 0"),
}


@configspec
class LogsApiSourceConfiguration(LoggingConfiguration):
    """Every setting of `[sources.aig_source]`; see the source's docstring for their meaning."""

    account_id: str = None  # type: ignore[assignment]
    gateway_id: Any = None
    """One id, several (a TOML list, or a comma-separated string), or `*` for every gateway."""
    api_token: TSecretStrValue = None  # type: ignore[assignment]
    api_base_url: str = DEFAULT_API_BASE_URL
    per_page: int = DEFAULT_PER_PAGE
    forward_max_pages: int = DEFAULT_FORWARD_MAX_PAGES
    forward_start: str = DEFAULT_FORWARD_START
    lookback_seconds: int = DEFAULT_LOOKBACK_SECONDS
    freshness_threshold_seconds: float = DEFAULT_FRESHNESS_THRESHOLD_SECONDS
    backfill_max_pages: int = DEFAULT_BACKFILL_MAX_PAGES
    backfill_since: Optional[str] = None
    backfill_max_seconds: Optional[float] = None
    rate_limit_requests: int = DEFAULT_RATE_LIMIT_REQUESTS
    rate_limit_window_seconds: float = DEFAULT_RATE_LIMIT_WINDOW_SECONDS
    max_concurrent_gateways: int = DEFAULT_MAX_CONCURRENT_GATEWAYS

    def on_resolved(self) -> None:
        super().on_resolved()
        self.gateway_id = gateway_ids(self.gateway_id)
        for key, (valid, requirement) in _RULES.items():
            value = getattr(self, key)
            if not valid(value):
                raise ConfigurationError(
                    f"{key} {requirement}, got {value!r}: fix {config_hint(key)}."
                )
        if self.lookback_seconds > 0 and self.forward_max_pages < 2:
            # the lookback check takes half the budget; with one page it could never run
            raise ConfigurationError(
                "forward_max_pages must be at least 2 while lookback_seconds is more than 0 (one"
                " request checks the lookback window for late logs, the rest read new logs), got"
                f" {self.forward_max_pages!r}: fix {config_hint('forward_max_pages')}, or set"
                " lookback_seconds to 0."
            )
        backfill_since_ms(self.backfill_since)
        forward_start_ms(self.forward_start)

    @property
    def backfill_per_second(self) -> float:
        """Logs per second a backfill reads at the configured pace."""
        return self.rate_limit_requests / self.rate_limit_window_seconds * self.per_page


def gateway_ids(gateway_id: Any) -> List[str]:
    """The configured gateways as a list: `["*"]` for every gateway of the account, else ids.

    Takes what dlt resolved: a TOML list, one id, a comma-separated string (the environment's
    form) or a JSON array in a string.
    """
    value = gateway_id
    if isinstance(value, str) and value.strip().startswith("["):
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigurationError(
            f"gateway_id must be a gateway id, a list of them or {ALL_GATEWAYS!r}, got"
            f" {gateway_id!r}: fix {config_hint('gateway_id')}."
        )
    ids = list(dict.fromkeys(v.strip() for v in value if v.strip()))
    if not ids:
        raise ConfigurationError(
            f"gateway_id is empty: set {config_hint('gateway_id')} to a gateway id, several"
            f" separated by commas, or {ALL_GATEWAYS!r} for every gateway of the account."
        )
    if ALL_GATEWAYS in ids and len(ids) > 1:
        raise ConfigurationError(
            f"gateway_id {ALL_GATEWAYS!r} already means every gateway; list ids or use"
            f" {ALL_GATEWAYS!r} alone, got {gateway_id!r}: fix {config_hint('gateway_id')}."
        )
    too_long = [v for v in ids if len(v) > 64]
    if too_long:
        raise ConfigurationError(
            f"gateway_id {too_long[0]!r} is longer than 64 characters: fix"
            f" {config_hint('gateway_id')}."
        )
    return ids


def backfill_since_ms(backfill_since: Optional[str]) -> Optional[int]:
    """`backfill_since` as epoch ms; None when unset."""
    if backfill_since is None or not str(backfill_since).strip():
        return None
    try:
        return timestamps.parse_moment_ms(str(backfill_since))
    except ValueError:
        raise ConfigurationError(
            f"backfill_since must be an ISO date or timestamp (2026-01-31 or"
            f" 2026-01-31T12:00:00Z), got {backfill_since!r}: fix {config_hint('backfill_since')}."
        ) from None


def forward_start_ms(forward_start: str) -> int:
    """`forward_start` as epoch ms from now, for the first job that records the origin."""
    try:
        return timestamps.moment_before_ms(str(forward_start), timestamps.now_ms())
    except ValueError:
        raise ConfigurationError(
            "forward_start must be a duration before the first run (1h, 30m, 7d) or an ISO"
            f" date or timestamp (2026-01-31T12:00:00Z), got {forward_start!r}: fix"
            f" {config_hint('forward_start')}."
        ) from None


def resolve_source_configuration(**explicit: Any) -> LogsApiSourceConfiguration:
    """The source's settings as a run would use them: `explicit` values over configuration."""
    return resolve_configuration(
        LogsApiSourceConfiguration(), sections=SECTIONS, explicit_value=explicit or None
    )


def resolve_logging_configuration() -> LoggingConfiguration:
    return resolve_configuration(LoggingConfiguration(), sections=SECTIONS)
