"""The backfill job: the gateway's history below the origin, in chunks that each commit."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import dlt
from dlt.pipeline.helpers import pipeline_drop

from .. import aig_source
from ..config import resolve_source_configuration
from ..ratelimit import paced_seconds
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
    """What one backfill run (one or more chunks) did and how far each gateway's history is."""

    page_budget: int = 0
    per_page: int = 0
    time_budget_reached: bool = False

    job = "backfill"

    def problem(self) -> Optional[str]:
        lines = self.failure_lines()
        for gateway_id in sorted(self.gateways):
            note = self.progress(gateway_id).last_run.get("incomplete_millisecond")
            if note:
                text = incomplete_millisecond_problem(note, "backfill")
                lines.append(f"gateway {gateway_id}: {text}" if self.fleet else text)
        return "\n".join(lines) or None

    def progress(self, gateway_id: str) -> BackfillProgress:
        return BackfillProgress(self.gateways.get(gateway_id, {}))

    @property
    def state(self) -> Dict[str, Any]:
        """The progress of the only gateway read (empty when several or none were)."""
        if len(self.gateways) != 1:
            return {}
        return next(iter(self.gateways.values()))

    @property
    def last_run(self) -> Dict[str, Any]:
        """The last run of the only gateway read (empty when several or none were)."""
        return BackfillProgress(self.state).last_run

    @property
    def done(self) -> bool:
        """Every gateway read has walked its whole history."""
        return bool(self.gateways) and all(self.progress(g).done for g in self.gateways)

    @property
    def logs_gone(self) -> int:
        return sum(self.progress(g).gone for g in self.gateways)

    def page_budget_reached(self, gateway_id: str) -> bool:
        last_run = self.progress(gateway_id).last_run
        return bool(last_run.get("page_budget_reached")) and not self.progress(gateway_id).done

    def describe(self, gateway_id: str) -> str:
        """Where one gateway's walk stands, compactly."""
        progress = self.progress(gateway_id)
        if progress.done:
            return "done"
        oldest, start = progress.oldest_loaded_ms, progress.start_ms
        text = "not started"
        if oldest is not None and start is not None:
            text = f"reached {format_ms(oldest)}"
        remaining = progress.last_run.get("logs_remaining_estimate")
        if remaining is not None:
            text += f", about {remaining:,} left"
        if self.time_budget_reached:
            text += " (time budget reached)"
        elif self.page_budget_reached(gateway_id):
            text += " (page budget reached)"
        return text

    def line(self) -> str:
        text = self.counts_text()
        if self.rate_limited:
            text += f" ({self.rate_limited} answered 429)"
        if self.fleet or not self.gateways:
            parts = self.gateway_parts(self.describe) if self.fleet or self.gone else ""
            text += "; " + (parts or "no gateway to read: the account has none yet")
            if self.logs_gone:
                text += (
                    f"; {self.logs_gone:,} older logs were gone before the backfill reached them"
                )
            return text + "."
        gateway_id = next(iter(self.gateways))
        progress = self.progress(gateway_id)
        last_run = progress.last_run
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
                eta = paced_seconds(remaining, self.per_page, pacing)
                text += f", about {format_duration(eta)} at {requests} requests per {window:g} s"
            if self.time_budget_reached:
                text += "; time budget reached, the next run continues"
            elif self.page_budget_reached(gateway_id):
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
    """Runs the backfill of every selected gateway within its page and time budgets and
    summarises it; raises on a failure of the run as a whole (what earlier chunks loaded stays
    loaded; a gateway's own failure is in the summary's `problem`).

    The budget, per gateway, is spent in loads of at most `BACKFILL_CHUNK_PAGES` pages per
    gateway, each committing its data and progress, so memory stays flat however long the run,
    and a kill loses one chunk. Later chunks read only the gateways the previous one cut.

    Args:
        pipeline: The `aig_logs` pipeline (`runner.make_pipeline`).
        max_pages: Page budget of this run, per gateway (default: `backfill_max_pages`).
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
    totals = BackfillSummary(
        pipeline_name=pipeline.pipeline_name, page_budget=budget, per_page=settings.per_page
    )
    spent = 0
    cut: List[str] = []
    while True:
        chunk = max(1, min(BACKFILL_CHUNK_PAGES, budget - spent))
        source_args["backfill_max_pages"] = chunk
        if deadline is not None:
            source_args["backfill_max_seconds"] = max(0.001, deadline - time.monotonic())
        source = aig_source(**source_args).with_resources(BACKFILL_RESOURCE)
        if spent:
            # later chunks read only the gateways the previous one cut; the others are done or
            # caught up, and a failed one would only fail again
            source.resources[BACKFILL_RESOURCE].bind(only=cut)
        loaded = run_resource(pipeline, source, BACKFILL_RESOURCE, rows)
        rows = loaded.rows_after
        totals.add(loaded)
        spent += chunk
        read = [
            g for g in loaded.state.get(LAST_RUN, {}).get("gateways", ()) if g in totals.gateways
        ]
        cut = [g for g in read if totals.page_budget_reached(g)]
        timed_out = any(totals.progress(g).last_run.get("time_budget_reached") for g in read)
        out_of_time = timed_out or (deadline is not None and time.monotonic() >= deadline)
        if not cut or out_of_time or spent >= budget:
            break
        logger.info("backfill: %s", totals.line())
    totals.time_budget_reached = out_of_time and not totals.done
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
