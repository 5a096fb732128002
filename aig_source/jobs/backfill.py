"""The backfill job: the gateway's history below the origin, in chunks that each commit."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import dlt
from dlt.pipeline.helpers import pipeline_drop

from .. import aig_source
from ..config import resolve_source_configuration
from ..runner import (
    JobSummary,
    format_duration,
    incomplete_millisecond_problem,
    rows_before_run,
    run_resource,
)
from ..settings import BACKFILL_CHUNK_PAGES, BACKFILL_RESOURCE
from ..state import LAST_RUN, BackfillProgress
from ..timestamps import format_ms

logger = logging.getLogger(__name__)


@dataclass
class BackfillSummary(JobSummary):
    """What one backfill run (one or more chunks) did and how far the history is."""

    state: Dict[str, Any] = field(default_factory=dict)
    page_budget: int = 0
    per_page: int = 0
    page_budget_reached: bool = False
    time_budget_reached: bool = False

    job = "backfill"

    def problem(self) -> Optional[str]:
        note = self.progress.last_run.get("incomplete_millisecond")
        return incomplete_millisecond_problem(note, "backfill") if note else None

    @property
    def progress(self) -> BackfillProgress:
        return BackfillProgress(self.state)

    @property
    def last_run(self) -> Dict[str, Any]:
        return self.progress.last_run

    @property
    def done(self) -> bool:
        return self.progress.done

    @property
    def logs_gone(self) -> int:
        return self.progress.gone

    def line(self) -> str:
        progress, last_run = self.progress, self.last_run
        text = self.counts_text()
        if self.rate_limited:
            text += f" ({self.rate_limited} answered 429)"
        oldest, start = progress.oldest_loaded_ms, progress.start_ms
        if oldest is not None and start is not None:
            back = format_duration((start - oldest) / 1000)
            text += f"; reached {format_ms(oldest)} ({back} before the origin {format_ms(start)})"
        if self.done:
            bottom = (
                f"reached --since {progress.since}"
                if progress.done_reason == "since"
                else "reached the gateway's oldest log"
            )
            text += f"; done: {bottom}, later runs make no request"
        else:
            remaining = last_run.get("logs_remaining_estimate")
            pacing = last_run.get("pacing") or {}
            if remaining is not None:
                text += f"; about {remaining:,} logs left"
            if remaining and pacing and self.per_page:
                requests, window = pacing["requests"], pacing["window_seconds"]
                eta = remaining / self.per_page * window / requests
                text += f", about {format_duration(eta)} at {requests} requests per {window:g} s"
            if self.time_budget_reached:
                text += "; time budget reached, the next run continues"
            elif self.page_budget_reached:
                text += f"; page budget of {self.page_budget} reached, the next run continues"
        if self.logs_gone:
            text += (
                f"; {self.logs_gone:,} older logs were gone (evicted by the gateway's"
                " DELETE_OLDEST log limit, or deleted) before the backfill reached them"
            )
        return text + "."


def run_backfill(
    pipeline: dlt.Pipeline,
    max_pages: Optional[int] = None,
    since: Optional[str] = None,
    max_minutes: Optional[float] = None,
    reset: bool = False,
    **source_args: Any,
) -> BackfillSummary:
    """Runs the backfill within its page and time budgets and summarises it; raises on any
    failure (what earlier chunks loaded stays loaded).

    The budget is spent in loads of at most `BACKFILL_CHUNK_PAGES` pages, each committing its
    data and progress, so memory stays flat however long the run, and a kill loses one chunk.

    Args:
        pipeline: The `aig_logs` pipeline (`runner.make_pipeline`).
        max_pages: Page budget of this run (default: `backfill_max_pages`).
        since: Go no further back than this ISO date or timestamp (`backfill_since`).
        max_minutes: Time budget of this run.
        reset: Forget the backfill's progress first (`reset_backfill`).
        **source_args: Settings over the configuration (`config.LogsApiSourceConfiguration`).

    Returns:
        The run's summary, over all its chunks.
    """
    if since is not None:
        source_args["backfill_since"] = since
    settings = resolve_source_configuration(**source_args)
    budget = max_pages or settings.backfill_max_pages
    deadline = time.monotonic() + max_minutes * 60 if max_minutes is not None else None
    if reset:
        reset_backfill(pipeline)
    rows = rows_before_run(pipeline)
    totals = BackfillSummary(page_budget=budget, per_page=settings.per_page)
    while True:
        source_args["backfill_max_pages"] = max(1, min(BACKFILL_CHUNK_PAGES, budget - totals.pages))
        if deadline is not None:
            source_args["backfill_max_seconds"] = max(0.001, deadline - time.monotonic())
        source = aig_source(**source_args).with_resources(BACKFILL_RESOURCE)
        loaded = run_resource(pipeline, source, BACKFILL_RESOURCE, rows)
        rows = loaded.rows_after
        last_run = loaded.state.get(LAST_RUN, {})
        totals.add(last_run, loaded)
        totals.state = loaded.state
        out_of_time = deadline is not None and time.monotonic() >= deadline
        if totals.done or not last_run.get("page_budget_reached") or out_of_time:
            break
        if totals.pages >= budget:
            break
        logger.info("backfill: %s", totals.line())
    totals.time_budget_reached = bool(last_run.get("time_budget_reached")) or out_of_time
    totals.page_budget_reached = not totals.done and not totals.time_budget_reached
    return totals


def reset_backfill(pipeline: dlt.Pipeline) -> None:
    """Forgets the backfill's progress (not the data) with dlt's drop helper, so that the next
    run walks the history again from the origin; the merge absorbs what it re-reads."""
    pipeline.sync_destination()
    if not pipeline.default_schema_name:
        return
    drop = pipeline_drop(pipeline, resources=[BACKFILL_RESOURCE], state_only=True)
    if not drop.is_empty:
        drop()
