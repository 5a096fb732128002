"""The status job: every gateway's progress, read from the state in the destination (so it works
on a fresh machine), and a verdict against the freshness threshold; it makes no API request."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union

import dlt
from dlt.common.configuration import configspec, resolve_configuration
from dlt.common.configuration.specs import BaseConfiguration

from ..client import AigSourceError
from ..config import SECTIONS, gateway_ids
from ..fleet import FAILED, GONE
from ..logpush import BUCKETS
from ..logpush.ledger import FAILED as FAILED_FILES
from ..logpush.settings import LOGPUSH_RESOURCE
from ..ratelimit import paced_seconds
from ..runner import format_duration
from ..settings import (
    ALL_GATEWAYS,
    BACKFILL_RESOURCE,
    DEFAULT_FRESHNESS_THRESHOLD_SECONDS,
    DEFAULT_PER_PAGE,
    ENV_PREFIX,
    FORWARD_RESOURCE,
    RECONCILE_RESOURCE,
    WORKER_IMPORT_RESOURCE,
)
from ..state import (
    CURSOR,
    GATEWAYS,
    IMPORTS,
    LAST_RUN,
    ORIGINS,
    BackfillProgress,
    resources_of,
    source_state_of,
)
from ..timestamps import format_ms, now_ms, parse_ms

OK = "ok"
BEHIND = "behind"
STALE = "stale"
FAILING = "failing"
NEVER_RUN = "never run"


@configspec
class StatusConfiguration(BaseConfiguration):
    """What status needs of `[sources.aig_source]`: no token, since it asks no API."""

    gateway_id: Union[str, List[str], None] = None
    freshness_threshold_seconds: float = DEFAULT_FRESHNESS_THRESHOLD_SECONDS
    per_page: int = DEFAULT_PER_PAGE


def _ms(value: Any) -> Optional[int]:
    return None if value is None else parse_ms(str(value))


@dataclass
class GatewayStatus:
    """One gateway's progress as the committed state holds it."""

    gateway_id: str
    verdict: str
    cursor: Optional[str] = None
    gateway_newest: Optional[str] = None
    """The gateway's newest log as the last forward run saw it."""
    behind_seconds: Optional[float] = None
    """How far the cursor was behind `gateway_newest` at the last forward run."""
    last_run: Dict[str, Any] = field(default_factory=dict)
    last_run_age_seconds: Optional[float] = None
    failed: Optional[str] = None
    gone: bool = False
    backfill: Dict[str, Any] = field(default_factory=dict)
    reconcile: Dict[str, Any] = field(default_factory=dict)

    def text(self, threshold: float) -> str:
        head = f"gateway {self.gateway_id}: {self.verdict}"
        if self.verdict == NEVER_RUN:
            return head + "; no forward run has loaded it yet (python pipelines/forward.py)."
        parts = [head]
        if self.failed:
            parts.append(f"its last forward read failed: {self.failed}")
        if self.gone:
            parts.append("gone from the account (rows and progress kept)")
        if self.cursor is not None:
            behind = format_duration(self.behind_seconds or 0)
            parts.append(
                f"cursor {self.cursor}, {behind} behind the gateway's newest log at the last run"
            )
        if self.last_run:
            age = format_duration(self.last_run_age_seconds or 0)
            requests = int(self.last_run.get("api_requests", 0))
            parts.append(
                f"last forward run {self.last_run.get('finished_at')} ({age} ago,"
                f" {requests:,} request{'' if requests == 1 else 's'},"
                f" {int(self.last_run.get('logs_fetched', 0)):,} logs"
                + (", page budget reached" if self.last_run.get("page_budget_reached") else "")
                + ")"
            )
        if threshold and self.verdict in (BEHIND, STALE):
            parts.append(f"threshold {format_duration(threshold)}")
        parts.append(self._backfill_text())
        if self.reconcile:
            parts.append(self._reconcile_text())
        return "; ".join(part for part in parts if part) + "."

    def _backfill_text(self) -> str:
        backfill = self.backfill
        if not backfill:
            return "backfill not started"
        if backfill.get("done"):
            return f"backfill done ({int(backfill.get('loaded') or 0):,} logs loaded)"
        text = f"backfill reached {backfill.get('oldest_loaded') or backfill.get('start')}"
        if backfill.get("logs_left") is not None:
            text += f", about {backfill['logs_left']:,} logs left"
        if backfill.get("eta_seconds"):
            text += f" (about {format_duration(backfill['eta_seconds'])} of paced reading)"
        return text

    def _reconcile_text(self) -> str:
        run = self.reconcile
        checked = "window checked" if run.get("window_done") else "window not checked to its end"
        return (
            f"last reconcile {run.get('finished_at')} ({checked},"
            f" {int(run.get('logs_missing_loaded', 0)):,} missing logs loaded)"
        )


@dataclass
class LogpushStatus:
    """The Logpush job's last run and the files that keep failing, as the state holds them."""

    verdict: str
    last_run: Dict[str, Any] = field(default_factory=dict)
    last_run_age_seconds: Optional[float] = None
    failing_files: Dict[str, str] = field(default_factory=dict)

    def text(self) -> str:
        run = self.last_run
        text = (
            f"logpush: {self.verdict}; last run {run.get('finished_at')}"
            f" ({format_duration(self.last_run_age_seconds or 0)} ago,"
            f" {int(run.get('records', 0)):,} records from {int(run.get('files_loaded', 0)):,}"
            f" files of {run.get('bucket_url')})"
        )
        if self.failing_files:
            text += f"; {len(self.failing_files)} file(s) failing, read again by every run: " + (
                "; ".join(f"{key} ({cause})" for key, cause in sorted(self.failing_files.items()))
            )
        return text + "."


def logpush_status(
    resources: Dict[str, Any], threshold: float, now: int
) -> Optional[LogpushStatus]:
    """The Logpush job's status, or None when it never ran."""
    state = resources.get(LOGPUSH_RESOURCE)
    if not state or LAST_RUN not in state:
        return None
    last_run = dict(state[LAST_RUN])
    failing: Dict[str, str] = {}
    for ledger in state.get(BUCKETS, {}).values():
        failing.update(ledger.get(FAILED_FILES, {}))
    status = LogpushStatus(OK, last_run, failing_files=failing)
    finished_ms = _ms(last_run.get("finished_at"))
    if finished_ms is not None:
        status.last_run_age_seconds = max(0.0, (now - finished_ms) / 1000)
    if failing:
        status.verdict = FAILING
    elif threshold and (status.last_run_age_seconds or 0) > threshold:
        status.verdict = STALE
    return status


@dataclass
class StatusReport:
    """Every gateway of one pipeline, and whether each is fresh."""

    pipeline_name: str
    destination: str
    dataset: str
    threshold_seconds: float
    checked_at: str
    gateways: List[GatewayStatus] = field(default_factory=list)
    imports: Dict[str, Any] = field(default_factory=dict)
    logpush: Optional[LogpushStatus] = None
    as_json: bool = False

    @property
    def healthy(self) -> bool:
        jobs = [g.verdict for g in self.gateways]
        if self.logpush is not None:
            jobs.append(self.logpush.verdict)
        return bool(jobs) and all(verdict == OK for verdict in jobs)

    def figures(self) -> Dict[str, Any]:
        return {
            "pipeline": self.pipeline_name,
            "destination": self.destination,
            "dataset": self.dataset,
            "checked_at": self.checked_at,
            "freshness_threshold_seconds": self.threshold_seconds,
            "healthy": self.healthy,
            "gateways": {
                g.gateway_id: {key: value for key, value in vars(g).items() if key != "gateway_id"}
                for g in self.gateways
            },
            "worker_imports": self.imports,
            "logpush": None if self.logpush is None else vars(self.logpush),
        }

    def line(self) -> str:
        if self.as_json:
            return json.dumps(self.figures(), indent=2, sort_keys=True)
        threshold = (
            f"freshness threshold {format_duration(self.threshold_seconds)}"
            if self.threshold_seconds
            else "freshness check off"
        )
        lines = [
            f"{self.pipeline_name}: {self.destination} dataset {self.dataset}, {threshold};"
            f" state read from the destination at {self.checked_at}"
        ]
        if not self.gateways and self.logpush is None:
            lines.append("no gateway has been read yet: run python pipelines/forward.py.")
        lines += [g.text(self.threshold_seconds) for g in self.gateways]
        if self.logpush is not None:
            lines.append(self.logpush.text())
        for table, progress in sorted(self.imports.items()):
            done = "finished" if progress.get("finished") else "not finished (run it again)"
            lines.append(
                f"Worker import of {table}: {done}, {int(progress.get('logs_imported', 0)):,}"
                f" logs imported, loaded through {progress.get('loaded_through')}."
            )
        return "\n".join(lines)

    def problem(self) -> Optional[str]:
        lines = []
        for g in self.gateways:
            if g.verdict == NEVER_RUN:
                lines.append(f"gateway {g.gateway_id}: never run.")
            elif g.verdict == FAILING:
                lines.append(f"gateway {g.gateway_id}: its last forward read failed.")
            elif g.verdict == BEHIND:
                lines.append(
                    f"gateway {g.gateway_id}: {format_duration(g.behind_seconds or 0)} behind"
                    f" the gateway's newest log at the last run, more than the"
                    f" {format_duration(self.threshold_seconds)} allowed"
                    f" ({ENV_PREFIX}FRESHNESS_THRESHOLD_SECONDS)."
                )
            elif g.verdict == STALE:
                lines.append(
                    f"gateway {g.gateway_id}: no forward run for"
                    f" {format_duration(g.last_run_age_seconds or 0)}, more than the"
                    f" {format_duration(self.threshold_seconds)} allowed: is its schedule"
                    " running?"
                )
        if self.logpush is not None and self.logpush.verdict == FAILING:
            lines.append(
                f"logpush: {len(self.logpush.failing_files)} file(s) keep failing (see above)."
            )
        elif self.logpush is not None and self.logpush.verdict == STALE:
            lines.append(
                f"logpush: no run for {format_duration(self.logpush.last_run_age_seconds or 0)},"
                f" more than the {format_duration(self.threshold_seconds)} allowed: is its"
                " schedule running?"
            )
        if not self.gateways and self.logpush is None:
            lines.append("no gateway has been read yet.")
        return "\n".join(lines) or None


def gateway_status(
    gateway_id: str,
    resources: Dict[str, Any],
    failed: Dict[str, str],
    gone: List[str],
    threshold: float,
    per_page: int,
    now: int,
) -> GatewayStatus:
    """One gateway's status from the resources' state."""
    forward = resources.get(FORWARD_RESOURCE, {}).get(GATEWAYS, {}).get(gateway_id, {})
    last_run = dict(forward.get(LAST_RUN, {}))
    status = GatewayStatus(gateway_id=gateway_id, verdict=OK, last_run=last_run)
    status.cursor = forward.get(CURSOR)
    status.gateway_newest = last_run.get("gateway_newest")
    cursor_ms, newest_ms = _ms(status.cursor), _ms(status.gateway_newest)
    if cursor_ms is not None and newest_ms is not None:
        status.behind_seconds = max(0.0, (newest_ms - cursor_ms) / 1000)
    finished_ms = _ms(last_run.get("finished_at"))
    if finished_ms is not None:
        status.last_run_age_seconds = max(0.0, (now - finished_ms) / 1000)
    status.failed = failed.get(gateway_id)
    status.gone = gateway_id in gone
    backfill_state = resources.get(BACKFILL_RESOURCE, {}).get(GATEWAYS, {}).get(gateway_id)
    if backfill_state:
        status.backfill = backfill_figures(BackfillProgress(dict(backfill_state)), per_page)
    reconcile = resources.get(RECONCILE_RESOURCE, {}).get(GATEWAYS, {}).get(gateway_id, {})
    status.reconcile = dict(reconcile.get(LAST_RUN, {}))
    if not forward:
        status.verdict = NEVER_RUN
    elif status.failed:
        status.verdict = FAILING
    elif threshold and (status.behind_seconds or 0) > threshold:
        status.verdict = BEHIND
    elif threshold and (status.last_run_age_seconds or 0) > threshold:
        status.verdict = STALE
    return status


def backfill_figures(progress: BackfillProgress, per_page: int) -> Dict[str, Any]:
    """The backfill's progress, and the time its remaining logs take at the last run's pace."""
    last_run = progress.last_run
    left = last_run.get("logs_remaining_estimate")
    pacing = last_run.get("pacing") or {}
    eta = None
    if left and pacing and not progress.done:
        eta = paced_seconds(left, per_page, pacing)
    oldest, start = progress.oldest_loaded_ms, progress.start_ms
    return {
        "done": progress.done,
        "start": None if start is None else format_ms(start),
        "oldest_loaded": None if oldest is None else format_ms(oldest),
        "loaded": progress.loaded,
        "expected": progress.expected,
        "gone": progress.gone,
        "logs_left": None if progress.done else left,
        "eta_seconds": eta,
        "last_run_finished_at": last_run.get("finished_at"),
    }


def pipeline_status(pipeline: dlt.Pipeline, as_json: bool = False) -> StatusReport:
    """The status of every gateway the pipeline has read or is configured to read.

    Args:
        pipeline: The `aig_logs` pipeline (`runner.make_pipeline`); its state is synced from
            the destination first.
        as_json: Summarise as JSON (for tooling) instead of lines.

    Returns:
        The report; its `problem` names each gateway that is not fresh.
    """
    settings = resolve_configuration(StatusConfiguration(), sections=SECTIONS)
    try:
        configured = [g for g in gateway_ids(settings.gateway_id) if g != ALL_GATEWAYS]
    except AigSourceError:
        configured = []
    pipeline.sync_destination()
    committed = source_state_of(pipeline)
    resources = resources_of(dict(committed))
    forward_run = resources.get(FORWARD_RESOURCE, {}).get(LAST_RUN, {})
    known = set(committed.get(ORIGINS, {}))
    for resource in (FORWARD_RESOURCE, BACKFILL_RESOURCE, RECONCILE_RESOURCE):
        known |= set(resources.get(resource, {}).get(GATEWAYS, {}))
    now = now_ms()
    report = StatusReport(
        pipeline_name=pipeline.pipeline_name,
        destination=pipeline.destination.destination_name if pipeline.destination else "",
        dataset=pipeline.dataset_name,
        threshold_seconds=float(settings.freshness_threshold_seconds),
        checked_at=format_ms(now),
        imports=dict(resources.get(WORKER_IMPORT_RESOURCE, {}).get(IMPORTS, {})),
        as_json=as_json,
    )
    report.logpush = logpush_status(resources, report.threshold_seconds, now)
    for gateway_id in sorted(known | set(configured)):
        report.gateways.append(
            gateway_status(
                gateway_id,
                resources,
                dict(forward_run.get(FAILED, {})),
                list(forward_run.get(GONE, [])),
                report.threshold_seconds,
                int(settings.per_page),
                now,
            )
        )
    return report
