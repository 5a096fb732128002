"""The layout of this project's dlt state: what each job keeps, under which names, and where.

dlt keeps source state under `sources.aig_source` and each resource's state under
`sources.aig_source.resources.<resource>`; all of it is committed with the load that carries it,
so a failed or killed run changes none of it. Every gateway has its own progress, keyed by its id
(one pipeline reads one account, see the README), so one gateway's budget, error or kill never
moves another's. This module is the one place that knows the keys:

- source state
  - `layout`: 2 since the fleet version; absent in state of older, single-gateway versions,
    which `carry_over_one_gateway` moves under their gateway's id.
  - `origins.<gateway>`: where that gateway's history is split in two, fixed by whichever job
    reads it first. The forward resource reads up from it, the backfill down from it, whatever
    the order of the two and the time between them.
  - `rows_to_fill`: the gateway and account of rows loaded before the table had those columns,
    until `upgrade.fill_origin_columns` has filled them.
- resource `aig_logs` (forward)
  - `gateways.<gateway>`: `cursor` (the newest log loaded), `lookback` (per-second counts of the
    lookback window and where a cut over-full millisecond resumes, `paging.ForwardRead`),
    `cursor_rows` (digests of the logs at the cursor's millisecond, `paging.CursorRows`),
    `last_run` (what its last successful read did).
  - `last_run`: the run as a whole: gateways read, failed (and why), gone from the account.
- resource `aig_logs_backfill`
  - `gateways.<gateway>`: `start`, `oldest_loaded`, `at_oldest`, `tie`, `done`, `done_reason`,
    `since`, `expected`, `loaded`, `gone`, `gap`, `last_run` (`backfill.BackfillWalk`).
  - `last_run`: the run as a whole, as for the forward resource.
- resource `aig_logs_worker_import` (`pipelines/migrate_worker.py`)
  - `imports.<the Worker's table>`: `loaded_through` (the last UTC day loaded; a run continues
    after it), `finished`, `finished_at`, the `gateway_id` and `account_id` given to its rows,
    and the counts `rows_stored`, `logs_imported`, `copies_dropped`, `already_loaded`.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import dlt

from .settings import BACKFILL_RESOURCE, CURSOR_FIELD, FORWARD_RESOURCE, SOURCE_SECTION
from .timestamps import format_ms, parse_ms

LAYOUT = "layout"
FLEET_LAYOUT = 2
ORIGIN = "origin"
"""The single origin of versions before the fleet (now `origins`)."""
ORIGINS = "origins"
ROWS_TO_FILL = "rows_to_fill"
GATEWAYS = "gateways"
CURSOR = "cursor"
LAST_RUN = "last_run"
LOOKBACK = "lookback"
CURSOR_ROWS = "cursor_rows"
IMPORTS = "imports"
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


def gateways_of(resource_state: State) -> Dict[str, State]:
    """Each gateway's progress within one resource's state, by gateway id."""
    gateways: Dict[str, State] = resource_state.setdefault(GATEWAYS, {})
    return gateways


def fix_origin(source_state: State, gateway_id: str, proposed_ms: int) -> int:
    """The origin of both jobs for one gateway: the recorded one, else `proposed_ms`, which is
    then recorded (and committed with this run's load)."""
    origins: Dict[str, str] = source_state.setdefault(ORIGINS, {})
    recorded = origins.get(gateway_id)
    if recorded is not None:
        return parse_ms(str(recorded))
    origins[gateway_id] = format_ms(proposed_ms)
    return proposed_ms


def has_single_gateway_state(source_state: State) -> bool:
    """Whether this is state of a version that read one gateway and did not record which."""
    if source_state.get(LAYOUT) is not None:
        return False
    resources = resources_of(source_state)
    older_keys = [
        key
        for resource in (FORWARD_RESOURCE, BACKFILL_RESOURCE)
        for key in resources.get(resource, {})
        if key != GATEWAYS
    ]
    return ORIGIN in source_state or bool(older_keys)


def carry_over_one_gateway(
    source_state: State, gateway_id: str, account_id: str, proposed_ms: int
) -> None:
    """Moves the state of a single-gateway version under `gateway_id`, and marks the rows it
    loaded for `upgrade.fill_origin_columns`; state of this version is only stamped.

    That version kept one `origin` (or, before it, none: the forward started at its own first
    run minus an hour and the backfill at its own first run, so when the backfill ran first and
    the forward more than an hour later, the logs between the two were read by neither; that
    range becomes the backfill's `gap`, read once). dlt's incremental cursor of the forward
    resource becomes the gateway's `cursor`, unchanged, so nothing is read again.
    """
    if has_single_gateway_state(source_state):
        resources = resources_of(source_state)
        forward = resources.setdefault(FORWARD_RESOURCE, {})
        backfill = resources.setdefault(BACKFILL_RESOURCE, {})
        origin_ms = _single_gateway_origin(source_state, forward, backfill, proposed_ms)
        moved_forward = {key: forward.pop(key) for key in list(forward) if key != GATEWAYS}
        incremental = moved_forward.pop("incremental", {}).get(CURSOR_FIELD, {})
        cursor = incremental.get("last_value")
        if cursor is not None:
            moved_forward[CURSOR] = format_ms(parse_ms(cursor))
        moved_backfill = {key: backfill.pop(key) for key in list(backfill) if key != GATEWAYS}
        gateways_of(forward)[gateway_id] = moved_forward
        if moved_backfill:
            gateways_of(backfill)[gateway_id] = moved_backfill
        source_state.pop(ORIGIN, None)
        source_state[ORIGINS] = {gateway_id: format_ms(origin_ms)}
        source_state[ROWS_TO_FILL] = {"gateway_id": gateway_id, "account_id": account_id}
    source_state[LAYOUT] = FLEET_LAYOUT


def _single_gateway_origin(
    source_state: State, forward: State, backfill: State, proposed_ms: int
) -> int:
    recorded = source_state.get(ORIGIN)
    if recorded is not None:
        return parse_ms(str(recorded))
    forward_start = forward.get("incremental", {}).get(CURSOR_FIELD, {}).get("initial_value")
    backfill_start = backfill.get("start")
    if forward_start is not None:
        origin_ms = parse_ms(forward_start)
        if backfill_start is not None and parse_ms(backfill_start) < origin_ms:
            backfill[BACKFILL_GAP] = {"low": backfill_start, "high": format_ms(origin_ms)}
        return origin_ms
    if backfill_start is not None:
        return parse_ms(backfill_start)
    return proposed_ms


def source_state_of(pipeline: dlt.Pipeline) -> State:
    """This source's state as the pipeline last committed it (a copy)."""
    sources = pipeline.state.get("sources", {})
    return dict(sources.get(SOURCE_SECTION, {}))


def resource_state_of(pipeline: dlt.Pipeline, resource: str) -> State:
    """One resource's state as the pipeline last committed it (a copy)."""
    return dict(source_state_of(pipeline).get("resources", {}).get(resource, {}))
