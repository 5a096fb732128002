"""The analysis views over `aig_logs`, kept in the pipeline's dataset after every load.

The same views, with the same names, columns and meaning, on DuckDB and BigQuery; only a few
expressions differ per engine (`Dialect`). Their names and columns are a contract: dashboards
(Looker Studio, the report) are built on them.

Every view groups by `day`, which is `DATE(created_at)` in UTC: on BigQuery that is the table's
partitioning expression, and a filter on a grouping key is pushed below the aggregation, so a
query on a view filtered by `day` reads only the partitions of those days (see the README).
The view keeps a fingerprint of its definition in its description; a load replaces a view only
when the definition changed or the view is missing, so most runs issue no DDL at all.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

import dlt

from .client import AigSourceError
from .settings import TABLE_NAME
from .table import table_declared

logger = logging.getLogger(__name__)

VIEW_MARK = "aig-logs view"
"""Starts the fingerprint in each view's description: `aig-logs view <sha256 prefix>`."""


@dataclass(frozen=True)
class Dialect:
    """The expressions that differ between the engines; everything else is shared SQL."""

    name: str
    day: str
    """`created_at` as a UTC DATE."""
    hour: str
    """`created_at` truncated to the UTC hour, as a timestamp."""
    percentile: Callable[[str, int], str]
    """Percentile `p` (0-100) of a column, ignoring nulls."""
    epoch_ms: str
    """`created_at` as milliseconds since the epoch."""
    timestamp: str
    """A UTC timestamp constant (`{}`: ISO text ending in `Z`); on DuckDB a TIMESTAMPTZ, since a
    plain TIMESTAMP would be read in the session's time zone when compared with `created_at`."""
    metadata_entries: str
    """FROM-clause tail: one row per top-level key of `metadata`, columns `metadata_key`,
    `metadata_value` (text: a string unquoted, a number or boolean as written, an object or
    array as JSON text, a JSON null as NULL)."""


DUCKDB = Dialect(
    name="duckdb",
    # a TIMESTAMPTZ casts to DATE in the session's time zone; the view must not depend on it
    day="CAST(timezone('UTC', created_at) AS DATE)",
    hour="timezone('UTC', date_trunc('hour', timezone('UTC', created_at)))",
    percentile=lambda column, p: f"quantile_disc({column}, {p / 100})",
    epoch_ms="epoch_ms(created_at)",
    timestamp="TIMESTAMPTZ '{}'",
    metadata_entries=(
        "CROSS JOIN unnest(json_keys(metadata)) AS entry(metadata_key)"
        " CROSS JOIN LATERAL (SELECT CASE"
        " WHEN json_type(metadata -> entry.metadata_key) IN ('OBJECT', 'ARRAY')"
        " THEN CAST(metadata -> entry.metadata_key AS VARCHAR)"
        " ELSE metadata ->> entry.metadata_key END AS metadata_value) AS entry_value"
    ),
)

BIGQUERY = Dialect(
    name="bigquery",
    day="DATE(created_at)",
    hour="TIMESTAMP_TRUNC(created_at, HOUR)",
    percentile=lambda column, p: f"APPROX_QUANTILES({column}, 100)[OFFSET({p})]",
    epoch_ms="UNIX_MILLIS(created_at)",
    timestamp="TIMESTAMP '{}'",
    # JSON_KEYS quotes a key that holds a period ("a.b"); the subscript needs it bare
    metadata_entries=(
        "CROSS JOIN UNNEST(JSON_KEYS(metadata, 1)) AS listed_key"
        " CROSS JOIN UNNEST([IF(STARTS_WITH(listed_key, '\"') AND ENDS_WITH(listed_key, '\"')"
        " AND LENGTH(listed_key) > 1, JSON_VALUE(PARSE_JSON(listed_key)), listed_key)])"
        " AS metadata_key"
        " CROSS JOIN UNNEST([COALESCE(JSON_VALUE(metadata[metadata_key]),"
        " NULLIF(TO_JSON_STRING(metadata[metadata_key]), 'null'))]) AS metadata_value"
    ),
)

DIALECTS: Dict[str, Dialect] = {d.name: d for d in (DUCKDB, BIGQUERY)}

MODEL = (
    "CASE WHEN provider IS NOT NULL AND STARTS_WITH(model, CONCAT(provider, '/'))"
    " THEN SUBSTR(model, LENGTH(provider) + 2) ELSE model END"
)
"""The model without a leading `<provider>/`: Cloudflare writes `openai/gpt-4o` since
2026-09-01 and `gpt-4o` before, and one model must stay one row across that change."""


def _count_if(condition: str) -> str:
    return f"SUM(CASE WHEN {condition} THEN 1 ELSE 0 END)"


def _total(column: str) -> str:
    return f"COALESCE(SUM({column}), 0)"


@dataclass(frozen=True)
class View:
    name: str
    description: str
    select: Callable[[Dialect, str], str]
    """The view's query for a dialect and the qualified name of `aig_logs`."""


USAGE_MEASURES = ",\n  ".join(
    (
        f"{_count_if('success = FALSE')} AS errors",
        f"{_count_if('cached = TRUE')} AS cached_requests",
        f"{_total('tokens_in')} AS tokens_in",
        f"{_total('tokens_out')} AS tokens_out",
        f"{_total('cost')} AS cost",
    )
)
"""The measures `aig_usage_daily` and `aig_traffic_hourly` share, after `requests`."""


def _usage_daily(d: Dialect, table: str) -> str:
    return f"""SELECT
  {d.day} AS day,
  gateway_id,
  provider,
  {MODEL} AS model,
  COUNT(*) AS requests,
  {USAGE_MEASURES}
FROM {table}
GROUP BY 1, 2, 3, 4"""


def _latency_daily(d: Dialect, table: str) -> str:
    return f"""SELECT
  {d.day} AS day,
  gateway_id,
  provider,
  {MODEL} AS model,
  COUNT(*) AS requests,
  {d.percentile("duration", 50)} AS p50_ms,
  {d.percentile("duration", 95)} AS p95_ms,
  {d.percentile("duration", 99)} AS p99_ms
FROM {table}
GROUP BY 1, 2, 3, 4"""


def _cost_by_metadata(d: Dialect, table: str) -> str:
    return f"""SELECT
  {d.day} AS day,
  gateway_id,
  metadata_key,
  metadata_value,
  COUNT(*) AS requests,
  {_total("cost")} AS cost
FROM {table}
{d.metadata_entries}
GROUP BY 1, 2, 3, 4"""


def _errors_daily(d: Dialect, table: str) -> str:
    return f"""SELECT
  {d.day} AS day,
  gateway_id,
  provider,
  {MODEL} AS model,
  status_code,
  COUNT(*) AS requests
FROM {table}
WHERE success = FALSE
GROUP BY 1, 2, 3, 4, 5"""


def _cache_daily(d: Dialect, table: str) -> str:
    # what the cached requests would have cost at the group's average uncached cost
    uncached = "success = TRUE AND (cached = FALSE OR cached IS NULL)"
    return f"""SELECT
  day, gateway_id, provider, model, requests, cached_requests,
  cached_requests / requests AS cache_hit_rate,
  cached_requests * COALESCE(uncached_cost / NULLIF(uncached_requests, 0), 0)
    AS estimated_savings
FROM (
  SELECT
    {d.day} AS day,
    gateway_id,
    provider,
    {MODEL} AS model,
    COUNT(*) AS requests,
    {_count_if("cached = TRUE")} AS cached_requests,
    {_count_if(uncached)} AS uncached_requests,
    COALESCE(SUM(CASE WHEN {uncached} THEN cost END), 0) AS uncached_cost
  FROM {table}
  GROUP BY 1, 2, 3, 4
) AS daily"""


def _traffic_hourly(d: Dialect, table: str) -> str:
    return f"""SELECT
  {d.hour} AS hour,
  {d.day} AS day,
  gateway_id,
  provider,
  {MODEL} AS model,
  COUNT(*) AS requests,
  {USAGE_MEASURES}
FROM {table}
GROUP BY 1, 2, 3, 4, 5"""


VIEWS: List[View] = [
    View(
        "aig_usage_daily",
        "Requests, errors, cache hits, tokens and cost (USD) per UTC day, gateway, provider and"
        " model",
        _usage_daily,
    ),
    View(
        "aig_latency_daily",
        "Latency percentiles (ms) of request duration per UTC day, gateway, provider and model",
        _latency_daily,
    ),
    View(
        "aig_cost_by_metadata",
        "Requests and cost (USD) per UTC day, gateway and top-level cf-aig-metadata key and value",
        _cost_by_metadata,
    ),
    View(
        "aig_errors_daily",
        "Failed requests per UTC day, gateway, provider, model and status code",
        _errors_daily,
    ),
    View(
        "aig_cache_daily",
        "Cache hit rate and estimated savings (cached requests at the average uncached cost, USD)"
        " per UTC day, gateway, provider and model",
        _cache_daily,
    ),
    View(
        "aig_traffic_hourly",
        "Requests, errors, cache hits, tokens and cost (USD) per UTC hour, gateway, provider and"
        " model",
        _traffic_hourly,
    ),
]
VIEW_NAMES = [view.name for view in VIEWS]


def destination_name(pipeline: dlt.Pipeline) -> str:
    return pipeline.destination.destination_name if pipeline.destination else ""


def dialect_of(pipeline: dlt.Pipeline) -> Dialect:
    name = destination_name(pipeline)
    if name not in DIALECTS:
        raise AigSourceError(
            f"The analysis views exist on DuckDB and BigQuery only, not on {name or 'no'}"
            " destination: set DESTINATION_TYPE to duckdb or bigquery."
        )
    return DIALECTS[name]


def fingerprint(sql: str) -> str:
    return hashlib.sha256(sql.encode()).hexdigest()[:16]


def description_of(view: View, sql: str) -> str:
    return f"{view.description} ({VIEW_MARK} {fingerprint(sql)})"


def view_statements(dialect: Dialect, qualify: Callable[[str], str]) -> Dict[str, str]:
    """Each view's SELECT, by name, with `aig_logs` qualified by `qualify`."""
    table = qualify(TABLE_NAME)
    return {view.name: view.select(dialect, table) for view in VIEWS}


def ensure_views(pipeline: dlt.Pipeline) -> List[str]:
    """Creates the views that are missing and replaces those whose definition changed; returns
    the names of those it wrote. Does nothing before `aig_logs` exists."""
    if not table_declared(pipeline):
        return []
    if destination_name(pipeline) not in DIALECTS:
        logger.warning(
            "no analysis views on %s (DuckDB and BigQuery only)", destination_name(pipeline)
        )
        return []
    dialect = dialect_of(pipeline)
    written: List[str] = []
    with pipeline.sql_client() as client:
        statements = view_statements(dialect, client.make_qualified_table_name)
        current = _descriptions(client, dialect)
        for view in VIEWS:
            sql = statements[view.name]
            description = description_of(view, sql)
            if current.get(view.name) == description:
                continue
            name = client.make_qualified_table_name(view.name)
            if dialect is BIGQUERY:
                client.execute_sql(
                    f"CREATE OR REPLACE VIEW {name}"
                    f" OPTIONS(description={_string_literal(description)}) AS\n{sql}"
                )
            else:
                client.execute_sql(f"CREATE OR REPLACE VIEW {name} AS\n{sql}")
                client.execute_sql(f"COMMENT ON VIEW {name} IS {_string_literal(description)}")
            written.append(view.name)
    if written:
        logger.info("analysis views written: %s", ", ".join(written))
    return written


def _string_literal(text: str) -> str:
    # descriptions are ours (ASCII, no quotes), so this only guards against a future edit
    return "'" + text.replace("\\", "").replace("'", "") + "'"


def _descriptions(client: Any, dialect: Dialect) -> Dict[str, Optional[str]]:
    """The description of each of the views that exists, by name."""
    if dialect is BIGQUERY:
        from google.api_core.exceptions import NotFound

        found: Dict[str, Optional[str]] = {}
        for name in VIEW_NAMES:
            try:
                table = client.native_connection.get_table(
                    client.make_qualified_table_name(name, quote=False)
                )
            except NotFound:
                continue
            found[name] = table.description
        return found
    rows = client.execute_sql(
        "SELECT view_name, comment FROM duckdb_views()"
        " WHERE database_name = current_database() AND schema_name = %s",
        client.dataset_name,
    )
    return {name: comment for name, comment in rows or [] if name in VIEW_NAMES}
