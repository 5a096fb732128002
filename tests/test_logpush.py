"""Logpush files from a local folder into aig_logs: decryption, every timestamp format, each file
once in effect, broken files, wrong keys, kills, bodies, the views and the script."""

from __future__ import annotations

import base64
import gzip
import json
import signal
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from aig_source.emulator import DEFAULT_TOKEN, LogsApiEmulator
from aig_source.emulator.logpush import (
    DATASET_FIELDS,
    PLAIN,
    RSA_ONLY,
    FieldEncryptor,
    KeyPair,
    format_timestamp,
)
from aig_source.jobs.logpush import run_logpush
from aig_source.logpush.decrypt import FieldDecryptor, FieldDoesNotDecrypt, KeyProblem
from aig_source.logpush.records import digest_id, file_lines, parse_timestamp
from aig_source.logpush.settings import DOCUMENTED_FIELDS, TIMESTAMP_FORMATS

from .conftest import Workspace, run_python
from .logpush import (
    FIRST_DAY,
    GATEWAYS,
    LOGPUSH_SCRIPT,
    age_files,
    break_line,
    keys,
    local_workspace,
    truncate,
    truth,
    utc,
)

MOMENT = utc(2026, 11, 28, 13, 45, 7) + timedelta(microseconds=123456)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1795873507123456789, MOMENT),
        ("1795873507123456789", MOMENT),
        (1795873507, MOMENT.replace(microsecond=0)),
        (1795873507123, MOMENT.replace(microsecond=123000)),
        ("2026-11-28T13:45:07Z", MOMENT.replace(microsecond=0)),
        ("2026-11-28T13:45:07.123Z", MOMENT.replace(microsecond=123000)),
        ("2026-11-28T13:45:07.123456789Z", MOMENT),
        ("2026-11-28T14:45:07.123456+01:00", MOMENT),
    ],
)
def test_every_timestamp_format_is_read(value: object, expected: datetime) -> None:
    assert parse_timestamp(value) == expected


@pytest.mark.parametrize("timestamp_format", TIMESTAMP_FORMATS)
def test_the_emulator_writes_each_format_the_reader_reads_back(timestamp_format: str) -> None:
    written = format_timestamp(MOMENT, timestamp_format)
    kept = {"unix": 0, "rfc3339": 0, "rfc3339ms": 123000}.get(timestamp_format, 123456)
    assert parse_timestamp(written) == MOMENT.replace(microsecond=kept)


def test_a_timestamp_in_no_format_is_an_error() -> None:
    with pytest.raises(ValueError, match="timestamp_format"):
        parse_timestamp("yesterday")


@pytest.mark.parametrize("scheme", ["envelope", RSA_ONLY, PLAIN])
def test_each_encryption_scheme_decrypts_to_the_exact_text(scheme: str) -> None:
    text = json.dumps({"team": "search", "ünïcode": "✓", "n": 3})
    encrypted = FieldEncryptor(keys().public_pem, scheme).encrypt(text)
    assert FieldDecryptor(keys().private_pem).decrypt_text(encrypted, "Metadata") == text
    if scheme != PLAIN:
        assert text not in json.dumps(encrypted)


def test_a_corrupt_field_fails_that_field_only() -> None:
    decryptor = FieldDecryptor(keys().private_pem)
    encrypted = FieldEncryptor(keys().public_pem).encrypt('{"a": 1}')
    assert decryptor.decrypt_text(encrypted, "Metadata") == '{"a": 1}'
    data = bytearray(base64.b64decode(encrypted["data"]))
    data[0] ^= 0xFF
    tampered = {**encrypted, "data": base64.b64encode(bytes(data)).decode()}
    with pytest.raises(FieldDoesNotDecrypt, match="fails authentication"):
        decryptor.decrypt_text(tampered, "Metadata")
    with pytest.raises(FieldDoesNotDecrypt, match="not valid base64"):
        decryptor.decrypt_text({**encrypted, "iv": "%%%"}, "Metadata")


def test_a_key_of_another_size_or_no_key_or_no_pem_is_one_line_naming_private_key() -> None:
    small = KeyPair.generate(2048)
    encrypted = FieldEncryptor(keys().public_pem).encrypt("{}")
    with pytest.raises(KeyProblem, match=r"4096-bit key, private_key is 2048-bit") as error:
        FieldDecryptor(small.private_pem).decrypt_text(encrypted, "Metadata")
    assert "SOURCES__AIG_LOGPUSH__PRIVATE_KEY" in str(error.value)
    with pytest.raises(KeyProblem, match="no private_key is set"):
        FieldDecryptor(None).decrypt_text(encrypted, "Metadata")
    broken = keys().private_pem[:200]
    with pytest.raises(KeyProblem, match="not an unencrypted PEM private key") as error:
        FieldDecryptor(broken)
    assert broken[40:80] not in str(error.value)
    # a plain field needs no key at all
    assert FieldDecryptor(None).decrypt_text('{"a": 1}', "Metadata") == '{"a": 1}'


def test_a_record_digest_is_stable_and_differs_per_log() -> None:
    record = {"Gateway": "g", "Timestamp": 1, "Metadata": {"type": "encrypted", "data": "x"}}
    assert digest_id(record) == digest_id(dict(reversed(list(record.items()))))
    assert digest_id(record) != digest_id(
        {**record, "Metadata": {"type": "encrypted", "data": "y"}}
    )


def test_plain_and_gzipped_bytes_both_read_and_truncated_gzip_fails() -> None:
    body = b'{"a": 1}\n{"a": 2}\n'
    assert file_lines(body) == file_lines(gzip.compress(body)) == [b'{"a": 1}', b'{"a": 2}']
    with pytest.raises(ValueError, match="truncated or corrupt"):
        file_lines(gzip.compress(body * 100)[:30])


def test_days_of_two_gateways_load_once_with_metadata_exact(tmp_path: Path) -> None:
    space = local_workspace(tmp_path)
    job = space.job(seed=3)
    files = job.push_days(GATEWAYS, FIRST_DAY, 3, 4, 30)
    job.redeliver(files[2])  # the same batch again, under another name
    job.push_probe_files()
    plain = job.push_batch(
        GATEWAYS, datetime(2026, 11, 29, 3, tzinfo=timezone.utc), 60, 20, gzipped=False
    )

    summary = space.run()

    assert summary.problem() is None
    assert summary.files_loaded == 14 and summary.files_listed == 14
    assert summary.records == 13 * 30 + 20 and summary.new_rows == 12 * 30 + 20
    assert space.rows() == truth(space.bucket)
    assert plain.key.endswith(".log.gz")
    (count, distinct, gateways, accounts, files_named) = space.query(
        "SELECT COUNT(*), COUNT(DISTINCT id), COUNT(DISTINCT gateway_id),"
        " COUNT(DISTINCT account_id), COUNT(DISTINCT logpush_file) FROM ai_gateway.aig_logs"
    )[0]
    assert (count, distinct, gateways, accounts) == (380, 380, 2, 1)
    assert files_named >= 13
    # the columns of the documented fields, as the gateway pushed them
    pushed = {
        (log.gateway, log.created_at): log.record for f in space.bucket.files for log in f.logs
    }
    for row in space.query(
        "SELECT gateway_id, created_at, provider, model, requested_model, endpoint, status_code,"
        " success, cached, rate_limited, cost, duration, routing_decision_id, routing_reason"
        " FROM ai_gateway.aig_logs"
    ):
        record = pushed[(row[0], row[1])]
        assert row[2:10] == (
            record["Provider"],
            record["Model"],
            record["RequestedModel"],
            record["Endpoint"],
            record["StatusCode"],
            record["StatusCode"] < 400,
            record["Cached"],
            record["RateLimited"],
        )
        assert row[10] == pytest.approx(record["Metrics"]["cost"])
        assert row[11] == record["Metrics"]["durationMs"]
        assert row[12] == (record["RoutingDecisionID"] or None)
        assert row[13] == (record["RoutingReason"] or None)


@pytest.mark.parametrize("timestamp_format", TIMESTAMP_FORMATS)
def test_each_timestamp_format_loads_created_at(tmp_path: Path, timestamp_format: str) -> None:
    space = local_workspace(tmp_path)
    space.job(scheme=PLAIN, timestamp_format=timestamp_format).push_days(
        GATEWAYS, FIRST_DAY, 1, 2, 25
    )
    space.run()
    assert space.rows() == truth(space.bucket)


def test_files_listed_again_are_skipped_and_late_files_in_old_folders_are_read(
    tmp_path: Path,
) -> None:
    space = local_workspace(tmp_path)
    job = space.job(scheme=PLAIN, seed=5)
    job.push_days(GATEWAYS, FIRST_DAY, 2, 3, 20)
    first = space.run()
    assert first.files_loaded == 6

    again = space.run()
    assert (again.files_loaded, again.records, again.new_rows) == (0, 0, 0)

    late = job.push_batch(GATEWAYS, utc(2026, 11, 26, 5), 600, 15, folder_day=FIRST_DAY)
    newer = job.push_days(GATEWAYS, FIRST_DAY + timedelta(days=2), 1, 1, 10)
    third = space.run()
    assert (third.files_loaded, third.records, third.new_rows) == (2, 25, 25)
    assert late.key.startswith("20261126/") and newer[0].key.startswith("20261128/")
    assert space.rows() == truth(space.bucket)


def test_old_files_settle_and_the_ledger_stays_small(tmp_path: Path) -> None:
    space = local_workspace(tmp_path)
    job = space.job(scheme=PLAIN)
    job.push_days(GATEWAYS, FIRST_DAY, 2, 6, 5)
    age_files(space.bucket, 3 * 86400)  # delivered three days ago
    job.push_days(GATEWAYS, FIRST_DAY + timedelta(days=4), 1, 2, 5)
    space.run(lookback_seconds=3600)
    state = _ledger(space)
    assert len(state["loaded"]) == 2  # only the two recent files are remembered by name
    assert space.run().files_loaded == 0  # and the twelve settled ones are not read again
    assert space.rows() == truth(space.bucket)


def _ledger(space) -> dict:  # type: ignore[no-untyped-def]
    from aig_source.runner import make_pipeline

    pipeline = make_pipeline(pipelines_dir=str(space.root / "pipelines"))
    resources = pipeline.state["sources"]["aig_source"]["resources"]
    ledger: dict = resources["aig_logs_logpush"]["buckets"][space.bucket_url]
    return ledger


def test_a_broken_file_fails_alone_and_loads_once_fixed(tmp_path: Path) -> None:
    space = local_workspace(tmp_path)
    job = space.job(seed=7)
    files = job.push_days(GATEWAYS, FIRST_DAY, 2, 3, 20)
    good_truncated = truncate(space.bucket, files[1])
    good_broken = break_line(space.bucket, files[4], line=3)
    encrypted = json.loads(gzip.decompress(files[5].raw).split(b"\n")[0])
    corrupt_lines = gzip.decompress(files[5].raw).split(b"\n")
    for number, line in enumerate(corrupt_lines):
        record = json.loads(line) if line else None
        if record and record["Metadata"]:
            data = bytearray(base64.b64decode(record["Metadata"]["data"]))
            data[-1] ^= 1
            record["Metadata"]["data"] = base64.b64encode(bytes(data)).decode()
            corrupt_lines[number] = json.dumps(record).encode()
            break
    space.bucket.put(files[5].key, gzip.compress(b"\n".join(corrupt_lines)))
    assert encrypted["Gateway"] in GATEWAYS

    result = space.script()

    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: logpush file {files[1].key}: the gzip data is truncated or corrupt"
        f" ({errors[0].split('(', 1)[1]}",
        f"error: logpush file {files[4].key}: line 3 is not JSON ({errors[1].split('(', 1)[1]}",
        f"error: logpush file {files[5].key}: line {number + 1}: Metadata does not decrypt: its"
        " AES-GCM ciphertext fails authentication; it is not marked loaded, the next run reads"
        " it again.",
    ]
    assert all(line.endswith("the next run reads it again.") for line in errors)
    assert "3 file(s) failed" in result.stdout
    assert space.rows() == truth(space.bucket, [files[0], files[2], files[3]])

    # still broken: tried again, still failing, nothing else read
    assert space.script().returncode == 1
    for pushed, raw in ((files[1], good_truncated), (files[4], good_broken)):
        space.bucket.put(pushed.key, raw)
    space.bucket.put(files[5].key, files[5].raw)
    healed = space.script()
    assert healed.returncode == 0, healed.stderr
    assert "60 records from 3 new files" in healed.stdout
    assert space.rows() == truth(space.bucket)


def test_a_wrong_key_is_one_line_naming_private_key_and_nothing_loads(tmp_path: Path) -> None:
    space = local_workspace(tmp_path)
    space.job().push_days(GATEWAYS, FIRST_DAY, 1, 2, 10)
    other = KeyPair.generate()
    result = space.script(env=space.env(SOURCES__AIG_LOGPUSH__PRIVATE_KEY=other.private_pem))
    assert result.returncode == 1
    errors = result.stderr.strip().splitlines()
    assert errors[-1] == (
        "error: The files' encrypted fields do not decrypt with the configured private_key: set"
        " SOURCES__AIG_LOGPUSH__PRIVATE_KEY (or private_key under [sources.aig_logpush] in"
        " .dlt/secrets.toml) to the private half of the public key uploaded to the gateway's"
        " Logpush settings."
    )
    assert len([line for line in errors if line.startswith("error:")]) == 1
    output = result.stdout + result.stderr
    assert "PRIVATE KEY" not in output and other.private_pem[30:90] not in output
    # with the right key the same files load in full
    assert space.script().returncode == 0
    assert space.rows() == truth(space.bucket)


def test_encrypted_files_without_a_key_are_one_line(tmp_path: Path) -> None:
    space = local_workspace(tmp_path)
    space.job().push_days(GATEWAYS, FIRST_DAY, 1, 1, 5)
    env = space.env()
    del env["SOURCES__AIG_LOGPUSH__PRIVATE_KEY"]
    result = space.script(env=env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: The files' Metadata fields are encrypted and no private_key is set: set"
        " SOURCES__AIG_LOGPUSH__PRIVATE_KEY (or private_key under [sources.aig_logpush] in"
        " .dlt/secrets.toml) to the private half of the key uploaded to the gateway."
    )


def test_missing_settings_name_the_aig_logpush_section(tmp_path: Path) -> None:
    space = local_workspace(tmp_path)
    env = space.env()
    del env["SOURCES__AIG_LOGPUSH__BUCKET_URL"]
    result = space.script(env=env)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: Missing configuration: set SOURCES__AIG_LOGPUSH__BUCKET_URL (or bucket_url"
        " under [sources.aig_logpush] in .dlt/config.toml)."
    )


def test_loads_are_bounded_by_records_and_files(tmp_path: Path) -> None:
    space = local_workspace(tmp_path)
    space.job(scheme=PLAIN, seed=45).push_days(GATEWAYS, FIRST_DAY, 2, 5, 10)
    by_records = space.run(records_per_load=25)  # three files of ten records a load
    assert (by_records.loads, by_records.files_loaded, by_records.records) == (4, 10, 100)
    assert space.rows() == truth(space.bucket)
    other = local_workspace(tmp_path / "by_files")
    for pushed in space.bucket.files:
        other.bucket.put(pushed.key, pushed.raw)
    by_files = other.run(files_per_load=4)
    assert (by_files.loads, by_files.files_loaded) == (3, 10)
    assert other.rows() == truth(space.bucket)


def test_an_empty_bucket_path_says_so(tmp_path: Path) -> None:
    space = local_workspace(tmp_path)
    summary = space.run()
    assert summary.problem() is None
    assert summary.line() == (
        f"aig_logs logpush: 0 records from 0 new files of 0 in {space.bucket_url} (0 new logs, 0"
        " already loaded and merged) in 1 load; no Logpush files there yet: check that the"
        " Logpush job writes to this path (and file_glob, if set)."
    )


def test_bodies_load_only_when_asked(tmp_path: Path) -> None:
    space = local_workspace(tmp_path)
    files = space.job(seed=9).push_days(GATEWAYS, FIRST_DAY, 1, 1, 12)
    space.run()
    columns = {row[0] for row in space.query("DESCRIBE ai_gateway.aig_logs")}
    assert "request_body" not in columns and "response_body" not in columns

    other = local_workspace(tmp_path / "bodies")
    other.bucket.put(files[0].key, files[0].raw)
    other.run(load_bodies=True)
    bodies = other.query(
        "SELECT request_body, response_body FROM ai_gateway.aig_logs ORDER BY created_at"
    )
    decryptor = FieldDecryptor(keys().private_pem)
    expected = [
        (
            decryptor.decrypt_text(log.record["RequestBody"], "RequestBody"),
            decryptor.decrypt_text(log.record["ResponseBody"], "ResponseBody"),
        )
        for log in sorted(files[0].logs, key=lambda log: log.created_at)
    ]
    assert bodies == expected
    assert json.loads(bodies[0][0])["messages"][0]["content"] == "hi"


def test_the_views_count_logpush_rows(tmp_path: Path) -> None:
    space = local_workspace(tmp_path)
    space.job(scheme=PLAIN, seed=11).push_days(GATEWAYS, FIRST_DAY, 2, 2, 25)
    space.run()
    by_view = space.query(
        "SELECT gateway_id, SUM(requests), ROUND(SUM(cost), 9) FROM ai_gateway.aig_usage_daily"
        " GROUP BY ALL ORDER BY ALL"
    )
    by_table = space.query(
        "SELECT gateway_id, COUNT(*), ROUND(SUM(cost), 9) FROM ai_gateway.aig_logs"
        " GROUP BY ALL ORDER BY ALL"
    )
    assert by_view == by_table and len(by_view) == 2
    tags = space.query("SELECT COUNT(*) FROM ai_gateway.aig_cost_by_metadata")
    assert tags[0][0] > 0


@pytest.mark.slow
def test_a_kill_mid_run_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    space = local_workspace(tmp_path)
    space.job(seed=13).push_days(GATEWAYS, FIRST_DAY, 3, 4, 20)
    env = space.env(SOURCES__AIG_LOGPUSH__FILES_PER_LOAD="2")
    process = subprocess.Popen(
        [sys.executable, str(LOGPUSH_SCRIPT)],
        cwd=space.root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    loaded = space.root / "dlt_data" / "pipelines" / "aig_logs" / "load" / "loaded"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(loaded.glob("*"))) < 2:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    rows_after_kill = space.query("SELECT COUNT(*) FROM ai_gateway.aig_logs")[0][0]
    assert 0 < rows_after_kill < 12 * 20

    result = space.script(env=env)
    assert result.returncode == 0, result.stderr
    assert space.rows() == truth(space.bucket)
    assert space.query("SELECT COUNT(*) - COUNT(DISTINCT id) FROM ai_gateway.aig_logs") == [(0,)]


@pytest.mark.slow
def test_the_demo_runs_from_an_empty_folder(tmp_path: Path) -> None:
    from .conftest import run_demo

    result = run_demo(LOGPUSH_SCRIPT, tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("demo: Logpush bucket ")
    assert "3 gateways: demo-gateway" in result.stdout
    assert "already loaded and merged" in result.stdout
    assert (tmp_path / "aig_logs_demo.duckdb").exists()
    assert (tmp_path / "aig_logs_report.html").exists()
    assert "PRIVATE KEY" not in result.stdout + result.stderr


def test_a_script_run_prints_one_summary_line_and_no_secret(tmp_path: Path) -> None:
    space = local_workspace(tmp_path)
    files = space.job(seed=15).push_days(GATEWAYS, date(2026, 11, 30), 1, 2, 10)
    result = space.script()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines() == [
        f"aig_logs logpush: 20 records from 2 new files of 2 in {space.bucket_url} (20 new logs,"
        " 0 already loaded and merged) in 1 load; 2 gateways: app-prod 10, app-staging 10."
    ]
    decrypted = [json.dumps(log.metadata) for f in files for log in f.logs if log.metadata]
    output = result.stdout + result.stderr
    assert "PRIVATE KEY" not in output
    assert not any(text in output for text in decrypted)
    assert "--demo" in space.script("--help").stdout


SETUP_SCRIPT = LOGPUSH_SCRIPT.with_name("setup.py")


def test_setup_check_reads_the_bucket_decrypts_and_compares_the_dataset_fields(
    tmp_path: Path, api: LogsApiEmulator
) -> None:
    space = local_workspace(tmp_path)
    files = space.job(seed=17).push_days(GATEWAYS, FIRST_DAY, 1, 2, 30)
    api.logpush_fields["UserAgent"] = "The user agent of the request."
    env = space.env(
        SOURCES__AIG_LOGPUSH__API_TOKEN=DEFAULT_TOKEN,
        SOURCES__AIG_LOGPUSH__API_BASE_URL=api.base_url,
    )
    result = run_python(str(SETUP_SCRIPT), "--check", cwd=space.root, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    newest = files[-1].key
    assert lines[0] == (
        f"OK    Logpush bucket: 2 Logpush files under {space.bucket_url}; the newest {newest}"
        f" (modified {lines[0].split('(modified ')[1]}"
    )
    encrypted = sum(
        1
        for log in files[-1].logs[:20]
        for name in ("Metadata", "RequestBody", "ResponseBody")
        if log.record.get(name)
    )
    assert lines[1] == (
        f"OK    Logpush newest file: {newest}: its first 20 records read, of gateways"
        f" app-prod, app-staging; its {encrypted} encrypted fields decrypt with private_key"
    )
    assert lines[2].startswith("WARN  Logpush dataset fields: ai_gateway_events has 16 fields:")
    assert lines[2].endswith(
        "Not mapped by name (each loads as a column of its own, in snake case): UserAgent"
    )
    assert lines[-1] == "All checks passed. Next: python pipelines/logpush.py"
    assert not any("Cloudflare API token" in line for line in lines)  # no Logs API checks

    other = KeyPair.generate(2048)
    wrong = run_python(
        str(SETUP_SCRIPT),
        "--check",
        cwd=space.root,
        env={**env, "SOURCES__AIG_LOGPUSH__PRIVATE_KEY": other.private_pem},
    )
    assert wrong.returncode == 1
    failed = [line for line in wrong.stdout.splitlines() if line.startswith("FAIL")]
    assert failed == [
        f"FAIL  Logpush newest file: {newest}: The files' encrypted fields do not decrypt with"
        " the configured private_key (the files use a 4096-bit key, private_key is 2048-bit):"
        " set SOURCES__AIG_LOGPUSH__PRIVATE_KEY (or private_key under [sources.aig_logpush] in"
        " .dlt/secrets.toml) to the private half of the public key uploaded to the gateway's"
        " Logpush settings."
    ]
    assert "PRIVATE KEY" not in wrong.stdout + wrong.stderr


def test_the_emulated_field_list_is_the_documented_one() -> None:
    assert tuple(DATASET_FIELDS) == DOCUMENTED_FIELDS


def test_logpush_rows_join_the_rows_of_the_logs_api_in_one_table(
    tmp_path: Path, workspace: Workspace
) -> None:
    workspace.api.generate(40, hours=0.5)
    assert workspace.run().logs_new == 40
    space = local_workspace(tmp_path / "logpush")
    space.job(scheme=PLAIN, seed=19).push_days(GATEWAYS, FIRST_DAY, 1, 2, 10)
    pipeline = workspace.pipeline()
    summary = run_logpush(pipeline, **space.source_args())
    assert summary.new_rows == 20
    rows = workspace.query(
        "SELECT COUNT(*), COUNT(logpush_file), COUNT(DISTINCT gateway_id) FROM ai_gateway.aig_logs"
    )
    assert rows == [(60, 20, 3)]
    # and the Logs API's next run merges on as before, the Logpush rows untouched
    workspace.api.generate(5, hours=0.01)
    assert workspace.run().logs_new == 5
    assert workspace.query("SELECT COUNT(*), COUNT(logpush_file) FROM ai_gateway.aig_logs") == [
        (65, 20)
    ]


def test_status_shows_the_logpush_job_and_fails_while_a_file_keeps_failing(
    tmp_path: Path,
) -> None:
    space = local_workspace(tmp_path)
    files = space.job(scheme=PLAIN, seed=43).push_days(GATEWAYS, FIRST_DAY, 1, 3, 10)
    good = truncate(space.bucket, files[1])
    status_script = LOGPUSH_SCRIPT.with_name("status.py")
    assert space.run().problem()

    failing = run_python(str(status_script), cwd=space.root, env=space.env())

    assert failing.returncode == 1
    line = [text for text in failing.stdout.splitlines() if text.startswith("logpush:")]
    assert line[0].startswith("logpush: failing; last run ")
    assert f"20 records from 2 files of {space.bucket_url}); 1 file(s) failing" in line[0]
    assert files[1].key in line[0]
    assert "error: logpush: 1 file(s) keep failing (see above)." in failing.stderr
    assert "no gateway has been read yet" not in failing.stdout

    space.bucket.put(files[1].key, good)
    assert space.run().problem() is None
    healthy = run_python(str(status_script), "--json", cwd=space.root, env=space.env())
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    figures = json.loads(healthy.stdout)
    assert figures["healthy"] is True and figures["gateways"] == {}
    assert figures["logpush"]["verdict"] == "ok" and figures["logpush"]["failing_files"] == {}
