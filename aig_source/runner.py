"""What the pipeline scripts share: building the pipeline, running it, the summary and errors."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Protocol

import dlt
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.common.pipeline import LoadInfo
from dlt.destinations.exceptions import DatabaseUndefinedRelation
from dlt.pipeline.exceptions import PipelineStepFailed
from dlt.pipeline.helpers import pipeline_drop

from . import ConfigurationError, aig_source
from .client import AigSourceError, config_hint
from .destinations import destination_reference
from .destinations.errors import describe_destination_error
from .settings import (
    BACKFILL_CHUNK_PAGES,
    BACKFILL_RESOURCE,
    DATASET_NAME,
    DEFAULT_BACKFILL_MAX_PAGES,
    DEFAULT_DESTINATION,
    DEFAULT_LOADER_FILE_FORMAT,
    DEFAULT_LOG_LEVEL,
    DEFAULT_PER_PAGE,
    ENV_PREFIX,
    FORWARD_RESOURCE,
    LOADER_FILE_FORMATS,
    LOG_LEVELS,
    PIPELINE_NAME,
    SOURCE_SECTION,
    TABLE_NAME,
    TIE_MAX_PASSES,
)
from .state import LAST_RUN, forward_cursor, resource_state_of
from .timestamps import format_ms, parse_ms

logger = logging.getLogger(__name__)

_SECRET_FIELDS = {"api_token"}


def make_pipeline(
    pipeline_name: str = PIPELINE_NAME,
    destination: Optional[Any] = None,
    pipelines_dir: Optional[str] = None,
    dataset_name: Optional[str] = None,
) -> dlt.Pipeline:
    """The `aig_logs` pipeline into the dataset named by `dataset_name` (config `dataset_name`,
    env `DATASET_NAME`; `ai_gateway` when unset).

    With no explicit destination, dlt's own `destination_type` setting chooses it
    (`destination_type` in `.dlt/config.toml`, `DESTINATION_TYPE`): a destination reference such as
    `aig_source.destinations.bigquery`, this project's variant of dlt's destination whose merge
    reads only the target rows the batch's `created_at` range can hold; dlt's short names
    `bigquery` and `duckdb` stand for these. DuckDB when unset.
    """
    dataset_name = dataset_name or dlt.config.get("dataset_name", str) or DATASET_NAME
    options: Dict[str, Any] = {"pipeline_name": pipeline_name, "dataset_name": dataset_name}
    if pipelines_dir is not None:
        options["pipelines_dir"] = pipelines_dir
    if destination is None:
        configured = dlt.config.get("destination_type", str) or DEFAULT_DESTINATION
        destination = destination_reference(configured)
    pipeline: dlt.Pipeline = dlt.pipeline(destination=destination, **options)
    return pipeline


def configure_logging() -> None:
    """The pipeline's log lines on stderr at `log_level` (`[sources.aig_source]`, env
    `SOURCES__AIG_SOURCE__LOG_LEVEL`; the old Worker's LOG_LEVEL); the summary goes to stdout."""
    configured = dlt.config.get(f"sources.{SOURCE_SECTION}.log_level", str)
    level = str(configured or DEFAULT_LOG_LEVEL).upper()
    if level not in LOG_LEVELS:
        raise ConfigurationError(
            f"log_level must be one of {', '.join(LOG_LEVELS)}, not {configured!r}: set"
            f" {config_hint('log_level')}."
        )
    package_logger = logging.getLogger("aig_source")
    if not any(getattr(h, "aig_logs", False) for h in package_logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        handler.aig_logs = True  # type: ignore[attr-defined]
        package_logger.addHandler(handler)
    package_logger.setLevel(level)


def loader_file_format(pipeline: dlt.Pipeline) -> str:
    name = pipeline.destination.destination_name if pipeline.destination else ""
    return LOADER_FILE_FORMATS.get(name, DEFAULT_LOADER_FILE_FORMAT)


def count_rows(pipeline: dlt.Pipeline, table: str = TABLE_NAME) -> int:
    """Rows in the destination table; 0 when it does not exist yet.

    On BigQuery an unfiltered COUNT(*) is answered from table metadata and bills no bytes.
    """
    if not pipeline.default_schema_name or table not in pipeline.default_schema.tables:
        return 0
    try:
        with pipeline.sql_client() as client:
            rows = client.execute_sql(
                f"SELECT COUNT(*) AS row_count FROM {client.make_qualified_table_name(table)}"
            )
    except DatabaseUndefinedRelation:  # declared in the schema, not created yet
        return 0
    return int(rows[0][0]) if rows else 0


@dataclass
class RunSummary:
    """What one forward run did, for the closing summary line."""

    logs_fetched: int
    logs_new: int
    api_requests: int
    cursor: Optional[str]
    gateway_newest: Optional[str]
    page_budget_reached: bool
    max_pages: int
    load_info: Optional[LoadInfo]
    freshness_threshold_seconds: float = 0
    incomplete_millisecond: Optional[Dict[str, Any]] = None

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
        already = max(0, self.logs_fetched - self.logs_new)
        text = (
            f"aig_logs forward: {self.logs_fetched:,} logs fetched ({self.logs_new:,} new,"
            f" {already:,} already loaded and merged), {self.api_requests:,} API requests; "
        )
        if self.cursor is None:
            return text + "no logs in the gateway at or after the origin yet, cursor not set."
        text += f"cursor {self.cursor}; "
        if self.page_budget_reached and self.behind_seconds > 0:
            return text + (
                f"{format_duration(self.behind_seconds)} behind the gateway's newest log"
                f" ({self.gateway_newest}): page budget of {self.max_pages} reached, the next run"
                " continues from the cursor."
            )
        return text + "caught up with the gateway's newest log."


def incomplete_millisecond_problem(note: Dict[str, Any], progress: str) -> str:
    """The one line for a millisecond whose logs could not all be read."""
    return (
        f"{note['total_count']:,} logs share the millisecond {note['at']}, but paging it"
        f" {TIE_MAX_PASSES} times returned only {note['read']:,} of them (the API's order inside"
        f" it is not stable). The {progress} stays at that millisecond and the next run reads it"
        " again; nothing after it was skipped."
    )


def format_duration(seconds: float) -> str:
    seconds = round(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


@dataclass
class _Loaded:
    state: Dict[str, Any]
    new_rows: int
    rows_after: int
    info: LoadInfo


def _rows_before(pipeline: dlt.Pipeline) -> int:
    """The table's rows before a run; syncs first, so a fresh machine counts the destination's."""
    pipeline.sync_destination()
    return count_rows(pipeline)


def _run_resource(
    pipeline: dlt.Pipeline, resource: str, rows_before: int, **source_args: Any
) -> _Loaded:
    """Runs one resource of the source; the table's row count after it, against `rows_before`,
    tells new logs from re-read ones (a metadata-only query on BigQuery)."""
    source = aig_source(**source_args).with_resources(resource)
    info = pipeline.run(source, loader_file_format=loader_file_format(pipeline))  # type: ignore[arg-type]
    rows_after = count_rows(pipeline)
    return _Loaded(
        resource_state_of(pipeline, resource), rows_after - rows_before, rows_after, info
    )


def run_forward(
    pipeline: dlt.Pipeline, max_pages: Optional[int] = None, **source_args: Any
) -> RunSummary:
    """Runs the forward resource once and summarises it; raises on any failure."""
    if max_pages is not None:
        source_args["forward_max_pages"] = max_pages
    loaded = _run_resource(pipeline, FORWARD_RESOURCE, _rows_before(pipeline), **source_args)
    last_run = loaded.state.get(LAST_RUN, {})
    cursor = forward_cursor(loaded.state)
    return RunSummary(
        logs_fetched=int(last_run.get("logs_fetched", 0)),
        logs_new=loaded.new_rows,
        api_requests=int(last_run.get("api_requests", 0)),
        cursor=format_ms(parse_ms(cursor)) if cursor is not None else None,
        gateway_newest=last_run.get("gateway_newest"),
        page_budget_reached=bool(last_run.get("page_budget_reached")),
        max_pages=int(last_run.get("page_budget", 0)),
        load_info=loaded.info,
        freshness_threshold_seconds=float(last_run.get("freshness_threshold_seconds") or 0),
        incomplete_millisecond=last_run.get("incomplete_millisecond"),
    )


@dataclass
class BackfillSummary:
    """What one backfill run (one or more chunks) did and how far the history is."""

    logs_fetched: int = 0
    logs_new: int = 0
    api_requests: int = 0
    pages: int = 0
    rate_limited: int = 0
    state: Dict[str, Any] = field(default_factory=dict)
    load_info: Optional[LoadInfo] = None
    page_budget: int = 0
    page_budget_reached: bool = False
    time_budget_reached: bool = False

    def problem(self) -> Optional[str]:
        note = self.last_run.get("incomplete_millisecond")
        return incomplete_millisecond_problem(note, "backfill") if note else None

    def add(self, last_run: Dict[str, Any], loaded: _Loaded) -> None:
        self.logs_fetched += int(last_run.get("logs_fetched", 0))
        self.logs_new += loaded.new_rows
        self.api_requests += int(last_run.get("api_requests", 0))
        self.pages += int(last_run.get("pages", 0))
        self.rate_limited += int(last_run.get("rate_limited", 0))
        self.state = loaded.state
        self.load_info = loaded.info

    @property
    def last_run(self) -> Dict[str, Any]:
        return dict(self.state.get("last_run", {}))

    @property
    def done(self) -> bool:
        return bool(self.state.get("done"))

    @property
    def logs_gone(self) -> int:
        return int(self.state.get("gone", 0))

    def line(self) -> str:
        state, last_run = self.state, self.last_run
        already = max(0, self.logs_fetched - self.logs_new)
        text = (
            f"aig_logs backfill: {self.logs_fetched:,} logs fetched ({self.logs_new:,} new,"
            f" {already:,} already loaded and merged), {self.api_requests:,} API requests"
        )
        if self.rate_limited:
            text += f" ({self.rate_limited} answered 429)"
        oldest = state.get("oldest_loaded")
        start = state.get("start")
        if oldest and start:
            back = format_duration((parse_ms(start) - parse_ms(oldest)) / 1000)
            text += f"; reached {oldest} ({back} before the origin {start})"
        if self.done:
            bottom = (
                f"reached --since {state.get('since')}"
                if state.get("done_reason") == "since"
                else "reached the gateway's oldest log"
            )
            text += f"; done: {bottom}, later runs make no request"
        else:
            remaining = last_run.get("logs_remaining_estimate")
            pacing = last_run.get("pacing") or {}
            if remaining is not None:
                text += f"; about {remaining:,} logs left"
            if remaining and pacing:
                requests, window = pacing["requests"], pacing["window_seconds"]
                per_page = int(last_run.get("per_page") or DEFAULT_PER_PAGE)
                eta = remaining / per_page * window / requests
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
    """
    budget = max_pages or int(
        source_args.get("backfill_max_pages")
        or dlt.config.get(f"sources.{SOURCE_SECTION}.backfill_max_pages", int)
        or DEFAULT_BACKFILL_MAX_PAGES
    )
    if since is not None:
        source_args["backfill_since"] = since
    deadline = time.monotonic() + max_minutes * 60 if max_minutes is not None else None
    if reset:
        reset_backfill(pipeline)
    rows = _rows_before(pipeline)
    totals = BackfillSummary(page_budget=budget)
    while True:
        chunk = min(BACKFILL_CHUNK_PAGES, budget - totals.pages)
        source_args["backfill_max_pages"] = max(1, chunk)
        if deadline is not None:
            source_args["backfill_max_seconds"] = max(0.001, deadline - time.monotonic())
        loaded = _run_resource(pipeline, BACKFILL_RESOURCE, rows, **source_args)
        rows = loaded.rows_after
        last_run = loaded.state.get(LAST_RUN, {})
        totals.add(last_run, loaded)
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
    run walks the history again from the forward start; the merge absorbs what it re-reads."""
    pipeline.sync_destination()
    if not pipeline.default_schema_name:
        return
    drop = pipeline_drop(pipeline, resources=[BACKFILL_RESOURCE], state_only=True)
    if not drop.is_empty:
        drop()


def _causes(error: BaseException) -> Iterator[BaseException]:
    seen = set()
    current: Optional[BaseException] = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        if isinstance(current, PipelineStepFailed):
            current = current.exception
        else:
            current = current.__cause__ or current.__context__


def describe_failure(error: BaseException, demo_hint: bool = True) -> str:
    """One line that says why a run failed and what to do; never includes a secret value."""
    for cause in _causes(error):
        if isinstance(cause, ConfigFieldMissingException):
            destination = getattr(cause.config, "destination_type", None)
            if destination:
                return missing_destination_message(str(destination), cause.fields)
            return missing_config_message(cause.fields, demo_hint)
        if isinstance(cause, AigSourceError):
            return str(cause)
        destination_problem = describe_destination_error(cause)
        if destination_problem:
            return destination_problem
    root = list(_causes(error))[-1]
    first_line = (str(root).strip().splitlines() or [""])[0]
    return f"{type(root).__name__}: {first_line}"


def missing_destination_message(destination: str, fields: List[str]) -> str:
    name = destination.rsplit(".", 1)[-1]
    names = ", ".join(
        f"DESTINATION__{name.upper()}__{key.upper()} ({key} under [destination.{name}] in"
        " .dlt/secrets.toml)"
        for key in fields
    )
    text = f"Missing configuration of the {name} destination: set {names}."
    if name == "bigquery":
        text += (
            " DESTINATION__BIGQUERY__CREDENTIALS takes the whole service-account JSON; without it"
            " Application Default Credentials are used when present. Unset DESTINATION_TYPE to"
            " load into local DuckDB instead."
        )
    return text


def missing_config_message(fields: List[str], demo_hint: bool = True) -> str:
    names = []
    for key in fields:
        toml = ".dlt/secrets.toml" if key in _SECRET_FIELDS else ".dlt/config.toml"
        names.append(f"{ENV_PREFIX}{key.upper()} ({key} under [sources.aig_source] in {toml})")
    text = "Missing configuration: set " + ", ".join(names) + "."
    if demo_hint:
        text += " To try the pipeline without a Cloudflare account, run it with --demo."
    return text


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


class Summarised(Protocol):
    def line(self) -> str: ...

    def problem(self) -> Optional[str]: ...


def run_and_report(action: Callable[[], Optional[Summarised]], demo_hint: bool = True) -> int:
    """What a pipeline script does around its run: the summary line on success (exit 0), or one
    line saying why on stderr (exit 1)."""
    try:
        configure_logging()
        summary = action()
    except Exception as error:  # every failure ends as one line and exit code 1
        return fail(describe_failure(error, demo_hint=demo_hint))
    if summary is None:
        return 0
    print(summary.line())
    problem = summary.problem()
    return fail(problem) if problem else 0
