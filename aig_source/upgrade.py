"""Carrying a table of the single-gateway versions into the fleet version.

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

import dlt

from .settings import SOURCE_SECTION, TABLE_NAME
from .state import ROWS_TO_FILL, source_state_of

logger = logging.getLogger(__name__)


def fill_origin_columns(pipeline: dlt.Pipeline) -> int:
    """Fills `gateway_id` and `account_id` of rows loaded before the table had them, if the
    committed state says some were; returns how many rows it filled."""
    pending = source_state_of(pipeline).get(ROWS_TO_FILL)
    if not pending:
        return 0
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
