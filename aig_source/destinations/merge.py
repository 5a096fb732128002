"""A delete-insert merge whose DELETE touches only the target rows the batch can replace.

dlt's delete-insert merge deletes with `... WHERE EXISTS (SELECT 1 FROM staging s WHERE d.id =
s.id)`. Nothing in that statement bounds the target, so BigQuery reads the `id` column of every
partition on every run (dlt-hub/dlt#2039): a 5-minute schedule then pays for the whole history
288 times a day, and the bill grows with the table's age.

The jobs here add one constant range to that DELETE:
`d.created_at BETWEEN <batch min> AND <batch max>`. The bounds are read from the staging table
when the SQL is built (after the batch is loaded into staging, before the merge runs), rounded
outwards to whole seconds and written into the statement as literals, so BigQuery prunes every
`DATE(created_at)` partition outside the batch and DuckDB skips row groups by their zone maps.

Why this is exact: the Logs API never changes a log's `created_at` (only feedback fields such
as `metadata`, `cost` and the rating change), so every target row that shares an id with the
batch has its `created_at` inside the batch's own range. Rows outside the range cannot match
and are not read. The trade-off: if Cloudflare ever rewrote a log's `created_at`, the old copy
would survive as a duplicate id; `sql/duplicate_ids.sql` finds that case.

The INSERT that follows reads only staging. The one extra query (MIN/MAX over the staging table)
reads that small table only.

Columns hinted `x-kept-on-merge` (`feedback`) are owned by the table, not by the rows loaded:
before the delete, an UPDATE copies each replaced row's value into staging, bounded by the same
range, so re-reading a log never clears them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar, List, Optional, Sequence, Tuple, cast

from dlt.common.destination.client import FollowupJobRequest
from dlt.common.destination.typing import PreparedTableSchema
from dlt.destinations.sql_client import SqlClientBase

from ..settings import BOUNDED_MERGE_HINT, DEDUPLICATED_HINT, KEPT_ON_MERGE_HINT

TimeRange = Tuple[datetime, datetime]


def _utc_second(value: datetime, round_up: bool) -> datetime:
    """Rounds outwards to a whole UTC second, so literal formatting cannot narrow the range."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    value = value.astimezone(timezone.utc)
    seconds = value.timestamp()
    whole = math.ceil(seconds) if round_up else math.floor(seconds)
    return datetime.fromtimestamp(whole, tz=timezone.utc)


@dataclass(frozen=True)
class StagedBatch:
    """What the merge needs to know of the batch in staging, read in one query."""

    time_range: Optional[TimeRange]
    """The batch's range of the bounding column, rounded outwards to whole seconds; None when
    the batch is empty."""
    keys_unique: bool
    """Whether no primary key occurs twice in the batch: dlt's deduplicating window over the
    batch is then skipped (it holds the whole batch in memory, about 1.7 KB per row on DuckDB)."""


def staged_batch(
    sql_client: SqlClientBase[Any], staging_table_name: str, column: str, key: Optional[str]
) -> StagedBatch:
    """Reads the batch's range of `column` and whether its single primary key `key` is unique
    (False when the table has no single key)."""
    unique_sql = f"COUNT(DISTINCT {key}) = COUNT(*)" if key else "FALSE"
    rows = sql_client.execute_sql(
        f"SELECT MIN({column}) AS range_start, MAX({column}) AS range_end,"
        f" {unique_sql} AS keys_unique FROM {staging_table_name}"
    )
    if not rows or rows[0][0] is None:
        return StagedBatch(None, keys_unique=True)
    start, end, unique = rows[0]
    return StagedBatch(
        (_utc_second(start, round_up=False), _utc_second(end, round_up=True)), bool(unique)
    )


class TimeRangeMergeJob:
    """Mixin for a dlt merge job: bounds the target side of the delete by the batch's time range,
    for tables whose schema carries the `BOUNDED_MERGE_HINT` (`x-bounded-merge-column`).

    dlt builds merge SQL through classmethods, so each load makes a subclass carrying its range
    (`bounded_to`), whose `gen_key_table_clauses` writes the range into the delete.
    """

    timestamp_literal: ClassVar[str] = "TIMESTAMP '{}'"
    """How the destination spells a UTC timestamp constant (`{}`: `YYYY-MM-DD HH:MM:SS+00:00`)."""
    range_condition: ClassVar[Optional[str]] = None
    """Set on the per-load subclass: the constant predicate on the target's rows."""

    @classmethod
    def generate_sql(
        cls, table_chain: Sequence[PreparedTableSchema], sql_client: SqlClientBase[Any]
    ) -> List[str]:
        root_table = table_chain[0]
        range_column = root_table.get(BOUNDED_MERGE_HINT)
        if not range_column:
            return super().generate_sql(table_chain, sql_client)  # type: ignore[misc,no-any-return]
        if cls.range_condition is not None:
            statements: List[str] = super().generate_sql(table_chain, sql_client)  # type: ignore[misc]
            return cls.kept_columns_sql(root_table, sql_client) + statements
        if range_column not in root_table["columns"]:
            raise ValueError(
                f"table {root_table['name']} bounds its merge by {range_column}, which it lacks"
            )
        _, staging_table_name = sql_client.get_qualified_table_names(str(root_table["name"]))
        column_sql = sql_client.escape_column_name(str(range_column))
        keys = [n for n, c in root_table["columns"].items() if c.get("primary_key")]
        key_sql = sql_client.escape_column_name(keys[0]) if len(keys) == 1 else None
        batch = staged_batch(sql_client, staging_table_name, column_sql, key_sql)
        bounded_job = cls.bounded_to(batch.time_range, f"d.{column_sql}")
        if batch.keys_unique and len(table_chain) == 1:
            # dlt's own hint for staged data without duplicates: its INSERT then reads staging
            # as it is instead of numbering every row per key
            deduplicated = cast(PreparedTableSchema, {**root_table, DEDUPLICATED_HINT: True})
            table_chain = [deduplicated]
        return bounded_job.generate_sql(table_chain, sql_client)

    @classmethod
    def kept_columns_sql(
        cls, root_table: PreparedTableSchema, sql_client: SqlClientBase[Any]
    ) -> List[str]:
        """The UPDATE that copies the columns hinted `x-kept-on-merge` from each target row the
        batch replaces into its staging row: the rows loaded never carry them."""
        columns = root_table["columns"].items()
        kept = [
            sql_client.escape_column_name(str(n)) for n, c in columns if c.get(KEPT_ON_MERGE_HINT)
        ]
        keys = [sql_client.escape_column_name(str(n)) for n, c in columns if c.get("primary_key")]
        if not kept or not keys or cls.range_condition == "FALSE":
            return []
        target, staging = sql_client.get_qualified_table_names(str(root_table["name"]))
        assignments = ", ".join(f"{name} = d.{name}" for name in kept)
        matching = " AND ".join(f"s.{key} = d.{key}" for key in keys)
        return [
            f"UPDATE {staging} AS s SET {assignments} FROM {target} AS d"
            f" WHERE {cls.range_condition} AND {matching}"
        ]

    @classmethod
    def bounded_to(
        cls, time_range: Optional[TimeRange], column_sql: str
    ) -> type[TimeRangeMergeJob]:
        """This job class with the target side of its delete fixed to `time_range`.

        An empty batch gets FALSE: there is nothing to replace, so nothing is read.
        """
        condition = "FALSE"
        if time_range is not None:
            start, end = (cls.timestamp_literal.format(t.isoformat(sep=" ")) for t in time_range)
            condition = f"{column_sql} BETWEEN {start} AND {end}"
        return type(cls.__name__, (cls,), {"range_condition": condition})

    @classmethod
    def gen_key_table_clauses(
        cls,
        root_table_name: str,
        staging_root_table_name: str,
        primary_keys: Sequence[str],
        merge_keys: Sequence[str],
        for_delete: bool,
        source_filter: Optional[str] = None,
    ) -> List[str]:
        clauses: List[str] = super().gen_key_table_clauses(  # type: ignore[misc]
            root_table_name,
            staging_root_table_name,
            primary_keys,
            merge_keys,
            for_delete,
            source_filter,
        )
        if cls.range_condition is None:
            return clauses
        # dlt's clauses read `FROM <target> AS d WHERE <key condition>`; the range goes first,
        # where BigQuery looks for a partition filter
        target = re.compile(rf"^FROM {re.escape(root_table_name)} AS d WHERE ", re.IGNORECASE)
        bounded = []
        for clause in clauses:
            match = target.match(clause)
            if match is None:
                raise ValueError(f"dlt's merge clause changed shape, cannot bound it: {clause}")
            where = match.end()
            bounded.append(f"{clause[:where]}{cls.range_condition} AND {clause[where:]}")
        return bounded


class TimeRangeMergeClient:
    """Mixin for a dlt SQL job client: creates `merge_job` (a `TimeRangeMergeJob`) for merges."""

    merge_job: ClassVar[Any]

    def _create_merge_followup_jobs(
        self, table_chain: Sequence[PreparedTableSchema]
    ) -> List[FollowupJobRequest]:
        sql_client: SqlClientBase[Any] = self.sql_client  # type: ignore[attr-defined]
        # the loader asks a fresh client that has not connected; reading the range needs one
        with sql_client:
            return [self.merge_job.from_table_chain(table_chain, sql_client)]
