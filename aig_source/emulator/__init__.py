"""A faithful local emulator of the Cloudflare AI Gateway Legacy Logs API.

It is a real HTTP server on 127.0.0.1 (ephemeral port by default) used by the test suite, the
`--demo` mode of the pipelines and users' own tests. It reproduces the behaviour described in
`ai-gateway-logs-api.md` §9: v4 envelopes and error codes, defaults, JSON-encoded filters,
`result_info` without `total_pages`, ULID ids (lowercase UUIDv7 for logs created from
2026-10-08 on), late-visible rows, ties, capacity eviction, a sliding-window rate limit and
injected faults.
"""

from ..timestamps import format_ms, parse_ms
from .server import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_GATEWAY_ID,
    DEFAULT_TOKEN,
    Faults,
    Gateway,
    LogsApiEmulator,
    RateLimit,
    ServedRequest,
)
from .store import StoredLog
from .traffic import (
    TrafficProfile,
    generate_traffic,
    make_log_id,
    make_ulid,
    make_uuid7,
    synthetic_log,
)

__all__ = [
    "DEFAULT_ACCOUNT_ID",
    "DEFAULT_GATEWAY_ID",
    "DEFAULT_TOKEN",
    "Faults",
    "Gateway",
    "LogsApiEmulator",
    "RateLimit",
    "ServedRequest",
    "StoredLog",
    "TrafficProfile",
    "format_ms",
    "generate_traffic",
    "make_log_id",
    "make_ulid",
    "make_uuid7",
    "parse_ms",
    "synthetic_log",
]
