"""Load Cloudflare AI Gateway Logpush files (dataset ai_gateway_events) from a bucket into table
aig_logs: the way in for every account, including those created after 2026-09-24, which have no
Logs API.

Run it on a schedule; each file is loaded once in effect (the files loaded are kept in dlt state,
committed with their rows).
"""

from __future__ import annotations

import argparse
from typing import List, Optional

from aig_source.jobs.logpush import run_logpush
from aig_source.runner import make_pipeline, run_and_report


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="logpush.py",
        description=(
            "Load the AI Gateway Logpush files of a bucket (R2, S3, GCS, Azure or a local"
            " folder) into table aig_logs (pipeline aig_logs or PIPELINE_NAME, dataset"
            " ai_gateway or DATASET_NAME): decrypts Metadata (and, with load_bodies, the"
            " bodies) with your private key. Configure under [sources.aig_logpush]: bucket_url,"
            " credentials, account_id, private_key (SOURCES__AIG_LOGPUSH__* environment"
            " variables, or .dlt/config.toml and .dlt/secrets.toml); select BigQuery with"
            " DESTINATION_TYPE=bigquery."
        ),
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="write an emulated Logpush bucket (three gateways, encrypted fields) into"
        " aig_logpush_demo/, load it into aig_logs_demo.duckdb, then show what landed"
        " (no Cloudflare account or bucket needed)",
    )
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.demo:
        from aig_source.demo import run_logpush_demo

        return run_and_report(run_logpush_demo, demo_hint=False)
    return run_and_report(lambda: run_logpush(make_pipeline()), demo_hint=False)


if __name__ == "__main__":
    raise SystemExit(main())
