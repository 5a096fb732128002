"""dlt's DuckDB job client with the time-range-bounded merge, waiting its turn for the file."""

import logging
import random
import time

import duckdb
from dlt.destinations.exceptions import DestinationConnectionError
from dlt.destinations.impl.duckdb.duck import DuckDbClient
from dlt.destinations.impl.duckdb.sql_client import DuckDbSqlClient
from dlt.destinations.sql_jobs import SqlMergeFollowupJob

from ..settings import DUCKDB_LOCK_WAIT_SECONDS
from .merge import TimeRangeMergeClient, TimeRangeMergeJob

logger = logging.getLogger(__name__)


class TimeRangeDuckDbMergeJob(TimeRangeMergeJob, SqlMergeFollowupJob):
    """DuckDB's delete-insert merge; the range lets DuckDB skip row groups by their zone maps."""

    timestamp_literal = "CAST('{}' AS TIMESTAMPTZ)"


class TurnTakingDuckDbSqlClient(DuckDbSqlClient):
    """Waits while another process holds the database file instead of failing at once.

    DuckDB lets one process write a file at a time. Pipelines of several accounts loading into
    one file at the same moment (as a schedule starts them) then take turns: each holds the file
    only while it syncs state, loads and counts, seconds at a time.
    """

    def open_connection(self) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + DUCKDB_LOCK_WAIT_SECONDS
        while True:
            try:
                return super().open_connection()
            except DestinationConnectionError as error:
                # dlt wraps duckdb's IOException "Could not set lock on file ..."
                if "Could not set lock" not in str(error) or time.monotonic() >= deadline:
                    raise
                logger.debug("%s is in use by another process; waiting", self.credentials)
                time.sleep(0.1 + random.random() * 0.2)


class TimeRangeDuckDbClient(TimeRangeMergeClient, DuckDbClient):
    merge_job = TimeRangeDuckDbMergeJob

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        # dlt builds its own SQL client in DuckDbClient.__init__; this one only adds the wait
        self.sql_client.__class__ = TurnTakingDuckDbSqlClient
