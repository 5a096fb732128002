"""Benchmark of `pipelines/logpush.py`: Logpush files from a local folder into DuckDB.

Writes an emulated bucket (default 1,000,000 records in 200 gzipped files over 10 days, four
gateways, `Metadata` and the bodies encrypted as Cloudflare does, a fresh AES-256-GCM key per
field wrapped to an RSA key of `--key-bits`), then runs the job as a child process and measures
its wall time, CPU and peak RSS. The bucket is written by one process per CPU and can be kept
(`--folder`) to time the load again with other settings.

Unwrapping each encrypted field's key is one RSA private operation, which dominates: the
figures are given with the number of those operations and their rate on this machine.

Run: .venv/bin/python -m bench.logpush [--records 1000000] [--files 200] [--key-bits 4096]
     [--scheme envelope|plain] [--load-bodies] [--threads N] [--records-per-load N] [--folder DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import Dict, Tuple

from cryptography.hazmat.primitives import serialization

from aig_source.emulator import DEFAULT_ACCOUNT_ID
from aig_source.emulator.logpush import ENVELOPE, PLAIN, KeyPair, LogpushBucket, LogpushJob
from aig_source.logpush.decrypt import OAEP_SHA256
from aig_source.logpush.settings import DEFAULT_RECORDS_PER_LOAD
from bench.common import run_script

GATEWAYS = ("app-prod", "app-staging", "support-bot", "search-api")
FIRST_DAY = date(2026, 11, 1)
DAYS = 10


def _write_day(job: Tuple[str, str, str, int, int, int]) -> Tuple[int, int]:
    folder, public_pem, scheme, day_index, files, records = job
    bucket = LogpushBucket.local(folder)
    writer = LogpushJob(bucket, public_pem, scheme=scheme, seed=day_index)
    pushed = writer.push_days(GATEWAYS, FIRST_DAY + timedelta(days=day_index), 1, files, records)
    encrypted = sum(
        1 for f in pushed for log in f.logs if isinstance(log.record.get("Metadata"), dict)
    )
    return sum(len(f.logs) for f in pushed), encrypted


def write_bucket(
    folder: Path, records: int, files: int, keys: KeyPair, scheme: str
) -> Dict[str, float]:
    per_file = records // files
    files_per_day = [files // DAYS + (1 if d < files % DAYS else 0) for d in range(DAYS)]
    jobs = [
        (str(folder), keys.public_pem, scheme, day, count, per_file)
        for day, count in enumerate(files_per_day)
        if count
    ]
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        written = list(pool.map(_write_day, jobs))
    size = sum(p.stat().st_size for p in folder.rglob("*.log.gz"))
    return {
        "records": sum(r for r, _ in written),
        "encrypted_metadata": sum(e for _, e in written),
        "seconds": time.perf_counter() - started,
        "bytes": size,
    }


def rsa_rate(keys: KeyPair, seconds: float = 2.0) -> float:
    """Private-key operations per second on one thread (what each encrypted field costs)."""
    private = serialization.load_pem_private_key(keys.private_pem.encode(), None)
    public = private.public_key()
    wrapped = public.encrypt(os.urandom(32), OAEP_SHA256)  # type: ignore[union-attr]
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        private.decrypt(wrapped, OAEP_SHA256)  # type: ignore[union-attr]
        count += 1
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--key-bits", type=int, default=4096)
    parser.add_argument("--scheme", choices=(ENVELOPE, PLAIN), default=ENVELOPE)
    parser.add_argument("--load-bodies", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="decrypt_threads (0: one per CPU)")
    parser.add_argument("--records-per-load", type=int, default=DEFAULT_RECORDS_PER_LOAD)
    parser.add_argument("--folder", help="keep the bucket here (reused when it has files)")
    args = parser.parse_args()

    root = Path(args.folder or tempfile.mkdtemp(prefix="bench_logpush_"))
    root.mkdir(parents=True, exist_ok=True)
    bucket = root / "bucket"
    key_file = root / "private.pem"
    if key_file.exists() and any(bucket.rglob("*.log.gz")):
        private_pem = key_file.read_text()
        print(f"reusing the bucket in {bucket}")
    else:
        keys = KeyPair.generate(args.key_bits)
        key_file.write_text(keys.private_pem)
        made = write_bucket(bucket, args.records, args.files, keys, args.scheme)
        print(
            f"wrote {int(made['records']):,} records in {args.files} files"
            f" ({made['bytes'] / 2**20:,.1f} MiB gzipped, {int(made['encrypted_metadata']):,}"
            f" encrypted Metadata) in {made['seconds']:.0f} s"
        )
        private_pem = keys.private_pem
    keys = KeyPair(private_pem, "")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION"))}
    env.update(
        {
            "SOURCES__AIG_LOGPUSH__BUCKET_URL": bucket.resolve().as_uri(),
            "SOURCES__AIG_LOGPUSH__ACCOUNT_ID": DEFAULT_ACCOUNT_ID,
            "SOURCES__AIG_LOGPUSH__PRIVATE_KEY": private_pem,
            "SOURCES__AIG_LOGPUSH__LOAD_BODIES": "true" if args.load_bodies else "false",
            "SOURCES__AIG_LOGPUSH__DECRYPT_THREADS": str(args.threads),
            "SOURCES__AIG_LOGPUSH__RECORDS_PER_LOAD": str(args.records_per_load),
            "DESTINATION__DUCKDB__CREDENTIALS": str(root / "aig_logs.duckdb"),
            "DLT_DATA_DIR": str(root / "dlt"),
        }
    )
    # every load starts from an empty table and no pipeline state (a kept folder's earlier run)
    (root / "aig_logs.duckdb").unlink(missing_ok=True)
    shutil.rmtree(root / "dlt", ignore_errors=True)
    run = run_script("logpush.py", [], env, str(root))
    records = args.records // args.files * args.files
    print(run.stdout.strip())
    print(
        f"load: {records:,} records in {run.seconds:,.1f} s = {records / run.seconds:,.0f}"
        f" records/s; {run.cpu_seconds / records * 1000:.3f} CPU s per 1,000 records;"
        f" peak RSS {run.peak_rss_mib:,.0f} MiB; {os.cpu_count()} CPUs"
    )
    if args.scheme == ENVELOPE:
        print(f"one RSA-{args.key_bits} private operation: {rsa_rate(keys):,.0f}/s on one thread")


if __name__ == "__main__":
    main()
