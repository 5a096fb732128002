"""In-memory log store of the emulator: rows, visibility, eviction and the filter grammar."""

from __future__ import annotations

import bisect
import json
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from ..timestamps import format_ms, parse_ms

# Union of the filter keys seen in the 2026 docs site, the 2026 schema and the Python SDK
# (reference §2.3); anything else is rejected with 7001 like the real API.
FILTER_KEYS = frozenset(
    {
        "id",
        "created_at",
        "request_content_type",
        "response_content_type",
        "request_type",
        "success",
        "cached",
        "provider",
        "model",
        "model_type",
        "cost",
        "tokens",
        "tokens_in",
        "tokens_out",
        "duration",
        "feedback",
        "event_id",
        "metadata.key",
        "metadata.value",
        "authentication",
        "wholesale",
        "compatibilityMode",
        "dlp_action",
        "user_agent",
        "prompts.prompt_id",
        "prompts.version_id",
    }
)
FILTER_OPERATORS = frozenset({"eq", "neq", "contains", "lt", "gt"})
ORDER_BY_FIELDS = ("created_at", "provider", "model", "model_type", "success", "cached")
DELETE_ORDER_BY_FIELDS = (
    *ORDER_BY_FIELDS,
    "cost",
    "tokens_in",
    "tokens_out",
    "duration",
    "feedback",
)
LOG_MANAGEMENT_STRATEGIES = ("STOP_INSERTING", "DELETE_OLDEST")


@dataclass
class StoredLog:
    """One log row as the gateway keeps it, plus the emulator's bookkeeping."""

    id: str
    created_at_ms: int
    fields: Dict[str, Any]
    visible_at_ms: int = 0
    request_body: Optional[Dict[str, Any]] = None
    response_body: Optional[Dict[str, Any]] = None
    feedback: Optional[int] = None
    score: Optional[float] = None
    event_id: Optional[str] = None

    def sort_key(self) -> Tuple[int, str]:
        return (self.created_at_ms, self.id)

    def list_item(self) -> Dict[str, Any]:
        """The row as the list endpoint serves it."""
        item: Dict[str, Any] = {"id": self.id, "created_at": format_ms(self.created_at_ms)}
        item.update(self.fields)
        return item

    def detail_item(self) -> Dict[str, Any]:
        """The row as the detail endpoint serves it (list fields plus heads and sizes)."""
        item = self.list_item()
        request_text = "" if self.request_body is None else str(self.request_body)
        response_text = "" if self.response_body is None else str(self.response_body)
        item.update(
            {
                "request_head": request_text[:256],
                "request_head_complete": len(request_text) <= 256,
                "request_size": len(request_text),
                "response_head": response_text[:256],
                "response_head_complete": len(response_text) <= 256,
                "response_size": len(response_text),
            }
        )
        return item


class FilterError(ValueError):
    """A filter the real API would reject with 400 / 7001."""


@dataclass(frozen=True)
class LogFilter:
    key: str
    operator: str
    values: Tuple[Any, ...]


def parse_filters(raw_values: Sequence[str]) -> List[LogFilter]:
    """Parses `filters` query values.

    The documented form is one JSON array in a single parameter; the predecessor Worker sent one
    JSON object per repeated `filters` parameter, so both are accepted (reference §14).
    """
    parsed: List[LogFilter] = []
    for raw in raw_values:
        try:
            decoded = json.loads(raw)
        except ValueError as exc:
            raise FilterError(f"filters is not valid JSON: {exc}") from exc
        elements = decoded if isinstance(decoded, list) else [decoded]
        for element in elements:
            parsed.append(_parse_filter_element(element))
    return parsed


def _parse_filter_element(element: Any) -> LogFilter:
    if not isinstance(element, dict):
        raise FilterError("each filter must be an object with key, operator and value")
    missing = [name for name in ("key", "operator", "value") if name not in element]
    if missing:
        raise FilterError(f"filter is missing required field(s): {', '.join(missing)}")
    key, operator, value = element["key"], element["operator"], element["value"]
    if key not in FILTER_KEYS:
        raise FilterError(f"Invalid enum value. Expected one of the filter keys, received '{key}'")
    if operator not in FILTER_OPERATORS:
        raise FilterError(
            f"Invalid enum value. Expected 'eq' | 'neq' | 'contains' | 'lt' | 'gt', received"
            f" '{operator}'"
        )
    if not isinstance(value, list):
        raise FilterError("filter value must be an array")
    if key == "created_at":
        # kept as epoch ms, so that matching rows compares integers
        stamps = []
        for entry in value:
            if not isinstance(entry, str):
                raise FilterError("created_at filter values must be ISO 8601 strings")
            try:
                stamps.append(parse_ms(entry))
            except ValueError as exc:
                raise FilterError(f"invalid created_at value '{entry}'") from exc
        return LogFilter(key=key, operator=operator, values=tuple(stamps))
    return LogFilter(key=key, operator=operator, values=tuple(value))


def _field_values(log: StoredLog, key: str) -> List[Any]:
    """Values a filter key addresses on one row (a list, because metadata has several)."""
    if key == "created_at":
        return [log.created_at_ms]
    if key == "id":
        return [log.id]
    if key == "tokens":
        tokens_in = log.fields.get("tokens_in") or 0
        tokens_out = log.fields.get("tokens_out") or 0
        return [tokens_in + tokens_out]
    if key == "feedback":
        return [log.feedback]
    if key == "event_id":
        return [log.event_id]
    if key in ("metadata.key", "metadata.value"):
        metadata = _metadata_dict(log)
        if key == "metadata.key":
            return list(metadata.keys())
        return [str(v).lower() if isinstance(v, bool) else str(v) for v in metadata.values()]
    return [log.fields.get(key)]


def _metadata_dict(log: StoredLog) -> Dict[str, Any]:
    raw = log.fields.get("metadata")
    if not raw:
        return {}
    try:
        decoded = json.loads(raw)
    except ValueError:
        return {}
    return decoded if isinstance(decoded, dict) else {}


def _compare(operator: str, actual: Any, expected: Any) -> bool:
    if operator == "eq":
        return bool(actual == expected)
    if operator == "neq":
        return bool(actual != expected)
    if operator == "contains":
        return actual is not None and str(expected).lower() in str(actual).lower()
    if actual is None or expected is None:
        return False
    try:
        if operator == "lt":
            return bool(actual < expected)
        return bool(actual > expected)
    except TypeError:
        return False


def matches(log: StoredLog, filters: Iterable[LogFilter]) -> bool:
    """AND across filters, OR across the values of one filter."""
    for log_filter in filters:
        actuals = _field_values(log, log_filter.key)
        if log_filter.operator == "neq":
            hit = all(
                _compare("neq", actual, expected)
                for actual in actuals
                for expected in log_filter.values
            )
        else:
            hit = any(
                _compare(log_filter.operator, actual, expected)
                for actual in actuals
                for expected in log_filter.values
            )
        if not hit:
            return False
    return True


def _created_at_bounds(filters: Sequence[LogFilter]) -> Tuple[Optional[int], Optional[int]]:
    """Tightest single-valued created_at gt/lt bounds, used to narrow the scan by bisection."""
    lower: Optional[int] = None
    upper: Optional[int] = None
    for log_filter in filters:
        if log_filter.key != "created_at" or len(log_filter.values) != 1:
            continue
        value = int(log_filter.values[0])
        if log_filter.operator == "gt":
            lower = value if lower is None else max(lower, value)
        elif log_filter.operator == "lt":
            upper = value if upper is None else min(upper, value)
        elif log_filter.operator == "eq":
            lower = value - 1 if lower is None else max(lower, value - 1)
            upper = value + 1 if upper is None else min(upper, value + 1)
    return lower, upper


@dataclass
class LogStore:
    """Thread-safe, sorted store of a gateway's logs with capacity management."""

    now_ms: Callable[[], int]
    capacity: Optional[int] = None
    strategy: str = "DELETE_OLDEST"
    _logs: List[StoredLog] = field(default_factory=list)
    _keys: List[Tuple[int, str]] = field(default_factory=list)
    _by_id: Dict[str, StoredLog] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    evicted: int = 0
    rejected: int = 0

    def __len__(self) -> int:
        return len(self._logs)

    def add(self, logs: Iterable[StoredLog]) -> int:
        """Inserts rows, then enforces the capacity; returns how many were stored."""
        stored = 0
        with self._lock:
            for log in logs:
                if log.id in self._by_id:
                    continue
                if (
                    self.capacity is not None
                    and self.strategy == "STOP_INSERTING"
                    and len(self._logs) >= self.capacity
                ):
                    self.rejected += 1
                    continue
                key = log.sort_key()
                position = bisect.bisect_left(self._keys, key)
                self._keys.insert(position, key)
                self._logs.insert(position, log)
                self._by_id[log.id] = log
                stored += 1
                self._evict_over_capacity()
        return stored

    def _evict_over_capacity(self) -> None:
        if self.capacity is None or self.strategy != "DELETE_OLDEST":
            return
        overflow = len(self._logs) - self.capacity
        if overflow <= 0:
            return
        for log in self._logs[:overflow]:
            del self._by_id[log.id]
        del self._logs[:overflow]
        del self._keys[:overflow]
        self.evicted += overflow

    def snapshot(self) -> List[StoredLog]:
        """Every stored row, visible or not, oldest first."""
        with self._lock:
            return list(self._logs)

    def get(self, log_id: str) -> Optional[StoredLog]:
        with self._lock:
            log = self._by_id.get(log_id)
            if log is None or log.visible_at_ms > self.now_ms():
                return None
            return log

    def query(
        self,
        filters: Sequence[LogFilter],
        order_by: str = "created_at",
        descending: bool = True,
    ) -> List[StoredLog]:
        """Visible rows matching the filters in the requested order (ties broken by id)."""
        now = self.now_ms()
        lower, upper = _created_at_bounds(filters)
        with self._lock:
            start = 0 if lower is None else bisect.bisect_right(self._keys, (lower, "\uffff"))
            stop = len(self._logs) if upper is None else bisect.bisect_left(self._keys, (upper, ""))
            # single-valued created_at gt/lt/eq are fully applied by the bisection above
            rest = [
                f
                for f in filters
                if not (f.key == "created_at" and len(f.values) == 1 and f.operator != "neq")
            ]
            selected = [
                log
                for log in self._logs[start:stop]
                if log.visible_at_ms <= now and (not rest or matches(log, rest))
            ]
        if order_by != "created_at":

            def sort_key(log: StoredLog) -> Tuple[Any, ...]:
                value = log.fields.get(order_by)
                return (value is not None, value if value is not None else 0, log.id)

            selected.sort(key=sort_key)
        if descending:
            selected.reverse()
        return selected

    def delete(self, logs: Sequence[StoredLog]) -> int:
        with self._lock:
            doomed = {log.id for log in logs}
            kept = [log for log in self._logs if log.id not in doomed]
            removed = len(self._logs) - len(kept)
            self._logs = kept
            self._keys = [log.sort_key() for log in kept]
            for log_id in doomed:
                self._by_id.pop(log_id, None)
            return removed

    def oldest_and_newest(self) -> Tuple[Optional[StoredLog], Optional[StoredLog]]:
        with self._lock:
            if not self._logs:
                return None, None
            return self._logs[0], self._logs[-1]
