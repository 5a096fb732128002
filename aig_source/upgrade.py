"""Carrying tables of older versions forward: columns they lack, and rows without a gateway.

Rows loaded before the table had `gateway_id` and `account_id` have neither. The first run of
this version moves the old state under the one configured gateway (`state.carry_over_one_gateway`)
and records that gateway and account as `rows_to_fill`; once that run's load has added the two
columns, one UPDATE fills them in every older row, and a state-only load forgets the note. A run
killed between the two finds the note again and repeats the UPDATE, which only touches rows still
empty, so it is idempotent.

On BigQuery that UPDATE rewrites every partition holding older rows: it bills the whole table
once (see the README's cost section); later runs never repeat it.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Sequence

import dlt

from .settings import LOG_COLUMNS, ORIGIN_COLUMNS, SOURCE_SECTION, TABLE_NAME
from .state import ROWS_TO_FILL, source_state_of

logger = logging.getLogger(__name__)

COLUMN_TYPES: Dict[str, Dict[str, str]] = {
    "duckdb": {
        "text": "VARCHAR",
        "bigint": "BIGINT",
        "double": "DOUBLE",
        "bool": "BOOLEAN",
        "timestamp": "TIMESTAMPTZ",
    },
    "bigquery": {
        "text": "STRING",
        "bigint": "INT64",
        "double": "FLOAT64",
        "bool": "BOOL",
        "timestamp": "TIMESTAMP",
    },
}
"""How each destination names dlt's types, for SQL written by hand (columns added, casts)."""


def add_missing_columns(pipeline: dlt.Pipeline, names: Sequence[str]) -> List[str]:
    """Adds declared columns a table of an older version lacks. dlt adds declared columns only
    to tables its load writes rows to, so a run that found no new log (an idle gateway) leaves
    them out; returns the columns it added."""
    with pipeline.destination_client() as job_client:
        _, columns = job_client.get_storage_table(TABLE_NAME)  # type: ignore[attr-defined]
    missing = [name for name in names if name not in columns]
    if missing:
        types = COLUMN_TYPES[pipeline.destination.destination_name]
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name(TABLE_NAME)
            for name in missing:
                column_type = types[str(LOG_COLUMNS[name]["data_type"])]
                client.execute_sql(f"ALTER TABLE {table} ADD COLUMN {name} {column_type}")
        logger.info("added %s to %s", " and ".join(missing), TABLE_NAME)
    return missing


def fill_origin_columns(pipeline: dlt.Pipeline) -> int:
    """Fills `gateway_id` and `account_id` of rows loaded before the table had them, if the
    committed state says some were; returns how many rows it filled."""
    pending = source_state_of(pipeline).get(ROWS_TO_FILL)
    if not pending:
        return 0
    add_missing_columns(pipeline, ORIGIN_COLUMNS)
    with pipeline.sql_client() as client:
        table = client.make_qualified_table_name(TABLE_NAME)
        empty = client.execute_sql(f"SELECT COUNT(*) FROM {table} WHERE gateway_id IS NULL")
        filled = int(empty[0][0]) if empty else 0
        if filled:
            client.execute_sql(
                f"UPDATE {table} SET gateway_id = %s, account_id = %s WHERE gateway_id IS NULL",
                str(pending["gateway_id"]),
                str(pending["account_id"]),
            )
    logger.info(
        "filled gateway_id %s and account_id of %s rows loaded by an older version",
        pending["gateway_id"],
        filled,
    )
    with pipeline.managed_state(extract_state=True) as committed:
        committed["sources"][SOURCE_SECTION].pop(ROWS_TO_FILL, None)
    pipeline.normalize()
    pipeline.load()
    return filled
