"""A real HTTP server on loopback that behaves like the Cloudflare AI Gateway Legacy Logs API."""

from __future__ import annotations

import collections
import itertools
import json
import math
import random
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Deque, Dict, Iterable, List, Optional, Sequence, Set, Tuple
from urllib.parse import parse_qs, urlsplit

from .logpush import DATASET_FIELDS
from .store import (
    DELETE_ORDER_BY_FIELDS,
    LOG_MANAGEMENT_STRATEGIES,
    ORDER_BY_FIELDS,
    FilterError,
    LogFilter,
    LogStore,
    StoredLog,
    format_ms,
    parse_filters,
    parse_ms,
)
from .traffic import TrafficProfile, generate_traffic, synthetic_log

DEFAULT_ACCOUNT_ID = "0123456789abcdef0123456789abcdef"
DEFAULT_GATEWAY_ID = "demo-gateway"
DEFAULT_TOKEN = "emulator-token"
API_PREFIX = "/client/v4"
GATEWAY_ID_PATTERN = re.compile(r"^[a-z0-9_]+(?:-[a-z0-9_]+)*$")

_ROUTES: Tuple[Tuple[str, re.Pattern[str]], ...] = (
    ("token_verify", re.compile(r"^/user/tokens/verify$")),
    ("account_token_verify", re.compile(r"^/accounts/(?P<account>[^/]+)/tokens/verify$")),
    ("gateways", re.compile(r"^/accounts/(?P<account>[^/]+)/ai-gateway/gateways$")),
    (
        "gateway",
        re.compile(r"^/accounts/(?P<account>[^/]+)/ai-gateway/gateways/(?P<gateway>[^/]+)$"),
    ),
    (
        "logs",
        re.compile(r"^/accounts/(?P<account>[^/]+)/ai-gateway/gateways/(?P<gateway>[^/]+)/logs$"),
    ),
    (
        "log",
        re.compile(
            r"^/accounts/(?P<account>[^/]+)/ai-gateway/gateways/(?P<gateway>[^/]+)/logs/(?P<log_id>[^/]+)$"
        ),
    ),
    (
        "logpush_fields",
        re.compile(r"^/accounts/(?P<account>[^/]+)/logpush/datasets/(?P<dataset>[^/]+)/fields$"),
    ),
    (
        "log_body",
        re.compile(
            r"^/accounts/(?P<account>[^/]+)/ai-gateway/gateways/(?P<gateway>[^/]+)/logs/"
            r"(?P<log_id>[^/]+)/(?P<body>request|response)$"
        ),
    ),
)
# Deprecated list parameters still accepted by the schema, mapped onto equivalent filters.
_DEPRECATED_EQ_PARAMS = (
    "provider",
    "model",
    "model_type",
    "request_content_type",
    "response_content_type",
)
_DEPRECATED_BOOL_PARAMS = ("success", "cached")


class ApiError(Exception):
    """An error answered in the Cloudflare v4 envelope."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        path: Optional[List[str]] = None,
        headers: Optional[Dict[str, str]] = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.path = path
        self.headers = headers or {}

    def body(self) -> Dict[str, Any]:
        error: Dict[str, Any] = {"code": self.code, "message": self.message}
        if self.path:
            error["path"] = self.path
        return {"success": False, "errors": [error], "messages": [], "result": None}


TIE_ORDERS = ("stable", "shuffled", "evasive")
"""Orders of the logs inside one millisecond: by id (what Cloudflare appears to do), at random
per request, or adversarial (one log always off the page asked for)."""


@dataclass
class RateLimit:
    """Cloudflare's global API limit: `requests` per sliding `window_seconds`, per token.

    Going over blocks every call of that token for `block_seconds` (300 s on the real API).
    """

    requests: int = 1200
    window_seconds: float = 300.0
    block_seconds: float = 300.0


@dataclass
class Faults:
    """Trouble to inject; counters are consumed one request at a time."""

    server_errors: int = 0
    server_error_status: int = 500
    error_rate: float = 0.0
    outage_status: Optional[int] = None
    malformed: int = 0
    latency_seconds: float = 0.0
    slow_requests: int = 0
    slow_seconds: float = 0.0
    dropped_connections: int = 0


@dataclass
class Gateway:
    """One gateway: its log settings and its logs."""

    id: str
    store: LogStore
    collect_logs: bool = True
    created_at_ms: int = 0

    @property
    def log_management(self) -> Optional[int]:
        return self.store.capacity

    @property
    def log_management_strategy(self) -> Optional[str]:
        return self.store.strategy if self.store.capacity is not None else None

    def as_result(self, account_id: str) -> Dict[str, Any]:
        return {
            "id": self.id,
            "account_id": account_id,
            "created_at": format_ms(self.created_at_ms),
            "modified_at": format_ms(self.created_at_ms),
            "collect_logs": self.collect_logs,
            "log_management": self.log_management,
            "log_management_strategy": self.log_management_strategy,
            "cache_ttl": 0,
            "cache_invalidate_on_update": False,
            "rate_limiting_interval": 0,
            "rate_limiting_limit": 0,
            "rate_limiting_technique": "fixed",
            "authentication": False,
            "logpush": False,
        }


@dataclass(frozen=True)
class ServedRequest:
    """What the emulator answered; the token itself is never recorded."""

    method: str
    path: str
    query: Dict[str, List[str]]
    status: int
    at: float


@dataclass
class _TokenBucket:
    times: Deque[float] = field(default_factory=collections.deque)
    blocked_until: float = 0.0


class LogsApiEmulator:
    """The AI Gateway Logs API on 127.0.0.1, for tests, demos and local development.

    Use it as a context manager (or `start()` / `stop()`); `base_url` is what the pipeline's
    `api_base_url` should be set to.

    Example:
        >>> with LogsApiEmulator() as api:
        ...     api.generate(500, hours=2)
        ...     print(api.base_url)
    """

    def __init__(
        self,
        account_id: str = DEFAULT_ACCOUNT_ID,
        gateway_id: str = DEFAULT_GATEWAY_ID,
        token: str = DEFAULT_TOKEN,
        *,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        capacity: Optional[int] = None,
        strategy: str = "DELETE_OLDEST",
        rate_limit: Optional[RateLimit] = None,
        include_empty_messages: bool = False,
        tie_order: str = "stable",
    ) -> None:
        self.account_id = account_id
        self.default_gateway_id = gateway_id
        self.tokens: Dict[str, Set[str]] = {token: {"read", "write"}}
        self.account_owned_tokens: Set[str] = set()
        self.host = host
        self.port = port
        self.rate_limit = rate_limit
        self.include_empty_messages = include_empty_messages
        if tie_order not in TIE_ORDERS:
            raise ValueError(f"tie_order must be one of {TIE_ORDERS}")
        self.tie_order = tie_order
        """How logs of one millisecond are ordered among themselves (see `TIE_ORDERS`)."""
        self.faults = Faults()
        self.requests: List[ServedRequest] = []
        self.max_in_flight = 0
        """The most requests it was answering at one moment (how concurrent its clients were)."""
        self._in_flight = 0
        self.clock_offset_ms = 0
        self._rng = random.Random(seed)
        self._seed = seed
        self._lock = threading.Lock()
        self._buckets: Dict[str, _TokenBucket] = {}
        self._accounts: Dict[str, Dict[str, Gateway]] = {account_id: {}}
        self.token_accounts: Dict[str, Set[str]] = {}
        """Accounts a token is limited to; a token not listed may read every account."""
        self.failing_gateways: Dict[Tuple[str, str], int] = {}
        self.logpush_fields: Dict[str, str] = dict(DATASET_FIELDS)
        """The Logpush dataset's field list it serves (a test adds a field Cloudflare adds)."""
        """Gateways whose every request answers this status, by (account, gateway)."""
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._live_stop = threading.Event()
        self._live_thread: Optional[threading.Thread] = None
        self.add_gateway(gateway_id, capacity=capacity, strategy=strategy)

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> LogsApiEmulator:
        handler = _make_handler(self)
        self._server = ThreadingHTTPServer((self.host, self.port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="aig-logs-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stop_live_traffic()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> LogsApiEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}{API_PREFIX}"

    # --- clock -----------------------------------------------------------------------------

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self.clock_offset_ms

    def advance(self, seconds: float) -> None:
        """Moves the emulator's clock forward (rows whose visibility time passes appear)."""
        self.clock_offset_ms += int(seconds * 1000)

    # --- gateways, tokens and logs -----------------------------------------------------------

    def add_account(self, account_id: str) -> None:
        """Another account on the same server, with no gateway yet."""
        self._accounts.setdefault(account_id, {})

    def _account(self, account_id: Optional[str]) -> Dict[str, Gateway]:
        return self._accounts[account_id or self.account_id]

    def add_gateway(
        self,
        gateway_id: str,
        *,
        capacity: Optional[int] = None,
        strategy: str = "DELETE_OLDEST",
        collect_logs: bool = True,
        account_id: Optional[str] = None,
    ) -> Gateway:
        if strategy not in LOG_MANAGEMENT_STRATEGIES:
            raise ValueError(f"strategy must be one of {LOG_MANAGEMENT_STRATEGIES}")
        store = LogStore(now_ms=self.now_ms, capacity=capacity, strategy=strategy)
        gateway = Gateway(
            id=gateway_id, store=store, collect_logs=collect_logs, created_at_ms=self.now_ms()
        )
        with self._lock:
            self._account(account_id)[gateway_id] = gateway
        return gateway

    def gateway(
        self, gateway_id: Optional[str] = None, account_id: Optional[str] = None
    ) -> Gateway:
        return self._account(account_id)[gateway_id or self.default_gateway_id]

    def remove_gateway(self, gateway_id: str, account_id: Optional[str] = None) -> None:
        """Deletes a gateway: it leaves the list, and its routes answer 404 (code 7002)."""
        with self._lock:
            del self._account(account_id)[gateway_id]

    def fail_gateway(
        self, gateway_id: str, status: int = 500, account_id: Optional[str] = None
    ) -> None:
        """Every request of one gateway answers `status` (500s, or 403 for a gateway the token
        may not read) until `heal_gateway`; the account's other gateways answer as usual."""
        self.failing_gateways[(account_id or self.account_id, gateway_id)] = status

    def heal_gateway(self, gateway_id: str, account_id: Optional[str] = None) -> None:
        self.failing_gateways.pop((account_id or self.account_id, gateway_id), None)

    def add_token(
        self,
        token: str,
        scopes: Iterable[str] = ("read",),
        account_owned: bool = False,
        accounts: Optional[Iterable[str]] = None,
    ) -> None:
        """A token that may call the API; an account-owned one verifies only under its account;
        one given `accounts` may read only those."""
        self.tokens[token] = set(scopes)
        if account_owned:
            self.account_owned_tokens.add(token)
        if accounts is not None:
            self.token_accounts[token] = set(accounts)

    def add_logs(
        self,
        logs: Sequence[StoredLog],
        gateway_id: Optional[str] = None,
        account_id: Optional[str] = None,
    ) -> int:
        return self.gateway(gateway_id, account_id).store.add(logs)

    def make_log(
        self,
        created_at_ms: Optional[int] = None,
        visible_at_ms: Optional[int] = None,
        profile: Optional[TrafficProfile] = None,
    ) -> StoredLog:
        """One synthetic row (not stored), by default created now."""
        stamp = self.now_ms() if created_at_ms is None else created_at_ms
        with self._lock:
            return synthetic_log(stamp, self._rng, profile, visible_at_ms)

    def generate(
        self,
        count: int,
        *,
        hours: float = 1.0,
        end_ms: Optional[int] = None,
        start_ms: Optional[int] = None,
        max_visibility_delay_ms: int = 0,
        tie_group_size: int = 0,
        gateway_id: Optional[str] = None,
        profile: Optional[TrafficProfile] = None,
        account_id: Optional[str] = None,
    ) -> List[StoredLog]:
        """Adds `count` seeded synthetic rows spread over the `hours` before `end_ms` (now)."""
        end = self.now_ms() if end_ms is None else end_ms
        start = end - int(hours * 3_600_000) if start_ms is None else start_ms
        self._seed += 1
        logs = generate_traffic(
            count,
            start,
            end,
            seed=self._seed,
            profile=profile,
            max_visibility_delay_ms=max_visibility_delay_ms,
            tie_group_size=tie_group_size,
        )
        self.add_logs(logs, gateway_id, account_id)
        return logs

    def start_live_traffic(self, logs_per_second: float, max_visibility_delay_ms: int = 0) -> None:
        """Keeps adding rows created "now" at about `logs_per_second`, until stopped."""
        self._live_stop.clear()

        def produce() -> None:
            interval = 1.0 / logs_per_second
            while not self._live_stop.wait(interval):
                now = self.now_ms()
                delay = (
                    self._rng.randint(0, max_visibility_delay_ms) if max_visibility_delay_ms else 0
                )
                self.add_logs([self.make_log(now, now + delay)])

        self._live_thread = threading.Thread(target=produce, name="aig-live-traffic", daemon=True)
        self._live_thread.start()

    def stop_live_traffic(self) -> None:
        self._live_stop.set()
        if self._live_thread is not None:
            self._live_thread.join(timeout=5)
            self._live_thread = None

    def logs_requests(self) -> List[ServedRequest]:
        """Requests served on the list endpoint."""
        return [r for r in self.requests if r.method == "GET" and r.path.endswith("/logs")]

    # --- request handling --------------------------------------------------------------------

    def handle(
        self, method: str, raw_path: str, headers: Dict[str, str], body: bytes
    ) -> Tuple[int, Dict[str, str], bytes]:
        """Answers one request: status, headers and body bytes."""
        split = urlsplit(raw_path)
        query = parse_qs(split.query, keep_blank_values=True)
        extra_headers: Dict[str, str] = {}
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            token = self._authenticate(headers)
            extra_headers = self._apply_rate_limit(token)
            self._maybe_fail()
            status, payload = self._route(method, split.path, query, token, body)
            if isinstance(payload, dict) and payload.get("success") and self.include_empty_messages:
                payload.setdefault("errors", [])
                payload.setdefault("messages", [])
            encoded = json.dumps(payload).encode()
            if self._consume("malformed"):
                encoded = encoded[: max(1, len(encoded) // 2)]
        except ApiError as error:
            status, encoded = error.status, json.dumps(error.body()).encode()
            extra_headers.update(error.headers)
        with self._lock:
            self._in_flight -= 1
            self.requests.append(ServedRequest(method, split.path, query, status, time.time()))
        return status, extra_headers, encoded

    def _consume(self, counter: str) -> bool:
        with self._lock:
            remaining = getattr(self.faults, counter)
            if remaining > 0:
                setattr(self.faults, counter, remaining - 1)
                return True
            return False

    def _authenticate(self, headers: Dict[str, str]) -> str:
        authorization = headers.get("authorization")
        if not authorization and not headers.get("x-auth-key"):
            raise ApiError(400, 9106, "Missing X-Auth-Key, X-Auth-Email or Authorization headers")
        token = (
            authorization[7:].strip()
            if authorization and authorization.startswith("Bearer ")
            else ""
        )
        if token not in self.tokens:
            raise ApiError(403, 10000, "Authentication error")
        return token

    def _apply_rate_limit(self, token: str) -> Dict[str, str]:
        limit = self.rate_limit
        if limit is None:
            return {}
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.setdefault(token, _TokenBucket())
            if bucket.blocked_until > now:
                wait = math.ceil(bucket.blocked_until - now)
                raise self._rate_limited(limit, wait)
            while bucket.times and bucket.times[0] <= now - limit.window_seconds:
                bucket.times.popleft()
            if len(bucket.times) >= limit.requests:
                bucket.blocked_until = now + limit.block_seconds
                raise self._rate_limited(limit, math.ceil(limit.block_seconds))
            bucket.times.append(now)
            remaining = limit.requests - len(bucket.times)
            reset = math.ceil(bucket.times[0] + limit.window_seconds - now)
        return {
            "Ratelimit": f'"default";r={remaining};t={reset}',
            "Ratelimit-Policy": f'"default";q={limit.requests};w={int(limit.window_seconds)}',
        }

    @staticmethod
    def _rate_limited(limit: RateLimit, wait_seconds: int) -> ApiError:
        return ApiError(
            429,
            971,
            "Please wait and consider throttling your request speed",
            headers={
                "retry-after": str(max(1, wait_seconds)),
                "Ratelimit": f'"default";r=0;t={max(1, wait_seconds)}',
                "Ratelimit-Policy": f'"default";q={limit.requests};w={int(limit.window_seconds)}',
            },
        )

    def _maybe_fail(self) -> None:
        faults = self.faults
        if self._consume("slow_requests"):
            time.sleep(faults.slow_seconds)
        if faults.latency_seconds:
            time.sleep(faults.latency_seconds)
        if faults.outage_status is not None:
            raise ApiError(faults.outage_status, 7000, "Internal Error")
        if self._consume("server_errors"):
            raise ApiError(faults.server_error_status, 7000, "Internal Error")
        if faults.error_rate:
            with self._lock:
                unlucky = self._rng.random() < faults.error_rate
            if unlucky:
                raise ApiError(faults.server_error_status, 7000, "Internal Error")

    def _route(
        self, method: str, path: str, query: Dict[str, List[str]], token: str, body: bytes
    ) -> Tuple[int, Any]:
        if not path.startswith(API_PREFIX):
            raise ApiError(404, 7000, "No route for that URI")
        path = path[len(API_PREFIX) :]
        for name, pattern in _ROUTES:
            found = pattern.match(path)
            if found is None:
                continue
            params = found.groupdict()
            if name == "token_verify":
                # user-owned tokens only; Cloudflare answers 401 / 1000 for account-owned ones
                if token in self.account_owned_tokens:
                    raise ApiError(401, 1000, "Invalid API Token")
                return 200, self._ok({"id": "emulated-token", "status": "active"})
            if name == "account_token_verify":
                own_accounts = self.token_accounts.get(token, {self.account_id})
                if token not in self.account_owned_tokens or params["account"] not in own_accounts:
                    raise ApiError(401, 1000, "Invalid API Token")
                return 200, self._ok({"id": "emulated-account-token", "status": "active"})
            account = self._accounts.get(params["account"])
            allowed = self.token_accounts.get(token)
            if account is not None and allowed is not None and params["account"] not in allowed:
                raise ApiError(403, 10000, "Authentication error")
            if account is None:
                raise ApiError(
                    404,
                    7003,
                    f"Could not route to /accounts/{params['account']}, perhaps your object"
                    " identifier is invalid?",
                )
            gateway = (
                self._find_gateway(account, params["gateway"]) if "gateway" in params else None
            )
            failing = self.failing_gateways.get((params["account"], params.get("gateway", "")))
            if gateway is not None and failing is not None:
                if failing in (401, 403):
                    raise ApiError(failing, 10000, "Authentication error")
                raise ApiError(failing, 7000, "Internal Error")
            write = method in ("DELETE", "PATCH")
            if ("write" if write else "read") not in self.tokens[token]:
                raise ApiError(403, 10000, "Authentication error")
            if name == "logpush_fields":
                if params["dataset"] != "ai_gateway_events":
                    raise ApiError(400, 1004, f"Unknown dataset {params['dataset']}")
                return 200, self._ok(dict(self.logpush_fields))
            if gateway is None:
                if method != "GET":
                    raise ApiError(405, 7001, f"Method {method} not allowed")
                return 200, self._list_gateways(account, params["account"], query)
            if name == "gateway" and method == "GET":
                return 200, self._ok(gateway.as_result(params["account"]))
            if name == "logs" and method == "GET":
                return 200, self._list(gateway, query)
            if name == "logs" and method == "DELETE":
                return 200, self._delete(gateway, query)
            if name == "log" and method == "GET":
                return 200, self._ok(self._get_log(gateway, params["log_id"]).detail_item())
            if name == "log" and method == "PATCH":
                return 200, self._patch(gateway, params["log_id"], body)
            if name == "log_body" and method == "GET":
                log = self._get_log(gateway, params["log_id"])
                stored = log.request_body if params["body"] == "request" else log.response_body
                if stored is None:
                    raise ApiError(404, 7002, "Not Found")
                return 200, stored
            raise ApiError(405, 7001, f"Method {method} not allowed")
        raise ApiError(404, 7000, "No route for that URI")

    def _find_gateway(self, account: Dict[str, Gateway], gateway_id: str) -> Gateway:
        if not GATEWAY_ID_PATTERN.match(gateway_id) or len(gateway_id) > 64:
            raise ApiError(400, 7001, "Invalid gateway_id", path=["path", "gateway_id"])
        gateway = account.get(gateway_id)
        if gateway is None:
            raise ApiError(404, 7002, "Not Found")
        return gateway

    @staticmethod
    def _ok(result: Any) -> Dict[str, Any]:
        return {"success": True, "result": result}

    def _get_log(self, gateway: Gateway, log_id: str) -> StoredLog:
        log = gateway.store.get(log_id)
        if log is None:
            raise ApiError(404, 7002, "Not Found")
        return log

    def _list(self, gateway: Gateway, query: Dict[str, List[str]]) -> Dict[str, Any]:
        page = _int_param(query, "page", 1, minimum=1)
        per_page = _int_param(query, "per_page", 20, minimum=1, maximum=50)
        order_by = _enum_param(query, "order_by", "created_at", ORDER_BY_FIELDS)
        direction = _enum_param(
            query,
            "order_by_direction",
            _enum_param(query, "direction", "desc", ("asc", "desc")),
            ("asc", "desc"),
        )
        filters = _filters_from_query(query)
        rows = gateway.store.query(filters, order_by=order_by, descending=direction == "desc")
        start = (page - 1) * per_page
        if self.tie_order != "stable" and order_by == "created_at":
            rows = self._unstable_ties(rows, start, per_page)
        page_rows = rows[start : start + per_page]
        result_info: Dict[str, Any] = {
            "page": page,
            "per_page": per_page,
            "count": len(page_rows),
            "total_count": len(rows),
        }
        if _first(query, "meta_info") == "true":
            result_info.update(_aggregates(rows))
        return {
            "success": True,
            "result": [log.list_item() for log in page_rows],
            "result_info": result_info,
        }

    def _list_gateways(
        self, account: Dict[str, Gateway], account_id: str, query: Dict[str, List[str]]
    ) -> Dict[str, Any]:
        """The account's gateways, oldest first (the real order is not documented), paged."""
        page = _int_param(query, "page", 1, minimum=1)
        per_page = _int_param(query, "per_page", 20, minimum=1, maximum=100)
        search = _first(query, "search") or ""
        unknown = set(query) - {"page", "per_page", "search"}
        if unknown:
            name = sorted(unknown)[0]
            raise ApiError(400, 7001, f"Unrecognized key: '{name}'", path=["query", name])
        gateways = sorted(
            (g for g in list(account.values()) if search in g.id),
            key=lambda g: (g.created_at_ms, g.id),
        )
        start = (page - 1) * per_page
        listed = gateways[start : start + per_page]
        return {
            "success": True,
            "result": [gateway.as_result(account_id) for gateway in listed],
            "result_info": {
                "page": page,
                "per_page": per_page,
                "count": len(listed),
                "total_count": len(gateways),
            },
        }

    def _unstable_ties(self, rows: List[StoredLog], start: int, per_page: int) -> List[StoredLog]:
        """Reorders each millisecond holding more than a page, as an API without a stable order
        inside a millisecond may: `shuffled` at random on every request; `evasive` so that one
        log of it is never on the page asked for, which no amount of re-reading gets past."""
        reordered: List[StoredLog] = []
        for _, group in itertools.groupby(rows, key=lambda log: log.created_at_ms):
            logs = list(group)
            if len(logs) > per_page:
                if self.tie_order == "shuffled":
                    with self._lock:
                        self._rng.shuffle(logs)
                else:
                    hidden = max(logs, key=lambda log: log.id)
                    logs.remove(hidden)
                    first = len(reordered)
                    on_first_positions = start < first + per_page and start + per_page > first
                    logs = [*logs, hidden] if on_first_positions else [hidden, *logs]
            reordered.extend(logs)
        return reordered

    def _delete(self, gateway: Gateway, query: Dict[str, List[str]]) -> Dict[str, Any]:
        limit = _int_param(query, "limit", 10000, minimum=1, maximum=10000)
        order_by = _enum_param(query, "order_by", "created_at", DELETE_ORDER_BY_FIELDS)
        direction = _enum_param(query, "order_by_direction", "asc", ("asc", "desc"))
        filters = _filters_from_query(query)
        rows = gateway.store.query(filters, order_by=order_by, descending=direction == "desc")
        gateway.store.delete(rows[:limit])
        return {"success": True}

    def _patch(self, gateway: Gateway, log_id: str, body: bytes) -> Dict[str, Any]:
        log = self._get_log(gateway, log_id)
        try:
            changes = json.loads(body or b"{}")
        except ValueError as exc:
            raise ApiError(400, 7001, "Body is not valid JSON") from exc
        if not isinstance(changes, dict):
            raise ApiError(400, 7001, "Body must be an object")
        feedback = changes.get("feedback")
        if feedback is not None and not (
            isinstance(feedback, (int, float)) and -1 <= feedback <= 1
        ):
            raise ApiError(
                400, 7001, "feedback must be between -1 and 1", path=["body", "feedback"]
            )
        score = changes.get("score")
        if score is not None and not (isinstance(score, (int, float)) and 0 <= score <= 100):
            raise ApiError(400, 7001, "score must be between 0 and 100", path=["body", "score"])
        metadata = changes.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise ApiError(400, 7001, "metadata must be an object", path=["body", "metadata"])
        if "feedback" in changes:
            log.feedback = None if feedback is None else int(feedback)
        if "score" in changes:
            log.score = score
        if metadata is not None:
            log.fields["metadata"] = json.dumps(metadata)
        return {"result": {}, "success": True}


def _first(query: Dict[str, List[str]], name: str) -> Optional[str]:
    values = query.get(name)
    return values[0] if values else None


def _int_param(
    query: Dict[str, List[str]],
    name: str,
    default: int,
    minimum: Optional[int] = None,
    maximum: Optional[int] = None,
) -> int:
    raw = _first(query, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ApiError(
            400, 7001, f"Expected number, received string for {name}", path=["query", name]
        ) from exc
    if minimum is not None and value < minimum:
        raise ApiError(
            400, 7001, f"Number must be greater than or equal to {minimum}", path=["query", name]
        )
    if maximum is not None and value > maximum:
        raise ApiError(
            400, 7001, f"Number must be less than or equal to {maximum}", path=["query", name]
        )
    return value


def _enum_param(
    query: Dict[str, List[str]], name: str, default: str, allowed: Sequence[str]
) -> str:
    raw = _first(query, name)
    if raw is None:
        return default
    if raw not in allowed:
        options = " | ".join(f"'{option}'" for option in allowed)
        raise ApiError(
            400,
            7001,
            f"Invalid enum value. Expected {options}, received '{raw}'",
            path=["query", name],
        )
    return raw


def _filters_from_query(query: Dict[str, List[str]]) -> List[LogFilter]:
    """JSON `filters` plus deprecated parameters; flattened `filters.key=` forms are ignored."""
    try:
        filters = parse_filters(query.get("filters", []))
    except FilterError as error:
        raise ApiError(400, 7001, str(error), path=["query", "filters"]) from error
    try:
        if (start := _first(query, "start_date")) is not None:
            filters.append(LogFilter("created_at", "gt", (parse_ms(start) - 1,)))
        if (end := _first(query, "end_date")) is not None:
            filters.append(LogFilter("created_at", "lt", (parse_ms(end) + 1,)))
    except ValueError as exc:
        raise ApiError(400, 7001, "Invalid date-time", path=["query", "start_date"]) from exc
    for name in _DEPRECATED_EQ_PARAMS:
        if (value := _first(query, name)) is not None:
            filters.append(LogFilter(name, "eq", (value,)))
    for name in _DEPRECATED_BOOL_PARAMS:
        if (value := _first(query, name)) is not None:
            filters.append(LogFilter(name, "eq", (value == "true",)))
    return filters


def _aggregates(rows: Sequence[StoredLog]) -> Dict[str, Any]:
    def span(values: List[float], name: str) -> Dict[str, float]:
        return {f"min_{name}": min(values, default=0), f"max_{name}": max(values, default=0)}

    aggregates: Dict[str, Any] = {}
    aggregates.update(span([r.fields.get("cost") or 0 for r in rows], "cost"))
    aggregates.update(span([r.fields.get("duration") or 0 for r in rows], "duration"))
    aggregates.update(span([r.fields.get("tokens_in") or 0 for r in rows], "tokens_in"))
    aggregates.update(span([r.fields.get("tokens_out") or 0 for r in rows], "tokens_out"))
    totals = [(r.fields.get("tokens_in") or 0) + (r.fields.get("tokens_out") or 0) for r in rows]
    aggregates.update(span(totals, "total_tokens"))
    return aggregates


def _make_handler(emulator: LogsApiEmulator) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "aig-logs-emulator"
        # headers and body go out in two writes; with Nagle on, keep-alive clients stall on
        # delayed ACKs (about 40 ms a request)
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if emulator._consume("dropped_connections"):
                self.close_connection = True
                self.connection.close()
                return
            headers = {key.lower(): value for key, value in self.headers.items()}
            status, extra_headers, payload = emulator.handle(self.command, self.path, headers, body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for key, value in extra_headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = _serve
        do_DELETE = _serve
        do_PATCH = _serve
        do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler
