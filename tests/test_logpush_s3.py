"""Logpush files from S3 (moto's S3 server on loopback, the real protocol through s3fs): the
same guarantees as from a local folder, configured the way dlt's filesystem source is."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Iterator, List

import pytest

from aig_source.emulator.logpush import PLAIN, KeyPair, S3Endpoint, s3_on_loopback

from .conftest import run_python
from .logpush import (
    FIRST_DAY,
    GATEWAYS,
    LOGPUSH_SCRIPT,
    keys,
    s3_workspace,
    truncate,
    truth,
    utc,
)
from .test_secrets import assert_nowhere, key_fragments


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Endpoint]:
    with s3_on_loopback(f"aig-logpush-{uuid.uuid4().hex[:8]}") as endpoint:
        yield endpoint


def test_a_bucket_on_s3_loads_each_file_once(tmp_path: Path, s3: S3Endpoint) -> None:
    space = s3_workspace(tmp_path, s3, "gateway-logs")
    assert space.bucket_url.startswith("s3://") and s3.endpoint_url.startswith("http://127.0.0.1:")
    job = space.job(scheme=PLAIN, seed=21)
    files = job.push_days(GATEWAYS, FIRST_DAY, 3, 3, 20)
    job.redeliver(files[4])
    job.push_probe_files()
    job.push_batch(GATEWAYS, utc(2026, 11, 27, 9), 300, 10, gzipped=False)
    good = truncate(space.bucket, files[7])

    # configured as dlt documents filesystem credentials: [sources.aig_logpush.credentials]
    first = space.script()

    assert first.returncode == 1
    assert (
        first.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: logpush file {files[7].key}: the gzip data is truncated or corrupt")
    )
    assert "190 records from 10 new files of 11" in first.stdout
    assert space.rows() == truth(space.bucket, [f for f in space.bucket.files if f is not files[7]])

    space.bucket.put(files[7].key, good)
    late = job.push_batch(GATEWAYS, utc(2026, 11, 26, 22), 600, 5, folder_day=FIRST_DAY)
    job.push_days(GATEWAYS, FIRST_DAY + timedelta(days=3), 1, 1, 7)
    second = space.script()

    assert second.returncode == 0, second.stderr
    assert "32 records from 3 new files of 13" in second.stdout
    assert late.key.startswith("20261126/")
    assert space.rows() == truth(space.bucket)
    assert space.query("SELECT COUNT(*) - COUNT(DISTINCT id) FROM ai_gateway.aig_logs") == [(0,)]

    third = space.run(credentials=s3.credentials())
    assert (third.files_loaded, third.records, third.files_listed) == (0, 0, 13)


def test_a_bucket_that_does_not_exist_is_one_line(tmp_path: Path, s3: S3Endpoint) -> None:
    space = s3_workspace(tmp_path, s3, "logs")
    space.bucket_url = "s3://no-such-bucket-here/logs"
    result = space.script()
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: Cannot list the Logpush files in s3://no-such-bucket-here/logs (NoSuchBucket: An"
        " error occurred (NoSuchBucket) when calling the ListObjectsV2 operation: The specified"
        " bucket does not exist): check SOURCES__AIG_LOGPUSH__BUCKET_URL (or bucket_url under"
        " [sources.aig_logpush] in .dlt/config.toml) and the bucket's credentials (credentials"
        " under [sources.aig_logpush] in .dlt/secrets.toml)."
    ]
    assert s3.secret_access_key not in result.stdout + result.stderr.replace("aig-logpush", "")


def test_setup_check_lists_and_reads_an_s3_bucket(tmp_path: Path, s3: S3Endpoint) -> None:
    space = s3_workspace(tmp_path, s3, "checked")
    files = space.job(scheme=PLAIN, seed=25).push_days(GATEWAYS, FIRST_DAY, 1, 3, 6)
    space.job().push_probe_files()
    script = LOGPUSH_SCRIPT.with_name("setup.py")
    result = run_python(str(script), "--check", cwd=space.root, env=space.env())
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(
        f"OK    Logpush bucket: 3 Logpush files under {space.bucket_url}; the newest"
    )
    assert lines[1].startswith(f"OK    Logpush newest file: {files[-1].key}: its first 6 records")
    assert s3.secret_access_key not in result.stdout.replace("aig-logpush", "")


def test_the_private_key_and_the_bucket_secret_are_never_printed_or_stored(
    tmp_path: Path, s3: S3Endpoint
) -> None:
    space = s3_workspace(tmp_path, s3, "secret-logs")
    files = space.job(seed=27).push_days(GATEWAYS, FIRST_DAY, 1, 3, 8)
    bucket_secret = "s3sk-SECRET-4f1e9b7a2c6d"
    env = space.env(SOURCES__AIG_LOGPUSH__CREDENTIALS__AWS_SECRET_ACCESS_KEY=bucket_secret)
    outputs: List[str] = []

    def run(script: Path = LOGPUSH_SCRIPT, *args: str, **extra: str) -> int:
        result = run_python(str(script), *args, cwd=space.root, env={**env, **extra})
        outputs.extend([result.stdout, result.stderr])
        return result.returncode

    good = truncate(space.bucket, files[0])
    assert run() == 1  # a broken file
    space.bucket.put(files[0].key, good)
    assert run(LOGPUSH_SCRIPT.with_name("setup.py"), "--check") == 0
    other = KeyPair.generate(2048)
    assert run(SOURCES__AIG_LOGPUSH__PRIVATE_KEY=other.private_pem) == 1  # a wrong key
    assert run() == 0
    assert run(LOGPUSH_SCRIPT.with_name("status.py")) == 0
    info = run_python(
        "-m",
        "dlt",
        "pipeline",
        "--pipelines-dir",
        str(space.root / "dlt_data" / "pipelines"),
        "aig_logs",
        "info",
        "-v",
        cwd=space.root,
        env=env,
    )
    outputs.extend([info.stdout, info.stderr])
    assert "aig_logs_logpush" in info.stdout

    secrets = [bucket_secret, *key_fragments(keys().private_pem), *key_fragments(other.private_pem)]
    assert assert_nowhere(secrets, outputs, space.root) > 20
    assert space.rows() == truth(space.bucket)
