"""Run the Logs API emulator from the command line: `python -m aig_source.emulator --help`."""

from __future__ import annotations

import argparse
import signal
import time
from typing import List, Optional

from . import DEFAULT_ACCOUNT_ID, DEFAULT_GATEWAY_ID, DEFAULT_TOKEN, LogsApiEmulator, RateLimit
from .worker import write_duckdb_worker


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aig_source.emulator",
        description="Serve an emulated Cloudflare AI Gateway Logs API on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=0, help="port (default: an ephemeral one)")
    parser.add_argument("--account-id", default=DEFAULT_ACCOUNT_ID)
    parser.add_argument("--gateway-id", default=DEFAULT_GATEWAY_ID)
    parser.add_argument(
        "--gateways",
        type=int,
        default=1,
        help="gateways in the account: the --gateway-id one, then gateway-2, gateway-3, ...;"
        " each gets --logs logs (read them all with SOURCES__AIG_SOURCE__GATEWAY_ID='*')",
    )
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="the API token it accepts")
    parser.add_argument("--logs", type=int, default=1000, help="synthetic logs to preload")
    parser.add_argument("--hours", type=float, default=24.0, help="history they are spread over")
    parser.add_argument("--live", type=float, default=1.0, help="new logs per second (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--capacity", type=int, default=None, help="log_management cap")
    parser.add_argument(
        "--strategy", choices=("DELETE_OLDEST", "STOP_INSERTING"), default="DELETE_OLDEST"
    )
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=1200,
        help="requests per window per token before a block (0: no limit)",
    )
    parser.add_argument("--rate-window", type=float, default=300.0, help="window in seconds")
    parser.add_argument(
        "--worker-table",
        metavar="DUCKDB_FILE",
        help="also write the old Worker's table (worker.aig_logs_raw, its view worker.aig_logs)"
        " into this DuckDB file: every log generated for --gateway-id, those --capacity evicted"
        " too, 50 of them stored twice, as the Worker streamed them (to try migrate_worker.py)",
    )
    args = parser.parse_args(argv)

    rate_limit = (
        RateLimit(args.rate_limit, args.rate_window, args.rate_window) if args.rate_limit else None
    )
    emulator = LogsApiEmulator(
        args.account_id,
        args.gateway_id,
        args.token,
        seed=args.seed,
        port=args.port,
        capacity=args.capacity,
        strategy=args.strategy,
        rate_limit=rate_limit,
    )
    if args.gateways < 1:
        parser.error("--gateways must be at least 1")
    gateway_ids = [args.gateway_id] + [f"gateway-{n}" for n in range(2, args.gateways + 1)]
    for gateway_id in gateway_ids:
        if gateway_id != args.gateway_id:
            emulator.add_gateway(gateway_id, capacity=args.capacity, strategy=args.strategy)
        generated = emulator.generate(args.logs, hours=args.hours, gateway_id=gateway_id)
        if args.worker_table and gateway_id == args.gateway_id:
            history = write_duckdb_worker(args.worker_table, generated)
            print(
                f"The old Worker's table worker.aig_logs_raw in {args.worker_table}:"
                f" {len(history.rows):,} rows, {len(history.newest_copies()):,} logs"
                f" ({emulator.gateway(gateway_id).store.evicted:,} since evicted from the gateway)",
                flush=True,
            )
    # a shell that starts this in the background ignores SIGINT for it; Ctrl-C must still stop it
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with emulator:
        if args.live > 0:
            emulator.start_live_traffic(args.live, max_visibility_delay_ms=2000)
        print(f"AI Gateway Logs API emulator on {emulator.base_url} (Ctrl-C to stop)", flush=True)
        print("Point the pipeline at it with:")
        print(f"  export SOURCES__AIG_SOURCE__API_BASE_URL={emulator.base_url}")
        print(f"  export SOURCES__AIG_SOURCE__ACCOUNT_ID={args.account_id}")
        selection = args.gateway_id if len(gateway_ids) == 1 else "'*'"
        print(f"  export SOURCES__AIG_SOURCE__GATEWAY_ID={selection}")
        print("  export SOURCES__AIG_SOURCE__API_TOKEN=<the --token value>", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
