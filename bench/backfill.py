"""Benchmark of the backfill against the emulator's rate limit, into DuckDB.

Cloudflare's limit (1,200 requests per 300 s) and the pipeline's default budget (800 per 300 s)
are both scaled down 100x in time: the emulator allows 120 requests per 3 s (then blocks for 30 s)
and the pipeline paces itself at 80 per 3 s. For each size, one `pipelines/backfill.py` process
walks the whole history in a single run and the script prints: requests made, 429s received,
the effective rate as a fraction of the budget, logs/s and the process's peak RSS.

Run: .venv/bin/python -m bench.backfill [--sizes 10000 100000]
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from typing import List

from aig_source.emulator import LogsApiEmulator, RateLimit
from bench.common import child_env, run_script

EMULATOR_LIMIT = RateLimit(requests=120, window_seconds=3.0, block_seconds=30.0)
BUDGET_REQUESTS = 80
BUDGET_WINDOW_SECONDS = 3.0


def backfill(size: int) -> None:
    with (
        LogsApiEmulator(seed=9, rate_limit=EMULATOR_LIMIT) as api,
        tempfile.TemporaryDirectory() as folder,
    ):
        now = api.now_ms()
        api.generate(size, start_ms=now - 30 * 86_400_000, end_ms=now - 3_600_000)
        env = child_env(
            api,
            folder,
            SOURCES__AIG_SOURCE__RATE_LIMIT_REQUESTS=str(BUDGET_REQUESTS),
            SOURCES__AIG_SOURCE__RATE_LIMIT_WINDOW_SECONDS=str(BUDGET_WINDOW_SECONDS),
        )
        pages = size // 45 + 100
        run = run_script("backfill.py", ["--max-pages", str(pages)], env, folder)
        served = api.logs_requests()
        statuses = Counter(request.status for request in served)
        paging_seconds = served[-1].at - served[0].at
        budget_per_second = BUDGET_REQUESTS / BUDGET_WINDOW_SECONDS
        used = (len(served) - 1) / paging_seconds / budget_per_second if paging_seconds else 0.0
        stamps = [request.at for request in served]
        busiest = max(
            sum(1 for later in stamps[index:] if later < start + BUDGET_WINDOW_SECONDS)
            for index, start in enumerate(stamps)
        )
        print(run.stdout.strip())
        print(
            f"backfill of {size:,} logs: {len(served):,} requests, {statuses[429]} answered 429,"
            f" {used:.1%} of the budget ({BUDGET_REQUESTS} per {BUDGET_WINDOW_SECONDS:g} s) used"
            f" while paging (busiest {BUDGET_WINDOW_SECONDS:g} s window: {busiest} requests),"
            f" {size / run.seconds:,.0f} logs/s over {run.seconds:.1f} s"
            f" (process start included), peak RSS {run.peak_rss_mib:.0f} MiB"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args()
    sizes: List[int] = args.sizes
    for size in sizes:
        backfill(size)


if __name__ == "__main__":
    main()
