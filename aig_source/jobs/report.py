"""The report job: the figures of the last N days, read through the analysis views, written as
one self-contained HTML page with charts (see `report_page`)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import dlt
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from ..client import AigSourceError
from ..settings import DEFAULT_REPORT_DAYS, DEFAULT_REPORT_PATH, TABLE_NAME, TOP_METADATA_TAGS
from ..table import table_declared
from ..views import MODEL, Dialect, dialect_of
from ..worker.warehouse import ensure_table_is_ours

Progress = Callable[[str], None]


def stderr_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _plain(value: Any) -> Any:
    """A value from either engine as JSON-ready Python: dates as ISO text, decimals as floats."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


def _ratio(part: Any, whole: Any) -> Optional[float]:
    return float(part) / float(whole) if whole else None


@dataclass
class ReportQueries:
    """The report's SQL over the views of one dataset, for the period `[start, end]` (UTC days)."""

    dialect: Dialect
    qualify: Callable[[str], str]
    start: date
    end: date

    @property
    def days(self) -> str:
        return f"day BETWEEN DATE '{self.start.isoformat()}' AND DATE '{self.end.isoformat()}'"

    @property
    def created(self) -> str:
        # the table is partitioned by DATE(created_at): the same filter the views carry
        return (
            f"{self.dialect.day} BETWEEN DATE '{self.start.isoformat()}'"
            f" AND DATE '{self.end.isoformat()}'"
        )

    def statements(self) -> Dict[str, str]:
        usage = self.qualify("aig_usage_daily")
        pct = self.dialect.percentile
        return {
            "daily": f"""SELECT day, SUM(requests) AS requests, SUM(errors) AS errors,
  SUM(cached_requests) AS cached_requests, SUM(tokens_in) AS tokens_in,
  SUM(tokens_out) AS tokens_out, SUM(cost) AS cost
FROM {usage} WHERE {self.days} GROUP BY day ORDER BY day""",
            "cost_by_model_daily": f"""SELECT day, provider, model, SUM(requests) AS requests,
  SUM(cost) AS cost
FROM {usage} WHERE {self.days} GROUP BY day, provider, model ORDER BY day, provider, model""",
            "gateways": f"""SELECT gateway_id, SUM(requests) AS requests, SUM(errors) AS errors,
  SUM(cost) AS cost
FROM {usage} WHERE {self.days} GROUP BY gateway_id ORDER BY cost DESC, gateway_id""",
            "cost_by_metadata": f"""SELECT metadata_key, metadata_value, SUM(requests) AS requests,
  SUM(cost) AS cost
FROM {self.qualify("aig_cost_by_metadata")} WHERE {self.days}
GROUP BY metadata_key, metadata_value
ORDER BY cost DESC, requests DESC, metadata_key, metadata_value
LIMIT {TOP_METADATA_TAGS}""",
            "errors_by_status": f"""SELECT status_code, SUM(requests) AS requests
FROM {self.qualify("aig_errors_daily")} WHERE {self.days}
GROUP BY status_code ORDER BY requests DESC, status_code""",
            "cache_savings": f"""SELECT SUM(estimated_savings) AS estimated_savings
FROM {self.qualify("aig_cache_daily")} WHERE {self.days}""",
            # percentiles of a period cannot be summed from daily ones: these read the table,
            # with the views' own model and percentile expressions and a partition filter
            "latency_by_model": f"""SELECT provider, model, COUNT(*) AS requests,
  {pct("duration", 50)} AS p50_ms, {pct("duration", 95)} AS p95_ms,
  {pct("duration", 99)} AS p99_ms
FROM (SELECT provider, {MODEL} AS model, duration
      FROM {self.qualify(TABLE_NAME)} WHERE {self.created}) AS period
GROUP BY provider, model ORDER BY requests DESC, provider, model""",
            "latency": f"""SELECT {pct("duration", 50)} AS p50_ms, {pct("duration", 95)} AS p95_ms,
  {pct("duration", 99)} AS p99_ms
FROM {self.qualify(TABLE_NAME)} WHERE {self.created}""",
        }


@dataclass
class Report:
    """The report's figures, as embedded in the page (`aig-report-data`)."""

    start: date
    end: date
    generated_at: str
    destination: str
    dataset: str
    results: Dict[str, List[Dict[str, Any]]] = field(default_factory=dict)

    def figures(self) -> Dict[str, Any]:
        daily = [
            {
                **row,
                "error_rate": _ratio(row["errors"], row["requests"]),
                "cache_hit_rate": _ratio(row["cached_requests"], row["requests"]),
            }
            for row in self.results["daily"]
        ]
        requests = sum(row["requests"] for row in daily)
        errors = sum(row["errors"] for row in daily)
        cached = sum(row["cached_requests"] for row in daily)
        tokens_in = sum(row["tokens_in"] or 0 for row in daily)
        tokens_out = sum(row["tokens_out"] or 0 for row in daily)
        latency = (self.results["latency"] or [{}])[0]
        savings = (self.results["cache_savings"] or [{}])[0].get("estimated_savings")
        return {
            "period": {
                "start": self.start.isoformat(),
                "end": self.end.isoformat(),
                "days": (self.end - self.start).days + 1,
            },
            "generated_at": self.generated_at,
            "destination": self.destination,
            "dataset": self.dataset,
            "headline": {
                "requests": requests,
                "cost": sum(row["cost"] or 0 for row in daily),
                "tokens_in": tokens_in,
                "tokens_out": tokens_out,
                "tokens": tokens_in + tokens_out,
                "errors": errors,
                "error_rate": _ratio(errors, requests),
                "cached_requests": cached,
                "cache_hit_rate": _ratio(cached, requests),
                "estimated_cache_savings": savings or 0.0,
                "p50_ms": latency.get("p50_ms"),
                "p95_ms": latency.get("p95_ms"),
                "p99_ms": latency.get("p99_ms"),
                "gateways": len(self.results["gateways"]),
            },
            "daily": daily,
            "cost_by_model_daily": self.results["cost_by_model_daily"],
            "latency_by_model": self.results["latency_by_model"],
            "cost_by_metadata": self.results["cost_by_metadata"],
            "gateways": self.results["gateways"],
            "errors_by_status": self.results["errors_by_status"],
        }


def _rows(client: Any, sql: str) -> List[Dict[str, Any]]:
    with client.execute_query(sql) as cursor:
        columns = [column[0] for column in cursor.description]
        records: Sequence[Tuple[Any, ...]] = cursor.fetchall()
    return [
        {name: _plain(value) for name, value in zip(columns, record, strict=True)}
        for record in records
    ]


def missing_message(pipeline: dlt.Pipeline, table_missing: bool) -> str:
    where = f"dataset {pipeline.dataset_name} of {pipeline.destination.destination_name}"
    if table_missing:
        return (
            f"No table {TABLE_NAME} in {where}: nothing has been loaded there yet. Run"
            " pipelines/forward.py first (or pipelines/forward.py --demo, then report.py --demo)."
        )
    return (
        f"No analysis views in {where} (the table was loaded by a version without them). Run"
        " pipelines/forward.py once: every run writes the views that are missing."
    )


def collect_report(
    pipeline: dlt.Pipeline,
    days: int = DEFAULT_REPORT_DAYS,
    today: Optional[date] = None,
    progress: Progress = stderr_progress,
) -> Report:
    """Reads the figures of the last `days` UTC days (today included) through the views."""
    end = today or datetime.now(timezone.utc).date()
    start = end - timedelta(days=days - 1)
    dialect = dialect_of(pipeline)
    report = Report(
        start=start,
        end=end,
        generated_at=_plain(datetime.now(timezone.utc).replace(microsecond=0)),
        destination=pipeline.destination.destination_name,
        dataset=pipeline.dataset_name,
    )
    pipeline.sync_destination()
    ensure_table_is_ours(pipeline)
    if not table_declared(pipeline):
        raise AigSourceError(missing_message(pipeline, table_missing=True))
    with pipeline.sql_client() as client:
        statements = ReportQueries(dialect, client.make_qualified_table_name, start, end)
        queries = statements.statements()
        for number, (name, sql) in enumerate(queries.items(), start=1):
            progress(f"report: {name} ({number}/{len(queries)})")
            try:
                report.results[name] = _rows(client, sql)
            except DatabaseUndefinedRelation as error:
                table_missing = TABLE_NAME in str(error) and "latency" in name
                raise AigSourceError(missing_message(pipeline, table_missing)) from error
    return report


@dataclass
class ReportSummary:
    """What the report job wrote, for its closing line."""

    path: Path
    figures: Dict[str, Any]

    def line(self) -> str:
        headline = self.figures["headline"]
        period = self.figures["period"]
        return (
            f"aig_logs report: {self.path} ({period['start']} to {period['end']},"
            f" {headline['requests']:,} requests, ${headline['cost']:,.2f},"
            f" {headline['gateways']} gateways)"
        )

    def problem(self) -> Optional[str]:
        return None


def write_report(
    pipeline: dlt.Pipeline,
    output: str = DEFAULT_REPORT_PATH,
    days: int = DEFAULT_REPORT_DAYS,
    today: Optional[date] = None,
    progress: Progress = stderr_progress,
) -> ReportSummary:
    """Writes the report of the last `days` days to `output` and returns what it holds."""
    from ..report_page import render_report

    if days < 1:
        raise AigSourceError(f"--days must be at least 1 (got {days}).")
    figures = collect_report(pipeline, days, today, progress).figures()
    progress("report: drawing the charts")
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(figures), encoding="utf-8")
    return ReportSummary(path, figures)
