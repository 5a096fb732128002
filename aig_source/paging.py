"""Drift-proof paging over the Logs API and the forward read with its lookback check.

Offset paging (`page+1`) over a table that changes while it is read skips or repeats rows:
evictions pull rows onto earlier pages, late writes push them onto later ones. So every page is
asked for as page 1 of the rest of the range, and the range's edge moves to the last row's
`created_at` (keyset re-anchoring); rows already seen at the edge millisecond are dropped by id.
Only when a whole page shares one millisecond does the reader page by offset, and then only
inside that millisecond.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

from .client import ApiResponseError, LogsApiClient, LogsPage
from .settings import TIE_IDLE_PASSES, TIE_MAX_PASSES
from .timestamps import format_ms, parse_ms

logger = logging.getLogger(__name__)

Rows = List[Dict[str, Any]]


def created_at_filters(
    start_ms: Optional[int], end_ms: Optional[int] = None
) -> List[Dict[str, Any]]:
    """Filters for `start_ms <= created_at < end_ms` (the API has only strict gt and lt)."""
    filters = []
    if start_ms is not None:
        filters.append({"key": "created_at", "operator": "gt", "value": [format_ms(start_ms - 1)]})
    if end_ms is not None:
        filters.append({"key": "created_at", "operator": "lt", "value": [format_ms(end_ms)]})
    return filters


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


@dataclass
class LogReader:
    """Reads a `created_at` range, in either direction, within a budget of requests and time.

    Ascending reads serve the forward resource (new logs arrive above them and cannot shift
    them); descending reads serve the backfill (evictions happen below them and cannot shift
    them either).
    """

    client: LogsApiClient
    per_page: int
    max_requests: int
    deadline: Optional[float] = None
    """`time.monotonic()` after which no further request starts."""
    requests: int = 0
    cut: bool = False
    """True once the budget stopped a read before it reached its end."""
    exhausted: bool = False
    """True once a read reached the end of its range (a short page)."""
    last_total: Optional[int] = None
    """`total_count` of the latest request."""
    tie_cut: Optional[Tuple[int, int]] = None
    """(millisecond, next page or -1 when read to its end) when the budget stopped a read in or
    right after an over-full millisecond."""
    incomplete: Optional[Tuple[int, int, int]] = None
    """(millisecond, its `total_count`, distinct ids read) when an over-full millisecond could not
    be read completely: the read stopped there, and the next run reads it again."""
    range_total: Optional[int] = None
    """`total_count` of everything `read` was asked for (its edge millisecond included when it
    resumed inside one), once its first request of the rest of the range was answered."""
    filters: List[Dict[str, Any]] = field(default_factory=list)
    """Filters every request carries besides the `created_at` range (`feedback eq 1`)."""

    def incomplete_note(self) -> Optional[Dict[str, Any]]:
        """The incomplete millisecond, for the run's `last_run` state and its summary."""
        if self.incomplete is None:
            return None
        stamp, total, seen = self.incomplete
        return {"at": format_ms(stamp), "total_count": total, "read": seen}

    @property
    def budget_left(self) -> bool:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return False
        return self.requests < self.max_requests

    def _fetch(
        self,
        start_ms: Optional[int],
        end_ms: Optional[int],
        page: int = 1,
        descending: bool = False,
    ) -> LogsPage:
        self.requests += 1
        filters = created_at_filters(start_ms, end_ms) + self.filters
        result = self.client.list_logs(filters, self.per_page, page, descending=descending)
        self.last_total = result.total_count
        for row in result.rows:
            stamp = parse_ms(row["created_at"])
            if (start_ms is not None and stamp < start_ms) or (
                end_ms is not None and stamp >= end_ms
            ):
                # The API answered outside the requested range: it ignored the filters, which
                # Cloudflare does silently for filters it cannot parse.
                raise ApiResponseError(
                    f"The Logs API ignored the created_at filter (log {row.get('id')} at"
                    f" {row['created_at']} is outside the range asked for)."
                )
        return result

    def probe(
        self, start_ms: Optional[int], end_ms: Optional[int], descending: bool = False
    ) -> Optional[LogsPage]:
        """The first page of a range, for its `total_count`; None when out of budget."""
        if not self.budget_left:
            self.cut = True
            return None
        return self._fetch(start_ms, end_ms, descending=descending)

    def read(
        self,
        start_ms: Optional[int],
        end_ms: Optional[int] = None,
        tie_page: int = 0,
        descending: bool = False,
    ) -> Iterator[Rows]:
        """Yields every row with `start_ms <= created_at < end_ms` once, in `created_at` order.

        An open end reads up to the newest visible log (ascending) or down to the oldest
        (descending). `tie_page` resumes the over-full millisecond at the range's starting edge
        (`start_ms` ascending, `end_ms - 1` descending) from that page, where an earlier run's
        budget stopped; -1 means that millisecond was read to its end.
        """
        low, high = start_ms, end_ms
        seen_at_edge: Set[str] = set()
        edge_total = 0
        self.range_total = None
        # Where to resume should the budget end right after an over-full millisecond: past it,
        # so that the next run does not read it all again.
        after_tie: Optional[Tuple[int, int]] = None
        if tie_page:
            edge = low if not descending else (None if high is None else high - 1)
            if edge is None:
                raise ValueError("an over-full millisecond is resumed at a bounded edge")
            if tie_page > 1:
                yield from self._read_tie(edge, seen_at_edge, tie_page, descending, verify=False)
                if self.cut:
                    return
                edge_total = self.last_total or 0
            after_tie = (edge, -1)
            low, high = (low, edge) if descending else (edge + 1, high)
        while True:
            if not self.budget_left:
                self.cut, self.tie_cut = True, after_tie
                return
            page = self._fetch(low, high, descending=descending)
            if self.range_total is None and page.total_count is not None:
                self.range_total = edge_total + page.total_count
            after_tie = None
            fresh = [row for row in page.rows if row["id"] not in seen_at_edge]
            if fresh:
                yield fresh
            if len(page.rows) < self.per_page:
                self.exhausted = True
                return
            last_ms = parse_ms(page.rows[-1]["created_at"])
            edge = (high - 1) if descending and high is not None else low
            if parse_ms(page.rows[0]["created_at"]) == last_ms:
                # A whole page in one millisecond: it is page 1 of that millisecond, and keyset
                # re-anchoring cannot get past it, so page by offset inside it.
                seen = seen_at_edge if last_ms == edge else set()
                seen.update(row["id"] for row in page.rows)
                yield from self._read_tie(last_ms, seen, 2, descending)
                if self.cut or self.incomplete:
                    return
                after_tie, seen_at_edge = (last_ms, -1), set()
                low, high = (low, last_ms) if descending else (last_ms + 1, high)
            else:
                seen_at_edge = {
                    row["id"] for row in page.rows if parse_ms(row["created_at"]) == last_ms
                }
                low, high = (low, last_ms + 1) if descending else (last_ms, high)

    def _read_tie(
        self,
        stamp_ms: int,
        seen: Set[str],
        first_page: int,
        descending: bool,
        verify: bool = True,
    ) -> Iterator[Rows]:
        """The rest of one millisecond holding more than a page, by offset within it.

        Offsets are safe here because the range is a single millisecond. Should the API's order
        inside it not be stable, pages overlap and miss ids, so it is read again from page 1 for
        as long as passes still find new ids (`TIE_IDLE_PASSES` passes in a row that find none
        end it), until `total_count` distinct ids were seen
        (`verify`; off when resuming a later run, which no longer knows the ids), at most
        `TIE_MAX_PASSES` times. A millisecond still incomplete stops the read there
        (`incomplete`), so no cursor moves past it.
        """
        page_number = first_page
        idle_passes = 0
        for attempt in range(TIE_MAX_PASSES):
            total: Optional[int] = None
            found_before = len(seen)
            while True:
                if not self.budget_left:
                    self.cut = True
                    # a later run resumes a first pass at its next page; a cut re-scan cannot
                    # be resumed by offset, so the next run reads the millisecond again
                    self.tie_cut = (stamp_ms, page_number) if attempt == 0 else None
                    return
                page = self._fetch(stamp_ms, stamp_ms + 1, page_number, descending)
                total = page.total_count
                fresh = [row for row in page.rows if row["id"] not in seen]
                seen.update(row["id"] for row in fresh)
                if fresh:
                    yield fresh
                if len(page.rows) < self.per_page:
                    break
                page_number += 1
            if total is None or len(seen) >= total or not verify:
                return
            idle_passes = idle_passes + 1 if attempt > 0 and len(seen) == found_before else 0
            if idle_passes >= TIE_IDLE_PASSES:
                break
            logger.warning(
                "%s holds %s logs but paging returned %s; reading it again",
                format_ms(stamp_ms),
                total,
                len(seen),
            )
            page_number = 1
        self.incomplete = (stamp_ms, total or 0, len(seen))


@dataclass
class ForwardRead:
    """One forward run: check the lookback window, re-read what changed, then read new logs.

    The check is what keeps late rows from being lost without re-reading the whole window every
    run. The resource state keeps, for each second of the window before the cursor, how many logs
    were loaded (the cursor's own second counts only the logs before the cursor). One request
    compares that with the API's `total_count` for the window; when they differ, only the tail of
    the window that holds the difference is re-read (see `_reconcile`). The merge on `id` absorbs
    every re-read row.

    New logs are read from the cursor itself, so a run stopped by its budget resumes exactly
    where it stopped; an over-full millisecond cut part-way resumes at its next page.
    """

    reader: LogReader
    state: Dict[str, Any]
    lookback_seconds: int
    rows_reread: int = 0
    window_unchecked: bool = False
    """True when the budget ran out before the whole lookback window was reconciled."""
    newest_ms: Optional[int] = None
    _counts: Dict[int, int] = field(default_factory=dict)
    _at_newest: int = 0

    def pages(self, cursor_ms: Optional[int], initial_ms: int) -> Iterator[Rows]:
        """Pages to load, given the cursor (None on the first run)."""
        complete_from: Optional[int] = self.state.get("counted_from_second")
        self._counts = _decode_counts(complete_from, self.state.get("counts_per_second", ""))
        tie = self.state.pop("tie", None)
        tie_page = 0
        if cursor_ms is None or complete_from is None:
            cursor_ms, read_from_ms = None, initial_ms
            complete_from = _ceil_div(initial_ms, 1000)
            self._counts = {}
        else:
            read_from_ms = cursor_ms
            window_start = max(
                complete_from, _ceil_div(cursor_ms - self.lookback_seconds * 1000, 1000)
            )
            yield from self._check_window(window_start * 1000, cursor_ms)
        for second in [s for s in self._counts if s > read_from_ms // 1000]:
            del self._counts[second]
        self.newest_ms, self._at_newest = cursor_ms, 0
        if cursor_ms is not None and tie and tie.get("at") == cursor_ms:
            # resuming an over-full millisecond: the logs already read in it stay counted
            tie_page, self._at_newest = int(tie["page"]), int(tie.get("rows", 0))
            second = cursor_ms // 1000
            self._counts[second] = self._counts.get(second, 0) + self._at_newest
        for rows in self.reader.read(read_from_ms, tie_page=tie_page):
            self._track_newest(rows)
            yield rows
        if self.reader.tie_cut is not None:
            stamp, page_number = self.reader.tie_cut
            self.state["tie"] = {"at": stamp, "page": page_number, "rows": self._at_newest}
        self._save(complete_from)

    def _check_window(self, start_ms: int, end_ms: int) -> Iterator[Rows]:
        """Reconciles the lookback window within half the budget, leaving the rest for new logs."""
        reader = self.reader
        reserved = reader.max_requests - reader.max_requests // 2
        reader.max_requests -= reserved
        try:
            yield from self._reconcile(start_ms, end_ms)
        finally:
            reader.max_requests += reserved
            self.window_unchecked = reader.cut
            reader.cut, reader.tie_cut = False, None

    def _track_newest(self, rows: Rows) -> None:
        self._count(rows)
        for row in rows:
            stamp = parse_ms(row["created_at"])
            if self.newest_ms is None or stamp > self.newest_ms:
                self.newest_ms, self._at_newest = stamp, 1
            elif stamp == self.newest_ms:
                self._at_newest += 1

    def _count(self, rows: Rows) -> None:
        for row in rows:
            second = parse_ms(row["created_at"]) // 1000
            self._counts[second] = self._counts.get(second, 0) + 1

    def _ours(self, start_ms: int, end_ms: int) -> int:
        return sum(self._counts.get(s, 0) for s in range(start_ms // 1000, _ceil_div(end_ms, 1000)))

    def _difference(self, page: LogsPage, start_ms: int, end_ms: int) -> Optional[int]:
        if page.total_count is None:
            return None
        return page.total_count - self._ours(start_ms, end_ms)

    def _reconcile(self, start_ms: int, end_ms: int) -> Iterator[Rows]:
        """Finds where the window's count differs from ours and re-reads only that tail.

        Late rows land close to the cursor, so after one probe of the whole window, tails of 2, 4,
        8... seconds are probed until one holds the whole difference; everything before it
        matches. A steady run costs one request; a late row d seconds back about 2 + log2(d).
        """
        if start_ms >= end_ms:
            return
        page = self.reader.probe(start_ms, end_ms)
        if page is None:
            return
        difference = self._difference(page, start_ms, end_ms)
        if difference == 0:
            return
        tail_seconds = 2
        last_second = (end_ms - 1) // 1000
        while difference is not None and (last_second - tail_seconds + 1) * 1000 > start_ms:
            if page.total_count is not None and page.total_count <= len(page.rows):
                break
            tail_start = (last_second - tail_seconds + 1) * 1000
            tail = self.reader.probe(tail_start, end_ms)
            if tail is None:
                return
            if self._difference(tail, tail_start, end_ms) == difference:
                page, start_ms = tail, tail_start
                break
            tail_seconds *= 2
        logger.info(
            "lookback: the gateway holds %s logs more than were loaded in the last %d s before"
            " the cursor (late or deleted logs); re-reading from %s",
            "an unknown number of" if difference is None else f"{difference:+d}",
            (end_ms - start_ms) // 1000,
            format_ms(start_ms),
        )
        if page.total_count is not None and page.total_count <= len(page.rows):
            # the probe already holds every row of the range
            self._forget(start_ms, end_ms)
            self._count(page.rows)
            self.rows_reread += len(page.rows)
            if page.rows:
                yield page.rows
            return
        yield from self._reread(start_ms, end_ms)

    def _reread(self, start_ms: int, end_ms: int) -> Iterator[Rows]:
        """Reads a range again and replaces its counts with what it found.

        When the budget cuts the read, only the seconds it fully covered are replaced, so the
        next run's check starts from where this one stopped instead of from scratch.
        """
        found: Dict[int, int] = {}
        for rows in self.reader.read(start_ms, end_ms):
            for row in rows:
                second = parse_ms(row["created_at"]) // 1000
                found[second] = found.get(second, 0) + 1
            self.rows_reread += len(rows)
            yield rows
        covered_end_ms = end_ms
        if self.reader.cut:
            covered_end_ms = max(found, default=start_ms // 1000) * 1000
        self._forget(start_ms, covered_end_ms)
        for second, count in found.items():
            if second * 1000 < covered_end_ms:
                self._counts[second] = self._counts.get(second, 0) + count

    def _forget(self, start_ms: int, end_ms: int) -> None:
        for second in range(start_ms // 1000, _ceil_div(end_ms, 1000)):
            self._counts.pop(second, None)

    def _save(self, complete_from: int) -> None:
        if self.newest_ms is None:
            self.state["counted_from_second"] = complete_from
            self.state["counts_per_second"] = ""
            return
        # The cursor's second counts only the logs before the cursor: the next run reads the
        # cursor's millisecond again and counts those itself.
        cursor_second = self.newest_ms // 1000
        self._counts[cursor_second] = self._counts.get(cursor_second, 0) - self._at_newest
        keep_from = _ceil_div(self.newest_ms - self.lookback_seconds * 1000, 1000)
        counted_from = max(complete_from, keep_from)
        self.state["counted_from_second"] = counted_from
        self.state["counts_per_second"] = " ".join(
            str(self._counts.get(second, 0)) for second in range(counted_from, cursor_second + 1)
        )


def _decode_counts(first_second: Optional[int], encoded: str) -> Dict[int, int]:
    """Per-second log counts, kept in state as one line of numbers from `first_second` on, so
    that `dlt pipeline aig_logs info -v` stays readable."""
    if first_second is None or not encoded:
        return {}
    return {
        first_second + offset: int(count)
        for offset, count in enumerate(encoded.split())
        if int(count)
    }


class CursorRows:
    """The logs at the cursor's millisecond as loaded, by content digest.

    Every forward run reads from its cursor inclusively (another log may share that millisecond),
    so it meets the newest logs of the previous run again. Re-merging them unchanged would make
    the merge delete and rewrite them, and BigQuery bills a DELETE for the whole partition it
    modifies; so they are dropped unless their content changed. The digests live in the resource
    state, which commits only with the load: a digest always describes a row that was loaded.
    """

    def __init__(self, state: Dict[str, Any]) -> None:
        self._state = state
        self._loaded_ms: Optional[int] = state.get("at_ms")
        self._loaded: Dict[str, str] = dict(state.get("digests", {}))
        self._newest_ms = self._loaded_ms
        self._newest: Dict[str, Any] = {}
        self.unchanged = 0

    def fresh(self, page: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """The rows of `page` to load: all but the unchanged logs of the loaded cursor ms."""
        rows = []
        for item in page:
            stamp = parse_ms(item["created_at"])
            if stamp == self._loaded_ms and self._loaded.get(item["id"]) == row_digest(item):
                self.unchanged += 1
                continue
            rows.append(item)
            if self._newest_ms is None or stamp > self._newest_ms:
                self._newest_ms, self._newest = stamp, {}
            if stamp == self._newest_ms:
                self._newest[item["id"]] = item
        return rows

    def save(self) -> None:
        """Records the digests of the newest millisecond loaded by this run."""
        if self._newest_ms is None:
            return
        digests = self._loaded if self._newest_ms == self._loaded_ms else {}
        digests.update({log_id: row_digest(item) for log_id, item in self._newest.items()})
        self._state["at_ms"] = self._newest_ms
        self._state["digests"] = digests


def row_digest(item: Dict[str, Any]) -> str:
    encoded = json.dumps(item, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.blake2b(encoded, digest_size=8).hexdigest()
