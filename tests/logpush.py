"""Logpush test helpers: an emulated bucket (local folder or moto S3), runs of the job and the
script, and the rows compared with what the emulated gateway pushed."""

from __future__ import annotations

import gzip
import json
import os
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import duckdb

from aig_source import destinations
from aig_source.emulator import DEFAULT_ACCOUNT_ID
from aig_source.emulator.logpush import (
    ENVELOPE,
    KeyPair,
    LogpushBucket,
    LogpushJob,
    PushedFile,
    S3Endpoint,
    shared_key_pair,
)
from aig_source.jobs.logpush import LogpushSummary, run_logpush
from aig_source.runner import make_pipeline

from .conftest import PROJECT_ROOT, run_python

LOGPUSH_SCRIPT = PROJECT_ROOT / "pipelines" / "logpush.py"
GATEWAYS = ("app-prod", "app-staging")
FIRST_DAY = date(2026, 11, 26)


def keys() -> KeyPair:
    return shared_key_pair()


@dataclass
class LogpushWorkspace:
    """One test's bucket, pipelines folder and DuckDB file."""

    root: Path
    bucket: LogpushBucket
    bucket_url: str
    credentials: Optional[Dict[str, str]] = None
    private_pem: Optional[str] = field(default_factory=lambda: keys().private_pem)

    @property
    def database(self) -> Path:
        return self.root / "aig_logs.duckdb"

    def job(self, **options: Any) -> LogpushJob:
        options.setdefault("scheme", ENVELOPE)
        return LogpushJob(self.bucket, keys().public_pem, **options)

    def source_args(self, **overrides: Any) -> Dict[str, Any]:
        args: Dict[str, Any] = {
            "bucket_url": self.bucket_url,
            "account_id": DEFAULT_ACCOUNT_ID,
            "private_key": self.private_pem,
        }
        if self.credentials:
            args["credentials"] = self.credentials
        args.update(overrides)
        return args

    def run(self, **overrides: Any) -> LogpushSummary:
        pipeline = make_pipeline(
            destination=destinations.duckdb(str(self.database)),
            pipelines_dir=str(self.root / "pipelines"),
        )
        return run_logpush(pipeline, **self.source_args(**overrides))

    def env(self, **extra: str) -> Dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION"))
        }
        env.update(
            {
                "SOURCES__AIG_LOGPUSH__BUCKET_URL": self.bucket_url,
                "SOURCES__AIG_LOGPUSH__ACCOUNT_ID": DEFAULT_ACCOUNT_ID,
                "DLT_DATA_DIR": str(self.root / "dlt_data"),
                "DESTINATION__DUCKDB__CREDENTIALS": str(self.database),
            }
        )
        if self.private_pem:
            env["SOURCES__AIG_LOGPUSH__PRIVATE_KEY"] = self.private_pem
        for name, value in (self.credentials or {}).items():
            env[f"SOURCES__AIG_LOGPUSH__CREDENTIALS__{name.upper()}"] = value
        env.update(extra)
        return env

    def script(self, *args: str, env: Optional[Dict[str, str]] = None) -> Any:
        return run_python(
            str(LOGPUSH_SCRIPT), *args, cwd=self.root, env=env or self.env(), timeout=300
        )

    def query(self, sql: str) -> List[Tuple[Any, ...]]:
        with duckdb.connect(str(self.database), read_only=True) as connection:
            return connection.execute(sql).fetchall()

    def rows(self) -> List[Tuple[Any, ...]]:
        """(gateway, created_at, metadata) of every row, sorted, to compare with `truth`."""
        found = self.query(
            "SELECT gateway_id, created_at, metadata FROM ai_gateway.aig_logs ORDER BY ALL"
        )
        return sorted(
            (gateway, created, None if meta is None else json.loads(meta))
            for gateway, created, meta in found
        )


def truth(bucket: LogpushBucket, files: Optional[List[PushedFile]] = None) -> List[Tuple]:
    """What the rows must be: each pushed log once (a batch delivered twice counts once)."""
    logs = bucket.logs if files is None else [log for f in files for log in f.logs]
    unique = {id(log): log for log in logs}.values()
    return sorted(
        (log.gateway, log.created_at.astimezone(timezone.utc), log.metadata) for log in unique
    )


def local_workspace(tmp_path: Path) -> LogpushWorkspace:
    bucket = LogpushBucket.local(str(tmp_path / "bucket"))
    return LogpushWorkspace(tmp_path, bucket, Path(bucket.root).as_uri())


def s3_workspace(tmp_path: Path, s3: S3Endpoint, path: str = "logs") -> LogpushWorkspace:
    return LogpushWorkspace(
        tmp_path, s3.logpush_bucket(path), f"s3://{s3.bucket}/{path}", s3.credentials()
    )


def truncate(bucket: LogpushBucket, pushed: PushedFile) -> bytes:
    """Cuts a file mid-stream (an aborted multipart upload); returns its good bytes."""
    bucket.put(pushed.key, pushed.raw[: len(pushed.raw) // 2])
    return pushed.raw


def break_line(bucket: LogpushBucket, pushed: PushedFile, line: int = 2) -> bytes:
    """Writes the file again with one line cut short; returns its good bytes."""
    lines = gzip.decompress(pushed.raw).split(b"\n")
    lines[line - 1] = lines[line - 1][:40]
    bucket.put(pushed.key, gzip.compress(b"\n".join(lines)))
    return pushed.raw


def age_files(bucket: LogpushBucket, seconds: float) -> None:
    """Dates every local file `seconds` back (as if delivered that long ago)."""
    stamp = time.time() - seconds
    for path in Path(bucket.root).rglob("*"):
        if path.is_file():
            os.utime(path, (stamp, stamp))


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)
