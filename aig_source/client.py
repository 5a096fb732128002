"""HTTP client of the AI Gateway Logs API: auth, retries, error mapping and request counting."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple
from urllib.parse import urlsplit

from dlt.common.configuration import resolve_configuration
from dlt.common.configuration.specs import RuntimeConfiguration
from dlt.common.json import json as dlt_json
from dlt.sources.helpers.requests import Client
from requests import RequestException, Response, Session

from .ratelimit import PacedAdapter, RequestPacer
from .settings import (
    ACCOUNT_TOKEN_VERIFY_PATH,
    DEFAULT_API_BASE_URL,
    GATEWAY_LIST_ATTEMPTS,
    GATEWAY_PATH,
    GATEWAYS_PATH,
    GATEWAYS_PER_PAGE,
    LOGPUSH_FIELDS_PATH,
    LOGS_PATH,
    SOURCE_SECTION,
    TOKEN_VERIFY_PATH,
)

_SERVER_ERROR_STATUSES = tuple(range(500, 600))


SECRET_SETTINGS = frozenset({"api_token", "private_key", "credentials"})
"""Settings that belong in `.dlt/secrets.toml`."""


def config_hint(key: str, secret: bool = False, section: str = SOURCE_SECTION) -> str:
    """How a user sets one setting of a source (`aig_source`, or `aig_logpush`), in both the
    environment and the TOML form."""
    toml_file = ".dlt/secrets.toml" if secret else ".dlt/config.toml"
    env_name = f"SOURCES__{section.upper()}__{key.upper()}"
    return f"{env_name} (or {key} under [sources.{section}] in {toml_file})"


class AigSourceError(Exception):
    """An error the pipeline reports as one line; the message never carries a secret."""


def one_line(error: BaseException) -> str:
    """An error as one line: this project's own message, else the type and its first line
    (tokens travel in headers, so no exception text carries one)."""
    if isinstance(error, AigSourceError):
        return str(error)
    first_line = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first_line}"


class ApiAuthError(AigSourceError):
    pass


class ApiNotFoundError(AigSourceError):
    pass


class GatewayNotFoundError(ApiNotFoundError):
    """The account has no gateway of that id (deleted, or never created)."""


class ApiRateLimitedError(AigSourceError):
    pass


class ApiUnavailableError(AigSourceError):
    pass


class ApiResponseError(AigSourceError):
    pass


@dataclass
class LogsPage:
    """One page of the list endpoint."""

    rows: List[Dict[str, Any]]
    total_count: Optional[int]


_NOT_JSON = object()


def _json_body(response: Response) -> Optional[Any]:
    """The decoded body, or None when it is not JSON; decoded once per response, since the
    retry check for truncated bodies decodes it before the caller does."""
    body = response.__dict__.get("_aig_json", None)
    if body is None:
        try:
            # orjson, several times faster than requests' decoder; the latter still gets what
            # orjson refuses but JSON allows (integers beyond 64 bits, another encoding)
            body = dlt_json.loadb(response.content)
        except ValueError:
            try:
                body = response.json()
            except ValueError:
                body = _NOT_JSON
        response.__dict__["_aig_json"] = body
    return None if body is _NOT_JSON else body


def _retry_after_seconds(response: Response) -> Optional[float]:
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        return None


def _describe_body(response: Response) -> str:
    """What came back, briefly, for an answer that is not Cloudflare's JSON envelope."""
    kind = response.headers.get("content-type", "no content type").split(";")[0]
    text = " ".join(response.text.split())[:60]
    return f"{kind}: {text!r}" if text else f"{kind}, empty body"


def _first_error(body: Any) -> Dict[str, Any]:
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return errors[0]
    return {}


class LogsApiClient:
    """Calls the Logs API of one gateway through dlt's retrying `requests` client.

    Retries follow dlt's `[runtime]` settings (`request_max_attempts`, `request_backoff_factor`,
    `request_max_retry_delay`, `request_timeout`): 5xx answers, dropped connections, timeouts and
    truncated JSON bodies are retried with exponential backoff. A 429 is retried after its
    `retry-after` only when that wait fits within `request_max_retry_delay`; Cloudflare blocks a
    token for 300 s after its limit is hit, and a run should fail fast rather than hammer it.
    """

    def __init__(
        self,
        api_base_url: str,
        account_id: str,
        gateway_id: str,
        api_token: str,
        pacer: Optional[RequestPacer] = None,
    ) -> None:
        self.api_base_url = api_base_url.rstrip("/")
        self.account_id = account_id
        self.gateway_id = gateway_id
        self.pacer = pacer
        self._api_token = api_token
        self.requests_made = 0
        self.rate_limited = 0
        self._http = Client(
            raise_for_status=False,
            status_codes=_SERVER_ERROR_STATUSES,
            retry_condition=[self._retry_rate_limited, self._retry_malformed],
            session_attrs={
                "headers": {
                    "Authorization": f"Bearer {api_token}",
                    "Accept": "application/json",
                    "User-Agent": "aig-logs-dlt",
                },
                "hooks": {"response": [self._count_response]},
            },
        )
        runtime = resolve_configuration(RuntimeConfiguration())
        self._http.update_from_config(runtime)
        self.max_retry_delay = float(runtime.request_max_retry_delay)
        self.max_attempts = int(runtime.request_max_attempts)

    def for_gateway(self, gateway_id: str) -> LogsApiClient:
        """A client of another gateway of the same account, through the same token's pacer,
        with its own request counts (one per gateway, so concurrent readers count their own)."""
        return LogsApiClient(
            self.api_base_url, self.account_id, gateway_id, self._api_token, self.pacer
        )

    @property
    def logs_url(self) -> str:
        path = LOGS_PATH.format(account_id=self.account_id, gateway_id=self.gateway_id)
        return self.api_base_url + path

    def _count_response(self, response: Response, *args: Any, **kwargs: Any) -> Response:
        self.requests_made += 1
        if response.status_code == 429:
            self.rate_limited += 1
            wait = _retry_after_seconds(response)
            if self.pacer is not None and wait is not None:
                self.pacer.pause(wait)
        return response

    def _retry_rate_limited(
        self, response: Optional[Response], exc: Optional[BaseException]
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        wait = _retry_after_seconds(response)
        return wait is None or wait <= self.max_retry_delay

    @staticmethod
    def _retry_malformed(response: Optional[Response], exc: Optional[BaseException]) -> bool:
        return response is not None and response.status_code == 200 and _json_body(response) is None

    def list_logs(
        self,
        filters: Sequence[Dict[str, Any]],
        per_page: int,
        page: int = 1,
        descending: bool = False,
    ) -> LogsPage:
        """One page of logs ordered by `created_at`.

        `filters` go out as one JSON-encoded array in a single `filters` parameter: the form the
        API honours. The SDKs' flattened `filters.key=` form is silently ignored by Cloudflare.
        """
        params: Dict[str, Any] = {
            "per_page": per_page,
            "page": page,
            "order_by": "created_at",
            "order_by_direction": "desc" if descending else "asc",
        }
        if filters:
            params["filters"] = json.dumps(list(filters), separators=(",", ":"))
        body = self._get(self.logs_url, params)
        result = body.get("result")
        if not isinstance(result, list):
            raise ApiResponseError(
                f"Unexpected Logs API response from {self.api_base_url}: 'result' is not a list"
            )
        info = body.get("result_info") or {}
        total = info.get("total_count") if isinstance(info, dict) else None
        return LogsPage(rows=result, total_count=total if isinstance(total, int) else None)

    def verify_token(self) -> Dict[str, Any]:
        """The token's id and status (`active` when usable).

        User-owned tokens verify at `/user/tokens/verify`, account-owned ones (Cloudflare's
        recommendation for automation) only at `/accounts/{id}/tokens/verify`: both are tried.
        """
        try:
            return self._result(self._get(self.api_base_url + TOKEN_VERIFY_PATH, {}))
        except ApiAuthError:
            path = ACCOUNT_TOKEN_VERIFY_PATH.format(account_id=self.account_id)
            return self._result(self._get(self.api_base_url + path, {}))

    def logpush_dataset_fields(self) -> Dict[str, Any]:
        """The fields of the Logpush dataset `ai_gateway_events`: name to description."""
        path = LOGPUSH_FIELDS_PATH.format(account_id=self.account_id)
        return self._result(self._get(self.api_base_url + path, {}))

    def get_gateway(self) -> Dict[str, Any]:
        """The gateway's settings, among them `collect_logs` and `log_management(_strategy)`."""
        path = GATEWAY_PATH.format(account_id=self.account_id, gateway_id=self.gateway_id)
        return self._result(self._get(self.api_base_url + path, {}))

    def list_gateways(self) -> List[Dict[str, Any]]:
        """Every gateway of the account, paged to the end.

        The list is paged by offset and its order is not documented, so a gateway created or
        deleted while it is paged could shift another past a page boundary: when the total
        changes between pages, or the ids do not add up to it, the list is read again.
        """
        for _ in range(GATEWAY_LIST_ATTEMPTS):
            gateways, consistent = self._list_gateways_once()
            if consistent:
                return gateways
        raise ApiResponseError(
            f"The gateway list of account {self.account_id} kept changing while it was read"
            f" ({GATEWAY_LIST_ATTEMPTS} attempts); the next run tries again."
        )

    def _list_gateways_once(self) -> Tuple[List[Dict[str, Any]], bool]:
        url = self.api_base_url + GATEWAYS_PATH.format(account_id=self.account_id)
        by_id: Dict[str, Dict[str, Any]] = {}
        totals: Set[Optional[int]] = set()
        page = 1
        while True:
            body = self._get(url, {"page": page, "per_page": GATEWAYS_PER_PAGE})
            result = body.get("result")
            if not isinstance(result, list):
                raise ApiResponseError(
                    f"Unexpected Cloudflare API response from {self.api_base_url}: the gateway"
                    " list's 'result' is not a list"
                )
            for item in result:
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    by_id[item["id"]] = item
            info = body.get("result_info") or {}
            total = info.get("total_count") if isinstance(info, dict) else None
            totals.add(total)
            if not result or not isinstance(total, int) or page * GATEWAYS_PER_PAGE >= total:
                break
            page += 1
        if len(totals) != 1:
            return list(by_id.values()), False
        total = totals.pop()
        return list(by_id.values()), total is None or total == len(by_id)

    def _result(self, body: Dict[str, Any]) -> Dict[str, Any]:
        result = body.get("result")
        if not isinstance(result, dict):
            raise ApiResponseError(
                f"Unexpected Cloudflare API response from {self.api_base_url}: 'result' is not an"
                " object"
            )
        return result

    def _session(self) -> Session:
        """dlt's retrying session (one per thread), with the pacer mounted for this API."""
        session = self._http.session
        if session.trust_env:
            # requests reads the proxy and CA settings from the environment on every request,
            # scanning all of it (a tenth of a fleet run's CPU); they are read once per session
            settings = session.merge_environment_settings(self.api_base_url, {}, None, None, None)
            session.proxies.update(settings["proxies"])
            session.verify, session.cert = settings["verify"], settings["cert"]
            session.trust_env = False
        adapter = session.get_adapter(url=self.api_base_url)
        if self.pacer is not None and not isinstance(adapter, PacedAdapter):
            session.mount(self.api_base_url, PacedAdapter(self.pacer))
        return session

    def _get(self, url: str, params: Dict[str, Any]) -> Dict[str, Any]:
        try:
            response = self._session().get(url, params=params)
        except RequestException as exc:
            raise ApiUnavailableError(
                f"Cannot reach the Cloudflare API at {self.api_base_url} after"
                f" {self.max_attempts} attempts ({type(exc).__name__}). Check the network and"
                f" {config_hint('api_base_url')}."
            ) from None
        body = _json_body(response)
        if response.status_code == 200 and isinstance(body, dict):
            return body
        raise self._error_for(response, body)

    def _error_for(self, response: Response, body: Any) -> AigSourceError:
        status = response.status_code
        error = _first_error(body)
        code = error.get("code")
        message = error.get("message", "")
        detail = f"HTTP {status}" + (f", code {code}: {message}" if code else "")
        if status == 200:
            return ApiResponseError(
                f"The Cloudflare API at {self.api_base_url} kept answering with malformed JSON"
                f" ({self.max_attempts} attempts)."
            )
        if status in (401, 403) or code in (9106, 10000):
            return ApiAuthError(
                f"Cloudflare rejected the API token ({detail}). Set"
                f" {config_hint('api_token', secret=True)}"
                f" to a token with the 'AI Gateway Read' permission on account {self.account_id}."
            )
        if status == 404 and code == 7003:
            return ApiNotFoundError(
                f"Cloudflare account '{self.account_id}' was not found ({detail}). Check"
                f" {config_hint('account_id')}."
            )
        path = urlsplit(response.url).path
        gateway_path = GATEWAY_PATH.format(account_id=self.account_id, gateway_id=self.gateway_id)
        if status == 404 and code == 7002 and gateway_path in path:
            return GatewayNotFoundError(
                f"AI Gateway '{self.gateway_id}' was not found in account {self.account_id}"
                f" ({detail}). Check {config_hint('gateway_id')}."
            )
        if status == 404:
            answer = detail if code else f"HTTP 404, {_describe_body(response)}"
            return ApiNotFoundError(
                f"The Cloudflare API at {self.api_base_url} has no {path} ({answer}): it is not"
                f" Cloudflare's v4 API, or not all of it. Check {config_hint('api_base_url')};"
                f" Cloudflare's is {DEFAULT_API_BASE_URL}."
            )
        if status == 429:
            wait = _retry_after_seconds(response)
            wait_text = f"blocked for {wait:.0f} s" if wait is not None else "rate limited"
            return ApiRateLimitedError(
                f"Cloudflare rate limit hit ({detail}); the token is {wait_text}, longer than this"
                f" run may wait ({self.max_retry_delay:.0f} s, RUNTIME__REQUEST_MAX_RETRY_DELAY)."
                " Nothing was lost: the next run resumes from the same cursor."
            )
        if status >= 500:
            return ApiUnavailableError(
                f"The Cloudflare API kept failing ({detail}) after {self.max_attempts} attempts."
                " Nothing was lost: the next run resumes from the same cursor."
            )
        return AigSourceError(f"The Cloudflare API refused the request ({detail}).")
