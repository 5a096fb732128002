"""The backfill walk: from the forward resource's starting point down to the gateway's oldest log.

It reads descending, so the gateway evicting its oldest logs (`DELETE_OLDEST`) while it pages can
only remove rows below it, never shift a surviving row past it. Its progress lives in the
resource state: the oldest `created_at` loaded (read again, inclusively, by the next run, so a
cut in the middle of a millisecond loses nothing), and whether it reached the bottom.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Iterator, Optional

from .paging import LogReader, Rows
from .state import BackfillProgress
from .timestamps import format_ms, parse_ms

logger = logging.getLogger(__name__)

PROGRESS_EVERY_SECONDS = 10.0


@dataclass
class BackfillWalk:
    """One backfill run over the state of resource `aig_logs_backfill` (`BackfillProgress`)."""

    reader: LogReader
    progress: BackfillProgress
    since_ms: Optional[int]
    fetched: int = 0
    new: int = 0
    remaining: Optional[int] = None

    def _resume(self) -> bool:
        """False when there is nothing to do: done, and not asked to go further back."""
        progress = self.progress
        if not progress.done:
            return True
        recorded_since = progress.since
        further = progress.done_reason == "since" and (
            self.since_ms is None
            or (recorded_since is not None and self.since_ms < parse_ms(recorded_since))
        )
        if further:
            progress.reopen()
        return further

    def pages(self, origin_ms: int) -> Iterator[Rows]:
        """Pages of older logs, newest first, from the origin down to the bottom or `since_ms`."""
        progress = self.progress
        yield from self._read_gap()
        if self.reader.cut or not self._resume():
            return
        start_ms = progress.begin_at(origin_ms)
        since_changed = progress.since != (
            format_ms(self.since_ms) if self.since_ms is not None else None
        )
        progress.since_ms = self.since_ms
        oldest_ms = progress.oldest_loaded_ms
        high = oldest_ms + 1 if oldest_ms is not None else start_ms
        tie = progress.take_tie()
        tie_page = int(tie["page"]) if tie and oldest_ms == tie.get("at") else 0
        # the logs loaded at the oldest millisecond are read again (unless a tie resumes past
        # them, page -1) and are not new
        at_oldest = progress.at_oldest
        loaded_in_range = 0 if tie_page == -1 else at_oldest
        rereads_left = at_oldest if tie_page == 0 else 0
        last_progress = time.monotonic()
        for rows in self.reader.read(self.since_ms, high, tie_page=tie_page, descending=True):
            for row in rows:
                stamp = parse_ms(row["created_at"])
                if stamp == oldest_ms and rereads_left > 0:
                    rereads_left -= 1
                    continue
                self.new += 1
                if oldest_ms is None or stamp < oldest_ms:
                    oldest_ms, at_oldest = stamp, 1
                elif stamp == oldest_ms:
                    at_oldest += 1
            self.fetched += len(rows)
            progress.oldest_loaded_ms, progress.at_oldest = oldest_ms, at_oldest
            if time.monotonic() - last_progress >= PROGRESS_EVERY_SECONDS:
                last_progress = time.monotonic()
                logger.info(
                    "backfill: %s logs this run, reached %s",
                    f"{self.fetched:,}",
                    format_ms(oldest_ms) if oldest_ms is not None else None,
                )
            yield rows
        self._account(self.reader.range_total, loaded_in_range, since_changed)
        if self.reader.tie_cut is not None:
            progress.keep_tie(*self.reader.tie_cut)
        if self.reader.exhausted:
            progress.finish("since" if self.since_ms is not None else "bottom")

    def _read_gap(self) -> Iterator[Rows]:
        """Reads the range an older version left between its backfill and forward starts."""
        gap = self.progress.gap
        if not gap:
            return
        low_ms, high_ms = parse_ms(gap["low"]), parse_ms(gap["high"])
        for rows in self.reader.read(low_ms, high_ms, descending=True):
            lowest = min(parse_ms(row["created_at"]) for row in rows)
            self.fetched += len(rows)
            # resumes inclusively at the lowest millisecond read, like the walk itself
            gap["high"] = format_ms(lowest + 1)
            yield rows
        if self.reader.exhausted:
            self.progress.close_gap()
        self.reader.exhausted, self.reader.tie_cut, self.reader.range_total = False, None, None

    def _account(self, range_total: Optional[int], loaded_in_range: int, rebase: bool) -> None:
        """Keeps the expected, loaded and gone counts, for progress and eviction reports.

        `range_total` is how many logs the range still to walk held when this run began (the
        oldest loaded millisecond included); `loaded_in_range` of them were loaded already.
        """
        progress = self.progress
        loaded_before = progress.loaded
        progress.loaded = loaded_before + self.new
        expected = progress.expected
        if range_total is None:
            # the budget ended inside the oldest millisecond, before the rest was counted
            if expected is not None:
                self.remaining = max(0, expected - progress.loaded - progress.gone)
            return
        surviving = max(0, range_total - loaded_in_range)
        if expected is None or rebase:
            # the first run, or a new `since`: what is loaded plus what is there to walk
            expected = progress.expected = loaded_before + surviving
        # logs the walk was promised but that are no longer there: evicted or deleted
        progress.gone = max(0, expected - loaded_before - surviving)
        self.remaining = max(0, surviving - self.new)
