"""Prove the table matches each gateway over a window, and load what it lacks.

Compares each gateway's count of logs with the table's per hourly (or, beyond two days, daily)
bucket, narrows the buckets that differ by bisection, reads only those ranges and merges them.
Logs the gateway no longer has are counted and kept. Exits 1 when a window could not be checked
to its end within the budget.
"""

from __future__ import annotations

import argparse
from typing import List, Optional

from aig_source.jobs.reconcile import run_reconcile
from aig_source.runner import make_pipeline, run_and_report
from aig_source.settings import DEFAULT_RECONCILE_MAX_REQUESTS, DEFAULT_RECONCILE_WINDOW


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="reconcile.py",
        description=(
            "Check that table aig_logs holds every log each configured gateway holds over a"
            " window, and load the ones it lacks (same settings as forward.py)."
        ),
    )
    window = parser.add_mutually_exclusive_group()
    window.add_argument(
        "--since",
        metavar="WHEN",
        help=f"the window's start: a duration before now (24h, 7d) or an ISO date or timestamp"
        f" (default: {DEFAULT_RECONCILE_WINDOW})",
    )
    window.add_argument(
        "--all", action="store_true", help="the whole history, from the oldest log loaded"
    )
    parser.add_argument(
        "--refresh",
        action="store_true",
        help="read the whole window again and merge it, not only where counts differ (picks up"
        " metadata edited after loading)",
    )
    parser.add_argument(
        "--max-requests",
        type=int,
        default=None,
        metavar="N",
        help=f"request budget of this run, per gateway (default: {DEFAULT_RECONCILE_MAX_REQUESTS})",
    )
    args = parser.parse_args(argv)
    if args.max_requests is not None and args.max_requests < 1:
        parser.error("--max-requests must be at least 1")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    return run_and_report(
        lambda: run_reconcile(
            make_pipeline(),
            since=args.since,
            all_history=args.all,
            refresh=args.refresh,
            max_requests=args.max_requests,
        )
    )


if __name__ == "__main__":
    raise SystemExit(main())
