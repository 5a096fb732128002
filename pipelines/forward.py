"""Load new Cloudflare AI Gateway logs into the warehouse (DuckDB by default, or BigQuery).

Run it on a schedule; every run continues from the cursor kept in dlt state.
"""

from __future__ import annotations

import argparse
from typing import List, Optional

from aig_source.jobs.forward import run_forward
from aig_source.runner import make_pipeline, run_and_report


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="forward.py",
        description=(
            "Load new AI Gateway logs of one gateway, several or all of an account's"
            " (SOURCES__AIG_SOURCE__GATEWAY_ID=*) into table aig_logs (pipeline aig_logs, or"
            " PIPELINE_NAME for another account; dataset ai_gateway). Configure with"
            " SOURCES__AIG_SOURCE__* environment variables or"
            " .dlt/config.toml and .dlt/secrets.toml; select BigQuery with"
            " DESTINATION_TYPE=bigquery."
        ),
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="run against a local emulator of the Logs API with synthetic traffic, into"
        " aig_logs_demo.duckdb, then show what landed (no Cloudflare account needed)",
    )
    parser.add_argument(
        "--max-pages",
        type=int,
        default=None,
        metavar="N",
        help="page budget of this run, per gateway (default: forward_max_pages, 20)",
    )
    args = parser.parse_args(argv)
    if args.max_pages is not None and args.max_pages < 1:
        parser.error("--max-pages must be at least 1")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.demo:
        from aig_source.demo import run_demo

        return run_and_report(lambda: run_demo(max_pages=args.max_pages), demo_hint=False)
    return run_and_report(lambda: run_forward(make_pipeline(), max_pages=args.max_pages))


if __name__ == "__main__":
    raise SystemExit(main())
