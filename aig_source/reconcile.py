"""Reconciling a window of one gateway's logs with the table: counts per bucket, bisection of the
buckets that differ, and a read of only the narrowed ranges.

The Logs API answers every list request with the `total_count` of its filters, so one request
of one row counts any `created_at` range. A window whose buckets all agree costs one request a
bucket. A bucket that differs is halved: one request counts the left half (the right half's
count is the bucket's minus it), and only halves that still differ are followed, down to ranges
of at most a page of logs, which are read and compared id by id. One missing log in a bucket of
n logs costs about log2(n / per_page) requests more.

Logs read that the table lacks are loaded (the merge on `id` absorbs the rest). Logs the table
has that the gateway no longer holds (evicted by the gateway's log limit, or deleted) are
counted, never deleted. Counts can hide a difference when, inside one range, as many logs are
missing as are gone; `--refresh` reads the whole window instead.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, Optional, Protocol, Sequence, Set, Tuple

from .client import ApiResponseError, LogsApiClient
from .paging import LogReader, Rows, created_at_filters
from .timestamps import format_ms, parse_ms

FEEDBACK_VALUES = (1, -1)
"""Thumbs up and thumbs down, as the Logs API filters them."""

TableLogs = Sequence[Tuple[int, str]]
"""(created_at in epoch ms, id) of the table's logs in a range, sorted."""


class TableSide(Protocol):
    """What reconcile asks of the warehouse, for one gateway."""

    def bucket_counts(
        self, gateway_id: str, start_ms: int, end_ms: int, bucket_ms: int
    ) -> Dict[int, int]:
        """Logs per bucket (`(created_at - start_ms) // bucket_ms`) in `[start_ms, end_ms)`."""
        ...

    def logs(self, gateway_id: str, start_ms: int, end_ms: int) -> TableLogs:
        """The table's logs in `[start_ms, end_ms)`, sorted by `created_at`."""
        ...

    def record_feedback(
        self, gateway_id: str, start_ms: int, end_ms: int, feedback: Dict[str, int]
    ) -> None:
        """Notes the gateway's feedback in the range, written once the load committed."""
        ...


@dataclass(frozen=True)
class ReconcileWindow:
    """What a reconcile run checks: `[start_ms, end_ms)` in buckets of `bucket_ms`."""

    start_ms: int
    end_ms: int
    bucket_ms: int
    max_requests: int
    max_buckets: int
    refresh: bool = False


@dataclass
class WindowReconcile:
    """One gateway's reconcile of `[start_ms, end_ms)`, within a budget of requests."""

    client: LogsApiClient
    table: TableSide
    gateway_id: str
    per_page: int
    max_requests: int
    refresh: bool = False
    """Read every bucket, not only those whose counts differ (picks up edited fields)."""
    requests: int = 0
    buckets_checked: int = 0
    buckets_differing: int = 0
    missing: int = 0
    """Logs the gateway holds that the table lacked: loaded."""
    gone: int = 0
    """Logs the table holds that the gateway no longer has: kept."""
    reread: int = 0
    """Logs read again (all of a `--refresh`, or the leaves of the bisection)."""
    feedback_requests: int = 0
    checked_until_ms: Optional[int] = None
    """Everything before this is reconciled; None before the first bucket."""
    cut: bool = False
    _missing_ids: Set[str] = field(default_factory=set)

    @property
    def budget_left(self) -> int:
        return self.max_requests - self.requests

    def count(self, start_ms: int, end_ms: int) -> int:
        self.requests += 1
        page = self.client.list_logs(created_at_filters(start_ms, end_ms), per_page=1)
        if page.total_count is None:
            raise ApiResponseError("The Logs API answered without a total_count to reconcile by.")
        return page.total_count

    def buckets(
        self, start_ms: int, end_ms: int, bucket_ms: int, max_buckets: int
    ) -> Iterator[Rows]:
        """Reconciles up to `max_buckets` buckets from `start_ms`; yields the rows to load."""
        counts = self.table.bucket_counts(self.gateway_id, start_ms, end_ms, bucket_ms)
        for index, low in enumerate(range(start_ms, end_ms, bucket_ms)):
            if index >= max_buckets:
                return
            high = min(low + bucket_ms, end_ms)
            if self.budget_left < 1:
                self.cut = True
                return
            if self.refresh:
                yield from self._refresh(low, high)
            else:
                theirs = self.count(low, high)
                ours = counts.get(index, 0)
                if theirs != ours:
                    self.buckets_differing += 1
                    stored = self.table.logs(self.gateway_id, low, high)
                    yield from self._narrow(low, high, theirs, stored)
            if self.cut:
                return
            self.buckets_checked += 1
            self.checked_until_ms = high

    def _narrow(self, low: int, high: int, theirs: int, stored: TableLogs) -> Iterator[Rows]:
        ours = _count_in(stored, low, high)
        if theirs == ours:
            return
        if theirs <= self.per_page or high - low <= 1:
            yield from self._compare(low, high, stored)
            return
        if self.budget_left < 1:
            self.cut = True
            return
        middle = (low + high) // 2
        left = self.count(low, middle)
        yield from self._narrow(low, middle, left, stored)
        if not self.cut:
            yield from self._narrow(middle, high, theirs - left, stored)

    def _compare(self, low: int, high: int, stored: TableLogs) -> Iterator[Rows]:
        """Reads a narrowed range and loads what the table lacks."""
        ours = {log_id for stamp, log_id in stored if low <= stamp < high}
        seen: Set[str] = set()
        for rows in self._read(low, high):
            seen.update(row["id"] for row in rows)
            new = [row for row in rows if row["id"] not in ours]
            self.missing += len(new)
            if new:
                yield new
        if not self.cut:
            self.gone += len(ours - seen)

    def _refresh(self, low: int, high: int) -> Iterator[Rows]:
        stored = self.table.logs(self.gateway_id, low, high)
        ours = {log_id for _, log_id in stored}
        seen: Set[str] = set()
        for rows in self._read(low, high):
            seen.update(row["id"] for row in rows)
            self.missing += sum(row["id"] not in ours for row in rows)
            yield rows
        if not self.cut:
            self.gone += len(ours - seen)

    def _read(self, low: int, high: int) -> Iterator[Rows]:
        reader = LogReader(self.client, self.per_page, self.budget_left)
        try:
            for rows in reader.read(low, high):
                self.reread += len(rows)
                yield rows
        finally:
            self.requests += reader.requests
            self.cut = self.cut or reader.cut or reader.incomplete is not None

    def feedback(self, start_ms: int, end_ms: int) -> Optional[Dict[str, int]]:
        """Every log of the range with feedback, and its value (1 or -1), by id; None when the
        budget ran out first. The list endpoint never returns feedback, only filters by it, so
        this costs a request per page of logs with feedback, not per page of the range."""
        found: Dict[str, int] = {}
        for value in FEEDBACK_VALUES:
            if self.budget_left < 1:
                self.cut = True
                return None
            reader = LogReader(
                self.client,
                self.per_page,
                self.budget_left,
                filters=[{"key": "feedback", "operator": "eq", "value": [value]}],
            )
            for rows in reader.read(start_ms, end_ms):
                found.update((row["id"], value) for row in rows)
            self.requests += reader.requests
            self.feedback_requests += reader.requests
            if reader.cut or reader.incomplete is not None:
                self.cut = True
                return None
        return found

    def outcome(self) -> Dict[str, Any]:
        """The gateway's `last_run` figures."""
        return {
            "buckets_checked": self.buckets_checked,
            "buckets_differing": self.buckets_differing,
            "logs_missing_loaded": self.missing,
            "logs_gone_kept": self.gone,
            "logs_reread": self.reread,
            "reconcile_requests": self.requests,
            "feedback_requests": self.feedback_requests,
            "checked_until": None
            if self.checked_until_ms is None
            else format_ms(self.checked_until_ms),
            "budget_reached": self.cut,
        }


def _count_in(stored: TableLogs, low: int, high: int) -> int:
    stamps = [stamp for stamp, _ in stored]
    return bisect_left(stamps, high) - bisect_left(stamps, low)


def window_of(progress: Dict[str, Any], start_ms: int, end_ms: int) -> Tuple[int, int, int]:
    """(window start, window end, where to continue) for a gateway: a run of the same window
    start that an earlier run (or chunk) left unfinished continues where it stopped, up to that
    run's end; any other run starts a new window."""
    stored = progress.get("window") or {}
    if stored.get("start") is not None and parse_ms(stored["start"]) == start_ms:
        stored_end = parse_ms(stored["end"])
        checked = stored.get("checked_until")
        checked_ms = parse_ms(checked) if checked else start_ms
        if checked_ms < stored_end:
            return start_ms, stored_end, checked_ms
    return start_ms, end_ms, start_ms
