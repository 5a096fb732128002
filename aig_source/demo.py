"""Demo mode: the real pipelines against the emulator, into a local DuckDB file, then a report."""

from __future__ import annotations

import shlex
import shutil
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import dlt

from . import destinations
from .client import AigSourceError
from .emulator import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_GATEWAY_ID,
    DEFAULT_TOKEN,
    LogsApiEmulator,
    RateLimit,
)
from .emulator.logpush import KeyPair, LogpushBucket, LogpushJob
from .jobs.backfill import run_backfill
from .jobs.forward import run_forward
from .jobs.logpush import run_logpush
from .jobs.report import ReportSummary, write_report
from .runner import make_pipeline
from .settings import ALL_GATEWAYS, DEFAULT_REPORT_DAYS, DEFAULT_REPORT_PATH
from .views import MODEL

DEMO_PIPELINE_NAME = "aig_logs_demo"
DEMO_DATABASE = "aig_logs_demo.duckdb"
DEMO_RECENT_LOGS = 1500
DEMO_HISTORY_LOGS = 4000
DEMO_HISTORY_DAYS = 3
DEMO_FORWARD_HISTORY_DAYS = 14
DEMO_FORWARD_HISTORY_LOGS = 1000
"""The forward demo's older traffic, read by its first run (`forward_start` 14 days back), so
that its report has days to draw."""
DEMO_MAX_RUNS = 20
DEMO_LOGPUSH_FOLDER = "aig_logpush_demo"
DEMO_LOGPUSH_DAYS = 7
DEMO_LOGPUSH_FILES_PER_DAY = 4
DEMO_LOGPUSH_RECORDS_PER_FILE = 60
"""About 1,700 logs: decrypting each Metadata is an RSA-4096 operation, a few ms of CPU."""
DEMO_RATE_LIMIT = RateLimit(requests=60, window_seconds=5, block_seconds=30)
"""The emulator's limit in the backfill demo: Cloudflare's 1,200 per 300 s, scaled down 20x in
time so the demo takes seconds; the pipeline paces itself at 50 per 5 s beneath it."""
DEMO_PACING = {"rate_limit_requests": 50, "rate_limit_window_seconds": 5.0}
DEMO_GATEWAYS = {DEFAULT_GATEWAY_ID: 1.0, "support-bot": 0.4, "search-api": 0.15}
"""The demo account's gateways (`gateway_id = "*"` reads them all), each with its share of the
traffic."""

REPORT_MEASURES = """COUNT(*) AS requests,
       SUM(COALESCE(tokens_in, 0) + COALESCE(tokens_out, 0)) AS tokens,
       ROUND(SUM(cost), 4) AS cost_usd,
       ROUND(AVG(duration)) AS avg_ms,
       ROUND(100.0 * AVG(CASE WHEN cached THEN 1 ELSE 0 END), 1) AS cache_pct,
       ROUND(100.0 * AVG(CASE WHEN success THEN 0 ELSE 1 END), 1) AS error_pct"""
REPORT_HEADERS = ["requests", "tokens", "cost_usd", "avg_ms", "cache%", "error%"]
REPORTS = {
    "per gateway": (["gateway"], "gateway_id"),
    "per model, all gateways": (["provider", "model"], "provider, model"),
}
"""Each report of the demo: its key columns' headers and the SQL that groups by them."""


def demo_emulator(
    history_days: float = 0, history_logs: int = DEMO_HISTORY_LOGS, seed: int = 7
) -> LogsApiEmulator:
    """An emulator of an account with three gateways of different volumes, each holding an hour
    of realistic traffic with late rows, the busiest a burst of ties, plus `history_logs` logs
    (shared out like the traffic) over `history_days` of older traffic."""
    emulator = LogsApiEmulator(seed=seed)
    settled = emulator.now_ms() - 2000  # all visible by the time the demo reads them
    for gateway_id, share in DEMO_GATEWAYS.items():
        if gateway_id != DEFAULT_GATEWAY_ID:
            emulator.add_gateway(gateway_id)
        emulator.generate(
            round(DEMO_RECENT_LOGS * share),
            hours=0.95,
            end_ms=settled,
            max_visibility_delay_ms=1500,
            gateway_id=gateway_id,
        )
        if history_days:
            emulator.generate(
                round(history_logs * share),
                start_ms=settled - int(history_days * 86_400_000),
                end_ms=settled - 3_600_000,
                gateway_id=gateway_id,
            )
    emulator.generate(120, hours=0.01, end_ms=settled, tie_group_size=60)
    return emulator


def _held(emulator: LogsApiEmulator) -> int:
    return sum(len(emulator.gateway(gateway_id).store) for gateway_id in DEMO_GATEWAYS)


def _demo_pipeline(database: str, pipelines_dir: Optional[str]) -> dlt.Pipeline:
    # every demo starts from scratch: its emulator's history is new each time
    Path(database).unlink(missing_ok=True)
    return _demo_database_pipeline(database, pipelines_dir).drop()


def _demo_database_pipeline(database: str, pipelines_dir: Optional[str] = None) -> dlt.Pipeline:
    # absolute: dlt resolves a relative DuckDB path against the folder the pipeline first ran
    # in, which is another folder's demo when the pipeline's local state is older than this run
    return make_pipeline(
        DEMO_PIPELINE_NAME,
        destinations.duckdb(str(Path(database).resolve())),
        pipelines_dir=pipelines_dir,
    )


def _source_args(emulator: LogsApiEmulator) -> Dict[str, Any]:
    return {
        "api_base_url": emulator.base_url,
        "account_id": DEFAULT_ACCOUNT_ID,
        "gateway_id": ALL_GATEWAYS,
        "api_token": DEFAULT_TOKEN,
    }


def _forward_until_caught_up(
    pipeline: dlt.Pipeline,
    print_line: Callable[[str], None],
    max_pages: Optional[int],
    source_args: Dict[str, Any],
) -> None:
    for _ in range(DEMO_MAX_RUNS):
        summary = run_forward(pipeline, max_pages=max_pages, **source_args)
        print_line(summary.line())
        if not summary.page_budget_reached:
            break


def run_demo(
    print_line: Callable[[str], None] = print,
    max_pages: Optional[int] = None,
    pipelines_dir: Optional[str] = None,
    database: str = DEMO_DATABASE,
) -> None:
    """Runs forward until caught up (a few runs, as a schedule would) over two weeks of
    traffic, then prints what landed and writes the HTML report beside the database."""
    with demo_emulator(DEMO_FORWARD_HISTORY_DAYS, DEMO_FORWARD_HISTORY_LOGS) as emulator:
        print_line(
            f"demo: Logs API emulator on {emulator.base_url}, {_held(emulator):,} logs in"
            f" {len(DEMO_GATEWAYS)} gateways ({', '.join(DEMO_GATEWAYS)}), read with gateway_id '*'"
        )
        pipeline = _demo_pipeline(database, pipelines_dir)
        source_args = {
            **_source_args(emulator),
            **DEMO_PACING,
            "forward_start": f"{DEMO_FORWARD_HISTORY_DAYS}d",
        }
        _forward_until_caught_up(pipeline, print_line, max_pages, source_args)
        report(pipeline, database, print_line)
        html_report(pipeline, database, print_line)


def run_backfill_demo(
    print_line: Callable[[str], None] = print,
    max_pages: Optional[int] = None,
    pipelines_dir: Optional[str] = None,
    database: str = DEMO_DATABASE,
) -> None:
    """Forward once, then backfill days of history run after run, paced under a scaled-down
    rate limit, until done; then prints a report."""
    with demo_emulator(history_days=DEMO_HISTORY_DAYS) as emulator:
        emulator.rate_limit = DEMO_RATE_LIMIT
        print_line(
            f"demo: Logs API emulator on {emulator.base_url}, {_held(emulator):,} logs in"
            f" {len(DEMO_GATEWAYS)} gateways over"
            f" {DEMO_HISTORY_DAYS} days; rate limit {DEMO_RATE_LIMIT.requests} requests per"
            f" {DEMO_RATE_LIMIT.window_seconds:g} s"
        )
        pipeline = _demo_pipeline(database, pipelines_dir)
        source_args = {**_source_args(emulator), **DEMO_PACING}
        _forward_until_caught_up(pipeline, print_line, None, source_args)
        for _ in range(DEMO_MAX_RUNS):
            summary = run_backfill(pipeline, max_pages=max_pages, **source_args)
            print_line(summary.line())
            if summary.done:
                break
        report(pipeline, database, print_line)
        html_report(pipeline, database, print_line)


def run_logpush_demo(
    print_line: Callable[[str], None] = print,
    pipelines_dir: Optional[str] = None,
    database: str = DEMO_DATABASE,
    folder: str = DEMO_LOGPUSH_FOLDER,
) -> None:
    """Writes an emulated Logpush bucket (the last week's batches of three gateways, fields
    encrypted to a fresh RSA-4096 key) into a local folder, loads it with the Logpush job, shows
    what landed and writes the HTML report."""
    shutil.rmtree(folder, ignore_errors=True)
    keys = KeyPair.generate()
    bucket = LogpushBucket.local(folder)
    job = LogpushJob(bucket, keys.public_pem, timestamp_format="rfc3339ms")
    today = datetime.now(timezone.utc).date()
    job.push_days(
        list(DEMO_GATEWAYS),
        today - timedelta(days=DEMO_LOGPUSH_DAYS),
        DEMO_LOGPUSH_DAYS,
        DEMO_LOGPUSH_FILES_PER_DAY,
        DEMO_LOGPUSH_RECORDS_PER_FILE,
    )
    job.redeliver(bucket.files[0])
    job.push_probe_files()
    print_line(
        f"demo: Logpush bucket {bucket.root}: {len(bucket.files):,} batch files of"
        f" {len(DEMO_GATEWAYS)} gateways over {DEMO_LOGPUSH_DAYS} days (one delivered twice),"
        " Metadata and bodies encrypted to a new RSA-4096 key, plus test.txt.gz and an"
        " ownership challenge"
    )
    pipeline = _demo_pipeline(database, pipelines_dir)
    summary = run_logpush(
        pipeline,
        bucket_url=Path(folder).resolve().as_uri(),
        account_id=DEFAULT_ACCOUNT_ID,
        private_key=keys.private_pem,
    )
    print_line(summary.line())
    report(pipeline, database, print_line)
    html_report(pipeline, database, print_line)


def html_report(pipeline: dlt.Pipeline, database: str, print_line: Callable[[str], None]) -> None:
    path = Path(database).resolve().with_name(DEFAULT_REPORT_PATH)
    summary = write_report(pipeline, str(path), progress=lambda line: None)
    print_line(
        f"demo: report of the last {summary.figures['period']['days']} days written to {path};"
        " open it in a browser (again any time: pipelines/report.py --demo)"
    )


def demo_report(
    output: str = DEFAULT_REPORT_PATH,
    days: int = DEFAULT_REPORT_DAYS,
    database: str = DEMO_DATABASE,
) -> ReportSummary:
    """The report of the demo database a demo left in this folder."""
    if not Path(database).exists():
        raise AigSourceError(
            f"No demo database {database} in this folder: run pipelines/forward.py --demo first."
        )
    return write_report(_demo_database_pipeline(database), output, days)


def report(pipeline: dlt.Pipeline, database: str, print_line: Callable[[str], None]) -> None:
    print_line(f"demo: what landed in {database} (dataset ai_gateway, table aig_logs):")
    with pipeline.sql_client() as client:
        table = client.make_qualified_table_name("aig_logs")
        # the model as the views name it: one row per model across Cloudflare's renaming
        logs = f"(SELECT * REPLACE ({MODEL} AS model) FROM {table}) AS logs"
        tables = {
            title: client.execute_sql(
                f"SELECT {keys}, {REPORT_MEASURES} FROM {logs} GROUP BY {keys}"
                " ORDER BY cost_usd DESC"
            )
            or []
            for title, (_, keys) in REPORTS.items()
        }
        totals = client.execute_sql(
            f"SELECT COUNT(*), COUNT(DISTINCT id), MIN(created_at), MAX(created_at) FROM {table}"
        )
    for title, rows in tables.items():
        print_line(f"demo: {title}")
        for line in format_table(REPORTS[title][0] + REPORT_HEADERS, rows):
            print_line(line)
    count, distinct, oldest, newest = (totals or [(0, 0, None, None)])[0]
    print_line(
        f"demo: {count:,} rows, {distinct:,} distinct ids, from {oldest} to {newest}."
        f" Query it with: {query_command(database)}"
    )


def query_command(database: str) -> str:
    """A shell command that queries the demo database with what the install brought: the
    `duckdb` Python package (installing the project installs no `duckdb` command)."""
    sql = (
        "SELECT day, gateway_id, model, requests, errors, cost FROM ai_gateway.aig_usage_daily"
        " ORDER BY day DESC, cost DESC LIMIT 10"
    )
    code = f"import duckdb; duckdb.connect({database!r}, read_only=True).sql({sql!r}).show()"
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> List[str]:
    cells = [list(headers)] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return [
        "  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True))
        for row in cells
    ]
