"""Benchmark of `pipelines/migrate_worker.py`, and what the import bills on BigQuery.

Load rate: the old Worker's table (its own DDL, transpiled to DuckDB) is filled by DuckDB itself
with synthetic rows (default 1,000,000 over 90 days, 2% of the ids stored twice), then the
import runs as a child process into `aig_logs` of the same DuckDB file, measured for wall time,
CPU and peak RSS.

Cost: the logical size of the Worker's columns, measured on the emulator's traffic model, gives
the bytes the import's one read of the Worker's table bills (what its dry run states) and the
minimums of its queries, for a stated volume and history.

Run: .venv/bin/python -m bench.migrate_worker [--rows 1000000] [--days 90]
     [--logs-per-day 1000000] [--history-days 365]
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from statistics import mean

import duckdb

from aig_source.emulator import DEFAULT_ACCOUNT_ID, DEFAULT_GATEWAY_ID
from aig_source.emulator.traffic import MODELS, generate_traffic
from aig_source.emulator.worker import WORKER_COLUMNS, worker_row, worker_statements
from aig_source.settings import (
    BIGQUERY_MIN_BYTES_PER_TABLE,
    IMPORT_CHUNK_ROWS,
    LOG_COLUMNS,
    PRICE_PER_TIB_SCANNED,
)
from bench.bigquery_cost import TIB, logical_bytes
from bench.common import run_script

DUPLICATED = 0.02


def synthetic_worker_rows_sql(rows: int, days: int) -> str:
    providers = ", ".join(f"'{m.provider}'" for m in MODELS)
    models = ", ".join(f"'{m.model}'" for m in MODELS)
    copies = int(rows * DUPLICATED)
    return f"""
INSERT INTO worker.aig_logs_raw ({", ".join(WORKER_COLUMNS)})
WITH logs AS (
  SELECT i, now() - to_milliseconds(CAST(random() * {days} * 86400000 AS BIGINT)) AS created_at,
    [{providers}][1 + i % {len(MODELS)}] AS provider, [{models}][1 + i % {len(MODELS)}] AS model,
    random() < 0.03 AS failed, random() < 0.12 AS cached
  FROM range({rows - copies}) AS t(i)
), copies AS (
  SELECT * FROM logs UNION ALL SELECT * FROM logs WHERE i < {copies}
)
SELECT 'worker-' || i, created_at, provider, model, 'chat', NOT failed,
  CASE WHEN failed THEN [429, 500, 502, 503][1 + i % 4] ELSE 200 END, cached,
  20 + random() * random() * 6000, CAST(random() * 2000 AS BIGINT),
  CAST(random() * 600 AS BIGINT), CASE WHEN failed OR cached THEN 0 ELSE random() / 100 END,
  'v1/chat/completions', 'universal', 'application/json', 'application/json', 0,
  created_at + to_milliseconds(CAST(90000 + random() * 1000 AS BIGINT))
FROM copies"""


def worker_row_bytes(sample: int = 20_000) -> float:
    """The mean logical size of one Worker row (its 18 columns) on the traffic model."""
    end = int(datetime.now(timezone.utc).timestamp() * 1000)
    types = {name: str(LOG_COLUMNS[name]["data_type"]) for name in WORKER_COLUMNS}
    types["duration"] = "double"
    sizes = []
    for log in generate_traffic(sample, end - 86_400_000, end, seed=7):
        row = worker_row(log, datetime.now(timezone.utc))
        sizes.append(sum(logical_bytes(row[name], types[name]) for name in WORKER_COLUMNS))
    return mean(sizes)


def load_rate(rows: int, days: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        database = Path(folder) / "aig_logs.duckdb"
        started = time.perf_counter()
        with duckdb.connect(str(database)) as connection:
            (catalog,) = connection.execute("SELECT current_database()").fetchone() or ("",)
            connection.execute("CREATE SCHEMA worker")
            for statement in worker_statements("duckdb", f"{catalog}.worker", with_view=True):
                connection.execute(statement)
            connection.execute(synthetic_worker_rows_sql(rows, days))
            stored, ids = connection.execute(
                "SELECT COUNT(*), COUNT(DISTINCT id) FROM worker.aig_logs_raw"
            ).fetchone() or (0, 0)
        print(
            f"Worker table: {stored:,} rows, {ids:,} ids over {days} days (filled in"
            f" {time.perf_counter() - started:.1f} s)"
        )
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DEST"))},
            "DESTINATION__DUCKDB__CREDENTIALS": str(database),
            "DLT_DATA_DIR": str(Path(folder) / "dlt"),
            "SOURCES__AIG_SOURCE__ACCOUNT_ID": DEFAULT_ACCOUNT_ID,
            "SOURCES__AIG_SOURCE__GATEWAY_ID": DEFAULT_GATEWAY_ID,
        }
        run = run_script("migrate_worker.py", ["--from", "worker"], env, folder)
        print(run.stdout.strip())
        with duckdb.connect(str(database), read_only=True) as connection:
            loaded = connection.execute(
                "SELECT COUNT(*), COUNT(DISTINCT id) FROM ai_gateway.aig_logs"
            ).fetchone() or (0, 0)
        assert loaded == (ids, ids), loaded
        print(
            f"migrate_worker.py: {run.seconds:.1f} s wall, {ids / run.seconds:,.0f} logs/s,"
            f" {run.cpu_seconds / ids * 1000:.2f} CPU s per 1,000 logs, peak RSS"
            f" {run.peak_rss_mib:.0f} MiB"
        )


def cost(logs_per_day: int, history_days: int) -> None:
    per_row = worker_row_bytes()
    stored = logs_per_day * history_days
    read = per_row * stored
    day_list = 8 * stored  # created_at only
    # loads hold whole days: as many as fit in a chunk, or one day (never split) when larger
    days_per_load = max(1, IMPORT_CHUNK_ROWS // logs_per_day)
    loads = math.ceil(history_days / days_per_load)
    # each load's query reads the Worker's days and this table's ids in them (empty at first):
    # at least the 10 MiB minimum per table; the merge's statements, 4 of them at the minimum
    # while the table holds nothing in those days
    minimums = loads * 6 * BIGQUERY_MIN_BYTES_PER_TABLE
    total = read + day_list + minimums
    print(
        f"BigQuery, {logs_per_day:,} logs a day for {history_days} days ({stored:,} rows of"
        f" {per_row:.0f} logical bytes): the Worker's table read once {read / 2**30:,.1f} GiB,"
        f" the day list {day_list / 2**30:,.1f} GiB, {loads:,} loads at the 10 MiB minimums"
        f" {minimums / 2**30:,.1f} GiB; total {total / 2**30:,.1f} GiB,"
        f" ${total / TIB * PRICE_PER_TIB_SCANNED:,.2f} at ${PRICE_PER_TIB_SCANNED}/TiB (inside"
        " the monthly free TiB if nothing else uses it); load jobs bill nothing"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--logs-per-day", type=int, default=1_000_000)
    parser.add_argument("--history-days", type=int, default=365)
    args = parser.parse_args()
    cost(args.logs_per_day, args.history_days)
    cost(args.logs_per_day // 10, args.history_days)
    load_rate(args.rows, args.days)


if __name__ == "__main__":
    main()
