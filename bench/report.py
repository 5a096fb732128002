"""Benchmark of `pipelines/report.py` on a large DuckDB table.

A forward run against the emulator creates the table, its views and the pipeline's state; then
DuckDB itself appends synthetic logs (default 1,000,000 over the last 30 days, three gateways,
ten models named both ways around Cloudflare's 2026-09-01 renaming, metadata on four logs in
five) straight into `aig_logs`, since loading a million logs through the API would measure the
forward run, not the report. The report then runs as a child process, measured for wall time,
CPU and peak RSS, with the time of each of its queries.

Run: .venv/bin/python -m bench.report [--rows 1000000] [--days 30]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from itertools import pairwise
from pathlib import Path

import duckdb

from aig_source import destinations
from aig_source.emulator import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_GATEWAY_ID,
    DEFAULT_TOKEN,
    LogsApiEmulator,
)
from aig_source.emulator.traffic import MODELS, PROVIDER_PREFIXED_MODELS_SINCE_MS
from aig_source.jobs.forward import run_forward
from aig_source.jobs.report import collect_report
from aig_source.runner import make_pipeline
from bench.common import UNPACED, run_script


def synthetic_rows_sql(rows: int, days: int) -> str:
    providers = ", ".join(f"'{m.provider}'" for m in MODELS)
    models = ", ".join(f"'{m.model}'" for m in MODELS)
    return f"""
INSERT INTO ai_gateway.aig_logs
  (id, gateway_id, account_id, created_at, provider, model, model_type, success, status_code,
   cached, duration, tokens_in, tokens_out, cost, metadata, ingested_at, _dlt_load_id, _dlt_id)
SELECT
  'bench-' || i, ['demo-gateway', 'support-bot', 'search-api'][1 + i % 3], '{DEFAULT_ACCOUNT_ID}',
  created_at, provider,
  CASE WHEN epoch_ms(created_at) >= {PROVIDER_PREFIXED_MODELS_SINCE_MS}
       THEN provider || '/' || model ELSE model END,
  'chat', NOT failed, CASE WHEN failed THEN [429, 500, 502, 503][1 + i % 4] ELSE 200 END,
  cached, CAST(20 + random() * random() * 6000 AS BIGINT),
  CAST(random() * 2000 AS BIGINT), CAST(random() * 600 AS BIGINT),
  CASE WHEN failed OR cached THEN 0 ELSE random() / 100 END,
  CASE WHEN i % 5 = 0 THEN NULL ELSE json_object('user_id', 'u_' || (i % 5000),
       'team', ['search', 'support-bot', 'billing', 'growth', 'platform'][1 + i % 5],
       'env', CASE WHEN i % 4 = 0 THEN 'staging' ELSE 'prod' END) END,
  now(), 'bench', 'bench-' || i
FROM (
  SELECT i, now() - to_milliseconds(CAST(random() * {days} * 86400000 AS BIGINT)) AS created_at,
    [{providers}][1 + i % {len(MODELS)}] AS provider, [{models}][1 + i % {len(MODELS)}] AS model,
    random() < 0.03 AS failed, random() < 0.12 AS cached
  FROM range({rows}) AS t(i)
)"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder, LogsApiEmulator() as api:
        database = Path(folder) / "aig_logs.duckdb"
        api.generate(500, hours=1)
        pipeline = make_pipeline(
            destination=destinations.duckdb(str(database)), pipelines_dir=str(Path(folder) / "p")
        )
        run_forward(
            pipeline,
            api_base_url=api.base_url,
            account_id=DEFAULT_ACCOUNT_ID,
            gateway_id=DEFAULT_GATEWAY_ID,
            api_token=DEFAULT_TOKEN,
            rate_limit_requests=UNPACED,
        )
        started = time.perf_counter()
        with duckdb.connect(str(database)) as connection:
            connection.execute(synthetic_rows_sql(args.rows, args.days))
            total = connection.execute("SELECT COUNT(*) FROM ai_gateway.aig_logs").fetchone()
        print(
            f"table: {total[0] if total else 0:,} rows ({args.rows:,} synthetic over {args.days}"
            f" days, appended in {time.perf_counter() - started:.1f} s);"
            f" database {database.stat().st_size / 2**20:,.0f} MiB"
        )
        env = {
            "DESTINATION__DUCKDB__CREDENTIALS": str(database),
            "DLT_DATA_DIR": str(Path(folder) / "dlt"),
        }
        child = {**os.environ, **env}
        output = Path(folder) / "report.html"
        run = run_script(
            "report.py", ["--days", str(args.days), "--output", str(output)], child, folder
        )
        print(run.stdout.strip())
        print(
            f"report.py: {run.seconds:.2f} s wall, {run.cpu_seconds:.2f} s CPU, peak RSS"
            f" {run.peak_rss_mib:.0f} MiB; page {output.stat().st_size / 2**20:.1f} MiB"
        )
        marks = [("start", time.perf_counter())]
        collect_report(
            pipeline, args.days, progress=lambda line: marks.append((line, time.perf_counter()))
        )
        marks.append(("end", time.perf_counter()))
        steps = []
        for (line, at), (_, until) in pairwise(marks[1:]):
            name = line.removeprefix("report: ").split(" (")[0]
            steps.append(f"{name} {until - at:.2f} s")
        print("queries (in-process): " + ", ".join(steps))


if __name__ == "__main__":
    main()
