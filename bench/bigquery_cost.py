"""Cost model of the BigQuery side: bytes billed per forward run and per month.

Row sizes are measured, not guessed: 20,000 synthetic logs from the emulator's traffic model go
through the pipeline's own row coercion and are sized with BigQuery's logical-byte rules. The
volumes and prices are parameters (defaults: 1M logs/day, a run every 5 minutes, Google's
published on-demand prices). Run: `.venv/bin/python -m bench.bigquery_cost [--logs-per-day N]`.

Scenarios, per forward run (the table is partitioned by DATE(created_at)):
- this project: the DELETE reads `id` and `created_at` in the partitions of the batch's range
  (today's, on average half a day of logs); BigQuery also bills the partitions it modifies, which
  is none when the run only adds new logs (unchanged re-read cursor rows are dropped before
  loading) and today's when it replaces rows (late logs found by the lookback check re-read a
  tail of already-loaded ones): both cases are given;
- dlt's default merge: the same, except the DELETE reads `id` over every partition;
- the old Worker: streaming inserts (no DML), billed per row with a 1 KB minimum, and a dedup
  view that scans the referenced columns of all history on every query of it.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from statistics import mean
from typing import Any, Dict, List

from aig_source.emulator import DEFAULT_ACCOUNT_ID, DEFAULT_GATEWAY_ID
from aig_source.emulator.traffic import generate_traffic
from aig_source.rows import to_row
from aig_source.settings import BIGQUERY_MIN_BYTES_PER_TABLE as MIN_BYTES_PER_TABLE_REFERENCED
from aig_source.settings import LOG_COLUMNS, PRICE_PER_TIB_SCANNED

# https://cloud.google.com/bigquery/pricing (on-demand compute, storage, streaming inserts)
FREE_TIB_PER_MONTH = 1.0
PRICE_PER_200_MB_STREAMED = 0.01  # legacy insertAll, each row billed at least 1 KB
MIN_STREAMED_ROW_BYTES = 1024
PRICE_PER_GIB_MONTH_STORED = 0.02  # active logical storage
TIB = 1024**4
DLT_COLUMNS = {"_dlt_load_id": "1795962831.0989642", "_dlt_id": "Kx3kPz9vQm0aRw"}


def logical_bytes(value: Any, data_type: str) -> int:
    """BigQuery's logical size of one value (https://cloud.google.com/bigquery/pricing#data)."""
    if value is None:
        return 0
    if data_type in ("bigint", "double", "timestamp"):
        return 8
    if data_type == "bool":
        return 1
    if data_type == "json":
        return len(json.dumps(value, separators=(",", ":")).encode())
    return 2 + len(str(value).encode())


def measured_row_bytes(sample: int = 20_000) -> Dict[str, float]:
    now = datetime.now(timezone.utc)
    end = int(now.timestamp() * 1000)
    logs = generate_traffic(sample, end - 86_400_000, end, seed=7)
    sizes: Dict[str, List[int]] = {}
    for log in logs:
        row = to_row(log.list_item(), now, DEFAULT_GATEWAY_ID, DEFAULT_ACCOUNT_ID)
        row.update(DLT_COLUMNS)
        for name, value in row.items():
            data_type = LOG_COLUMNS.get(name, {}).get("data_type", "text")
            sizes.setdefault(name, []).append(logical_bytes(value, str(data_type)))
    return {name: mean(values) for name, values in sizes.items()}


def view_columns_read() -> Dict[str, List[str]]:
    """The columns of `aig_logs` each analysis view reads, from its parsed BigQuery SQL."""
    import sqlglot
    from sqlglot import exp

    from aig_source.views import BIGQUERY, VIEWS

    read: Dict[str, List[str]] = {}
    for view in VIEWS:
        tree = sqlglot.parse_one(view.select(BIGQUERY, "`p`.`d`.`aig_logs`"), read="bigquery")
        names = {column.name for column in tree.find_all(exp.Column)}
        read[view.name] = sorted(names & set(LOG_COLUMNS))
    return read


def dollars(tib: float, free_tib: float = 0.0) -> float:
    return max(0.0, tib - free_tib) * PRICE_PER_TIB_SCANNED


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs-per-day", type=float, default=1_000_000)
    parser.add_argument("--runs-per-day", type=float, default=288)
    parser.add_argument("--history-days", type=int, nargs="+", default=[30, 365, 730])
    parser.add_argument("--view-queries-per-day", type=float, default=100)
    args = parser.parse_args()

    columns = measured_row_bytes()
    row = sum(columns.values())
    key = columns["id"] + columns["created_at"]
    print(
        f"row: {row:.0f} logical bytes (id {columns['id']:.0f}, created_at 8);"
        f" {args.logs_per_day / args.runs_per_day:.0f} logs per run,"
        f" {args.runs_per_day:.0f} runs/day"
    )
    todays_partition_rows = args.logs_per_day / 2  # on average a run lands mid-day
    staging_queries = 3 * MIN_BYTES_PER_TABLE_REFERENCED  # MIN/MAX, the DELETE's EXISTS, INSERT
    modified_partition = todays_partition_rows * row  # t': today's partition, when rewritten
    # the DELETE, and the UPDATE that keeps `feedback` (it reads the same target columns, the
    # rarely set feedback adding next to nothing, and the staging table it writes)
    target_read = max(key * todays_partition_rows, MIN_BYTES_PER_TABLE_REFERENCED)
    keep_feedback = target_read + MIN_BYTES_PER_TABLE_REFERENCED
    adding = target_read + staging_queries + keep_feedback
    replacing = adding + modified_partition
    month_runs = args.runs_per_day * 30

    def month(per_run: float) -> str:
        tib = per_run * month_runs / TIB
        return (
            f"{tib:,.2f} TiB, ${dollars(tib, FREE_TIB_PER_MONTH):,.2f}"
            f" (${dollars(tib):,.2f} without the free TiB)"
        )

    print(
        f"\nthis project, any history: {adding / 1e6:,.0f} MB per run that only adds logs,"
        f" {replacing / 1e6:,.0f} MB per run that also replaces rows (today's partition,"
        f" {modified_partition / 1e6:,.0f} MB, is billed as modified)"
    )
    print(f"  per month if no run replaces rows:    {month(adding)}")
    print(f"  per month if every run replaces rows: {month(replacing)}")
    print("\ndlt's default merge (every run replacing rows, as its cursor re-reads them):")
    print("| history | bytes/run | per month |")
    print("|---|---|---|")
    for days in args.history_days:
        default = columns["id"] * days * args.logs_per_day + staging_queries + modified_partition
        print(f"| {days} days | {default / 1e9:,.1f} GB | {month(default)} |")

    streamed_gb = args.logs_per_day * 30 * max(MIN_STREAMED_ROW_BYTES, row) / 1e9
    streaming = streamed_gb * 1000 / 200 * PRICE_PER_200_MB_STREAMED
    view_columns = sum(columns[c] for c in ("id", "created_at", "provider", "model", "cost"))
    print(
        f"\nold Worker: streaming inserts bill {streamed_gb:,.0f} GB/month -> ${streaming:.2f}"
        " per month, flat; its dedup view reads all history on every query:"
    )
    for days in args.history_days:
        per_query = view_columns * days * args.logs_per_day
        tib = per_query * args.view_queries_per_day * 30 / TIB
        print(
            f"  {days} days: {per_query / 1e9:,.1f} GB per query of id, created_at, provider,"
            f" model, cost; {args.view_queries_per_day:.0f} queries/day ->"
            f" {tib:,.1f} TiB/month, ${dollars(tib, FREE_TIB_PER_MONTH):,.0f}"
        )
    print(
        f"\ndashboards on the analysis views (a view filtered by day reads only those days'"
        f" partitions, and only the columns it names); {args.view_queries_per_day:.0f}"
        " queries/day, each over the last 30 days:"
    )
    print("| view | columns read | bytes/row | per query, 7 days | 30 days | per month |")
    print("|---|---|---|---|---|---|")
    for name, names in view_columns_read().items():
        per_row = sum(columns[c] for c in names)
        week, month_range = (
            max(per_row * args.logs_per_day * days, MIN_BYTES_PER_TABLE_REFERENCED)
            for days in (7, 30)
        )
        tib = month_range * args.view_queries_per_day * 30 / TIB
        print(
            f"| `{name}` | {', '.join(names)} | {per_row:.0f} | {week / 1e9:,.2f} GB |"
            f" {month_range / 1e9:,.2f} GB | {tib:,.2f} TiB, ${dollars(tib):,.2f} |"
        )
    stored = row * args.logs_per_day * 30 / 1024**3
    print(
        f"\nstorage, every design: +{stored:,.1f} GiB per month of history,"
        f" ${stored * PRICE_PER_GIB_MONTH_STORED:,.2f}/month more each month"
    )


if __name__ == "__main__":
    main()
