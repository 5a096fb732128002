"""The forward job: new logs since each gateway's cursor, and late ones in its lookback window."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import dlt

from .. import aig_source
from ..config import resolve_source_configuration
from ..runner import JobSummary, format_duration, incomplete_millisecond_problem, run_resource
from ..settings import ENV_PREFIX, FORWARD_RESOURCE
from ..state import CURSOR
from ..timestamps import parse_ms


@dataclass
class ForwardSummary(JobSummary):
    """What one forward run did, for the closing summary line."""

    max_pages: int = 0
    freshness_threshold_seconds: float = 0

    job = "forward"

    def cursor_of(self, gateway_id: str) -> Optional[str]:
        """The gateway's cursor after the run: its newest log loaded; None before the first."""
        value = self.gateways.get(gateway_id, {}).get(CURSOR)
        return None if value is None else str(value)

    def newest_of(self, gateway_id: str) -> Optional[str]:
        """The gateway's newest log: probed when the budget cut the run, else the newest read,
        since the read ended on a short page; None when unknown."""
        value = self.last_run_of(gateway_id).get("gateway_newest")
        return None if value is None else str(value)

    def budget_reached_of(self, gateway_id: str) -> bool:
        return bool(self.last_run_of(gateway_id).get("page_budget_reached"))

    @property
    def page_budget_reached(self) -> bool:
        """Some gateway's read was cut by the page budget: the next run continues it."""
        return any(self.budget_reached_of(gateway_id) for gateway_id in self.gateways)

    @property
    def cursor(self) -> Optional[str]:
        """The oldest cursor of the gateways read (the only one's, with one gateway)."""
        cursors = [c for c in map(self.cursor_of, self.gateways) if c is not None]
        return min(cursors, key=parse_ms) if cursors else None

    @property
    def gateway_newest(self) -> Optional[str]:
        """The newest log of the gateway furthest behind (the only one's, with one gateway)."""
        if not self.gateways:
            return None
        return self.newest_of(max(self.gateways, key=self.behind_of))

    @property
    def incomplete_millisecond(self) -> Optional[Dict[str, Any]]:
        """A millisecond some gateway could not read completely, if any."""
        for gateway_id in sorted(self.gateways):
            note: Optional[Dict[str, Any]] = self.last_run_of(gateway_id).get(
                "incomplete_millisecond"
            )
            if note:
                return note
        return None

    @property
    def behind_seconds(self) -> float:
        """How far the gateway furthest behind is behind its newest log."""
        return max(map(self.behind_of, self.gateways), default=0.0)

    def behind_of(self, gateway_id: str) -> float:
        cursor, newest = self.cursor_of(gateway_id), self.newest_of(gateway_id)
        if cursor is None or newest is None:
            return 0.0
        return max(0.0, (parse_ms(newest) - parse_ms(cursor)) / 1000)

    def problem(self) -> Optional[str]:
        """Why this run should fail the scheduled job, one line per cause, if it should."""
        lines: List[str] = self.failure_lines()
        for gateway_id in sorted(self.gateways):
            note = self.last_run_of(gateway_id).get("incomplete_millisecond")
            if note:
                lines.append(
                    self._named(gateway_id, incomplete_millisecond_problem(note, "cursor"))
                )
        threshold = self.freshness_threshold_seconds
        behind = [g for g in sorted(self.gateways) if threshold and self.behind_of(g) > threshold]
        for gateway_id in behind:
            lines.append(
                self._named(
                    gateway_id,
                    f"the forward pipeline is {format_duration(self.behind_of(gateway_id))}"
                    " behind the gateway's newest log, more than the"
                    f" {format_duration(threshold)} allowed"
                    f" ({ENV_PREFIX}FRESHNESS_THRESHOLD_SECONDS). Raise"
                    f" {ENV_PREFIX}FORWARD_MAX_PAGES or run it more often.",
                )
            )
        return "\n".join(lines) or None

    def _named(self, gateway_id: str, text: str) -> str:
        return f"gateway {gateway_id}: {text}" if self.fleet else text

    def describe(self, gateway_id: str) -> str:
        """Where one gateway stands after the run, compactly."""
        cursor = self.cursor_of(gateway_id)
        if cursor is None:
            return "no logs yet"
        behind = self.behind_of(gateway_id)
        if self.budget_reached_of(gateway_id) and behind > 0:
            return f"{format_duration(behind)} behind (page budget reached)"
        if self.budget_reached_of(gateway_id):
            return "lookback window not checked to its end (page budget reached)"
        return "caught up"

    def line(self) -> str:
        text = self.counts_text() + "; "
        if self.fleet or (not self.gateways and self.gone):
            return text + self.gateway_parts(self.describe) + "."
        if not self.gateways:
            return text + "no gateway to read: the account has none yet."
        gateway_id = next(iter(self.gateways))
        cursor = self.cursor_of(gateway_id)
        if cursor is None:
            return text + "no logs in the gateway at or after the origin yet, cursor not set."
        text += f"cursor {cursor}; "
        behind = self.behind_of(gateway_id)
        if self.budget_reached_of(gateway_id) and behind > 0:
            return text + (
                f"{format_duration(behind)} behind the gateway's newest log"
                f" ({self.newest_of(gateway_id)}): page budget of {self.max_pages} reached,"
                " the next run continues from the cursor."
            )
        if self.budget_reached_of(gateway_id):
            return text + (
                f"page budget of {self.max_pages} reached before the lookback window was checked"
                " to its end; the next run checks it again."
            )
        return text + "caught up with the gateway's newest log."


def run_forward(
    pipeline: dlt.Pipeline, max_pages: Optional[int] = None, **source_args: Any
) -> ForwardSummary:
    """Runs the forward resource once over every selected gateway and summarises it; raises on
    a failure of the run as a whole (a gateway's own failure is in the summary's `problem`).

    Args:
        pipeline: The `aig_logs` pipeline (`runner.make_pipeline`).
        max_pages: Page budget of this run, per gateway (default: `forward_max_pages`).
        **source_args: Settings over the configuration (`config.LogsApiSourceConfiguration`).

    Returns:
        The run's summary.
    """
    if max_pages is not None:
        source_args["forward_max_pages"] = max_pages
    settings = resolve_source_configuration(**source_args)
    source = aig_source(**source_args).with_resources(FORWARD_RESOURCE)
    loaded = run_resource(pipeline, source, FORWARD_RESOURCE)
    summary = ForwardSummary(
        pipeline_name=pipeline.pipeline_name,
        max_pages=settings.forward_max_pages,
        freshness_threshold_seconds=settings.freshness_threshold_seconds,
    )
    summary.add(loaded)
    return summary
