"""The old Worker's table, emulated: made with the Worker's own DDL and filled the way it was.

The Worker streamed each log it read into `aig_logs_raw` with `insertAll` and best-effort
dedup: `duration` as FLOAT64 milliseconds (with a fraction), no metadata, an `ingested_at` per
copy, some ids stored twice (a retried insert; the older copy with stale values), and logs the
gateway has since evicted or deleted. Its view `aig_logs` kept one copy per id. The statements
are BigQuery's; on DuckDB they run transpiled by sqlglot. The tests use it on both engines, and
`python -m aig_source.emulator --worker-table FILE` writes it into a DuckDB file to try the
switch locally.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Optional, Sequence

import sqlglot

from .store import StoredLog

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
"""The Worker's 17 typed columns of a log, then `ingested_at`."""

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

WORKER_TABLE = "aig_logs_raw"
WORKER_VIEW = "aig_logs"
INSERT_BATCH_ROWS = 250
_TIMESTAMP_LITERALS = {"bigquery": "TIMESTAMP '{}'", "duckdb": "TIMESTAMPTZ '{}'"}


@dataclass
class WorkerHistory:
    """What the Worker's table holds."""

    rows: List[Dict[str, Any]] = field(default_factory=list)
    """Every stored copy, repeated ids included."""

    def newest_copies(self) -> Dict[str, Dict[str, Any]]:
        """One copy per id, the one with the newest `ingested_at`."""
        newest: Dict[str, Dict[str, Any]] = {}
        for row in self.rows:
            kept = newest.get(row["id"])
            if kept is None or row["ingested_at"] > kept["ingested_at"]:
                newest[row["id"]] = row
        return newest


def worker_row(log: StoredLog, ingested_at: datetime) -> Dict[str, Any]:
    """One log as the Worker stored it."""
    fields = log.fields
    duration = fields.get("duration")
    row = {name: fields.get(name) for name in WORKER_COLUMNS}
    row.update(
        id=log.id,
        created_at=datetime.fromtimestamp(log.created_at_ms / 1000, timezone.utc),
        duration=None if duration is None else float(duration) + 0.4,
        ingested_at=ingested_at,
    )
    return row


def worker_history(logs: Sequence[StoredLog], duplicates: int = 0, seed: int = 7) -> WorkerHistory:
    """The Worker's rows of `logs`, each read 90 s after it was created; `duplicates` ids stored
    a second time 30 s earlier with stale values (cost, tokens and cached null)."""
    rng = random.Random(seed)
    history = WorkerHistory()
    for log in logs:
        created = datetime.fromtimestamp(log.created_at_ms / 1000, timezone.utc)
        history.rows.append(worker_row(log, created + timedelta(seconds=90)))
    for row in rng.sample(history.rows, min(duplicates, len(history.rows))):
        stale = dict(row, cost=None, tokens_in=None, tokens_out=None, cached=None)
        stale["ingested_at"] = row["ingested_at"] - timedelta(seconds=30)
        history.rows.append(stale)
    rng.shuffle(history.rows)
    return history


def evicted_logs(logs: Sequence[StoredLog], days_before: int = 3) -> List[StoredLog]:
    """Copies of `logs` moved `days_before` days earlier under new ids: logs the Worker stored
    that the gateway no longer has."""
    shift = days_before * 86_400_000
    return [
        StoredLog(
            id=f"evicted-{number:04d}",
            created_at_ms=log.created_at_ms - shift,
            fields=dict(log.fields),
        )
        for number, log in enumerate(logs)
    ]


def _literal(value: Any, engine: str) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, datetime):
        text = value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        return _TIMESTAMP_LITERALS[engine].format(text)
    text = str(value)
    if "'" in text or "\\" in text:
        raise ValueError(f"the emulated Worker stores no quote or backslash: {text!r}")
    return f"'{text}'"


def _for(engine: str, statement: str) -> str:
    if engine == "bigquery":
        return statement
    # DuckDB has no partitioning or clustering: dropped without a warning
    translated = sqlglot.transpile(
        statement, read="bigquery", write="duckdb", unsupported_level=sqlglot.ErrorLevel.IGNORE
    )
    return str(translated[0])


def _quoted(engine: str, name: str) -> str:
    if engine == "bigquery":
        return f"`{name}`"
    return ".".join(f'"{part}"' for part in name.split("."))


def worker_statements(
    engine: str,
    dataset: str,
    history: Optional[WorkerHistory] = None,
    with_view: bool = True,
    create: bool = True,
) -> List[str]:
    """The SQL that makes the Worker's table (and view, unless not `with_view`; neither unless
    `create`) in `dataset` (`project.dataset`, or on DuckDB `catalog.schema`) of `engine`
    (`bigquery` or `duckdb`), then fills it with `history`."""
    names = {"table": f"{dataset}.{WORKER_TABLE}", "view": f"{dataset}.{WORKER_VIEW}"}
    statements = [_for(engine, WORKER_TABLE_DDL.format(**names))] if create else []
    if create and with_view:
        statements.append(_for(engine, WORKER_VIEW_DDL.format(**names)))
    rows = history.rows if history is not None else []
    table = _quoted(engine, names["table"])
    for start in range(0, len(rows), INSERT_BATCH_ROWS):
        values = ",\n".join(
            "(" + ", ".join(_literal(row[name], engine) for name in WORKER_COLUMNS) + ")"
            for row in rows[start : start + INSERT_BATCH_ROWS]
        )
        statements.append(f"INSERT INTO {table} ({', '.join(WORKER_COLUMNS)}) VALUES {values}")
    return statements


def write_duckdb_worker(
    database: str, logs: Sequence[StoredLog], schema: str = "worker", duplicates: int = 50
) -> WorkerHistory:
    """The Worker's table and view in schema `schema` of the DuckDB file `database`, holding
    `logs` (some stored twice)."""
    import duckdb

    history = worker_history(logs, duplicates=duplicates)
    with duckdb.connect(database) as connection:
        (catalog,) = connection.execute("SELECT current_database()").fetchone() or ("",)
        connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        for statement in worker_statements("duckdb", f"{catalog}.{schema}", history):
            connection.execute(statement)
    return history
