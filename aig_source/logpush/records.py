"""Logpush batch files into `aig_logs` rows: gzip (or not), NDJSON, decrypted fields, ids."""

from __future__ import annotations

import gzip
import hashlib
import re
import zlib
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Optional

from dlt.common import json
from dlt.common.normalizers.naming.snake_case import NamingConvention

from ..rows import to_row
from .decrypt import FieldDecryptor, FieldDoesNotDecrypt
from .settings import (
    BODY_COLUMNS,
    DIGEST_ID_PREFIX,
    EMPTY_MEANS_NONE,
    FIELD_COLUMNS,
    ID_FIELDS,
    METRICS_COLUMNS,
)

GZIP_MAGIC = b"\x1f\x8b"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_RFC3339 = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:?\d\d)$"
)
_BATCH_START = re.compile(r"(?:^|/)(\d{8}T\d{6})Z_")
"""The community-observed batch name `YYYYMMDD/<start>Z_<end>Z_<hex>.log.gz`."""
_MAPPED = frozenset({*FIELD_COLUMNS, *ID_FIELDS, "Timestamp", "Metrics", "Metadata", *BODY_COLUMNS})
_naming = NamingConvention()


class FileProblem(ValueError):
    """Why a file cannot be loaded; it is then not marked done and is read again next run."""


def file_lines(raw: bytes) -> List[bytes]:
    """The NDJSON lines of one batch file: gunzipped when its bytes are gzip (every member of a
    multi-member file), as they are when not (Cloudflare has named plain files `.log.gz`)."""
    if raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as error:
            raise FileProblem(f"the gzip data is truncated or corrupt ({error})") from None
    return [line for line in raw.split(b"\n") if line.strip()]


def parse_timestamp(value: Any) -> datetime:
    """`Timestamp` in every `timestamp_format`: `unixnano`, `unix` (ints, or their text),
    `rfc3339`, `rfc3339ms`, `rfc3339ns`; microsecond precision, UTC."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = int(value)
        # seconds, milliseconds, microseconds or nanoseconds since the epoch, told by size
        for digits, per_second in ((17, 10**9), (14, 10**6), (11, 10**3)):
            if abs(number) >= 10**digits:
                return _EPOCH + timedelta(microseconds=number * 10**6 // per_second)
        return _EPOCH + timedelta(seconds=float(value))
    if isinstance(value, str):
        match = _RFC3339.match(value.strip())
        if match:
            year, month, day, hour, minute, second, fraction, zone = (
                str(part or "") for part in match.groups()
            )
            micro = int(fraction[:6].ljust(6, "0"))
            moment = datetime(
                int(year),
                int(month),
                int(day),
                int(hour),
                int(minute),
                int(second),
                micro,
                tzinfo=timezone.utc,
            )
            offset = timedelta()
            if zone not in ("Z", "z"):
                sign = 1 if zone[0] == "+" else -1
                hours_minutes = zone[1:].replace(":", "")
                offset = sign * timedelta(
                    hours=int(hours_minutes[:2]), minutes=int(hours_minutes[2:])
                )
            return moment - offset
    raise ValueError(f"Timestamp {value!r} is in no Logpush timestamp_format")


def batch_start(file_key: str) -> Optional[datetime]:
    """The batch's start time from its name, when it follows the observed convention."""
    match = _BATCH_START.search(file_key)
    if not match:
        return None
    return datetime.strptime(match.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)


def digest_id(record: Dict[str, Any]) -> str:
    """A record's id when it carries none: a digest of all its fields. The encrypted fields hold
    a fresh random key and nonce per log, so two logs never share it, while a batch delivered
    twice gives the same ids and merges into the same rows."""
    canonical = json.dumpb(record, sort_keys=True)
    return DIGEST_ID_PREFIX + hashlib.sha256(canonical).hexdigest()[:32]


def column_name(field: str) -> str:
    """The column of a field Cloudflare adds later (`UserAgent` -> `user_agent`)."""
    return _naming.normalize_identifier(field)


def success_of(status_code: Any) -> Optional[bool]:
    """A request succeeded when its status is not an HTTP error (below 400)."""
    if isinstance(status_code, bool) or not isinstance(status_code, (int, float, str)):
        return None
    try:
        return int(status_code) < 400
    except ValueError:
        return None


class RecordReader:
    """Turns the records of one gateway fleet's Logpush files into `aig_logs` rows."""

    def __init__(self, decryptor: FieldDecryptor, account_id: str, load_bodies: bool) -> None:
        self.decryptor = decryptor
        self.account_id = account_id
        self.load_bodies = load_bodies

    def read_file(self, raw: bytes, file_key: str, ingested_at: datetime) -> List[Dict[str, Any]]:
        """Every row of one batch file, or `FileProblem` naming the first line that fails."""
        return self.read_lines(file_lines(raw), file_key, ingested_at)

    def read_lines(
        self, lines: List[bytes], file_key: str, ingested_at: datetime
    ) -> List[Dict[str, Any]]:
        """The rows of a file's (first) lines."""
        rows = []
        fallback = batch_start(file_key)
        for number, line in enumerate(lines, start=1):
            try:
                record = json.loadb(line)
            except ValueError as error:
                raise FileProblem(f"line {number} is not JSON ({error})") from None
            if not isinstance(record, dict):
                raise FileProblem(f"line {number} is not a JSON object")
            try:
                rows.append(self.to_row(record, file_key, ingested_at, fallback))
            except FieldDoesNotDecrypt as error:
                raise FileProblem(f"line {number}: {error}") from None
            except (KeyError, ValueError) as error:
                raise FileProblem(f"line {number}: {error}") from None
        return rows

    def to_row(
        self,
        record: Dict[str, Any],
        file_key: str,
        ingested_at: datetime,
        fallback_created_at: Optional[datetime] = None,
    ) -> Dict[str, Any]:
        """One row of the table from one Logpush record."""
        gateway = record.get("Gateway")
        if not gateway:
            raise ValueError("no Gateway field: add Gateway to the Logpush job's field_names")
        if record.get("Timestamp") is not None:
            created_at = parse_timestamp(record["Timestamp"])
        elif fallback_created_at is not None:
            created_at = fallback_created_at
        else:
            raise ValueError("no Timestamp field: add Timestamp to the Logpush job's field_names")
        log_id = next((record[name] for name in ID_FIELDS if record.get(name)), None)
        item: Dict[str, Any] = {"id": str(log_id) if log_id else digest_id(record)}
        item["created_at"] = created_at
        for field, value in record.items():
            if field in FIELD_COLUMNS:
                item[FIELD_COLUMNS[field]] = value
            elif field not in _MAPPED:
                item[column_name(field)] = value
        for name in EMPTY_MEANS_NONE:
            if item.get(name) == "":
                item[name] = None
        metrics = record.get("Metrics")
        if isinstance(metrics, dict):
            for key, value in metrics.items():
                item[METRICS_COLUMNS.get(key) or column_name(f"metrics_{key}")] = value
        if "StatusCode" in record:
            item["success"] = success_of(record["StatusCode"])
        item["metadata"] = self._decrypted(record.get("Metadata"), "Metadata")
        if self.load_bodies:
            for field, column in BODY_COLUMNS.items():
                value = self._decrypted(record.get(field), field)
                item[column] = (
                    value if value is None or isinstance(value, str) else json.dumps(value)
                )
        item["logpush_file"] = file_key
        item.pop("gateway_id", None)
        row = to_row(item, ingested_at, str(gateway), self.account_id)
        row["created_at"] = created_at  # the file's precision (to_row keeps milliseconds)
        return row

    def _decrypted(self, value: Any, field: str) -> Any:
        try:
            return self.decryptor.decrypt_text(value, field)
        except FieldDoesNotDecrypt as error:
            raise FieldDoesNotDecrypt(f"{field} does not decrypt: {error}") from None
