"""Write a report of the last N days as one self-contained HTML page with charts.

It reads the analysis views the pipeline keeps in its dataset (DuckDB by default, BigQuery with
DESTINATION_TYPE=bigquery); the page opens offline, with its figures embedded as JSON.
"""

from __future__ import annotations

import argparse
from typing import List, Optional

from aig_source.jobs.report import write_report
from aig_source.runner import make_pipeline, run_and_report
from aig_source.settings import DEFAULT_REPORT_DAYS, DEFAULT_REPORT_PATH


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="report.py",
        description=(
            "Write an HTML report (cost, tokens, latency, cache hits, errors, per model,"
            " gateway and metadata tag) of the last N days from the analysis views of the"
            " configured destination (pipeline aig_logs or PIPELINE_NAME, dataset ai_gateway)."
        ),
    )
    parser.add_argument(
        "--output",
        default=DEFAULT_REPORT_PATH,
        metavar="PATH",
        help=f"where to write the page (default: {DEFAULT_REPORT_PATH})",
    )
    parser.add_argument(
        "--days",
        type=int,
        default=DEFAULT_REPORT_DAYS,
        metavar="N",
        help=f"the last N UTC days, today included (default: {DEFAULT_REPORT_DAYS})",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="report on the demo database aig_logs_demo.duckdb (written by forward.py --demo)",
    )
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error("--days must be at least 1")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.demo:
        from aig_source.demo import demo_report

        return run_and_report(lambda: demo_report(args.output, args.days), demo_hint=False)
    return run_and_report(lambda: write_report(make_pipeline(), args.output, args.days))


if __name__ == "__main__":
    raise SystemExit(main())
