"""Rows handed to dlt in the form the destination loads fastest: Arrow tables where it loads
parquet with JSON as text (DuckDB), pages of dicts everywhere else.

dlt writes dicts to an intermediate file and then normalizes them row by row in Python, which
was most of a fleet run's CPU time; an Arrow table skips both and becomes the parquet load file
as it is. BigQuery keeps dicts: it loads `metadata` (a JSON column) only from jsonl, which dlt
writes from dicts.

A batch becomes a table only when every one of its fields has a column type dlt already knows
(declared by the resource, or inferred by an earlier load) and every value converts to it
exactly. Any other batch (a field seen for the first time, a value of another type, which dlt
turns into a variant column) is handed over as dicts, so both forms put the same values in the
same columns.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Union

import dlt
from dlt.common.destination import DestinationCapabilitiesContext
from dlt.common.json import json
from dlt.common.schema import Schema
from dlt.common.schema.typing import TTableSchemaColumns

from .settings import ARROW_BATCH_ROWS, ARROW_DESTINATIONS, LOG_COLUMNS, TABLE_NAME

logger = logging.getLogger(__name__)

Items = List[Dict[str, Any]]

_JSON_AS_TEXT = "when merging arrow schema with dlt schema"
"""dlt's warning when an Arrow column's type differs from the declared one. The tables built here
differ only where they must: Arrow has no JSON type, so `metadata` arrives as its JSON text."""


class _JsonAsTextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        # every resource loading the table is named after it (aig_logs, aig_logs_logpush, ...)
        return not (_JSON_AS_TEXT in message and f"resource: {TABLE_NAME}" in message)


def _quiet_json_as_text_warning() -> None:
    dlt_logger = logging.getLogger("dlt")
    if not any(isinstance(f, _JsonAsTextFilter) for f in dlt_logger.filters):
        dlt_logger.addFilter(_JsonAsTextFilter())


def arrow_capabilities() -> Optional[DestinationCapabilitiesContext]:
    """The capabilities of the destination the running pipeline loads, when it takes Arrow
    tables (`settings.ARROW_DESTINATIONS`); None otherwise, or with no pipeline running."""
    try:
        dlt.current.source_schema()  # only while a pipeline extracts
        destination = dlt.current.pipeline().destination
    except Exception:  # the source iterated on its own
        return None
    if destination is None or destination.destination_name not in ARROW_DESTINATIONS:
        return None
    return destination.capabilities()


def rows_for_load(
    pages: Iterable[Items], declared: TTableSchemaColumns = LOG_COLUMNS
) -> Iterator[Any]:
    """The pages' rows for dlt: Arrow tables of up to `ARROW_BATCH_ROWS` rows where the
    destination takes them (a batch Arrow cannot hold exactly stays dicts), the pages
    themselves otherwise.

    Args:
        pages: Pages of rows of table `aig_logs`.
        declared: The columns the resource declares, in the order a new table gets them.
    """
    caps = arrow_capabilities()
    if caps is None:
        yield from pages
        return
    _quiet_json_as_text_warning()
    batch_rows = ARROW_BATCH_ROWS
    batch: Items = []
    for page in pages:
        batch.extend(page)
        if len(batch) >= batch_rows:
            yield _as_table(batch, caps, declared)
            batch = []
    if batch:
        yield _as_table(batch, caps, declared)


def _typed_columns(declared: TTableSchemaColumns, schema: Schema) -> TTableSchemaColumns:
    """The columns of `aig_logs` with a type: declared, and inferred by earlier loads."""
    columns: TTableSchemaColumns = {
        name: dict(column)  # type: ignore[misc]
        for name, column in declared.items()
        if column.get("data_type")
    }
    if TABLE_NAME in schema.tables:
        for name, column in schema.get_table_columns(TABLE_NAME).items():
            if column.get("data_type") and not name.startswith("_dlt_"):
                columns[name] = column
    return columns


def _as_table(
    rows: Items, caps: DestinationCapabilitiesContext, declared: TTableSchemaColumns
) -> Union[Items, Any]:
    from dlt.common.libs import pyarrow
    from dlt.common.normalizers.utils import generate_dlt_ids

    pa = pyarrow.pyarrow
    schema = dlt.current.source_schema()
    typed = _typed_columns(declared, schema)
    present = set().union(*rows)
    if not present.issubset(typed) or any(
        schema.naming.normalize_identifier(name) != name for name in present
    ):
        return rows  # a field no load has typed yet: dlt infers its column from the dicts
    # every declared column, in the declared order (a new table's order then is the one dicts
    # give it), and the others the rows have
    names = [name for name in typed if name in present or name in declared]
    fields, arrays = [], []
    # one pass over the rows, transposed in C: a quarter cheaper here than a pass per column
    columns = zip(*[tuple(map(row.get, names)) for row in rows], strict=True)
    try:
        for name, column_values in zip(names, columns, strict=True):
            column = typed[name]
            values: Sequence[Any] = column_values
            if column["data_type"] == "json":
                # Arrow has no JSON type: the text dlt itself writes for a JSON value
                values = [None if value is None else json.dumps(value) for value in values]
            elif column["data_type"] == "double" and any(type(v) is bool for v in values):
                return rows  # Arrow would make it 1.0; dlt gives a bool a variant column
            arrow_type = pyarrow.get_py_arrow_datatype(column, caps, "UTC")
            arrays.append(pa.array(values, type=arrow_type))
            fields.append(pa.field(name, arrow_type, nullable=column.get("nullable", True)))
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as error:
        logger.debug("%d rows handed to dlt as dicts: %s", len(rows), error)
        return rows
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
    # dlt's own columns, as its normalizer adds them to dicts (and in its order)
    load_id = dlt.current.load_package_state()["load_id"]
    table = pyarrow.add_dlt_load_id_column(table, typed, caps, schema.naming, load_id)
    return table.append_column(
        pa.field("_dlt_id", pa.string(), nullable=False),
        pa.array(generate_dlt_ids(len(rows)), type=pa.string()),
    )
