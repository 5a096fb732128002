"""Benchmark of the forward pipeline against the emulator, into DuckDB.

Measures:
1. steady state: API requests per 1,000 new logs when every run follows five minutes of traffic
   (rows visible up to 3 s late, so each run also meets late rows in its lookback window);
2. one 10,000-log forward run: wall time, logs/s and the pipeline process's peak RSS.

Run: .venv/bin/python -m bench.forward [--logs 10000] [--steady-runs 12] [--per-run 1000]
The pipeline runs as a child process (`pipelines/forward.py`), so its peak RSS is not mixed
with the emulator's. Pacing is lifted (it would bound a 10,000-log run to the rate-limit budget,
about 260 logs/s at the default 800 requests per 300 s), so the figures are the pipeline's own.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from aig_source import destinations
from aig_source.emulator import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_GATEWAY_ID,
    DEFAULT_TOKEN,
    LogsApiEmulator,
)
from aig_source.jobs.forward import run_forward
from aig_source.runner import make_pipeline
from bench.common import UNPACED, child_env, run_script


def steady_state(runs: int, per_run: int) -> None:
    with LogsApiEmulator(seed=3) as api, tempfile.TemporaryDirectory() as folder:
        pipeline = make_pipeline(
            destination=destinations.duckdb(str(Path(folder) / "bench.duckdb")),
            pipelines_dir=str(Path(folder) / "pipelines"),
        )
        args = {
            "api_base_url": api.base_url,
            "account_id": DEFAULT_ACCOUNT_ID,
            "gateway_id": DEFAULT_GATEWAY_ID,
            "api_token": DEFAULT_TOKEN,
            "forward_max_pages": 200,
            "rate_limit_requests": UNPACED,
        }
        api.generate(200, hours=0.1)
        run_forward(pipeline, **args)
        requests = new = 0
        for _ in range(runs):
            start = api.now_ms()
            api.advance(300)
            api.generate(per_run, start_ms=start, end_ms=api.now_ms(), max_visibility_delay_ms=3000)
            summary = run_forward(pipeline, **args)
            requests += summary.api_requests
            new += summary.logs_new
        print(
            f"steady state: {runs} runs x {per_run:,} logs per 5 min: {new:,} new logs,"
            f" {requests:,} API requests = {requests / (new / 1000):.1f} requests per 1,000 new"
            f" logs (floor 20.0 at 50 per page)"
        )


def one_big_run(logs: int) -> None:
    with LogsApiEmulator(seed=5) as api, tempfile.TemporaryDirectory() as folder:
        api.generate(logs, hours=0.95)
        pages = logs // 40 + 10
        env = child_env(api, folder, SOURCES__AIG_SOURCE__RATE_LIMIT_REQUESTS=str(UNPACED))
        run = run_script("forward.py", ["--max-pages", str(pages)], env, folder)
        print(run.stdout.strip())
        print(
            f"one run of {logs:,} logs: {run.seconds:.1f} s wall (process start included),"
            f" {logs / run.seconds:,.0f} logs/s, peak RSS {run.peak_rss_mib:.0f} MiB"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=int, default=10_000)
    parser.add_argument("--steady-runs", type=int, default=12)
    parser.add_argument("--per-run", type=int, default=1000)
    args = parser.parse_args()
    steady_state(args.steady_runs, args.per_run)
    one_big_run(args.logs)


if __name__ == "__main__":
    main()
