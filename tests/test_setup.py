"""pipelines/setup.py: writing the .dlt files and the checks before a first run."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Dict

import pytest
import tomlkit

from aig_source.emulator import DEFAULT_ACCOUNT_ID, DEFAULT_GATEWAY_ID, DEFAULT_TOKEN
from aig_source.preflight import (
    GatewayLoad,
    check_destination,
    eviction_outlook,
    log_settings_checks,
)

from .bigquery_emulator import EmulatedBigQuery
from .conftest import PROJECT_ROOT, Workspace

SETUP_SCRIPT = PROJECT_ROOT / "pipelines" / "setup.py"


def check(workspace: Workspace, **env: str) -> tuple:
    result = workspace.script("--check", script=SETUP_SCRIPT, env=workspace.env(**env))
    return result.returncode, result.stdout.splitlines(), result.stdout + result.stderr


def line_about(lines: list, subject: str) -> str:
    return next(line for line in lines if subject in line)


def test_check_passes_on_a_healthy_gateway(workspace: Workspace) -> None:
    workspace.api.generate(500, hours=30)

    code, lines, _ = check(workspace)

    assert code == 0
    assert line_about(lines, "Cloudflare API token").startswith("OK")
    assert "500 stored" in line_about(lines, "Account and gateway")
    assert line_about(lines, "Destination (duckdb)").startswith("OK")
    assert lines[-1].startswith("All checks passed")


def test_check_reports_a_gateway_that_does_not_collect_and_evicts(workspace: Workspace) -> None:
    api = workspace.api
    api.add_gateway("support-bot", capacity=20_000, strategy="DELETE_OLDEST", collect_logs=False)
    api.generate(20_000, hours=24 * 3, gateway_id="support-bot")

    code, lines, _ = check(workspace, SOURCES__AIG_SOURCE__GATEWAY_ID="support-bot")

    assert code == 1
    collect = line_about(lines, "Gateway log settings")
    assert collect.startswith("FAIL") and "Collect logs" in collect
    storage = line_about(lines, "Log storage")
    assert storage.startswith("WARN") and "20,000 of 20,000 logs stored" in storage
    assert "will be evicted before it reaches them" in storage
    assert "check(s) failed" in lines[-1]


@pytest.mark.parametrize(
    ("env", "subject", "names"),
    [
        ({"SOURCES__AIG_SOURCE__API_TOKEN": "wrong-token-5d1e"}, "API token", "API_TOKEN"),
        ({"SOURCES__AIG_SOURCE__GATEWAY_ID": "no-such-gateway"}, "gateway", "GATEWAY_ID"),
        ({"SOURCES__AIG_SOURCE__ACCOUNT_ID": "f" * 32}, "gateway", "ACCOUNT_ID"),
    ],
)
def test_check_failures_name_the_setting(
    workspace: Workspace, env: Dict[str, str], subject: str, names: str
) -> None:
    code, lines, output = check(workspace, **env)

    assert code == 1
    failing = [line for line in lines if line.startswith("FAIL")]
    assert len(failing) == 1 and subject in failing[0] and names in failing[0]
    assert "wrong-token-5d1e" not in output and DEFAULT_TOKEN not in output


def test_check_without_configuration_names_what_to_set(workspace: Workspace) -> None:
    env = workspace.env()
    for name in ("SOURCES__AIG_SOURCE__ACCOUNT_ID", "SOURCES__AIG_SOURCE__API_TOKEN"):
        env.pop(name)

    result = workspace.script("--check", script=SETUP_SCRIPT, env=env)

    assert result.returncode == 1
    line = line_about(result.stdout.splitlines(), "Configuration")
    assert line.startswith("FAIL") and "SOURCES__AIG_SOURCE__ACCOUNT_ID" in line
    assert "SOURCES__AIG_SOURCE__API_TOKEN" in line


def test_setup_writes_the_files_and_a_forward_run_uses_them(workspace: Workspace) -> None:
    workspace.api.generate(200, hours=0.5)
    env = {k: v for k, v in workspace.env().items() if not k.startswith("SOURCES__")}

    result = workspace.script(
        "--non-interactive",
        "--account-id",
        DEFAULT_ACCOUNT_ID,
        "--gateway-id",
        DEFAULT_GATEWAY_ID,
        "--api-token-stdin",
        "--destination",
        "duckdb",
        "--api-base-url",
        workspace.api.base_url,
        script=SETUP_SCRIPT,
        env=env,
        input=DEFAULT_TOKEN + "\n",
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert DEFAULT_TOKEN not in result.stdout + result.stderr
    config = tomlkit.parse((workspace.root / ".dlt" / "config.toml").read_text())
    assert config["sources"]["aig_source"]["gateway_id"] == DEFAULT_GATEWAY_ID  # type: ignore[index]
    assert config["destination_type"] == "aig_source.destinations.duckdb"
    secrets_file = workspace.root / ".dlt" / "secrets.toml"
    secrets = tomlkit.parse(secrets_file.read_text())
    assert secrets["sources"]["aig_source"]["api_token"] == DEFAULT_TOKEN  # type: ignore[index]
    assert DEFAULT_TOKEN not in (workspace.root / ".dlt" / "config.toml").read_text()
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600

    run = workspace.script(env=env)

    assert run.returncode == 0, run.stderr
    assert len(workspace.ids()) == 200


def test_eviction_outlook_figures() -> None:
    # 100k stored of 100k, 1 log/s: every second of backfill loses one of the oldest logs
    seconds, lost = eviction_outlook(100_000, 100_000, 1.0, 99.0)
    assert seconds == pytest.approx(1000) and lost == 1000
    # room for 20 days of logs: the backfill finishes long before any eviction
    assert eviction_outlook(1_000_000, 100_000, 0.5, 133.0)[1] == 0


def test_stop_inserting_when_full_fails() -> None:
    gateway = {
        "collect_logs": True,
        "log_management": 10_000,
        "log_management_strategy": "STOP_INSERTING",
    }
    results = log_settings_checks(gateway, GatewayLoad(stored=10_000, last_day=5_000), 133.0)
    assert [r.status for r in results] == ["fail"]
    assert "drops new logs" in results[0].detail


def test_bigquery_destination_check_creates_both_datasets(
    bigquery: EmulatedBigQuery, tmp_path: Path
) -> None:
    pipeline = bigquery.pipeline(tmp_path)

    first = check_destination(pipeline)
    second = check_destination(pipeline)

    assert first[0].status == "ok", first[0].detail
    assert f"created aig-emulated.{pipeline.dataset_name} in US" in first[0].detail
    assert f"{pipeline.dataset_name}_staging" in first[0].detail
    assert "exists" in second[0].detail and "query jobs run" in second[0].detail


def test_bigquery_destination_check_names_the_roles(
    bigquery_denying_access: EmulatedBigQuery, tmp_path: Path
) -> None:
    results = check_destination(bigquery_denying_access.pipeline(tmp_path))

    assert results[0].failed
    assert "BigQuery Data Editor" in results[0].detail and "BigQuery Job User" in results[0].detail


def test_interactive_setup_asks_writes_and_checks(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    import getpass
    import importlib.util
    import io

    workspace.api.generate(20, hours=0.5)
    spec = importlib.util.spec_from_file_location("setup_script", SETUP_SCRIPT)
    assert spec is not None and spec.loader is not None
    setup_script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup_script)
    answers = iter([DEFAULT_ACCOUNT_ID, DEFAULT_GATEWAY_ID, ""])  # "" keeps duckdb, the default
    prompts: list = []

    def answer(prompt: str) -> str:
        prompts.append(prompt)
        return next(answers)

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("builtins.input", answer)
    monkeypatch.setattr(getpass, "getpass", lambda prompt: prompts.append(prompt) or DEFAULT_TOKEN)
    monkeypatch.setattr("sys.stdin", Terminal())
    monkeypatch.chdir(workspace.root)
    monkeypatch.setenv("DLT_DATA_DIR", str(workspace.root / "dlt_data"))
    for name in list(workspace.env()):
        if name.startswith("SOURCES__"):
            monkeypatch.delenv(name, raising=False)

    code = setup_script.main(["--api-base-url", workspace.api.base_url])

    assert code == 0
    assert [p.split(" [")[0].rstrip(": ") for p in prompts] == [
        "Cloudflare account id",
        "AI Gateway id",
        "Cloudflare API token with AI Gateway Read",
        "Destination, duckdb or bigquery",
    ]
    config = (workspace.root / ".dlt" / "config.toml").read_text()
    assert DEFAULT_GATEWAY_ID in config and DEFAULT_TOKEN not in config
    assert DEFAULT_TOKEN in (workspace.root / ".dlt" / "secrets.toml").read_text()


def test_check_accepts_an_account_owned_token(workspace: Workspace) -> None:
    # account-owned tokens fail /user/tokens/verify and verify under their account instead
    workspace.api.add_token("account-owned-token-3c8e", account_owned=True)
    workspace.api.generate(10, hours=0.5)

    code, lines, output = check(
        workspace, SOURCES__AIG_SOURCE__API_TOKEN="account-owned-token-3c8e"
    )

    assert code == 0, output
    assert line_about(lines, "Cloudflare API token").startswith("OK")
    verified = [r.path for r in workspace.api.requests if r.path.endswith("/tokens/verify")]
    assert verified == [
        "/client/v4/user/tokens/verify",
        f"/client/v4/accounts/{DEFAULT_ACCOUNT_ID}/tokens/verify",
    ]


def test_check_with_every_gateway_lists_them_and_checks_each(workspace: Workspace) -> None:
    api = workspace.api
    api.add_gateway("support-bot", collect_logs=False)
    api.generate(30, hours=2)
    api.generate(10, hours=2, gateway_id="support-bot")

    code, lines, _ = check(workspace, SOURCES__AIG_SOURCE__GATEWAY_ID="*")

    assert code == 1
    found = line_about(lines, "Gateways")
    assert found.startswith("OK") and "all 2 gateways" in found
    assert "demo-gateway, support-bot" in found
    assert "30 stored" in line_about(lines, "Account and gateway (demo-gateway)")
    assert "10 stored" in line_about(lines, "Account and gateway (support-bot)")
    assert line_about(lines, "Gateway log settings (support-bot)").startswith("FAIL")
