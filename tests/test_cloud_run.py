"""The Cloud Run job (`deploy/cloud-run`), as far as this machine allows: no Docker engine and no
Google Cloud here, so the image is not built. What is checked: the Dockerfile copies only files
that exist and bakes in no secret; the script it runs, run from the project root as in the
image, loads against the emulator and fails as the jobs do; and the deploy commands keep one
execution from overlapping the next."""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path
from typing import List

import pytest

from .conftest import PROJECT_ROOT, Workspace, run_python

FOLDER = PROJECT_ROOT / "deploy" / "cloud-run"


def instructions() -> List[List[str]]:
    text = (FOLDER / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [line.split(None, 1) for line in lines if line and not line.startswith("#")]


def test_the_image_copies_what_exists_and_holds_no_secret() -> None:
    steps = instructions()
    assert steps[0] == ["FROM", "python:3.11-slim"]
    copied = [shlex.split(args)[:-1] for kind, args in steps if kind == "COPY"]
    for sources in copied:
        for source in sources:
            assert (PROJECT_ROOT / source).exists(), source
    assert ["ENTRYPOINT", '["sh", "run.sh"]'] in steps
    text = (FOLDER / "Dockerfile").read_text()
    for secret in ("API_TOKEN", "CREDENTIALS", "secrets.toml"):
        assert secret not in text
    install = next(args for kind, args in steps if kind == "RUN")
    assert 'uv pip install --system --no-cache ".[bigquery]"' in install


def run_sh(workspace: Workspace, **env: str) -> object:
    """`run.sh` as the image runs it: from the project root, configured by the environment."""
    environment = workspace.env(**env)
    # the image's `python` is the one with the project installed: here, this test's
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment['PATH']}"
    return run_python(
        "-c",
        "import subprocess, sys; sys.exit(subprocess.call(['sh', 'deploy/cloud-run/run.sh']))",
        cwd=PROJECT_ROOT,
        env=environment,
        timeout=300,
    )


@pytest.mark.slow
def test_one_execution_loads_new_logs_then_backfills(workspace: Workspace) -> None:
    workspace.api.generate(400, hours=30)

    result = run_sh(workspace, BACKFILL_MINUTES="1")

    assert result.returncode == 0, result.stderr  # type: ignore[attr-defined]
    lines = result.stdout.splitlines()  # type: ignore[attr-defined]
    assert lines[0].startswith("aig_logs forward: ") and lines[1].startswith("aig_logs backfill: ")
    assert "done: reached the gateway's oldest log" in lines[1]
    ids = workspace.ids()
    assert len(ids) == len(set(ids)) == 400


def test_a_failing_forward_run_fails_the_execution(workspace: Workspace) -> None:
    result = run_sh(workspace, SOURCES__AIG_SOURCE__API_TOKEN="wrong-token")

    assert result.returncode == 1  # type: ignore[attr-defined]
    assert "wrong-token" not in result.stdout + result.stderr  # type: ignore[attr-defined]
    assert result.stderr.count("error: ") == 2  # type: ignore[attr-defined]


def test_the_deploy_commands_never_let_two_executions_overlap() -> None:
    deploy = (FOLDER / "deploy.sh").read_text().replace("\\\n", " ")
    job = next(line for line in deploy.splitlines() if "gcloud run jobs create" in line)
    scheduler = next(line for line in deploy.splitlines() if "gcloud scheduler jobs create" in line)
    timeout = re.search(r"--task-timeout=(\d+)s", job)
    cron = re.search(r'--schedule="\*/(\d+) \* \* \* \*"', scheduler)
    assert timeout and cron
    assert int(timeout.group(1)) < int(cron.group(1)) * 60
    for flag in ("--tasks=1", "--parallelism=1", "--max-retries=0"):
        assert flag in job
    assert "--max-retry-attempts=0" in scheduler
    assert "--set-secrets=" in job and "API_TOKEN=" not in job.split("--set-secrets=")[0]
    backfill = re.search(r"BACKFILL_MINUTES=(\d+)", job)
    assert backfill and int(backfill.group(1)) * 60 < int(timeout.group(1))


def test_the_scripts_are_valid_shell() -> None:
    import subprocess

    for script in ("run.sh", "deploy.sh"):
        assert subprocess.run(["sh", "-n", str(FOLDER / script)]).returncode == 0


def test_deploy_folder_is_where_the_readme_says(tmp_path: Path) -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert "deploy/cloud-run/deploy.sh" in readme and "deploy/cloud-run/Dockerfile" in readme
