"""Turns Logs API items into table rows whose declared columns never change type."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any, Callable, Dict, Optional, Tuple

from dlt.common.json import json as dlt_json

from .settings import BOOL_FIELDS, FLOAT_FIELDS, INTEGER_FIELDS, TEXT_FIELDS
from .timestamps import from_ms, parse_ms

logger = logging.getLogger(__name__)


def _to_int(value: Any) -> Optional[int]:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        return int(float(value)) if value.strip() else None
    raise ValueError(value)


def _to_float(value: Any) -> Optional[float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        return float(value) if value.strip() else None
    raise ValueError(value)


def _to_bool(value: Any) -> Optional[bool]:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise ValueError(value)


def _to_text(value: Any) -> Optional[str]:
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


_COERCERS: Dict[str, Tuple[type, Callable[[Any], Any]]] = {
    **{name: (int, _to_int) for name in INTEGER_FIELDS},
    **{name: (float, _to_float) for name in FLOAT_FIELDS},
    **{name: (bool, _to_bool) for name in BOOL_FIELDS},
    **{name: (str, _to_text) for name in TEXT_FIELDS if name != "id"},
}
"""Per declared field: the type its values usually already have, and how to coerce others
(`id` is kept exactly as served)."""
_USUAL_TYPES = tuple((name, usual) for name, (usual, _) in _COERCERS.items())


def decode_metadata(raw: Any) -> Any:
    """The `metadata` object exactly as sent: the API serves it as a JSON string, the Workers
    binding as an object. Anything that is not an object or array is kept as text under
    `metadata_raw` by the caller, so the JSON column never gets a variant."""
    if raw is None or isinstance(raw, (dict, list)):
        return raw
    if isinstance(raw, str):
        if not raw.strip():
            return None
        try:
            return dlt_json.loads(raw)
        except ValueError:
            try:  # what orjson refuses and JSON allows: integers beyond 64 bits
                return json.loads(raw)
            except ValueError:
                return raw
    return raw


def to_row(
    item: Dict[str, Any], ingested_at: datetime, gateway_id: str, account_id: str
) -> Dict[str, Any]:
    """One table row from one log of gateway `gateway_id` in account `account_id`.

    Declared columns are coerced to their type; a value that cannot be coerced becomes null with
    a warning instead of a variant column. Unknown fields pass through as new columns.
    """
    row: Dict[str, Any] = dict(item)
    row["gateway_id"], row["account_id"] = gateway_id, account_id
    row["created_at"] = from_ms(parse_ms(item["created_at"]))
    # `type() is` on purpose: a bool is an int, and must still become a float or text; one
    # comprehension, as almost every value already has its type
    unusual = [
        name
        for name, usual in _USUAL_TYPES
        if (value := row.get(name)) is not None and type(value) is not usual
    ]
    for name in unusual:
        value = row[name]
        coerce = _COERCERS[name][1]
        try:
            row[name] = coerce(value)
        except (TypeError, ValueError):
            logger.warning(
                "log %s: field %s=%r is not of its declared type", item.get("id"), name, value
            )
            row[name] = None
    metadata = decode_metadata(item.get("metadata"))
    if metadata is None or isinstance(metadata, (dict, list)):
        row["metadata"] = metadata
    else:
        row.pop("metadata", None)
        row["metadata_raw"] = metadata if isinstance(metadata, str) else json.dumps(metadata)
    row["ingested_at"] = ingested_at
    return row
