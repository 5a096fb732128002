"""dlt source for Cloudflare AI Gateway Logpush files: the `ai_gateway_events` dataset, pushed
as gzipped NDJSON batches into an R2, S3, GCS or Azure bucket, into the same `aig_logs` table,
schema and state as the Logs API source.

Built on dlt's filesystem source: `bucket_url`, `credentials` and `file_glob` are its settings,
under `[sources.aig_logpush]`. The files are listed with `dlt.sources.filesystem.filesystem` on
every run; a file ledger committed with each load (`ledger.py`) says which are loaded, so each
file loads once in effect. Records are decrypted with the user's private key (`decrypt.py`) and
turned into rows (`records.py`): merged on the log id, or on a digest of the record.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from typing import (
    Any,
    ClassVar,
    Deque,
    Dict,
    FrozenSet,
    Iterable,
    Iterator,
    List,
    Optional,
    Tuple,
    Type,
    Union,
)

import dlt
from dlt.common.configuration import configspec, resolve_type
from dlt.common.typing import TSecretStrValue
from dlt.sources import DltResource
from dlt.sources.credentials import CredentialsConfiguration, FileSystemCredentials
from dlt.sources.filesystem import filesystem
from dlt.sources.filesystem.helpers import AbstractFileSystem, FilesystemConfigurationResource

from ..batches import rows_for_load
from ..client import AigSourceError, config_hint, one_line
from ..runner import causes
from ..settings import SOURCE_SECTION
from ..state import LAST_RUN
from ..table import TABLE_HINTS, declare_table
from .decrypt import FieldDecryptor
from .ledger import FileLedger
from .records import FileProblem, RecordReader
from .settings import (
    BODY_SCHEMA,
    DECRYPT_THREADS,
    DEFAULT_FILE_GLOB,
    DEFAULT_FILES_PER_LOAD,
    DEFAULT_LOOKBACK_SECONDS,
    DEFAULT_RECORDS_PER_LOAD,
    LOG_FILE_SUFFIX,
    LOGPUSH_COLUMNS,
    LOGPUSH_RESOURCE,
    LOGPUSH_SECTION,
)

__all__ = ["LogpushConfiguration", "logpush_files"]

BUCKETS = "buckets"
"""Resource state: the file ledger of each `bucket_url`."""


@configspec
class LogpushConfiguration(FilesystemConfigurationResource):
    """dlt's filesystem settings (`bucket_url`, `credentials`, `kwargs`, `client_kwargs`) and
    the Logpush ones, resolved under `[sources.aig_logpush]`."""

    file_glob: Optional[str] = DEFAULT_FILE_GLOB
    account_id: str = None  # type: ignore[assignment]
    private_key: Optional[TSecretStrValue] = None
    load_bodies: bool = False
    files_per_load: int = DEFAULT_FILES_PER_LOAD
    records_per_load: int = DEFAULT_RECORDS_PER_LOAD
    lookback_seconds: float = DEFAULT_LOOKBACK_SECONDS
    decrypt_threads: int = DECRYPT_THREADS
    config_section: ClassVar[str] = LOGPUSH_SECTION
    """Where a missing setting is to be set (named by the error line)."""

    # dlt's configspec takes type resolvers from the class itself only, not from its bases
    @resolve_type("credentials")
    def resolve_credentials_type(self) -> Type[CredentialsConfiguration]:
        return super().resolve_credentials_type()


@dlt.source(
    section=LOGPUSH_SECTION,
    # the schema (and so the state) of the Logs API source: one table `aig_logs`, one schema
    schema=dlt.Schema(SOURCE_SECTION),
    max_table_nesting=0,
    spec=LogpushConfiguration,
)
def logpush_files(
    bucket_url: str = dlt.config.value,
    credentials: Union[FileSystemCredentials, AbstractFileSystem] = dlt.secrets.value,
    file_glob: Optional[str] = DEFAULT_FILE_GLOB,
    account_id: str = dlt.config.value,
    private_key: Optional[TSecretStrValue] = None,
    load_bodies: bool = False,
    files_per_load: int = DEFAULT_FILES_PER_LOAD,
    records_per_load: int = DEFAULT_RECORDS_PER_LOAD,
    lookback_seconds: float = DEFAULT_LOOKBACK_SECONDS,
    decrypt_threads: int = DECRYPT_THREADS,
    kwargs: Optional[Dict[str, Any]] = None,
    client_kwargs: Optional[Dict[str, Any]] = None,
    exclude: FrozenSet[str] = frozenset(),
) -> DltResource:
    """Logpush files of the bucket that are not loaded yet, as `aig_logs` rows.

    Args:
        bucket_url: Where the Logpush job writes: `file://`, `s3://` (R2 and other
            S3-compatible stores with `credentials.endpoint_url`), `gs://`, `az://`, with the
            job's path (the `{DATE}` folders are found by `file_glob`).
        credentials: The bucket's credentials, as dlt's filesystem source takes them (none for
            a local folder).
        file_glob: Which files are Logpush batches, under `bucket_url`.
        account_id: The Cloudflare account whose gateways the files hold (files do not say).
        private_key: PEM of the RSA private key whose public half the gateway encrypts
            `Metadata`, `RequestBody` and `ResponseBody` to (`.dlt/secrets.toml`).
        load_bodies: Also load the decrypted request and response bodies (`request_body`,
            `response_body`).
        files_per_load: Files read by one load; the job runs loads until none is left.
        records_per_load: A load ends after the file that brings it to this many records
            (a Logpush file holds up to 100,000 by default): bounds a load's memory.
        lookback_seconds: How long before the newest loaded file a file is still looked for by
            name (`ledger.py`).
        decrypt_threads: Files read and decrypted at once (0: one per CPU).
        kwargs: Passed to the fsspec filesystem (dlt's filesystem `kwargs`).
        client_kwargs: Passed to its native client (dlt's filesystem `client_kwargs`).
        exclude: Files this job run tried already (they failed): not read again in the run.

    Returns:
        The resource `aig_logs_logpush`.
    """
    reader = RecordReader(FieldDecryptor(private_key), account_id, load_bodies)
    listing = filesystem(
        bucket_url=bucket_url,
        credentials=credentials,
        file_glob=file_glob or DEFAULT_FILE_GLOB,
        kwargs=kwargs,
        client_kwargs=client_kwargs,
    )
    return aig_logs_logpush(
        bucket_url,
        listing,
        reader,
        files_per_load=files_per_load,
        records_per_load=records_per_load,
        lookback_seconds=lookback_seconds,
        threads=decrypt_threads or os.cpu_count() or 1,
        exclude=exclude,
    )


def aig_logs_logpush(
    bucket_url: str,
    listing: Iterable[Dict[str, Any]],
    reader: RecordReader,
    files_per_load: int,
    records_per_load: int,
    lookback_seconds: float,
    threads: int,
    exclude: FrozenSet[str],
) -> DltResource:
    columns = {**TABLE_HINTS["columns"], **LOGPUSH_COLUMNS}
    if reader.load_bodies:
        columns.update(BODY_SCHEMA)

    def file_rows() -> Iterator[List[Dict[str, Any]]]:
        state = dlt.current.resource_state().setdefault(BUCKETS, {}).setdefault(bucket_url, {})
        ledger = FileLedger(state, lookback_seconds)
        pending, listed, other = [], set(), 0
        for item in list_files(listing, bucket_url):
            key = item["relative_path"]
            if not key.endswith(LOG_FILE_SUFFIX):
                other += 1  # a broader file_glob than the default: test or challenge files
                continue
            listed.add(key)
            if key not in exclude and ledger.wants(key, item["modification_date"]):
                pending.append(item)
        gone = sorted(key for key in ledger.failed if key not in listed)
        ledger.forget_failed(gone)
        # oldest first, so the ledger settles as the backlog drains
        pending.sort(key=lambda item: (item["modification_date"], item["relative_path"]))
        batch = pending[:files_per_load]
        run: Dict[str, Any] = {
            "bucket_url": bucket_url,
            "files_listed": len(listed),
            "files_skipped_not_logs": other,
            "files_loaded": 0,
            "records": 0,
            "failed": {},
            "gone": gone,
            "gateways": {},
        }
        ingested_at = datetime.now(timezone.utc)
        done = 0
        for item, outcome in read_files(batch, reader, threads, ingested_at):
            key = item["relative_path"]
            done += 1
            if isinstance(outcome, FileProblem):
                ledger.mark_failed(key, str(outcome))
                run["failed"][key] = str(outcome)
                continue
            if outcome:
                yield outcome
            ledger.mark_loaded(key, item["modification_date"])
            run["files_loaded"] += 1
            run["records"] += len(outcome)
            for row in outcome:
                gateways = run["gateways"]
                gateways[row["gateway_id"]] = gateways.get(row["gateway_id"], 0) + 1
            if run["records"] >= records_per_load:
                break  # the files read ahead are read again by the next load
        run["files_pending"] = len(pending) - done
        ledger.settle()
        run["rsa_operations"] = reader.decryptor.rsa_operations
        run["finished_at"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        dlt.current.resource_state()[LAST_RUN] = run

    @dlt.resource(name=LOGPUSH_RESOURCE, **{**TABLE_HINTS, "columns": columns})
    def rows() -> Iterator[Any]:
        """The records of the bucket's new files, as rows of table `aig_logs` (Arrow tables for
        DuckDB, see `batches.py`); the file ledger is committed with the load."""
        yield from rows_for_load(file_rows(), columns)

    return declare_table(rows)


def list_files(listing: Iterable[Dict[str, Any]], bucket_url: str) -> Iterator[Dict[str, Any]]:
    """The bucket's files, or one line saying why they cannot be listed."""
    try:
        yield from listing
    except Exception as error:
        raise listing_problem(bucket_url, error) from error


def listing_problem(bucket_url: str, error: BaseException) -> AigSourceError:
    cause = list(causes(error))[-1]  # past dlt's wrappers
    return AigSourceError(
        f"Cannot list the Logpush files in {bucket_url} ({one_line(cause)}): check"
        f" {config_hint('bucket_url', section=LOGPUSH_SECTION)} and the bucket's"
        " credentials (credentials under [sources.aig_logpush] in .dlt/secrets.toml)."
    )


def read_files(
    items: List[Dict[str, Any]], reader: RecordReader, threads: int, ingested_at: datetime
) -> Iterator[Tuple[Dict[str, Any], Union[List[Dict[str, Any]], FileProblem]]]:
    """Each file with its rows (or why it cannot be loaded), in order, `threads` files read at
    once and at most twice that many held in memory."""
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="aig-logpush") as pool:
        ahead: Deque[Tuple[Dict[str, Any], Future]] = deque()
        queue = iter(items)
        for item in queue:
            ahead.append((item, pool.submit(_read_one, item, reader, ingested_at)))
            if len(ahead) >= 2 * threads:
                break
        while ahead:
            item, future = ahead.popleft()
            following = next(queue, None)
            if following is not None:
                ahead.append((following, pool.submit(_read_one, following, reader, ingested_at)))
            yield item, future.result()


def _read_one(
    item: Dict[str, Any], reader: RecordReader, ingested_at: datetime
) -> Union[List[Dict[str, Any]], FileProblem]:
    try:
        raw = item.read_bytes()  # type: ignore[attr-defined]
    except OSError as error:
        return FileProblem(f"it cannot be read ({type(error).__name__}: {error})")
    try:
        return reader.read_file(raw, item["relative_path"], ingested_at)
    except FileProblem as problem:
        return problem
