"""`setup.py --check` for the Logpush path: the bucket lists, its newest file reads and its
fields decrypt with the configured key, and (with a Cloudflare token) the dataset's fields from
the API compared with what the loader maps."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Dict, List, Optional

import dlt
from dlt.common import json
from dlt.common.configuration import resolve_configuration
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.common.configuration.specs import known_sections
from dlt.sources.filesystem import filesystem

from ..client import AigSourceError, LogsApiClient
from ..preflight import CheckResult
from ..runner import missing_config_message
from ..settings import DEFAULT_API_BASE_URL, SOURCE_SECTION
from . import LogpushConfiguration, list_files
from .decrypt import FieldDecryptor, is_encrypted
from .records import FileProblem, RecordReader, file_lines
from .settings import (
    DEFAULT_FILE_GLOB,
    DOCUMENTED_FIELDS,
    ENCRYPTED_FIELDS,
    FIELD_COLUMNS,
    LOG_FILE_SUFFIX,
    LOGPUSH_SECTION,
)

MAPPED_FIELDS = frozenset({*FIELD_COLUMNS, "Timestamp", "Metrics", *ENCRYPTED_FIELDS})
"""Dataset fields the loader maps to columns by name; any other loads as a new column."""
SOURCE_NAME = "logpush_files"
CHECKED_RECORDS = 20
"""Records of the newest file the check decrypts (each field costs an RSA-4096 operation)."""


def logpush_configured() -> bool:
    """Whether this folder's configuration sets up the Logpush path."""
    return bool(dlt.config.get(f"sources.{LOGPUSH_SECTION}.bucket_url", str))


def check_logpush() -> List[CheckResult]:
    """Every Logpush check, with the configuration `pipelines/logpush.py` would use."""
    try:
        config: LogpushConfiguration = resolve_configuration(
            LogpushConfiguration(), sections=(known_sections.SOURCES, LOGPUSH_SECTION, SOURCE_NAME)
        )
        decryptor = FieldDecryptor(config.private_key)
    except ConfigFieldMissingException as error:
        line = missing_config_message(error.fields, False, LOGPUSH_SECTION)
        return [CheckResult("fail", "Logpush configuration", line)]
    except AigSourceError as error:
        return [CheckResult("fail", "Logpush configuration", str(error))]
    results = _check_bucket(config, decryptor)
    return results + _check_dataset_fields(config.account_id)


def _check_bucket(config: LogpushConfiguration, decryptor: FieldDecryptor) -> List[CheckResult]:
    url = config.bucket_url
    listing = filesystem(
        bucket_url=url,
        credentials=config.credentials,
        file_glob=config.file_glob or DEFAULT_FILE_GLOB,
        kwargs=config.kwargs,
        client_kwargs=config.client_kwargs,
    )
    try:
        files = [
            f for f in list_files(listing, url) if f["relative_path"].endswith(LOG_FILE_SUFFIX)
        ]
    except AigSourceError as error:
        return [CheckResult("fail", "Logpush bucket", str(error))]
    if not files:
        return [
            CheckResult(
                "warn",
                "Logpush bucket",
                f"no Logpush files under {url} match {config.file_glob!r} yet: check that the"
                " Logpush job's destination is this path and the job is enabled; batches arrive"
                " within minutes of traffic.",
            )
        ]
    newest = max(files, key=lambda f: (f["modification_date"], f["relative_path"]))
    results = [
        CheckResult(
            "ok",
            "Logpush bucket",
            f"{len(files):,} Logpush files under {url}; the newest {newest['relative_path']}"
            f" (modified {newest['modification_date']:%Y-%m-%d %H:%M} UTC)",
        )
    ]
    return results + _check_newest_file(newest, decryptor, config.account_id)


def _check_newest_file(
    newest: Dict[str, Any], decryptor: FieldDecryptor, account_id: str
) -> List[CheckResult]:
    subject = "Logpush newest file"
    key = newest["relative_path"]
    try:
        lines = file_lines(newest.read_bytes())[:CHECKED_RECORDS]  # type: ignore[attr-defined]
        rows = RecordReader(decryptor, account_id, load_bodies=True).read_lines(
            lines, key, datetime.now(timezone.utc)
        )
        records = [json.loadb(line) for line in lines]
    except (AigSourceError, FileProblem, OSError) as error:
        return [CheckResult("fail", subject, f"{key}: {error}")]
    present = set().union(*(record.keys() for record in records)) if records else set()
    encrypted = sum(1 for r in records for name in ENCRYPTED_FIELDS if is_encrypted(r.get(name)))
    gateways = sorted({str(row["gateway_id"]) for row in rows})
    decrypts = (
        f"its {encrypted:,} encrypted fields decrypt with private_key"
        if encrypted
        else "no field is encrypted (no public key on the gateway?)"
    )
    results = [
        CheckResult(
            "ok",
            subject,
            f"{key}: its first {len(rows):,} records read, of gateway"
            f"{'s' if len(gateways) != 1 else ''} {', '.join(gateways)}; {decrypts}",
        )
    ]
    lacking = sorted(set(DOCUMENTED_FIELDS) - present)
    if lacking:
        results.append(
            CheckResult(
                "warn",
                "Logpush fields",
                f"the files lack {', '.join(lacking)}: add them to the Logpush job's"
                " output_options.field_names (select every field; see README, Logpush).",
            )
        )
    return results


def _check_dataset_fields(account_id: str) -> List[CheckResult]:
    token = _setting("api_token", secret=True)
    subject = "Logpush dataset fields"
    if not token:
        return [
            CheckResult(
                "ok",
                subject,
                "not compared: no Cloudflare API token (api_token under [sources.aig_logpush]"
                " in .dlt/secrets.toml, with Logs Read) to read the dataset's field list",
            )
        ]
    base_url = _setting("api_base_url") or DEFAULT_API_BASE_URL
    try:
        fields = LogsApiClient(base_url, account_id, "", token).logpush_dataset_fields()
    except AigSourceError as error:
        return [CheckResult("fail", subject, str(error))]
    unmapped = sorted(set(fields) - MAPPED_FIELDS)
    detail = f"ai_gateway_events has {len(fields)} fields: {', '.join(sorted(fields))}"
    if unmapped:
        return [
            CheckResult(
                "warn",
                subject,
                f"{detail}. Not mapped by name (each loads as a column of its own, in snake"
                f" case): {', '.join(unmapped)}",
            )
        ]
    return [CheckResult("ok", subject, f"{detail}; every one is mapped to a column")]


def _setting(key: str, secret: bool = False) -> Optional[str]:
    """A Cloudflare API setting from `[sources.aig_logpush]`, else `[sources.aig_source]`."""
    accessor = dlt.secrets if secret else dlt.config
    for section in (LOGPUSH_SECTION, SOURCE_SECTION):
        value = accessor.get(f"sources.{section}.{key}", str)
        if value:
            return str(value)
    return None
