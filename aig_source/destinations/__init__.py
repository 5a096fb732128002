"""dlt's BigQuery and DuckDB destinations with a merge whose cost does not grow with history.

Configuration names them by dlt's dotted destination reference
(`destination_type = "aig_source.destinations.bigquery"`, `DESTINATION_TYPE=...`), so that every
dlt entry point (`dlt pipeline aig_logs info`, `dlt.attach`, the dashboard) builds the same
destination as the pipeline scripts. The factories keep dlt's destination names (`bigquery`,
`duckdb`), so their settings stay under `[destination.bigquery]` / `[destination.duckdb]` and
`DESTINATION__BIGQUERY__...` as usual; only the merge job differs (see `merge.py`), and only for
tables that ask for it.
"""

from typing import TYPE_CHECKING, Dict, Type

from dlt.destinations import bigquery as dlt_bigquery
from dlt.destinations import duckdb as dlt_duckdb

if TYPE_CHECKING:
    from .bigquery_client import TimeRangeBigQueryClient
    from .duckdb_client import TimeRangeDuckDbClient


class bigquery(dlt_bigquery):
    """dlt's BigQuery destination; its merge is bounded by the batch's `created_at` range."""

    @property
    def client_class(self) -> Type["TimeRangeBigQueryClient"]:
        from .bigquery_client import TimeRangeBigQueryClient

        return TimeRangeBigQueryClient


class duckdb(dlt_duckdb):
    """dlt's DuckDB destination; its merge is bounded by the batch's `created_at` range."""

    @property
    def client_class(self) -> Type["TimeRangeDuckDbClient"]:
        from .duckdb_client import TimeRangeDuckDbClient

        return TimeRangeDuckDbClient


DESTINATION_REFERENCES: Dict[str, str] = {
    name: f"{__name__}.{name}" for name in ("bigquery", "duckdb")
}
"""dlt's short names, still accepted in `destination_type`, and the reference each stands for."""


def destination_reference(destination_type: str) -> str:
    """The destination reference for a `destination_type` setting (a short name or a reference)."""
    return DESTINATION_REFERENCES.get(destination_type, destination_type)
