"""Benchmark of a fleet: the forward pipeline over many gateways against the emulator, into
DuckDB, one run each, as a child process (`pipelines/forward.py`, `gateway_id = "*"`).

Measures:
1. at 30 ms per API response (latency dominates): wall time and requests for 1 gateway x 10,000
   logs, and for 8 gateways x 1,250 logs (the same logs, read concurrently);
2. at zero latency (the pipeline's own cost dominates): 20 gateways x 5,000 logs: logs/s, CPU
   seconds per 1,000 logs and the pipeline process's peak RSS.

Run: .venv/bin/python -m bench.fleet [--concurrency 4] [--only zero-latency] [--python PATH]
Wall time includes the process start (about 1.5 s of imports). Pacing is lifted, so the figures
are the pipeline's own, not the rate limit's. `--python` runs the pipeline with another
interpreter, e.g. of a venv holding only `pip install -e .` (see `bench.common.run_script`).
The emulator runs in this process and shares the machine's cores with the pipeline.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from typing import List

from aig_source.emulator import DEFAULT_GATEWAY_ID, LogsApiEmulator
from bench.common import UNPACED, ChildRun, child_env, run_script


def fleet_run(
    gateways: int,
    logs_per_gateway: int,
    latency_seconds: float,
    concurrency: int,
    python: str = sys.executable,
) -> ChildRun:
    with LogsApiEmulator(seed=9) as api, tempfile.TemporaryDirectory() as folder:
        names: List[str] = [DEFAULT_GATEWAY_ID] + [f"app-{i:02d}" for i in range(1, gateways)]
        for name in names[1:]:
            api.add_gateway(name)
        for name in names:
            api.generate(logs_per_gateway, hours=0.95, gateway_id=name)
        api.faults.latency_seconds = latency_seconds
        env = child_env(
            api,
            folder,
            SOURCES__AIG_SOURCE__GATEWAY_ID="*",
            SOURCES__AIG_SOURCE__RATE_LIMIT_REQUESTS=str(UNPACED),
            SOURCES__AIG_SOURCE__MAX_CONCURRENT_GATEWAYS=str(concurrency),
        )
        pages = logs_per_gateway // 40 + 10
        run = run_script("forward.py", ["--max-pages", str(pages)], env, folder, python)
        total = gateways * logs_per_gateway
        if f"{total:,} new" not in run.stdout:
            raise SystemExit(f"expected {total:,} new logs: {run.stdout.strip()}")
        served = len(api.requests)
        label = f"{gateways} x {logs_per_gateway:,} logs at {latency_seconds * 1000:.0f} ms"
        print(
            f"{label}: {run.seconds:.1f} s wall, {served:,} API requests,"
            f" {total / run.seconds:,.0f} logs/s, {run.cpu_seconds / total * 1000:.2f} CPU s per"
            f" 1,000 logs, peak RSS {run.peak_rss_mib:.0f} MiB"
        )
        return run


SCENARIOS = {
    "one-gateway": (1, 10_000, 0.03),
    "eight-gateways": (8, 1_250, 0.03),
    "zero-latency": (20, 5_000, 0.0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=4, help="max_concurrent_gateways")
    parser.add_argument("--only", choices=sorted(SCENARIOS), help="run one scenario")
    parser.add_argument(
        "--python", default=sys.executable, help="interpreter that runs the pipeline"
    )
    args = parser.parse_args()
    for name, (gateways, logs, latency) in SCENARIOS.items():
        if args.only in (None, name):
            fleet_run(gateways, logs, latency, args.concurrency, args.python)


if __name__ == "__main__":
    main()
