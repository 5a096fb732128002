"""dlt's DuckDB job client with the time-range-bounded merge."""

from dlt.destinations.impl.duckdb.duck import DuckDbClient
from dlt.destinations.sql_jobs import SqlMergeFollowupJob

from .merge import TimeRangeMergeClient, TimeRangeMergeJob


class TimeRangeDuckDbMergeJob(TimeRangeMergeJob, SqlMergeFollowupJob):
    """DuckDB's delete-insert merge; the range lets DuckDB skip row groups by their zone maps."""

    timestamp_literal = "CAST('{}' AS TIMESTAMPTZ)"


class TimeRangeDuckDbClient(TimeRangeMergeClient, DuckDbClient):
    merge_job = TimeRangeDuckDbMergeJob
