"""dlt's BigQuery job client with the time-range-bounded merge (needs the `bigquery` extra)."""

from dlt.destinations.impl.bigquery.bigquery import BigQueryClient, BigQueryMergeJob

from .merge import TimeRangeMergeClient, TimeRangeMergeJob


class TimeRangeBigQueryMergeJob(TimeRangeMergeJob, BigQueryMergeJob):
    """BigQuery's delete-insert merge, pruned to the partitions the batch can touch."""

    timestamp_literal = "TIMESTAMP '{}'"


class TimeRangeBigQueryClient(TimeRangeMergeClient, BigQueryClient):
    merge_job = TimeRangeBigQueryMergeJob
