"""dlt's BigQuery and DuckDB destinations with a merge whose cost does not grow with history.

The factories keep dlt's names (`bigquery`, `duckdb`), so configuration stays under
`[destination.bigquery]` / `[destination.duckdb]` and `DESTINATION__BIGQUERY__...` as usual; only
the merge job differs (see `merge.py`). `runner.make_pipeline` picks them for `DESTINATION_TYPE`.
"""

from typing import TYPE_CHECKING, Dict, Type

from dlt.destinations import bigquery as dlt_bigquery
from dlt.destinations import duckdb as dlt_duckdb

if TYPE_CHECKING:
    from dlt.common.destination.reference import Destination

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


RANGE_MERGE_DESTINATIONS: Dict[str, Type["Destination"]] = {
    "bigquery": bigquery,
    "duckdb": duckdb,
}
"""dlt destination names this project replaces with its range-bounded variant."""
