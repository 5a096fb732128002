"""The old Worker's objects in the warehouse: its table of streamed rows, read once in whole UTC
days, and its view or table named `aig_logs`, found before this pipeline would collide with it.

The Worker streamed rows into `aig_logs_raw` (partitioned by `DATE(created_at)`, clustered by
`provider, model, success, id`, `duration` as FLOAT64 milliseconds, an `ingested_at` per copy)
with best-effort dedup, so an id can be stored more than once; its view `aig_logs` kept the
newest copy. The import keeps one row per id, the copy with the newest `ingested_at`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import dlt

from ..client import AigSourceError
from ..settings import (
    BIGQUERY_MIN_BYTES_PER_TABLE,
    CURSOR_FIELD,
    DEFAULT_WORKER_TABLE,
    IMPORT_BATCH_ROWS,
    IMPORT_CHUNK_ROWS,
    LOG_COLUMNS,
    ORIGIN_COLUMNS,
    PRICE_PER_TIB_SCANNED,
    TABLE_NAME,
    WORKER_RENAMED_OBJECT,
)
from ..upgrade import COLUMN_TYPES
from ..views import BIGQUERY, Dialect, dialect_of

WORKER_COPIES = "worker_copies"
"""A column of each row read: how many copies of its id the Worker's table holds in the chunk."""
NOT_FROM_WORKER = (*ORIGIN_COLUMNS, "metadata", "feedback")
"""Columns the Worker never stored: the origin comes from the configuration, the rest is null."""
FLOATING_TYPES = ("FLOAT", "DOUBLE", "REAL", "NUMERIC", "DECIMAL", "BIGNUMERIC")
_NAME_PART = re.compile(r"^[A-Za-z0-9_\-]+$")


@dataclass(frozen=True)
class Relation:
    """A table or view as the warehouse describes it."""

    name: str
    """Its qualified name, as a user writes it (`project.dataset.table`)."""
    kind: str
    """`table` or `view`."""
    columns: Dict[str, str]
    """Column names (lower case) and the engine's type names (upper case)."""
    view_sql: Optional[str] = None
    rows: Optional[int] = None
    stored_bytes: Optional[int] = None


def quoted(dialect: Dialect, parts: Sequence[str]) -> str:
    if dialect is BIGQUERY:
        return "`" + ".".join(parts) + "`"
    return ".".join('"' + part + '"' for part in parts)


def describe_relation(client: Any, dialect: Dialect, parts: Sequence[str]) -> Optional[Relation]:
    """The table or view `parts` (catalog or project, dataset, name); None when there is none.
    On BigQuery this reads the table's metadata (`tables.get`), which bills nothing."""
    name = ".".join(parts)
    if dialect is BIGQUERY:
        from google.api_core.exceptions import NotFound

        try:
            table = client.native_connection.get_table(name)
        except NotFound:
            return None
        kind = "view" if "VIEW" in str(table.table_type or "") else "table"
        return Relation(
            name=name,
            kind=kind,
            columns={field.name.lower(): str(field.field_type).upper() for field in table.schema},
            view_sql=table.view_query,
            rows=table.num_rows,
            stored_bytes=table.num_bytes,
        )
    catalog, schema, table_name = parts
    found = client.execute_sql(
        "SELECT table_type FROM information_schema.tables"
        " WHERE table_catalog = %s AND table_schema = %s AND table_name = %s",
        catalog,
        schema,
        table_name,
    )
    if not found:
        return None
    columns = client.execute_sql(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_catalog = %s AND table_schema = %s AND table_name = %s"
        " ORDER BY ordinal_position",
        catalog,
        schema,
        table_name,
    )
    kind = "view" if "VIEW" in str(found[0][0]).upper() else "table"
    view_sql = None
    if kind == "view":
        sql = client.execute_sql(
            "SELECT sql FROM duckdb_views()"
            " WHERE database_name = %s AND schema_name = %s AND view_name = %s",
            catalog,
            schema,
            table_name,
        )
        view_sql = str(sql[0][0]) if sql else None
    return Relation(
        name=name,
        kind=kind,
        columns={str(column).lower(): str(kind_).upper() for column, kind_ in columns or []},
        view_sql=view_sql,
    )


def dataset_parts(client: Any, dialect: Dialect) -> Tuple[str, str]:
    """The project (BigQuery) or catalog (DuckDB) and the dataset of the pipeline's client."""
    if dialect is BIGQUERY:
        project, dataset = client.fully_qualified_dataset_name(quote=False).split(".", 1)
        return project, dataset
    (catalog,) = client.execute_sql("SELECT current_database()")[0]
    return str(catalog), str(client.dataset_name)


# ------------------------------------------------------------------ what holds `aig_logs`


def foreign_table_problem(pipeline: dlt.Pipeline) -> Optional[str]:
    """The one line to stop with when the dataset holds a view or table `aig_logs` this
    pipeline did not create (the old Worker's view, typically); None when there is none, or
    it is this pipeline's table, or the destination has no SQL to ask."""
    try:
        dialect = dialect_of(pipeline)
    except AigSourceError:
        return None
    with pipeline.sql_client() as client:
        project, dataset = dataset_parts(client, dialect)
        relation = describe_relation(client, dialect, (project, dataset, TABLE_NAME))
    if relation is None or (relation.kind == "table" and "_dlt_load_id" in relation.columns):
        return None
    worker = relation.kind == "view" or "ingested_at" in relation.columns
    what = f"a {relation.kind} {TABLE_NAME} that this pipeline did not create"
    if worker:
        what += " (by its look, the old Worker's" + (
            " deduplicating view)" if relation.kind == "view" else " table)"
        )
    history = ".".join(
        part
        for part in (project if dialect is BIGQUERY else "", dataset, DEFAULT_WORKER_TABLE)
        if part
    )
    return (
        f"Dataset {dataset} already holds {what}, so this pipeline's table {TABLE_NAME} cannot"
        " be created there. Load into a new dataset (recommended; the Worker's objects stay as"
        f" they are): set dataset_name (env DATASET_NAME, e.g. {dataset}_logs), then import the"
        f" Worker's history with: python pipelines/migrate_worker.py --from {history}."
        f" Or rename it first: {rename_statement(dialect, relation, (project, dataset))}"
    )


def rename_statement(dialect: Dialect, relation: Relation, dataset: Tuple[str, str]) -> str:
    """The SQL that moves the Worker's `aig_logs` out of the way, keeping it under
    `aig_logs_worker`. BigQuery renames tables but not views: a view is created again under the
    new name from its own SQL, then the old one dropped."""
    # DuckDB's statement runs in the database file itself: schema and name are enough
    in_dataset = dataset if dialect is BIGQUERY else dataset[1:]
    old = quoted(dialect, (*in_dataset, TABLE_NAME))
    if dialect is not BIGQUERY or relation.kind == "table":
        keyword = "VIEW" if relation.kind == "view" else "TABLE"
        return f"ALTER {keyword} {old} RENAME TO {WORKER_RENAMED_OBJECT};"
    new = quoted(dialect, (*in_dataset, WORKER_RENAMED_OBJECT))
    sql = relation.view_sql or ""
    if sql and "--" not in sql and "'" not in sql and '"' not in sql:
        definition = " ".join(sql.split())
    else:  # a comment or a literal would not survive being put on one line
        definition = f"<the SQL of {relation.name}>"
    return f"CREATE VIEW {new} AS {definition}; DROP VIEW {old};"


def ensure_table_is_ours(pipeline: dlt.Pipeline) -> None:
    """Stops the run, before anything loads, when `aig_logs` is somebody else's."""
    problem = foreign_table_problem(pipeline)
    if problem:
        raise AigSourceError(problem)


# ------------------------------------------------------------------ the Worker's table


@dataclass(frozen=True)
class DayRows:
    """The rows the Worker's table stores for one UTC day."""

    day: date
    stored: int


@dataclass(frozen=True)
class ImportChunk:
    """Whole UTC days `[first_day, last_day]` read by one load."""

    first_day: date
    last_day: date
    stored: int
    last: bool
    fresh: bool = False
    """The first load of a pass over the whole table (not a resumed one): its counts start at 0."""

    @property
    def start(self) -> datetime:
        return datetime(
            self.first_day.year, self.first_day.month, self.first_day.day, tzinfo=timezone.utc
        )

    @property
    def end(self) -> datetime:
        after = self.last_day + timedelta(days=1)
        return datetime(after.year, after.month, after.day, tzinfo=timezone.utc)


def chunks_of(days: Sequence[DayRows], max_rows: int = IMPORT_CHUNK_ROWS) -> List[ImportChunk]:
    """Consecutive days grouped into loads of at most `max_rows` stored rows (a larger day is
    a load of its own)."""
    groups: List[List[DayRows]] = []
    for day in days:
        if groups and sum(d.stored for d in groups[-1]) + day.stored <= max_rows:
            groups[-1].append(day)
        else:
            groups.append([day])
    return [
        ImportChunk(
            first_day=group[0].day,
            last_day=group[-1].day,
            stored=sum(d.stored for d in group),
            last=number == len(groups),
        )
        for number, group in enumerate(groups, start=1)
    ]


def parse_reference(reference: str, default_project: str) -> Tuple[str, str, str]:
    """`--from`: `PROJECT.DATASET.TABLE`, `DATASET.TABLE`, or `DATASET` (table `aig_logs_raw`);
    on DuckDB the project part is the database (catalog)."""
    parts = [part.strip('`" ') for part in reference.strip().split(".")]
    if not 1 <= len(parts) <= 3 or not all(_NAME_PART.match(part) for part in parts):
        raise AigSourceError(
            f"--from {reference!r} does not name a table: give PROJECT.DATASET.TABLE,"
            f" DATASET.TABLE, or DATASET (its table {DEFAULT_WORKER_TABLE})."
        )
    if len(parts) == 1:
        parts.append(DEFAULT_WORKER_TABLE)
    if len(parts) == 2:
        parts.insert(0, default_project)
    return parts[0], parts[1], parts[2]


@dataclass(frozen=True)
class ReadEstimate:
    """What reading the Worker's table once will bill, stated before anything is read."""

    table: str
    rows: Optional[int]
    billed_bytes: Optional[int]
    """From BigQuery's dry run; None on DuckDB, which bills nothing."""

    def line(self) -> str:
        rows = f"{self.rows:,} rows" if self.rows is not None else "its rows"
        if self.billed_bytes is None:
            return f"The import reads {rows} of {self.table} once (DuckDB: nothing is billed)."
        dollars = self.billed_bytes / 1024**4 * PRICE_PER_TIB_SCANNED
        return (
            f"The import reads {rows} of {self.table} once: BigQuery bills"
            f" {format_bytes(self.billed_bytes)} for it (dry run; ${dollars:,.2f} at"
            f" ${PRICE_PER_TIB_SCANNED}/TiB, less inside the monthly free TiB); each of its"
            f" queries (one for the list of days, one per load of up to {IMPORT_CHUNK_ROWS:,}"
            f" rows) bills at least {format_bytes(BIGQUERY_MIN_BYTES_PER_TABLE)} per table it"
            " reads."
        )


def format_bytes(count: int) -> str:
    """Bytes in BigQuery's billing units (binary: 1 MiB = 1024 KiB)."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


class WorkerTable:
    """The Worker's table, read with the pipeline's own destination client."""

    def __init__(self, pipeline: dlt.Pipeline, reference: str) -> None:
        self.pipeline = pipeline
        self.dialect = dialect_of(pipeline)
        with pipeline.sql_client() as client:
            project, _ = dataset_parts(client, self.dialect)
            self.parts = parse_reference(reference, project)
            relation = describe_relation(client, self.dialect, self.parts)
        self.name = ".".join(self.parts)
        if relation is None:
            raise AigSourceError(
                f"The Worker's table {self.name} was not found: check --from"
                " (PROJECT.DATASET.TABLE, DATASET.TABLE, or DATASET for its table"
                f" {DEFAULT_WORKER_TABLE})."
            )
        missing = [name for name in ("id", CURSOR_FIELD) if name not in relation.columns]
        if missing:
            raise AigSourceError(
                f"{self.name} is not the Worker's table of logs: it has no {' or '.join(missing)}"
                " column. Give the table the Worker streamed into (--from, default table"
                f" {DEFAULT_WORKER_TABLE})."
            )
        self.relation = relation
        self.sql_name = quoted(self.dialect, self.parts)
        wanted = [name for name in LOG_COLUMNS if name not in NOT_FROM_WORKER]
        self.mapped = [name for name in wanted if name in relation.columns]
        """Our columns the Worker's table has, in the table's order."""
        self.ignored = sorted(set(relation.columns) - set(self.mapped))
        """The Worker's columns that have no meaning here (reported, not imported)."""

    def _expression(self, name: str) -> str:
        our_type = str(LOG_COLUMNS[name]["data_type"])
        sql_type = COLUMN_TYPES[self.dialect.name][our_type]
        column = f"w.{name}"
        worker_type = self.relation.columns[name]
        if our_type == "bigint" and worker_type.startswith(FLOATING_TYPES):
            column = f"ROUND({column})"  # the Worker's duration: FLOAT64 milliseconds
        return f"CAST({column} AS {sql_type}) AS {name}"

    def _between(self, start: datetime, end: datetime, alias: str) -> str:
        start_sql, end_sql = (
            self.dialect.timestamp.format(moment.strftime("%Y-%m-%dT%H:%M:%SZ"))
            for moment in (start, end)
        )
        return f"{alias}.{CURSOR_FIELD} >= {start_sql} AND {alias}.{CURSOR_FIELD} < {end_sql}"

    def estimate(self) -> ReadEstimate:
        """What reading the table once bills: BigQuery's dry run of the day list and of every
        column the import reads."""
        if self.dialect is not BIGQUERY:
            with self.pipeline.sql_client() as client:
                counted = client.execute_sql(f"SELECT COUNT(*) FROM {self.sql_name}") or [(0,)]
            return ReadEstimate(self.name, int(counted[0][0]), None)
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(dry_run=True, use_query_cache=False)
        columns = ", ".join(f"w.{name}" for name in self.mapped)
        billed = 0
        with self.pipeline.sql_client() as client:
            for sql in (self.days_sql(), f"SELECT {columns} FROM {self.sql_name} AS w"):
                job = client.native_connection.query(sql, job_config=config)
                billed += int(job.total_bytes_processed or 0)
        return ReadEstimate(self.name, self.relation.rows, billed)

    def days_sql(self) -> str:
        return (
            f"SELECT {self.dialect.day} AS day, COUNT(*) AS stored FROM {self.sql_name}"
            " GROUP BY day ORDER BY day"
        )

    def days(self) -> List[DayRows]:
        """The UTC days the table holds rows for, and how many."""
        with self.pipeline.sql_client() as client:
            rows = client.execute_sql(self.days_sql()) or []
        return [DayRows(day=_as_date(day), stored=int(stored)) for day, stored in rows]

    def chunk_sql(self, chunk: ImportChunk, target: Optional[str]) -> str:
        """One row per id of the chunk's days (the copy with the newest `ingested_at`), without
        the ids `target` already holds in those days: rows read from the API, or imported
        before, are never overwritten by the Worker's copy."""
        columns = ",\n  ".join(self._expression(name) for name in self.mapped)
        order = "w.ingested_at DESC NULLS LAST" if "ingested_at" in self.mapped else "w.id"
        absent = ""
        if target:
            absent = (
                f"\n  AND NOT EXISTS (SELECT 1 FROM {target} AS t WHERE t.id = w.id"
                f" AND {self._between(chunk.start, chunk.end, 't')})"
            )
        return (
            f"SELECT {columns},\n  COUNT(*) OVER (PARTITION BY w.id) AS {WORKER_COPIES}\n"
            f"FROM {self.sql_name} AS w\n"
            f"WHERE {self._between(chunk.start, chunk.end, 'w')}{absent}\n"
            f"QUALIFY ROW_NUMBER() OVER (PARTITION BY w.id ORDER BY {order}) = 1"
        )

    def rows(
        self, chunk: ImportChunk, target: Optional[str], batch_rows: int = IMPORT_BATCH_ROWS
    ) -> Iterator[List[Dict[str, Any]]]:
        """The chunk's rows in batches, as dicts with this table's column names."""
        sql = self.chunk_sql(chunk, target)
        with self.pipeline.sql_client() as client, client.execute_query(sql) as cursor:
            for batch in cursor.iter_arrow(chunk_size=batch_rows):
                yield batch.to_pylist()


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])
