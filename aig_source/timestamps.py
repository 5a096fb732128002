"""Millisecond UTC timestamps: the precision the Logs API serves and filters on."""

from datetime import datetime, timezone
from typing import Union


def format_ms(epoch_ms: int) -> str:
    """RFC 3339 UTC with milliseconds and `Z`, e.g. `2026-11-29T12:00:01.123Z`."""
    moment = datetime.fromtimestamp(epoch_ms // 1000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def parse_ms(value: Union[str, datetime]) -> int:
    """Epoch milliseconds of an ISO 8601 string (with or without fraction, `Z` or offset) or a
    datetime; naive values are taken as UTC."""
    if isinstance(value, datetime):
        moment = value
    else:
        text = value.strip()
        if text[-1:] in ("Z", "z"):
            text = text[:-1] + "+00:00"
        moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return round(moment.timestamp() * 1000)


def now_ms() -> int:
    """The wall clock, as epoch milliseconds."""
    return parse_ms(datetime.now(timezone.utc))


def from_ms(epoch_ms: int) -> datetime:
    """An aware UTC datetime at millisecond precision."""
    return datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc).replace(
        microsecond=(epoch_ms % 1000) * 1000
    )
