"""Demo mode: the real pipeline against the emulator, into a local DuckDB file, then a report."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence

import dlt

from .emulator import DEFAULT_ACCOUNT_ID, DEFAULT_GATEWAY_ID, DEFAULT_TOKEN, LogsApiEmulator
from .runner import RunSummary, make_pipeline, run_forward

DEMO_PIPELINE_NAME = "aig_logs_demo"
DEMO_DATABASE = "aig_logs_demo.duckdb"
DEMO_HISTORY_LOGS = 1500
DEMO_MAX_RUNS = 5

REPORT_SQL = """
SELECT provider, model,
       COUNT(*) AS requests,
       SUM(COALESCE(tokens_in, 0) + COALESCE(tokens_out, 0)) AS tokens,
       ROUND(SUM(cost), 4) AS cost_usd,
       ROUND(AVG(duration)) AS avg_ms,
       ROUND(100.0 * AVG(CASE WHEN cached THEN 1 ELSE 0 END), 1) AS cache_pct,
       ROUND(100.0 * AVG(CASE WHEN success THEN 0 ELSE 1 END), 1) AS error_pct
FROM {table}
GROUP BY provider, model
ORDER BY cost_usd DESC
"""


def demo_emulator(seed: int = 7) -> LogsApiEmulator:
    """An emulator holding an hour of realistic traffic, with late rows and a burst of ties."""
    emulator = LogsApiEmulator(seed=seed)
    settled = emulator.now_ms() - 2000  # all visible by the time the demo reads them
    emulator.generate(DEMO_HISTORY_LOGS, hours=0.95, end_ms=settled, max_visibility_delay_ms=1500)
    emulator.generate(120, hours=0.01, end_ms=settled, tie_group_size=60)
    return emulator


def run_demo(
    print_line: Callable[[str], None] = print,
    max_pages: Optional[int] = None,
    pipelines_dir: Optional[str] = None,
    database: str = DEMO_DATABASE,
) -> List[RunSummary]:
    """Runs forward until caught up (a few runs, as a schedule would), then prints a report."""
    summaries: List[RunSummary] = []
    with demo_emulator() as emulator:
        held = len(emulator.gateway().store)
        print_line(f"demo: Logs API emulator on {emulator.base_url}, {held:,} logs")
        # every demo starts from scratch: its emulator's history is new each time
        Path(database).unlink(missing_ok=True)
        pipeline = make_pipeline(
            DEMO_PIPELINE_NAME, dlt.destinations.duckdb(database), pipelines_dir=pipelines_dir
        ).drop()
        source_args: dict[str, Any] = {
            "api_base_url": emulator.base_url,
            "account_id": DEFAULT_ACCOUNT_ID,
            "gateway_id": DEFAULT_GATEWAY_ID,
            "api_token": DEFAULT_TOKEN,
        }
        for _ in range(DEMO_MAX_RUNS):
            summary = run_forward(pipeline, max_pages=max_pages, **source_args)
            summaries.append(summary)
            print_line(summary.line())
            if not summary.page_budget_reached:
                break
        print_line(f"demo: what landed in {database} (dataset ai_gateway, table aig_logs):")
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name("aig_logs")
            report_rows = client.execute_sql(REPORT_SQL.format(table=table)) or []
            totals = client.execute_sql(
                "SELECT COUNT(*), COUNT(DISTINCT id), MIN(created_at), MAX(created_at)"
                f" FROM {table}"
            )
        headers = [
            "provider",
            "model",
            "requests",
            "tokens",
            "cost_usd",
            "avg_ms",
            "cache%",
            "error%",
        ]
        for line in format_table(headers, report_rows):
            print_line(line)
        count, distinct, oldest, newest = (totals or [(0, 0, None, None)])[0]
        print_line(
            f"demo: {count:,} rows, {distinct:,} distinct ids, from {oldest} to {newest}."
            f" Explore it with: duckdb {database}"
        )
    return summaries


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> List[str]:
    cells = [list(headers)] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return [
        "  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True))
        for row in cells
    ]
