"""Show each gateway's progress and whether it is fresh, from the state in the destination.

For every gateway the pipeline has read (or is configured to read): the forward cursor, how far
behind the gateway's newest log the last forward run ended, when that run was and what it did,
the backfill's progress and the time its remaining logs take at the paced rate, and the last
reconcile. It makes no Cloudflare API request and needs no token, so it works on a fresh machine.
Exits 1 when a gateway is behind the freshness threshold, stale (no forward run for longer than
it), failing or never run: usable as a scheduled check.
"""

from __future__ import annotations

import argparse
from typing import List, Optional

from aig_source.jobs.status import pipeline_status
from aig_source.runner import make_pipeline, run_and_report


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="status.py",
        description=(
            "Show each gateway's cursor, lag, last runs, backfill progress and a verdict against"
            " freshness_threshold_seconds, from the state in the configured destination"
            " (pipeline aig_logs or PIPELINE_NAME); exit 1 when a gateway is not fresh."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    return run_and_report(lambda: pipeline_status(make_pipeline(), as_json=args.json))


if __name__ == "__main__":
    raise SystemExit(main())
