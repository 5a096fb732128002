"""What the pipeline scripts share: building the pipeline, running it, the summary and errors."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Dict, Iterator, List, Optional, Protocol

import dlt
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.common.destination import Destination
from dlt.common.pipeline import LoadInfo
from dlt.destinations.exceptions import DatabaseUndefinedRelation
from dlt.extract import DltSource
from dlt.pipeline.exceptions import PipelineStepFailed

from .client import SECRET_SETTINGS, AigSourceError, config_hint, one_line
from .config import resolve_logging_configuration
from .destinations import destination_reference
from .destinations.errors import describe_destination_error
from .fleet import FAILED, GATEWAY_THREAD_PREFIX, GONE, failure_lines
from .settings import (
    DATASET_NAME,
    DEFAULT_DESTINATION,
    DEFAULT_LOADER_FILE_FORMAT,
    LOADER_FILE_FORMATS,
    PIPELINE_NAME,
    SOURCE_SECTION,
    TABLE_NAME,
    TIE_MAX_PASSES,
)
from .state import GATEWAYS, LAST_RUN, resource_state_of
from .table import table_declared
from .upgrade import fill_origin_columns
from .views import ensure_views
from .worker.warehouse import ensure_table_is_ours

logger = logging.getLogger(__name__)


def make_pipeline(
    pipeline_name: Optional[str] = None,
    destination: Optional[Any] = None,
    pipelines_dir: Optional[str] = None,
    dataset_name: Optional[str] = None,
) -> dlt.Pipeline:
    """The pipeline named by `pipeline_name` (config `pipeline_name`, env `PIPELINE_NAME`;
    `aig_logs` when unset) into the dataset named by `dataset_name` (config `dataset_name`, env
    `DATASET_NAME`; `ai_gateway` when unset).

    One pipeline reads one Cloudflare account. Several accounts load into one dataset and table
    through one pipeline each (`aig_logs_acme`, `aig_logs_globex`): dlt keeps each pipeline's
    state apart, and each gets its own staging dataset (`<dataset>_staging_<pipeline>`), so runs
    of different accounts may overlap without touching each other's state or staged rows.

    With no explicit destination, dlt's own `destination_type` setting chooses it
    (`destination_type` in `.dlt/config.toml`, `DESTINATION_TYPE`): a destination reference such as
    `aig_source.destinations.bigquery`, this project's variant of dlt's destination whose merge
    reads only the target rows the batch's `created_at` range can hold; dlt's short names
    `bigquery` and `duckdb` stand for these. DuckDB when unset.
    """
    pipeline_name = pipeline_name or dlt.config.get("pipeline_name", str) or PIPELINE_NAME
    dataset_name = dataset_name or dlt.config.get("dataset_name", str) or DATASET_NAME
    options: Dict[str, Any] = {"pipeline_name": pipeline_name, "dataset_name": dataset_name}
    if pipelines_dir is not None:
        options["pipelines_dir"] = pipelines_dir
    if destination is None:
        configured = dlt.config.get("destination_type", str) or DEFAULT_DESTINATION
        destination = destination_reference(configured)
        if pipeline_name != PIPELINE_NAME:
            destination = Destination.from_reference(
                destination, staging_dataset_name_layout=f"%s_staging_{pipeline_name}"
            )
    pipeline: dlt.Pipeline = dlt.pipeline(destination=destination, **options)
    return pipeline


class GatewayFormatter(logging.Formatter):
    """Prefixes a log line written while reading one gateway with `gateway <id>:`."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        thread = record.threadName or ""
        if thread.startswith(GATEWAY_THREAD_PREFIX):
            record.message = f"gateway {thread[len(GATEWAY_THREAD_PREFIX) :]}: {record.message}"
        return super().formatMessage(record)


def configure_logging() -> None:
    """The pipeline's log lines on stderr at `log_level` (`[sources.aig_source]`, env
    `SOURCES__AIG_SOURCE__LOG_LEVEL`; the old Worker's LOG_LEVEL); the summary goes to stdout."""
    level = resolve_logging_configuration().log_level
    package_logger = logging.getLogger("aig_source")
    if not any(getattr(h, "aig_logs", False) for h in package_logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(GatewayFormatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
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
    if not table_declared(pipeline, table):
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
class JobSummary:
    """What every job's run did over all its gateways: logs, requests, the load, the gateways
    that failed or are gone; each job adds its own progress per gateway."""

    logs_fetched: int = 0
    logs_new: int = 0
    api_requests: int = 0
    pages: int = 0
    rate_limited: int = 0
    load_info: Optional[LoadInfo] = None
    pipeline_name: str = PIPELINE_NAME
    gateways: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    """Each gateway read successfully by the last load: its progress after it, by id."""
    failed: Dict[str, str] = field(default_factory=dict)
    """Gateways whose read failed, and why; their progress did not change."""
    gone: List[str] = field(default_factory=list)
    """Gateways deleted from the account (with `*`); their rows and progress are kept."""

    job: ClassVar[str] = "run"

    def add(self, loaded: Loaded) -> None:
        """Counts one load of the job into the summary."""
        outcome = loaded.state.get(LAST_RUN, {})
        read = {
            gateway_id: progress
            for gateway_id, progress in loaded.state.get(GATEWAYS, {}).items()
            if gateway_id in outcome.get("gateways", ())
            and gateway_id not in outcome.get(FAILED, {})
            and gateway_id not in outcome.get(GONE, ())
        }
        fetched = 0
        for progress in read.values():
            last_run = progress.get(LAST_RUN, {})
            fetched += int(last_run.get("logs_fetched", 0))
            self.pages += int(last_run.get("pages", 0))
        self.logs_fetched += fetched
        self.gateways.update(read)
        self.failed.update(outcome.get(FAILED, {}))
        self.gone = sorted(set(self.gone) | set(outcome.get(GONE, ())))
        # the table's growth; another account's pipeline loading into it at the same moment
        # can add to it, so it counts no more than this load fetched
        self.logs_new += min(loaded.new_rows, fetched)
        self.api_requests += int(outcome.get("api_requests", 0))
        self.rate_limited += int(outcome.get("rate_limited", 0))
        self.load_info = loaded.info

    def last_run_of(self, gateway_id: str) -> Dict[str, Any]:
        last_run: Dict[str, Any] = self.gateways.get(gateway_id, {}).get(LAST_RUN, {})
        return last_run

    @property
    def fleet(self) -> bool:
        """More than one gateway to speak of: the summary then names each."""
        return len(set(self.gateways) | set(self.failed) | set(self.gone)) > 1

    def counts_text(self) -> str:
        already = max(0, self.logs_fetched - self.logs_new)
        return (
            f"{self.pipeline_name} {self.job}: {self.logs_fetched:,} logs fetched"
            f" ({self.logs_new:,} new, {already:,} already loaded and merged),"
            f" {self.api_requests:,} API requests"
        )

    def gateway_parts(self, describe: Callable[[str], str]) -> str:
        """The compact per-gateway part of the line: `describe` for each gateway read, then the
        failed and the gone ones."""
        parts = [f"{gateway_id} {describe(gateway_id)}" for gateway_id in sorted(self.gateways)]
        parts += [f"{gateway_id} failed (see below)" for gateway_id in sorted(self.failed)]
        parts += [
            f"{gateway_id} gone from the account (rows and progress kept)"
            for gateway_id in self.gone
        ]
        count = len(self.gateways) + len(self.failed) + len(self.gone)
        return f"{count} gateways: " + "; ".join(parts)

    def failure_lines(self) -> List[str]:
        return failure_lines(self.failed)


def incomplete_millisecond_problem(note: Dict[str, Any], progress: str) -> str:
    """The one line for a millisecond whose logs could not all be read."""
    return (
        f"{note['total_count']:,} logs share the millisecond {note['at']}, but paging it"
        f" {TIE_MAX_PASSES} times returned only {note['read']:,} of them (the API's order inside"
        f" it is not stable). The {progress} does not move past it: the next run reads it again,"
        " and nothing else was skipped."
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
class Loaded:
    """One load of a job's resource: its state after it, and how the table's rows changed."""

    state: Dict[str, Any]
    new_rows: int
    rows_after: int
    info: LoadInfo


def rows_before_run(pipeline: dlt.Pipeline) -> int:
    """The table's rows before a run; syncs first, so a fresh machine counts the destination's.
    Stops with one line, before anything loads, when `aig_logs` in the dataset is not this
    pipeline's table (the old Worker's view, typically)."""
    pipeline.sync_destination()
    ensure_table_is_ours(pipeline)
    return count_rows(pipeline)


def run_resource(
    pipeline: dlt.Pipeline, source: DltSource, resource: str, rows_before: Optional[int] = None
) -> Loaded:
    """Loads a source with one resource selected; the table's row count after it, against
    `rows_before` (counted now when not given), tells new logs from re-read ones (a
    metadata-only query on BigQuery)."""
    if rows_before is None:
        rows_before = rows_before_run(pipeline)
    info = pipeline.run(source, loader_file_format=loader_file_format(pipeline))  # type: ignore[arg-type]
    fill_origin_columns(pipeline)
    keep_views(pipeline)
    rows_after = count_rows(pipeline)
    progress = resource_state_of(pipeline, resource)
    return Loaded(progress, rows_after - rows_before, rows_after, info)


def keep_views(pipeline: dlt.Pipeline) -> None:
    """Writes the analysis views a load finds missing or outdated (see `views.py`)."""
    try:
        ensure_views(pipeline)
    except Exception as error:
        raise AigSourceError(
            "The logs were loaded, but the analysis views could not be written:"
            f" {describe_failure(error)} The next run writes them again."
        ) from error


def causes(error: BaseException) -> Iterator[BaseException]:
    """`error`, then what caused it, through dlt's step and extraction wrappers."""
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
    for cause in causes(error):
        if isinstance(cause, ConfigFieldMissingException):
            destination = getattr(cause.config, "destination_type", None)
            if destination:
                return missing_destination_message(str(destination), cause.fields)
            section = getattr(cause.config, "config_section", SOURCE_SECTION)
            return missing_config_message(cause.fields, demo_hint, section)
        if isinstance(cause, AigSourceError):
            return str(cause)
        destination_problem = describe_destination_error(cause)
        if destination_problem:
            return destination_problem
    return one_line(list(causes(error))[-1])


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


DLT_FILLED_SETTINGS = frozenset({"local_dir", "pipeline_name"})


def missing_config_message(
    fields: List[str], demo_hint: bool = True, section: str = SOURCE_SECTION
) -> str:
    # dlt fills these itself (the filesystem settings' local folder) once the rest resolves
    fields = [key for key in fields if key not in DLT_FILLED_SETTINGS] or fields
    names = [config_hint(key, key in SECRET_SETTINGS, section) for key in fields]
    text = "Missing configuration: set " + ", ".join(names) + "."
    if demo_hint:
        # only forward.py and backfill.py have a demo: name the one every user starts with
        text += (
            " To try the pipeline without a Cloudflare account, run: python pipelines/forward.py"
            " --demo"
        )
    return text


def fail(message: str) -> int:
    """Prints each line of `message` as an error line (one per failed gateway) and returns 1."""
    for line in message.splitlines():
        print(f"error: {line}", file=sys.stderr)
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
