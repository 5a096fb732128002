"""Drift-proof paging over the Logs API and the forward read with its lookback check.

Offset paging (`page+1`) over a table that changes while it is read skips or repeats rows:
evictions pull rows onto earlier pages, late writes push them onto later ones. So every page is
asked for as page 1 of `created_at >= anchor`, ascending, and the anchor moves to the last row's
`created_at`; rows already seen at the anchor millisecond are dropped by id. Only when a whole
page shares one millisecond does the reader page by offset, and then only inside that millisecond.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Set

from .client import ApiResponseError, LogsApiClient, LogsPage
from .settings import TIE_RESCANS
from .timestamps import format_ms, parse_ms

logger = logging.getLogger(__name__)

Rows = List[Dict[str, Any]]


def created_at_filters(start_ms: int, end_ms: Optional[int] = None) -> List[Dict[str, Any]]:
    """Filters for `start_ms <= created_at < end_ms` (the API has only strict gt and lt)."""
    filters = [{"key": "created_at", "operator": "gt", "value": [format_ms(start_ms - 1)]}]
    if end_ms is not None:
        filters.append({"key": "created_at", "operator": "lt", "value": [format_ms(end_ms)]})
    return filters


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


@dataclass
class LogReader:
    """Reads a `created_at` range in ascending order within a budget of requests."""

    client: LogsApiClient
    per_page: int
    max_requests: int
    requests: int = 0
    cut: bool = False
    """True once the budget stopped a read before it reached its end."""

    @property
    def budget_left(self) -> bool:
        return self.requests < self.max_requests

    def _fetch(self, start_ms: int, end_ms: Optional[int], page: int = 1) -> LogsPage:
        self.requests += 1
        result = self.client.list_logs(created_at_filters(start_ms, end_ms), self.per_page, page)
        for row in result.rows:
            stamp = parse_ms(row["created_at"])
            if stamp < start_ms or (end_ms is not None and stamp >= end_ms):
                # The API answered outside the requested range: it ignored the filters, which
                # Cloudflare does silently for filters it cannot parse.
                raise ApiResponseError(
                    f"The Logs API ignored the created_at filter (log {row.get('id')} at"
                    f" {row['created_at']} is outside [{format_ms(start_ms)}, ...))."
                )
        return result

    def probe(self, start_ms: int, end_ms: int) -> Optional[LogsPage]:
        """The first page of a range, for its `total_count`; None when out of budget."""
        if not self.budget_left:
            self.cut = True
            return None
        return self._fetch(start_ms, end_ms)

    def read(self, start_ms: int, end_ms: Optional[int] = None) -> Iterator[Rows]:
        """Yields every row with `start_ms <= created_at < end_ms` once, oldest first.

        Without `end_ms` it reads up to the newest visible log.
        """
        anchor = start_ms
        seen_at_anchor: Set[str] = set()
        while True:
            if not self.budget_left:
                self.cut = True
                return
            page = self._fetch(anchor, end_ms)
            fresh = [row for row in page.rows if row["id"] not in seen_at_anchor]
            if fresh:
                yield fresh
            if len(page.rows) < self.per_page:
                return
            last_ms = parse_ms(page.rows[-1]["created_at"])
            if last_ms == anchor:
                seen_at_anchor.update(row["id"] for row in page.rows)
                yield from self._read_tie(anchor, seen_at_anchor)
                if self.cut:
                    return
                anchor, seen_at_anchor = anchor + 1, set()
            else:
                anchor = last_ms
                seen_at_anchor = {
                    row["id"] for row in page.rows if parse_ms(row["created_at"]) == last_ms
                }

    def _read_tie(self, stamp_ms: int, seen: Set[str]) -> Iterator[Rows]:
        """All rows of one millisecond holding more than a page, by offset within it.

        Offsets are safe here because the range is a single millisecond; should the API's order
        inside it not be stable, pages are re-read until `total_count` distinct ids were seen.
        """
        for _attempt in range(1 + TIE_RESCANS):
            page_number = 1
            total: Optional[int] = None
            while True:
                if not self.budget_left:
                    self.cut = True
                    return
                self.requests += 1
                page = self.client.list_logs(
                    created_at_filters(stamp_ms, stamp_ms + 1), self.per_page, page_number
                )
                total = page.total_count
                fresh = [row for row in page.rows if row["id"] not in seen]
                seen.update(row["id"] for row in fresh)
                if fresh:
                    yield fresh
                if len(page.rows) < self.per_page:
                    break
                page_number += 1
            if total is None or len(seen) >= total:
                return
            logger.warning(
                "%s holds %s logs but paging returned %s; reading it again",
                format_ms(stamp_ms),
                total,
                len(seen),
            )


@dataclass
class ForwardRead:
    """One forward run: verify the lookback window, re-read what changed, then read new logs.

    The lookback check is what keeps late rows from being lost without re-reading the whole
    window every run. The resource state keeps, for each second of the window, how many logs were
    loaded. One request per window compares that with the API's `total_count`; only sub-windows
    whose counts differ are bisected and re-read. The merge on `id` absorbs every re-read row.
    """

    reader: LogReader
    state: Dict[str, Any]
    lookback_seconds: int
    rows_reread: int = 0
    rows_new_range: int = 0
    newest_ms: Optional[int] = None
    _counts: Dict[int, int] = field(default_factory=dict)

    def pages(self, cursor_ms: Optional[int], initial_ms: int) -> Iterator[Rows]:
        """Pages to load, given the cursor (None on the first run)."""
        self._counts = {int(k): int(v) for k, v in self.state.get("counts", {}).items()}
        complete_from: Optional[int] = self.state.get("complete_from_second")
        if cursor_ms is None:
            read_from_ms = initial_ms
            complete_from = _ceil_div(initial_ms, 1000)
            self._counts = {}
        else:
            cursor_second = cursor_ms // 1000
            read_from_ms = cursor_second * 1000
            window_start = _ceil_div(cursor_ms - self.lookback_seconds * 1000, 1000)
            if complete_from is None:
                complete_from = window_start
                yield from self._reread(window_start, cursor_second)
            else:
                yield from self._reconcile(max(window_start, complete_from), cursor_second)
            if self.reader.cut:
                self._save(cursor_ms, complete_from)
                return
        for second in [s for s in self._counts if s >= read_from_ms // 1000]:
            del self._counts[second]
        newest = cursor_ms
        for rows in self.reader.read(read_from_ms):
            self._count(rows)
            self.rows_new_range += len(rows)
            newest = max([parse_ms(r["created_at"]) for r in rows] + ([newest] if newest else []))
            yield rows
        self.newest_ms = newest
        self._save(newest, complete_from)

    def _count(self, rows: Rows) -> None:
        for row in rows:
            second = parse_ms(row["created_at"]) // 1000
            self._counts[second] = self._counts.get(second, 0) + 1

    def _reconcile(self, start_second: int, end_second: int) -> Iterator[Rows]:
        if start_second >= end_second:
            return
        page = self.reader.probe(start_second * 1000, end_second * 1000)
        if page is None:
            return
        ours = sum(self._counts.get(s, 0) for s in range(start_second, end_second))
        if page.total_count is not None and page.total_count == ours:
            return
        complete = page.total_count is not None and page.total_count <= len(page.rows)
        if complete or page.total_count is None or page.total_count <= 2 * self.reader.per_page:
            if complete:
                self._forget(start_second, end_second)
                self._count(page.rows)
                self.rows_reread += len(page.rows)
                if page.rows:
                    yield page.rows
                return
            yield from self._reread(start_second, end_second)
            return
        if end_second - start_second == 1:
            yield from self._reread(start_second, end_second)
            return
        middle = (start_second + end_second) // 2
        yield from self._reconcile(start_second, middle)
        yield from self._reconcile(middle, end_second)

    def _reread(self, start_second: int, end_second: int) -> Iterator[Rows]:
        if start_second >= end_second:
            return
        self._forget(start_second, end_second)
        for rows in self.reader.read(start_second * 1000, end_second * 1000):
            self._count(rows)
            self.rows_reread += len(rows)
            yield rows

    def _forget(self, start_second: int, end_second: int) -> None:
        for second in range(start_second, end_second):
            self._counts.pop(second, None)

    def _save(self, cursor_ms: Optional[int], complete_from: Optional[int]) -> None:
        if cursor_ms is None:
            self.state["counts"] = {}
            self.state["complete_from_second"] = complete_from
            return
        keep_from = _ceil_div(cursor_ms - self.lookback_seconds * 1000, 1000)
        self.state["counts"] = {str(s): c for s, c in sorted(self._counts.items()) if s >= keep_from}
        self.state["complete_from_second"] = max(complete_from or keep_from, keep_from)
