"""Set up the aig_logs pipeline: write .dlt/config.toml and .dlt/secrets.toml, then check
everything a first run needs (the successor of the old Worker's setup wizard).

    python pipelines/setup.py            asks for what is missing, writes the files, checks
    python pipelines/setup.py --check    only checks the configuration a run would use
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from aig_source.destinations import destination_reference
from aig_source.settings import SOURCE_SECTION

SETTINGS_DIR = Path(".dlt")
SOURCE = f"sources.{SOURCE_SECTION}"


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="setup.py",
        description=(
            "Write the pipeline's settings into .dlt/config.toml and .dlt/secrets.toml (in the"
            " current folder) and check them: the Cloudflare token, account and gateway, the"
            " gateway's log settings, and the destination. Asks for missing values when run in"
            " a terminal; with --non-interactive only the given flags are written."
        ),
    )
    parser.add_argument("--check", action="store_true", help="only run the checks")
    parser.add_argument(
        "--non-interactive", action="store_true", help="never prompt (the default without a tty)"
    )
    parser.add_argument("--account-id", help="Cloudflare account id (32 hex characters)")
    parser.add_argument("--gateway-id", help="AI Gateway id (its slug)")
    parser.add_argument(
        "--api-token-stdin",
        action="store_true",
        help="read the Cloudflare API token (AI Gateway Read) from the first line of stdin;"
        " a token is never taken as an argument, where shell history would keep it",
    )
    parser.add_argument("--destination", choices=("duckdb", "bigquery"))
    parser.add_argument(
        "--bigquery-credentials",
        metavar="FILE",
        help="service-account JSON key file; without it, Application Default Credentials",
    )
    parser.add_argument("--bigquery-project", help="BigQuery project (default: the key's)")
    parser.add_argument("--bigquery-location", help="dataset location, e.g. US or EU")
    parser.add_argument("--dataset", help="dataset name (default ai_gateway)")
    parser.add_argument("--api-base-url", help=argparse.SUPPRESS)  # the emulator, in tests
    return parser.parse_args(argv)


def ask(prompt: str, default: Optional[str] = None, secret: bool = False) -> Optional[str]:
    """The answer, or None when left empty (the setting then keeps its default)."""
    shown = f" [{default}]" if default else ""
    answer = (getpass.getpass if secret else input)(f"{prompt}{shown}: ").strip()
    return answer or None


def collect(args: argparse.Namespace, interactive: bool) -> Dict[str, Dict[str, Any]]:
    """The settings to write: {"config": {...}, "secrets": {...}} keyed by dotted TOML path."""
    config: Dict[str, Any] = {}
    secrets: Dict[str, Any] = {}
    account = args.account_id or (interactive and ask("Cloudflare account id")) or None
    gateway = args.gateway_id or (interactive and ask("AI Gateway id")) or None
    token = sys.stdin.readline().strip() if args.api_token_stdin else None
    if interactive and not token:
        token = ask("Cloudflare API token with AI Gateway Read", secret=True)
    destination = args.destination or (
        interactive and ask("Destination, duckdb or bigquery", "duckdb")
    )
    if account:
        config[f"{SOURCE}.account_id"] = account
    if gateway:
        config[f"{SOURCE}.gateway_id"] = gateway
    if args.api_base_url:
        config[f"{SOURCE}.api_base_url"] = args.api_base_url
    if token:
        secrets[f"{SOURCE}.api_token"] = token
    if destination:
        config["destination_type"] = destination_reference(destination)
    if args.dataset:
        config["dataset_name"] = args.dataset
    if destination == "bigquery":
        key_file = args.bigquery_credentials or (
            interactive and ask("Service-account JSON key file (empty: default credentials)")
        )
        if key_file:
            key = json.loads(Path(key_file).read_text())
            for field in ("project_id", "client_email", "private_key"):
                secrets[f"destination.bigquery.credentials.{field}"] = key[field]
        location = args.bigquery_location or (interactive and ask("Dataset location", "US"))
        if location:
            config["destination.bigquery.location"] = location
        if args.bigquery_project:
            config["destination.bigquery.project_id"] = args.bigquery_project
    return {"config": config, "secrets": secrets}


def check() -> int:
    from aig_source.preflight import run_checks

    results = run_checks()
    for result in results:
        print(result.line())
    failed = [result for result in results if result.failed]
    if failed:
        print(
            f"{len(failed)} check(s) failed: fix them, then run: python pipelines/setup.py --check"
        )
        return 1
    from aig_source.logpush.checks import logpush_configured

    if logpush_configured():
        print("All checks passed. Next: python pipelines/logpush.py")
    else:
        print("All checks passed. Next: python pipelines/forward.py, then pipelines/backfill.py")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.check:
        return check()
    interactive = not args.non_interactive and sys.stdin.isatty() and not args.api_token_stdin
    from aig_source.dlt_files import write_settings

    try:
        settings = collect(args, interactive)
    except (OSError, ValueError, KeyError) as error:
        print(f"error: cannot read the service-account key: {type(error).__name__}: {error}")
        return 1
    for kind in ("config", "secrets"):
        if settings[kind]:
            path = write_settings(SETTINGS_DIR, settings[kind], secret=kind == "secrets")
            print(f"wrote {', '.join(sorted(settings[kind]))} to {path}")
    # a fresh process reads the files just written, exactly as a pipeline run will
    return subprocess.call([sys.executable, os.path.abspath(__file__), "--check"])


if __name__ == "__main__":
    sys.exit(main())
