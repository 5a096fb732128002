"""The forward job: new logs since the cursor, and late ones in the lookback window."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

import dlt

from .. import aig_source
from ..config import resolve_source_configuration
from ..runner import JobSummary, format_duration, incomplete_millisecond_problem, run_resource
from ..settings import FORWARD_RESOURCE
from ..state import LAST_RUN, forward_cursor
from ..timestamps import format_ms, parse_ms


@dataclass
class ForwardSummary(JobSummary):
    """What one forward run did, for the closing summary line."""

    cursor: Optional[str] = None
    gateway_newest: Optional[str] = None
    """The gateway's newest log: probed when the budget cut the run, else the newest read, since
    the read ended on a short page; None when unknown."""
    page_budget_reached: bool = False
    max_pages: int = 0
    freshness_threshold_seconds: float = 0
    incomplete_millisecond: Optional[Dict[str, Any]] = None

    job = "forward"

    def problem(self) -> Optional[str]:
        """Why this otherwise successful run should fail the scheduled job, if it should."""
        if self.incomplete_millisecond:
            return incomplete_millisecond_problem(self.incomplete_millisecond, "cursor")
        threshold = self.freshness_threshold_seconds
        if threshold and self.behind_seconds > threshold:
            return (
                f"the forward pipeline is {format_duration(self.behind_seconds)} behind the"
                f" gateway's newest log, more than the {format_duration(threshold)} allowed"
                " (SOURCES__AIG_SOURCE__FRESHNESS_THRESHOLD_SECONDS). Raise"
                " SOURCES__AIG_SOURCE__FORWARD_MAX_PAGES or run it more often."
            )
        return None

    @property
    def behind_seconds(self) -> float:
        if self.cursor is None or self.gateway_newest is None:
            return 0.0
        return max(0.0, (parse_ms(self.gateway_newest) - parse_ms(self.cursor)) / 1000)

    def line(self) -> str:
        text = self.counts_text() + "; "
        if self.cursor is None:
            return text + "no logs in the gateway at or after the origin yet, cursor not set."
        text += f"cursor {self.cursor}; "
        if self.page_budget_reached and self.behind_seconds > 0:
            return text + (
                f"{format_duration(self.behind_seconds)} behind the gateway's newest log"
                f" ({self.gateway_newest}): page budget of {self.max_pages} reached, the next run"
                " continues from the cursor."
            )
        if self.page_budget_reached:
            return text + (
                f"page budget of {self.max_pages} reached before the lookback window was checked"
                " to its end; the next run checks it again."
            )
        return text + "caught up with the gateway's newest log."


def run_forward(
    pipeline: dlt.Pipeline, max_pages: Optional[int] = None, **source_args: Any
) -> ForwardSummary:
    """Runs the forward resource once and summarises it; raises on any failure.

    Args:
        pipeline: The `aig_logs` pipeline (`runner.make_pipeline`).
        max_pages: Page budget of this run (default: `forward_max_pages`).
        **source_args: Settings over the configuration (`config.LogsApiSourceConfiguration`).

    Returns:
        The run's summary.
    """
    if max_pages is not None:
        source_args["forward_max_pages"] = max_pages
    settings = resolve_source_configuration(**source_args)
    source = aig_source(**source_args).with_resources(FORWARD_RESOURCE)
    loaded = run_resource(pipeline, source, FORWARD_RESOURCE)
    last_run = loaded.state.get(LAST_RUN, {})
    cursor = forward_cursor(loaded.state)
    summary = ForwardSummary(
        cursor=format_ms(parse_ms(cursor)) if cursor is not None else None,
        gateway_newest=last_run.get("gateway_newest"),
        page_budget_reached=bool(last_run.get("page_budget_reached")),
        max_pages=settings.forward_max_pages,
        freshness_threshold_seconds=settings.freshness_threshold_seconds,
        incomplete_millisecond=last_run.get("incomplete_millisecond"),
    )
    summary.add(last_run, loaded)
    return summary
