"""The old Worker's objects, made with its own DDL, and filled the way it filled them.

`WORKER_TABLE_DDL` and `WORKER_VIEW_DDL` are the Worker's BigQuery statements; on DuckDB they
run transpiled by sqlglot. `fill_worker_table` streams the emulator's logs in as the Worker did:
`duration` as FLOAT64 milliseconds, no metadata, an `ingested_at` per copy, some ids stored twice
(the older copy with stale values), and logs the gateway no longer has.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Sequence

import dlt
import sqlglot

from aig_source.emulator.store import StoredLog
from aig_source.timestamps import format_ms
from aig_source.views import dialect_of

WORKER_COLUMNS = (
    "id",
    "created_at",
    "provider",
    "model",
    "model_type",
    "success",
    "status_code",
    "cached",
    "duration",
    "tokens_in",
    "tokens_out",
    "cost",
    "path",
    "request_type",
    "request_content_type",
    "response_content_type",
    "step",
    "ingested_at",
)

WORKER_TABLE_DDL = """CREATE TABLE `{table}` (
  id STRING NOT NULL,
  created_at TIMESTAMP NOT NULL,
  provider STRING,
  model STRING,
  model_type STRING,
  success BOOL,
  status_code INT64,
  cached BOOL,
  duration FLOAT64,
  tokens_in INT64,
  tokens_out INT64,
  cost FLOAT64,
  path STRING,
  request_type STRING,
  request_content_type STRING,
  response_content_type STRING,
  step INT64,
  ingested_at TIMESTAMP NOT NULL
)
PARTITION BY DATE(created_at)
CLUSTER BY provider, model, success, id"""

WORKER_VIEW_DDL = """CREATE VIEW `{view}` AS
SELECT * EXCEPT (row_rank) FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY id ORDER BY created_at DESC) AS row_rank
  FROM `{table}`
) WHERE row_rank = 1"""


@dataclass
class WorkerHistory:
    """What the Worker's table holds, as the test expects the import to find it."""

    table: str
    """`project.dataset.table` (on DuckDB `catalog.schema.table`)."""
    rows: List[Dict[str, Any]] = field(default_factory=list)
    """Every stored copy, duplicates included."""

    def newest_copies(self) -> Dict[str, Dict[str, Any]]:
        newest: Dict[str, Dict[str, Any]] = {}
        for row in self.rows:
            kept = newest.get(row["id"])
            if kept is None or row["ingested_at"] > kept["ingested_at"]:
                newest[row["id"]] = row
        return newest


def _literal(value: Any, timestamp: str) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, datetime):
        text = value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        return timestamp.format(text)
    text = str(value)
    assert "'" not in text and "\\" not in text, text
    return f"'{text}'"


def worker_row(log: StoredLog, ingested_at: datetime) -> Dict[str, Any]:
    fields = log.fields
    duration = fields.get("duration")
    return {
        "id": log.id,
        "created_at": datetime.fromtimestamp(log.created_at_ms / 1000, timezone.utc),
        **{name: fields.get(name) for name in WORKER_COLUMNS[2:-1] if name != "duration"},
        # the Worker stored milliseconds as FLOAT64, with a fraction
        "duration": None if duration is None else float(duration) + 0.4,
        "ingested_at": ingested_at,
    }


def create_worker_objects(
    pipeline: dlt.Pipeline, dataset: str, with_view: bool = True
) -> Dict[str, str]:
    """The Worker's table `aig_logs_raw` (and view `aig_logs`) in `dataset` of the pipeline's
    destination; returns their qualified names."""
    dialect = dialect_of(pipeline)
    with pipeline.sql_client() as client:
        if dialect.name == "bigquery":
            project = client.fully_qualified_dataset_name(quote=False).split(".")[0]
            client.native_connection.create_dataset(f"{project}.{dataset}", exists_ok=True)
        else:
            (project,) = client.execute_sql("SELECT current_database()")[0]
            client.execute_sql(f'CREATE SCHEMA IF NOT EXISTS "{dataset}"')
        names = {
            "table": f"{project}.{dataset}.aig_logs_raw",
            "view": f"{project}.{dataset}.aig_logs",
        }
        statements = [WORKER_TABLE_DDL.format(**names)]
        if with_view:
            statements.append(WORKER_VIEW_DDL.format(**names))
        for statement in statements:
            if dialect.name == "duckdb":
                statement = sqlglot.transpile(statement, read="bigquery", write="duckdb")[0]
            client.execute_sql(statement)
    return names


def fill_worker_table(
    pipeline: dlt.Pipeline,
    table: str,
    logs: Sequence[StoredLog],
    evicted: Sequence[StoredLog] = (),
    duplicates: int = 0,
    seed: int = 7,
) -> WorkerHistory:
    """Streams `logs` and `evicted` (logs the gateway no longer has) into the Worker's table;
    `duplicates` ids get a second, older copy with stale values (cost and tokens null)."""
    rng = random.Random(seed)
    history = WorkerHistory(table=table)
    for log in [*logs, *evicted]:
        ingested = datetime.fromtimestamp(log.created_at_ms / 1000, timezone.utc)
        history.rows.append(worker_row(log, ingested + timedelta(seconds=90)))
    for row in rng.sample(history.rows, duplicates):
        stale = dict(row, cost=None, tokens_in=None, tokens_out=None, cached=None)
        stale["ingested_at"] = row["ingested_at"] - timedelta(seconds=30)
        history.rows.append(stale)
    rng.shuffle(history.rows)
    timestamp = dialect_of(pipeline).timestamp
    quoted = (
        "`" + table + "`"
        if dialect_of(pipeline).name == "bigquery"
        else ".".join(f'"{part}"' for part in table.split("."))
    )
    with pipeline.sql_client() as client:
        for start in range(0, len(history.rows), 250):
            values = ",\n".join(
                "(" + ", ".join(_literal(row[name], timestamp) for name in WORKER_COLUMNS) + ")"
                for row in history.rows[start : start + 250]
            )
            client.execute_sql(
                f"INSERT INTO {quoted} ({', '.join(WORKER_COLUMNS)}) VALUES {values}"
            )
    return history


def evicted_logs(logs: Sequence[StoredLog], days_before: int = 3) -> List[StoredLog]:
    """Copies of `logs` moved `days_before` days earlier under new ids: logs the Worker stored
    that the gateway has since evicted (the emulator never holds them)."""
    shift = days_before * 86_400_000
    return [
        StoredLog(
            id=f"evicted-{number:04d}",
            created_at_ms=log.created_at_ms - shift,
            fields=dict(log.fields),
        )
        for number, log in enumerate(logs)
    ]


def utc_text(ms: int) -> str:
    return format_ms(ms)
