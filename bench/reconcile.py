"""Benchmark of the reconcile job: requests it makes for a window of a busy gateway.

For each scenario the emulator holds `--per-day` logs a day (default 100,000) over the window,
and the table holds the same logs, or all but `--missing` of them (default 10, scattered at
random). The table is filled by DuckDB from the emulator's own logs (a real forward run of a
small second gateway first creates the table, its schema and state), since loading millions of
logs through the API would measure the forward run; then `run_reconcile` runs in this process,
unpaced, against the emulator over HTTP. Requests are the emulator's own count of list requests.

Run: .venv/bin/python -m bench.reconcile [--per-day 100000] [--missing 10]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import duckdb
import pyarrow as pa

from aig_source import destinations
from aig_source.emulator import DEFAULT_ACCOUNT_ID, DEFAULT_TOKEN, LogsApiEmulator
from aig_source.emulator.store import StoredLog
from aig_source.emulator.traffic import make_log_id
from aig_source.jobs.forward import run_forward
from aig_source.jobs.reconcile import run_reconcile
from aig_source.runner import make_pipeline
from bench.common import UNPACED

BUSY = "busy-gateway"
SEED = "seed-gateway"
FIELDS: Dict[str, Any] = {
    "provider": "openai",
    "model": "openai/gpt-4o-mini",
    "model_type": "chat",
    "path": "chat/completions",
    "duration": 800,
    "success": True,
    "cached": False,
    "status_code": 200,
    "tokens_in": 400,
    "tokens_out": 200,
    "cost": 0.0002,
}
"""One shared dict: millions of logs must fit in memory; reconcile looks only at ids and times."""


def scenario(days: int, per_day: int, missing: int, seed: int = 7) -> Dict[str, Any]:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as folder, LogsApiEmulator(seed=seed) as api:
        api.add_gateway(BUSY)
        api.add_gateway(SEED)
        end = api.now_ms() - 120_000
        start = end - days * 86_400_000
        stamps = sorted(rng.randrange(start, end) for _ in range(days * per_day))
        logs = [StoredLog(make_log_id(ms, rng), ms, FIELDS, visible_at_ms=ms) for ms in stamps]
        api.add_logs(logs, gateway_id=BUSY)
        api.generate(5, hours=0.01, gateway_id=SEED)
        args = {
            "api_base_url": api.base_url,
            "account_id": DEFAULT_ACCOUNT_ID,
            "api_token": DEFAULT_TOKEN,
            "rate_limit_requests": UNPACED,
        }
        database = Path(folder) / "aig_logs.duckdb"
        pipeline = make_pipeline(
            destination=destinations.duckdb(str(database)), pipelines_dir=str(Path(folder) / "p")
        )
        run_forward(pipeline, gateway_id=SEED, **args)
        lost = set(rng.sample(range(len(logs)), missing))
        kept: List[StoredLog] = [log for i, log in enumerate(logs) if i not in lost]
        rows = pa.table(
            {
                "id": [log.id for log in kept],
                "created_at": pa.array(
                    [log.created_at_ms for log in kept], pa.timestamp("ms", tz="UTC")
                ),
            }
        )
        with duckdb.connect(str(database)) as connection:
            connection.register("rows", rows)
            connection.execute(
                "INSERT INTO ai_gateway.aig_logs (id, created_at, gateway_id, account_id,"
                " _dlt_load_id, _dlt_id) SELECT id, created_at,"
                f" '{BUSY}', '{DEFAULT_ACCOUNT_ID}', 'bench', id FROM rows"
            )
        before = len(api.logs_requests())
        started = time.perf_counter()
        summary = run_reconcile(pipeline, since=f"{days}d", gateway_id=BUSY, **args)
        seconds = time.perf_counter() - started
        figures = summary.totals[BUSY]
        return {
            "days": days,
            "logs": len(logs),
            "missing": missing,
            "requests": len(api.logs_requests()) - before,
            "buckets": figures["buckets_checked"],
            "loaded": figures["logs_missing_loaded"],
            "seconds": seconds,
            "problem": summary.problem(),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-day", type=int, default=100_000)
    parser.add_argument("--missing", type=int, default=10)
    parser.add_argument("--days", type=int, nargs="+", default=[1, 30])
    args = parser.parse_args()
    print("| window | logs | missing | buckets | requests | loaded | wall |")
    print("|---|---|---|---|---|---|---|")
    for days in args.days:
        for missing in (0, args.missing):
            result = scenario(days, args.per_day, missing)
            window = "24 hours" if days == 1 else f"{days} days"
            print(
                f"| {window} | {result['logs']:,} | {missing} | {result['buckets']} |"
                f" {result['requests']:,} | {result['loaded']} | {result['seconds']:.1f} s |"
                + (f" {result['problem']}" if result["problem"] else ""),
                flush=True,
            )


if __name__ == "__main__":
    main()
