"""Import the old Worker's history (its BigQuery table `aig_logs_raw`) into table aig_logs.

States first what reading the Worker's table bills (a BigQuery dry run), then reads it once in
loads of whole UTC days: one row per id (the copy with the newest ingested_at), the configured
gateway_id and account_id, metadata null, imported_from naming the Worker's table. Ids the table
already holds are left as they are, so a second run changes nothing, and forward and backfill
runs later merge the API's rows over the imported ones.
"""

from __future__ import annotations

import argparse
from typing import List, Optional

from aig_source.jobs.migrate_worker import run_import
from aig_source.runner import make_pipeline, run_and_report
from aig_source.settings import DEFAULT_WORKER_TABLE, IMPORT_CHUNK_ROWS


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="migrate_worker.py",
        description=(
            "Import the old Worker's table of streamed rows into table aig_logs of the"
            " configured destination (DuckDB by default, BigQuery with DESTINATION_TYPE=bigquery;"
            " pipeline aig_logs or PIPELINE_NAME, dataset ai_gateway or DATASET_NAME)."
        ),
    )
    parser.add_argument(
        "--from",
        dest="worker_table",
        required=True,
        metavar="TABLE",
        help=f"the Worker's table: PROJECT.DATASET.TABLE, DATASET.TABLE, or DATASET (its table"
        f" {DEFAULT_WORKER_TABLE}); on DuckDB, in the destination's database file",
    )
    parser.add_argument(
        "--gateway-id",
        metavar="ID",
        help="the gateway the Worker read (default: the configured gateway_id, if it is one)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="state what reading the Worker's table bills, and stop",
    )
    parser.add_argument(
        "--again",
        action="store_true",
        help="read a table imported before once more (only ids the table lacks are added)",
    )
    parser.add_argument(
        "--chunk-rows",
        type=int,
        default=IMPORT_CHUNK_ROWS,
        metavar="N",
        help=f"rows of the Worker's table per load, in whole days (default: {IMPORT_CHUNK_ROWS:,})",
    )
    args = parser.parse_args(argv)
    if args.chunk_rows < 1:
        parser.error("--chunk-rows must be at least 1")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    return run_and_report(
        lambda: run_import(
            make_pipeline(),
            args.worker_table,
            gateway_id=args.gateway_id,
            dry_run=args.dry_run,
            again=args.again,
            chunk_rows=args.chunk_rows,
        ),
        demo_hint=False,
    )


if __name__ == "__main__":
    raise SystemExit(main())
