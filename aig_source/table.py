"""Table `aig_logs` as every source loads it: merged on `id`, declared columns, the bounded merge
and the BigQuery layout. A source of logs (the Logs API today, Logpush files next) builds its
resources with `TABLE_HINTS` and passes them through `declare_table`, turns its records into
rows with `rows.to_row` and yields them through `batches.rows_for_load`, so that all of them
write one table with one meaning, in the form the destination loads fastest."""

from __future__ import annotations

from typing import Any, Dict

import dlt
from dlt.destinations.adapters import bigquery_adapter
from dlt.sources import DltResource

from .settings import (
    BIGQUERY_CLUSTER_COLUMNS,
    BOUNDED_MERGE_HINT,
    CURSOR_FIELD,
    LOG_COLUMNS,
    TABLE_DESCRIPTION,
    TABLE_NAME,
)

TABLE_HINTS: Dict[str, Any] = {
    "table_name": TABLE_NAME,
    "write_disposition": "merge",
    "primary_key": "id",
    "columns": LOG_COLUMNS,
}
"""The hints of every resource that loads `aig_logs`."""


def table_declared(pipeline: dlt.Pipeline, table: str = TABLE_NAME) -> bool:
    """Whether the pipeline's schema holds `table` (after a load, or a sync from the
    destination); False before the first load."""
    return bool(pipeline.default_schema_name) and table in pipeline.default_schema.tables


def declare_table(resource: DltResource) -> DltResource:
    """Adds the table-level hints no decorator argument carries: the merge bounded by
    `created_at`, and BigQuery's partitioning, clustering and description (applied when dlt
    creates the table; other destinations ignore them)."""
    resource.apply_hints(additional_table_hints={BOUNDED_MERGE_HINT: CURSOR_FIELD})
    bigquery_adapter(
        resource,
        partition=CURSOR_FIELD,
        cluster=list(BIGQUERY_CLUSTER_COLUMNS),
        table_description=TABLE_DESCRIPTION,
    )
    return resource
