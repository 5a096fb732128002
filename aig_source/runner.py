"""What the pipeline scripts share: building the pipeline, running it, the summary and errors."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional

import dlt
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.common.pipeline import LoadInfo
from dlt.pipeline.exceptions import PipelineStepFailed

from . import aig_source
from .client import AigSourceError
from .settings import (
    DATASET_NAME,
    DEFAULT_LOADER_FILE_FORMAT,
    ENV_PREFIX,
    FORWARD_RESOURCE,
    LOADER_FILE_FORMATS,
    PIPELINE_NAME,
    SOURCE_SECTION,
    TABLE_NAME,
)
from .timestamps import format_ms, parse_ms

_SECRET_FIELDS = {"api_token"}


def make_pipeline(
    pipeline_name: str = PIPELINE_NAME,
    destination: Optional[Any] = None,
    pipelines_dir: Optional[str] = None,
) -> dlt.Pipeline:
    """The `aig_logs` pipeline into dataset `ai_gateway`.

    With no explicit destination, dlt's own `destination_type` setting chooses it
    (`DESTINATION_TYPE=bigquery`, or `destination_type` in `.dlt/config.toml`); DuckDB when unset.
    """
    options: Dict[str, Any] = {"pipeline_name": pipeline_name, "dataset_name": DATASET_NAME}
    if pipelines_dir is not None:
        options["pipelines_dir"] = pipelines_dir
    pipeline: dlt.Pipeline = dlt.pipeline(destination=destination, **options)
    if pipeline.destination is None:
        pipeline = dlt.pipeline(destination="duckdb", **options)
    return pipeline


def loader_file_format(pipeline: dlt.Pipeline) -> str:
    name = pipeline.destination.destination_name if pipeline.destination else ""
    return LOADER_FILE_FORMATS.get(name, DEFAULT_LOADER_FILE_FORMAT)


def count_rows(pipeline: dlt.Pipeline, table: str = TABLE_NAME) -> int:
    """Rows in the destination table; 0 when it does not exist yet."""
    if not pipeline.default_schema_name or table not in pipeline.default_schema.tables:
        return 0
    try:
        with pipeline.sql_client() as client:
            rows = client.execute_sql(
                f"SELECT COUNT(*) FROM {client.make_qualified_table_name(table)}"
            )
    except Exception:  # the table is declared but not created yet
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
            return text + "no logs in the gateway yet, cursor not set."
        text += f"cursor {self.cursor}; "
        if self.page_budget_reached and self.behind_seconds > 0:
            return text + (
                f"{format_duration(self.behind_seconds)} behind the gateway's newest log"
                f" ({self.gateway_newest}): page budget of {self.max_pages} reached, the next run"
                " continues from the cursor."
            )
        return text + "caught up with the gateway's newest log."


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


def forward_state(pipeline: dlt.Pipeline) -> Dict[str, Any]:
    sources = pipeline.state.get("sources", {})
    resource = sources.get(SOURCE_SECTION, {}).get("resources", {}).get(FORWARD_RESOURCE, {})
    return dict(resource)


def run_forward(
    pipeline: dlt.Pipeline, max_pages: Optional[int] = None, **source_args: Any
) -> RunSummary:
    """Runs the forward resource once and summarises it; raises on any failure."""
    if max_pages is not None:
        source_args["forward_max_pages"] = max_pages
    source = aig_source(**source_args)
    pipeline.sync_destination()
    before = count_rows(pipeline)
    info = pipeline.run(source, loader_file_format=loader_file_format(pipeline))  # type: ignore[arg-type]
    after = count_rows(pipeline)
    state = forward_state(pipeline)
    last_run = state.get("last_run", {})
    cursor = state.get("incremental", {}).get("created_at", {}).get("last_value")
    return RunSummary(
        logs_fetched=int(last_run.get("logs_fetched", 0)),
        logs_new=after - before,
        api_requests=int(last_run.get("api_requests", 0)),
        cursor=format_ms(parse_ms(cursor)) if cursor is not None else None,
        gateway_newest=last_run.get("gateway_newest"),
        page_budget_reached=bool(last_run.get("page_budget_reached")),
        max_pages=int(last_run.get("page_budget", 0)),
        load_info=info,
    )


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
            return missing_config_message(cause.fields, demo_hint)
        if isinstance(cause, AigSourceError):
            return str(cause)
    root = list(_causes(error))[-1]
    first_line = (str(root).strip().splitlines() or [""])[0]
    return f"{type(root).__name__}: {first_line}"


def missing_config_message(fields: List[str], demo_hint: bool = True) -> str:
    names = []
    for field in fields:
        toml = ".dlt/secrets.toml" if field in _SECRET_FIELDS else ".dlt/config.toml"
        names.append(f"{ENV_PREFIX}{field.upper()} ({field} under [sources.aig_source] in {toml})")
    text = "Missing configuration: set " + ", ".join(names) + "."
    if demo_hint:
        text += " To try the pipeline without a Cloudflare account, run it with --demo."
    return text


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1
