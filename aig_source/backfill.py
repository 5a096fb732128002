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
from typing import Any, Dict, Iterator, Optional

from .paging import LogReader, Rows
from .state import BACKFILL_GAP
from .timestamps import format_ms, parse_ms

logger = logging.getLogger(__name__)

PROGRESS_EVERY_SECONDS = 10.0


@dataclass
class BackfillWalk:
    """One backfill run over the state of resource `aig_logs_backfill`."""

    reader: LogReader
    state: Dict[str, Any]
    since_ms: Optional[int]
    fetched: int = 0
    new: int = 0
    remaining: Optional[int] = None

    @property
    def done(self) -> bool:
        return bool(self.state.get("done"))

    def _resume(self) -> bool:
        """False when there is nothing to do: done, and not asked to go further back."""
        if not self.done:
            return True
        reached_since = self.state.get("done_reason") == "since"
        recorded_since = self.state.get("since")
        further = reached_since and (
            self.since_ms is None
            or (recorded_since is not None and self.since_ms < parse_ms(recorded_since))
        )
        if further:
            self.state["done"] = False
        return further

    def pages(self, origin_ms: int) -> Iterator[Rows]:
        """Pages of older logs, newest first, from the origin down to the bottom or `since_ms`."""
        state = self.state
        yield from self._read_gap()
        if self.reader.cut or not self._resume():
            return
        state.setdefault("start", format_ms(origin_ms))
        since_changed = state.get("since") != (
            format_ms(self.since_ms) if self.since_ms is not None else None
        )
        state["since"] = format_ms(self.since_ms) if self.since_ms is not None else None
        oldest = state.get("oldest_loaded")
        oldest_ms = parse_ms(oldest) if oldest else None
        high = oldest_ms + 1 if oldest_ms is not None else parse_ms(state["start"])
        tie = state.pop("tie", None)
        tie_page = int(tie["page"]) if tie and oldest_ms == tie.get("at") else 0
        # the logs loaded at the oldest millisecond are read again (unless a tie resumes past
        # them, page -1) and are not new
        at_oldest = int(state.get("at_oldest", 0))
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
            state["oldest_loaded"] = format_ms(oldest_ms) if oldest_ms is not None else None
            state["at_oldest"] = at_oldest
            if time.monotonic() - last_progress >= PROGRESS_EVERY_SECONDS:
                last_progress = time.monotonic()
                logger.info(
                    "backfill: %s logs this run, reached %s",
                    f"{self.fetched:,}",
                    state["oldest_loaded"],
                )
            yield rows
        self._account(self.reader.range_total, loaded_in_range, since_changed)
        if self.reader.tie_cut is not None:
            stamp, page = self.reader.tie_cut
            state["tie"] = {"at": stamp, "page": page}
        if self.reader.exhausted:
            state["done"] = True
            state["done_reason"] = "since" if self.since_ms is not None else "bottom"

    def _read_gap(self) -> Iterator[Rows]:
        """Reads the range an older version left between its backfill and forward starts."""
        gap = self.state.get(BACKFILL_GAP)
        if not gap:
            return
        low_ms, high_ms = parse_ms(gap["low"]), parse_ms(gap["high"])
        lowest: Optional[int] = None
        for rows in self.reader.read(low_ms, high_ms, descending=True):
            lowest = min(parse_ms(row["created_at"]) for row in rows)
            self.fetched += len(rows)
            # resumes inclusively at the lowest millisecond read, like the walk itself
            gap["high"] = format_ms(lowest + 1)
            yield rows
        if self.reader.exhausted:
            del self.state[BACKFILL_GAP]
        self.reader.exhausted, self.reader.tie_cut, self.reader.range_total = False, None, None

    def _account(self, range_total: Optional[int], loaded_in_range: int, rebase: bool) -> None:
        """Keeps the expected, loaded and gone counts, for progress and eviction reports.

        `range_total` is how many logs the range still to walk held when this run began (the
        oldest loaded millisecond included); `loaded_in_range` of them were loaded already.
        """
        state = self.state
        loaded_before = int(state.get("loaded", 0))
        state["loaded"] = loaded_before + self.new
        if range_total is None:
            # the budget ended inside the oldest millisecond, before the rest was counted
            if "expected" in state:
                self.remaining = max(
                    0, int(state["expected"]) - int(state["loaded"]) - int(state.get("gone", 0))
                )
            return
        surviving = max(0, range_total - loaded_in_range)
        if "expected" not in state or rebase:
            # the first run, or a new `since`: what is loaded plus what is there to walk
            state["expected"] = loaded_before + surviving
        # logs the walk was promised but that are no longer there: evicted or deleted
        state["gone"] = max(0, int(state["expected"]) - loaded_before - surviving)
        self.remaining = max(0, surviving - self.new)
