"""The layout of this project's dlt state: what each job keeps, under which names, and where.

dlt keeps source state under `sources.aig_source` and each resource's state under
`sources.aig_source.resources.<resource>`; all of it is committed with the load that carries it,
so a failed or killed run changes none of it. This module is the one place that knows the keys:

- source state
  - `origin`: where the history is split in two, fixed by whichever job runs first. The forward
    resource reads up from it, the backfill down from it, whatever the order of the two and the
    time between them.
- resource `aig_logs` (forward)
  - `incremental.created_at`: dlt's cursor (`last_value`, the newest log loaded).
  - `lookback`: per-second counts of the lookback window (`paging.ForwardRead`).
  - `cursor_rows`: digests of the logs at the cursor's millisecond (`paging.CursorRows`).
  - `tie`: where an over-full millisecond cut by the budget resumes.
  - `last_run`: what the last run did, for the summary and `dlt pipeline aig_logs info -v`.
- resource `aig_logs_backfill`
  - `start`, `oldest_loaded`, `at_oldest`, `tie`, `done`, `done_reason`, `since`, `expected`,
    `loaded`, `gone`, `gap`, `last_run` (`backfill.BackfillWalk`).
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import dlt

from .settings import BACKFILL_RESOURCE, CURSOR_FIELD, FORWARD_RESOURCE, SOURCE_SECTION
from .timestamps import format_ms, parse_ms

ORIGIN = "origin"
LAST_RUN = "last_run"
LOOKBACK = "lookback"
CURSOR_ROWS = "cursor_rows"
BACKFILL_GAP = "gap"
"""A range between an older version's backfill start and its forward start that neither read."""

State = Dict[str, Any]


class _Count:
    """A count kept under `key` in a progress dict, 0 until set."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __get__(self, progress: BackfillProgress, owner: type) -> int:
        return int(progress.state.get(self.key, 0))

    def __set__(self, progress: BackfillProgress, value: int) -> None:
        progress.state[self.key] = value


class _Moment:
    """A millisecond kept under `key` as RFC 3339 text (readable in `dlt pipeline info`)."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __get__(self, progress: BackfillProgress, owner: type) -> Optional[int]:
        value = progress.state.get(self.key)
        return parse_ms(str(value)) if value else None

    def __set__(self, progress: BackfillProgress, value: Optional[int]) -> None:
        progress.state[self.key] = format_ms(value) if value is not None else None


class BackfillProgress:
    """The backfill's resource state, by name: where its walk is and what it counted.

    The walk goes down from `start` (the origin when it began); `oldest_loaded` is read again,
    inclusively, by the next run, `at_oldest` logs of it being loaded already, unless `tie`
    resumes an over-full millisecond at a page. `expected`, `loaded` and `gone` count the logs
    the walk was promised, loaded, and found missing (evicted or deleted).
    """

    def __init__(self, state: State) -> None:
        self.state = state

    start_ms = _Moment("start")
    oldest_loaded_ms = _Moment("oldest_loaded")
    since_ms = _Moment("since")
    at_oldest = _Count("at_oldest")
    loaded = _Count("loaded")
    gone = _Count("gone")

    @property
    def since(self) -> Optional[str]:
        value = self.state.get("since")
        return None if value is None else str(value)

    def begin_at(self, origin_ms: int) -> int:
        """The walk's start: recorded on its first run, kept after."""
        self.state.setdefault("start", format_ms(origin_ms))
        return parse_ms(self.state["start"])

    def take_tie(self) -> Optional[Dict[str, int]]:
        """Where a cut over-full millisecond resumes (`at`, `page`), cleared once taken."""
        tie: Optional[Dict[str, int]] = self.state.pop("tie", None)
        return tie

    def keep_tie(self, stamp_ms: int, page: int) -> None:
        self.state["tie"] = {"at": stamp_ms, "page": page}

    @property
    def done(self) -> bool:
        return bool(self.state.get("done"))

    @property
    def done_reason(self) -> Optional[str]:
        reason = self.state.get("done_reason")
        return None if reason is None else str(reason)

    def finish(self, reason: str) -> None:
        self.state["done"], self.state["done_reason"] = True, reason

    def reopen(self) -> None:
        self.state["done"] = False

    @property
    def expected(self) -> Optional[int]:
        """What the walk was promised; None before its first count."""
        value = self.state.get("expected")
        return None if value is None else int(value)

    @expected.setter
    def expected(self, value: int) -> None:
        self.state["expected"] = value

    @property
    def gap(self) -> Optional[State]:
        gap: Optional[State] = self.state.get(BACKFILL_GAP)
        return gap

    def close_gap(self) -> None:
        self.state.pop(BACKFILL_GAP, None)

    @property
    def last_run(self) -> State:
        return dict(self.state.get(LAST_RUN, {}))


def resources_of(source_state: State) -> State:
    resources: State = source_state.setdefault("resources", {})
    return resources


def forward_cursor(forward_state: State) -> Optional[str]:
    """dlt's incremental cursor of the forward resource: the newest log loaded, if any."""
    cursor = forward_state.get("incremental", {}).get(CURSOR_FIELD, {})
    value = cursor.get("last_value")
    return None if value is None else str(value)


def fix_origin(source_state: State, proposed_ms: int) -> int:
    """The origin of both jobs: the recorded one, else one carried over from an older version's
    state, else `proposed_ms`, which is then recorded (and committed with this run's load).

    Versions before the origin existed let the forward start at its own first run minus an hour
    and the backfill at its own first run; when the backfill ran first and the forward more than
    an hour later, the logs between the two were read by neither. That range is handed to the
    backfill (`gap`) so it is read once, and the forward's start becomes the origin.
    """
    recorded = source_state.get(ORIGIN)
    if recorded is not None:
        return parse_ms(str(recorded))
    resources = resources_of(source_state)
    forward = resources.get(FORWARD_RESOURCE, {})
    backfill = resources.get(BACKFILL_RESOURCE, {})
    forward_start = forward.get("incremental", {}).get(CURSOR_FIELD, {}).get("initial_value")
    backfill_start = backfill.get("start")
    if forward_start is not None:
        origin_ms = parse_ms(forward_start)
        if backfill_start is not None and parse_ms(backfill_start) < origin_ms:
            backfill[BACKFILL_GAP] = {"low": backfill_start, "high": format_ms(origin_ms)}
    elif backfill_start is not None:
        origin_ms = parse_ms(backfill_start)
    else:
        origin_ms = proposed_ms
    source_state[ORIGIN] = format_ms(origin_ms)
    return origin_ms


def current_origin(proposed_ms: int) -> int:
    """`fix_origin` on the state of the source being extracted."""
    return fix_origin(dlt.current.source_state(), proposed_ms)


def source_state_of(pipeline: dlt.Pipeline) -> State:
    """This source's state as the pipeline last committed it (a copy)."""
    sources = pipeline.state.get("sources", {})
    return dict(sources.get(SOURCE_SECTION, {}))


def resource_state_of(pipeline: dlt.Pipeline, resource: str) -> State:
    """One resource's state as the pipeline last committed it (a copy)."""
    return dict(source_state_of(pipeline).get("resources", {}).get(resource, {}))
