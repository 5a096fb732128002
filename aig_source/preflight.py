"""Checks before the first run (`pipelines/setup.py --check`): the Cloudflare token, account and
gateway, the gateway's log settings, and the destination. Each failed check says what to fix."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

import dlt
from dlt.common.configuration.exceptions import ConfigFieldMissingException

from .client import AigSourceError, LogsApiClient, config_hint
from .config import resolve_source_configuration
from .paging import created_at_filters
from .runner import describe_failure, format_duration, make_pipeline, missing_config_message
from .settings import ALL_GATEWAYS, SOURCE_SECTION, TABLE_NAME
from .timestamps import now_ms
from .worker.warehouse import foreign_table_problem

DAY_SECONDS = 86_400
STOP_INSERTING_WARN_DAYS = 30


@dataclass(frozen=True)
class CheckResult:
    status: str
    """`ok`, `warn` (works, but read this) or `fail` (fix this before the first run)."""
    subject: str
    detail: str

    @property
    def failed(self) -> bool:
        return self.status == "fail"

    def line(self) -> str:
        return f"{self.status.upper():<4}  {self.subject}: {self.detail}"


def _ok(subject: str, detail: str) -> CheckResult:
    return CheckResult("ok", subject, detail)


def _warn(subject: str, detail: str) -> CheckResult:
    return CheckResult("warn", subject, detail)


def _fail(subject: str, detail: str) -> CheckResult:
    return CheckResult("fail", subject, detail)


@dataclass(frozen=True)
class GatewayLoad:
    """How many logs the gateway holds and how fast it gains them."""

    stored: int
    last_day: int

    @property
    def per_second(self) -> float:
        return self.last_day / DAY_SECONDS


def eviction_outlook(
    capacity: int, stored: int, ingest_per_second: float, backfill_per_second: float
) -> Tuple[float, int]:
    """Seconds a backfill of the whole history takes, and how many of the oldest logs
    `DELETE_OLDEST` evicts before it reaches them.

    The backfill walks down from the newest log at `backfill_per_second`; once the gateway is
    full, each new log evicts the oldest, so the bottom of the history recedes at the ingest rate.
    """
    if stored <= 0:
        return 0.0, 0
    unhindered = stored / backfill_per_second
    if ingest_per_second <= 0:
        return unhindered, 0
    until_full = max(0.0, (capacity - stored) / ingest_per_second)
    if unhindered <= until_full:
        return unhindered, 0
    # backfill_per_second * t + ingest_per_second * (t - until_full) = stored
    seconds = (stored + ingest_per_second * until_full) / (backfill_per_second + ingest_per_second)
    return seconds, math.ceil(ingest_per_second * (seconds - until_full))


def log_settings_checks(
    gateway: dict[str, Any], load: GatewayLoad, backfill_per_second: float, named: str = ""
) -> List[CheckResult]:
    """`collect_logs` and the storage cap (`log_management`, `log_management_strategy`);
    `named` follows each subject when several gateways are checked."""
    results: List[CheckResult] = []
    subject = "Gateway log settings" + named
    storage = "Log storage" + named
    if gateway.get("collect_logs") is False:
        results.append(
            _fail(
                subject,
                "the gateway does not collect logs (collect_logs=false), so only requests"
                " sending 'cf-aig-collect-log: true' are logged. Turn on 'Collect logs' in the"
                " gateway's settings (AI > AI Gateway > Settings).",
            )
        )
    capacity = gateway.get("log_management")
    strategy = gateway.get("log_management_strategy")
    if not isinstance(capacity, int):
        results.append(_ok(storage, "no gateway cap (the plan's storage limit applies)"))
        return results
    usage = f"{load.stored:,} of {capacity:,} logs stored, {load.per_second:.2f} new logs/s"
    if strategy == "STOP_INSERTING":
        if load.stored >= capacity:
            results.append(
                _fail(
                    storage,
                    f"the gateway is full ({usage}) and drops new logs (STOP_INSERTING). Raise"
                    " log_management or switch Automatic Log Deletion to DELETE_OLDEST.",
                )
            )
        elif load.per_second > 0 and (
            (capacity - load.stored) / load.per_second < STOP_INSERTING_WARN_DAYS * DAY_SECONDS
        ):
            full_in = format_duration((capacity - load.stored) / load.per_second)
            results.append(
                _warn(
                    storage,
                    f"{usage}; full in about {full_in}, then new logs are dropped"
                    " (STOP_INSERTING). Raise log_management or delete loaded logs in time.",
                )
            )
        else:
            results.append(_ok(storage, f"{usage}; STOP_INSERTING"))
        return results
    seconds, lost = eviction_outlook(capacity, load.stored, load.per_second, backfill_per_second)
    backfill = (
        f"a backfill at the paced {backfill_per_second:.0f} logs/s needs {format_duration(seconds)}"
    )
    if lost > 0:
        results.append(
            _warn(
                storage,
                f"{usage}; DELETE_OLDEST evicts the oldest logs: {backfill}, and about"
                f" {lost:,} of the oldest logs will be evicted before it reaches them. Start"
                " pipelines/backfill.py now and let it run to the end, or raise log_management.",
            )
        )
    else:
        results.append(_ok(storage, f"{usage}; DELETE_OLDEST, and {backfill}, before any eviction"))
    return results


def check_cloudflare(
    client: LogsApiClient,
    gateway_ids: List[str],
    backfill_per_second: float,
    now: Optional[int] = None,
) -> List[CheckResult]:
    """Token, account, then for each configured gateway (with `*`, each one listed): log
    reading and the gateway's log settings."""
    try:
        token = client.verify_token()
    except AigSourceError as error:
        return [_fail("Cloudflare API token", str(error))]
    if token.get("status") != "active":
        return [
            _fail(
                "Cloudflare API token",
                f"the token is {token.get('status')!s}, not active. Create a token with the"
                f" 'AI Gateway Read' permission and set {config_hint('api_token', secret=True)}.",
            )
        ]
    results = [_ok("Cloudflare API token", "valid and active")]
    if gateway_ids == [ALL_GATEWAYS]:
        try:
            gateway_ids = sorted(str(g["id"]) for g in client.list_gateways())
        except AigSourceError as error:
            return [*results, _fail("Gateways", str(error))]
        if not gateway_ids:
            return [
                *results,
                _warn(
                    "Gateways",
                    f"account {client.account_id} has no gateway yet; with gateway_id '*' the"
                    " first run after one is created reads it.",
                ),
            ]
        results.append(
            _ok(
                "Gateways",
                f"gateway_id '*' reads all {len(gateway_ids)} gateways of account"
                f" {client.account_id}: {', '.join(gateway_ids)}",
            )
        )
    for gateway_id in gateway_ids:
        named = f" ({gateway_id})" if len(gateway_ids) > 1 else ""
        results += _check_gateway(client.for_gateway(gateway_id), backfill_per_second, now, named)
    return results


def _check_gateway(
    client: LogsApiClient, backfill_per_second: float, now: Optional[int], named: str
) -> List[CheckResult]:
    subject = "Account and gateway" + named
    try:
        gateway = client.get_gateway()
        stored = client.list_logs([], per_page=1).total_count or 0
        since = (now if now is not None else now_ms()) - DAY_SECONDS * 1000
        last_day = client.list_logs(created_at_filters(since), per_page=1).total_count or 0
    except AigSourceError as error:
        return [_fail(subject, str(error))]
    load = GatewayLoad(stored=stored, last_day=last_day)
    detail = (
        f"gateway '{client.gateway_id}' of account {client.account_id}: its logs can be read"
        f" ({stored:,} stored, {last_day:,} in the last 24 h)"
    )
    return [_ok(subject, detail), *log_settings_checks(gateway, load, backfill_per_second, named)]


def check_destination(pipeline: dlt.Pipeline) -> List[CheckResult]:
    """The destination opens, and on BigQuery both datasets exist or can be created where
    configured and a query job can run (the permissions a load needs)."""
    destination = pipeline.destination
    name = destination.destination_name if destination is not None else "duckdb"
    subject = f"Destination ({name})"
    try:
        with pipeline.sql_client() as client:
            if name == "bigquery":
                detail = _bigquery_datasets(pipeline, client)
            else:
                client.execute_sql("SELECT 1 AS reachable")
                credentials = pipeline.destination_client().config.credentials
                detail = f"{credentials} opens and answers queries"
        problem = foreign_table_problem(pipeline)  # a Worker view where the table belongs
    except Exception as error:  # every failure is one line naming the fix
        return [_fail(subject, describe_failure(error, demo_hint=False))]
    if problem:
        return [_ok(subject, detail), _fail(f"Table {TABLE_NAME}", problem)]
    return [_ok(subject, detail)]


def _bigquery_datasets(pipeline: dlt.Pipeline, client: Any) -> str:
    location = pipeline.destination_client().config.location  # type: ignore[attr-defined]
    google = client.native_connection
    notes = []
    for staging in (False, True):
        dataset = client.fully_qualified_dataset_name(quote=False, staging=staging)
        if not _has(google, dataset):
            google.create_dataset(_dataset_spec(dataset, location))
            notes.append(f"created {dataset} in {location}")
            continue
        found = google.get_dataset(dataset)
        if found.location and found.location.upper() != location.upper():
            raise ValueError(
                f"dataset {dataset} is in {found.location}, not in the configured {location}:"
                " set location under [destination.bigquery] (DESTINATION__BIGQUERY__LOCATION)"
                f" to {found.location}, or choose another dataset_name"
            )
        notes.append(f"{dataset} exists in {found.location}")
    client.execute_sql("SELECT 1 AS reachable")
    return "; ".join(notes) + "; query jobs run"


def _has(google: Any, dataset: str) -> bool:
    from google.api_core.exceptions import NotFound

    try:
        google.get_dataset(dataset)
    except NotFound:
        return False
    return True


def _dataset_spec(dataset: str, location: str) -> Any:
    from google.cloud import bigquery

    spec = bigquery.Dataset(dataset)
    spec.location = location
    return spec


def run_checks() -> List[CheckResult]:
    """Every check, with the configuration a pipeline run in this folder would use: the Logs
    API's unless only Logpush is set up, and Logpush's when it is (`logpush/checks.py`)."""
    from .logpush.checks import check_logpush, logpush_configured

    logpush = logpush_configured()
    results = _api_checks() if not logpush or _api_configured() else []
    if logpush:
        results += check_logpush()
    try:
        pipeline = make_pipeline()
    except Exception as error:  # an unknown destination type, for one
        return [*results, _fail("Destination", describe_failure(error, demo_hint=False))]
    return results + check_destination(pipeline)


def _api_configured() -> bool:
    return bool(
        dlt.secrets.get(f"sources.{SOURCE_SECTION}.api_token", str)
        or dlt.config.get(f"sources.{SOURCE_SECTION}.gateway_id")
    )


def _api_checks() -> List[CheckResult]:
    try:
        settings = resolve_source_configuration()
    except ConfigFieldMissingException as error:
        results = [_fail("Configuration", missing_config_message(error.fields, demo_hint=False))]
    except AigSourceError as error:
        results = [_fail("Configuration", str(error))]
    else:
        gateways = list(settings.gateway_id)
        client = LogsApiClient(
            settings.api_base_url, settings.account_id, gateways[0], settings.api_token
        )
        results = check_cloudflare(client, gateways, settings.backfill_per_second)
    return results
