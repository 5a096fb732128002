"""Millisecond UTC timestamps: the precision the Logs API serves and filters on."""

import functools
from datetime import datetime, timedelta, timezone
from typing import Union


def format_ms(epoch_ms: int) -> str:
    """RFC 3339 UTC with milliseconds and `Z`, e.g. `2026-11-29T12:00:01.123Z`."""
    moment = datetime.fromtimestamp(epoch_ms // 1000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


@functools.lru_cache(maxsize=1 << 16)
def parse_ms(value: Union[str, datetime]) -> int:
    """Epoch milliseconds of an ISO 8601 string (with or without fraction, `Z` or offset) or a
    datetime; naive values are taken as UTC."""
    # every log's `created_at` is read by the pager, the lookback counts, the cursor rows and
    # the row builder: one parse, the rest from this cache
    if isinstance(value, datetime):
        return _datetime_ms(value)
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    return _datetime_ms(datetime.fromisoformat(text))


def _datetime_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return round(moment.timestamp() * 1000)


def now_ms() -> int:
    """The wall clock, as epoch milliseconds."""
    return _datetime_ms(datetime.now(timezone.utc))


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def from_ms(epoch_ms: int) -> datetime:
    """An aware UTC datetime at millisecond precision."""
    # exact integer arithmetic, no float seconds (and twice as fast as fromtimestamp per row)
    return _EPOCH + timedelta(milliseconds=epoch_ms)


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration_seconds(value: str) -> float:
    """Seconds of a duration such as `90s`, `30m`, `1h`, `7d`, `2w`, or a plain number of seconds.

    Raises:
        ValueError: when `value` is not such a duration.
    """
    text = value.strip().lower()
    unit = _DURATION_UNITS.get(text[-1:])
    number = text[:-1] if unit is not None else text
    seconds = float(number) * (unit or 1)
    if not number or seconds < 0 or seconds != seconds:
        raise ValueError(value)
    return seconds


def parse_moment_ms(value: str) -> int:
    """Epoch ms of an ISO date (`2026-01-31`, midnight UTC) or timestamp.

    Raises:
        ValueError: when `value` is neither.
    """
    text = value.strip()
    return parse_ms(text if "T" in text or " " in text else f"{text}T00:00:00Z")


def moment_before_ms(value: str, now: int) -> int:
    """Epoch ms of `value`: a duration before `now` (`1h`, `7d`) or an ISO date or timestamp.

    Raises:
        ValueError: when `value` is neither.
    """
    try:
        return now - int(parse_duration_seconds(value) * 1000)
    except ValueError:
        return parse_moment_ms(value)
