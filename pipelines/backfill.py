"""Load a gateway's history of AI Gateway logs, from where the forward pipeline started back to
the oldest log, a bounded slice per run, paced under Cloudflare's API rate limit.

Run it on a schedule (hourly) until it reports done; every run continues where the last stopped.
"""

from __future__ import annotations

import argparse
from typing import List, Optional

from aig_source.jobs.backfill import run_backfill
from aig_source.runner import make_pipeline, run_and_report


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="backfill.py",
        description=(
            "Load the history of AI Gateway logs into table aig_logs (pipeline aig_logs, dataset"
            " ai_gateway), newest first, from the forward pipeline's start back to each gateway's"
            " oldest log. Same configuration as forward.py."
        ),
    )
    parser.add_argument(
        "--max-pages",
        type=int,
        default=None,
        metavar="N",
        help="page budget of this run, per gateway (default: backfill_max_pages, 40)",
    )
    parser.add_argument(
        "--since",
        default=None,
        metavar="DATE",
        help="go no further back than this date or timestamp (e.g. 2026-01-31)",
    )
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        metavar="M",
        help="stop cleanly after this many minutes, so a scheduled job never overruns",
    )
    parser.add_argument(
        "--reset",
        action="store_true",
        help="forget the backfill's progress (not the data) and start over from the forward start",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="run against a local emulator holding days of history, into aig_logs_demo.duckdb",
    )
    args = parser.parse_args(argv)
    if args.max_pages is not None and args.max_pages < 1:
        parser.error("--max-pages must be at least 1")
    if args.max_minutes is not None and args.max_minutes <= 0:
        parser.error("--max-minutes must be more than 0")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.demo:
        from aig_source.demo import run_backfill_demo

        return run_and_report(lambda: run_backfill_demo(max_pages=args.max_pages), demo_hint=False)
    return run_and_report(
        lambda: run_backfill(
            make_pipeline(),
            max_pages=args.max_pages,
            since=args.since,
            max_minutes=args.max_minutes,
            reset=args.reset,
        )
    )


if __name__ == "__main__":
    raise SystemExit(main())
