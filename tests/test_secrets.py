"""The Cloudflare token and the service-account key never appear in anything the project writes
or prints: console output, error lines, dlt traces, state (local and in the destination), load
packages, schemas, or anything else in the pipelines folder.

Success and failure paths run the real scripts with distinctive secret values; then every file
they left is searched, decompressing what dlt compresses (gzip load files, the state column).
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any, Iterator, List

import duckdb
import pytest
from dlt.common.versioned_state import decompress_state

from aig_source.emulator import Faults

from .bigquery_emulator import answering
from .conftest import BACKFILL_SCRIPT, PROJECT_ROOT, Workspace

SETUP_SCRIPT = PROJECT_ROOT / "pipelines" / "setup.py"
CLOUDFLARE_TOKEN = "cfat-SECRET-7d3f9a1c5e2b48d6"


def generated_private_key() -> str:
    """A real RSA key (google-auth parses it), distinctive by construction."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def key_fragments(private_key: str) -> List[str]:
    """Pieces of the key's body: finding any of them means the key leaked, in any framing."""
    body = "".join(line for line in private_key.splitlines() if "-----" not in line)
    return [body[i : i + 24] for i in range(0, len(body) - 24, 200)]


def readable_forms(path: Path) -> Iterator[str]:
    data = path.read_bytes()
    yield data.decode("latin-1")
    if data[:2] == b"\x1f\x8b":
        yield gzip.decompress(data).decode("latin-1")


def stored_states(database: Path) -> Iterator[str]:
    with duckdb.connect(str(database), read_only=True) as connection:
        query = "SELECT table_name FROM duckdb_tables()"
        tables = {row[0] for row in connection.execute(query).fetchall()}
        assert "_dlt_pipeline_state" in tables
        query = "SELECT state FROM ai_gateway._dlt_pipeline_state"
        states = [row[0] for row in connection.execute(query).fetchall()]
    assert states
    for state in states:
        yield json.dumps(decompress_state(state), default=str)


def assert_nowhere(secrets: List[str], outputs: List[str], folder: Path) -> int:
    """Searches console output and every file under `folder`; returns how many files it read."""
    for output in outputs:
        for secret in secrets:
            assert secret not in output, "a secret was printed"
    files = [path for path in folder.rglob("*") if path.is_file()]
    for path in files:
        texts = list(readable_forms(path))
        if path.suffix == ".duckdb":
            texts.extend(stored_states(path))
        for text in texts:
            for secret in secrets:
                assert secret not in text, f"a secret was written to {path}"
    return len(files)


def test_cloudflare_token_never_printed_or_stored(workspace: Workspace) -> None:
    api = workspace.api
    api.add_token(CLOUDFLARE_TOKEN)
    api.generate(600, hours=3)
    env = workspace.env(SOURCES__AIG_SOURCE__API_TOKEN=CLOUDFLARE_TOKEN)
    outputs: List[str] = []

    def run(*args: str, **kwargs: Any) -> int:
        result = workspace.script(*args, env=kwargs.pop("env", env), **kwargs)
        outputs.extend([result.stdout, result.stderr])
        return result.returncode

    assert run() == 0
    assert run(script=BACKFILL_SCRIPT) == 0
    assert run("--check", script=SETUP_SCRIPT) == 0
    # failure paths: a rejected token (a variant of the real one), an outage, a rate limit block
    assert run(env=workspace.env(SOURCES__AIG_SOURCE__API_TOKEN=CLOUDFLARE_TOKEN + "x")) == 1
    api.faults = Faults(outage_status=503)
    assert run() == 1
    api.faults = Faults()
    info = workspace.dlt_info()
    outputs.extend([info.stdout, info.stderr])
    assert "aig_logs" in info.stdout

    scanned = assert_nowhere([CLOUDFLARE_TOKEN], outputs, workspace.root)
    assert scanned > 20, "the pipelines folder, load packages and the database were searched"
    assert len(workspace.ids()) == 600


@pytest.fixture
def token_endpoint() -> Iterator[str]:
    """Google's token endpoint refusing the key, as it does for a deleted service account."""
    refused = {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
    with answering(400, refused) as url:
        yield f"{url}/token"


def test_service_account_key_never_printed_or_stored(
    workspace: Workspace, token_endpoint: str
) -> None:
    pytest.importorskip("google.cloud.bigquery", reason="needs the bigquery extra")
    private_key = generated_private_key()
    key_id = "a3f1c9e7SECRETKEYID55d0b2e4c6f8a1b3c5d7e9f0"
    service_account = {
        "type": "service_account",
        "project_id": "aig-secret-scan",
        "private_key_id": key_id,
        "private_key": private_key,
        "client_email": "loader@aig-secret-scan.iam.gserviceaccount.com",
        "client_id": "100000000000000000001",
        "token_uri": token_endpoint,
    }
    workspace.api.add_token(CLOUDFLARE_TOKEN)
    workspace.api.generate(50, hours=0.5)
    env = workspace.env(
        SOURCES__AIG_SOURCE__API_TOKEN=CLOUDFLARE_TOKEN,
        DESTINATION_TYPE="bigquery",
        DESTINATION__BIGQUERY__CREDENTIALS=json.dumps(service_account),
        # any BigQuery call stays on loopback; the token exchange fails before one is made
        BIGQUERY_EMULATOR_HOST=token_endpoint.rsplit("/", 1)[0],
    )

    forward = workspace.script(env=env)
    check = workspace.script("--check", script=SETUP_SCRIPT, env=env)

    assert forward.returncode == 1 and check.returncode == 1
    refused = "Google refused the BigQuery credentials (invalid_grant: Invalid JWT Signature.)"
    assert forward.stderr.strip().splitlines()[-1].startswith(f"error: {refused}")
    assert refused in check.stdout
    secrets = [CLOUDFLARE_TOKEN, key_id, *key_fragments(private_key)]
    outputs = [forward.stdout, forward.stderr, check.stdout, check.stderr]
    assert_nowhere(secrets, outputs, workspace.root)


def test_the_search_finds_a_planted_secret(tmp_path: Path) -> None:
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "load.jsonl.gz").write_bytes(
        gzip.compress(f'{{"auth": "Bearer {CLOUDFLARE_TOKEN}"}}'.encode())
    )
    with pytest.raises(AssertionError, match="written to"):
        assert_nowhere([CLOUDFLARE_TOKEN], [], tmp_path)
    with pytest.raises(AssertionError, match="printed"):
        assert_nowhere([CLOUDFLARE_TOKEN], [f"token={CLOUDFLARE_TOKEN}"], tmp_path / "nested")


def test_example_secrets_hold_placeholders_only_and_real_secrets_are_ignored() -> None:
    import tomlkit

    example = (PROJECT_ROOT / ".dlt" / "example.secrets.toml").read_text()
    # the commented-out settings count too: uncomment every TOML-shaped line
    setting = re.compile(r'^#?\s*(\[[\w.]+\]|\w+ = ".*")')
    lines = [m.group(1) for m in map(setting.match, example.splitlines()) if m is not None]
    values = [str(v) for v in _leaves(tomlkit.parse("\n".join(lines)))]
    assert len(values) == 8 and all(v.startswith("<") and v.endswith(">") for v in values), values
    ignored = (PROJECT_ROOT / ".gitignore").read_text().splitlines()
    assert ".dlt/secrets.toml" in ignored


def _leaves(table: Any) -> Iterator[Any]:
    for value in table.values():
        if hasattr(value, "values"):
            yield from _leaves(value)
        else:
            yield value
