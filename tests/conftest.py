"""Shared fixtures: an emulator per test, isolated pipeline folders and DuckDB files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import dlt
import duckdb
import pytest

from aig_source import destinations
from aig_source.emulator import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_GATEWAY_ID,
    DEFAULT_TOKEN,
    LogsApiEmulator,
)
from aig_source.jobs.forward import ForwardSummary, run_forward
from aig_source.ratelimit import forget_shared_pacer
from aig_source.runner import make_pipeline

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FORWARD_SCRIPT = PROJECT_ROOT / "pipelines" / "forward.py"
BACKFILL_SCRIPT = PROJECT_ROOT / "pipelines" / "backfill.py"
REPORT_SCRIPT = PROJECT_ROOT / "pipelines" / "report.py"
UNPACED = 1_000_000


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite tests/golden/*.sql from what dlt generates now (review the diff)",
    )


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries stay real but quick; no test inherits a developer's Cloudflare settings."""
    for name in list(os.environ):
        if name.startswith(("SOURCES__", "DESTINATION", "RUNTIME__", "DLT_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RUNTIME__REQUEST_MAX_ATTEMPTS", "6")
    monkeypatch.setenv("RUNTIME__REQUEST_BACKOFF_FACTOR", "0.05")
    monkeypatch.setenv("RUNTIME__REQUEST_MAX_RETRY_DELAY", "3")
    monkeypatch.setenv("RUNTIME__REQUEST_TIMEOUT", "5")
    # each test's emulator stands for a new token: no pause or history carries over
    forget_shared_pacer()


pytest_plugins = ["aig_source.emulator.pytest_plugin", "tests.bigquery_emulator"]


@pytest.fixture
def api(logs_api: LogsApiEmulator) -> LogsApiEmulator:
    return logs_api


@dataclass
class Workspace:
    """One test's pipelines folder and DuckDB file."""

    root: Path
    api: LogsApiEmulator

    @property
    def database(self) -> Path:
        return self.root / "aig_logs.duckdb"

    def pipeline(self, pipelines_folder: str = "pipelines") -> dlt.Pipeline:
        return make_pipeline(
            destination=destinations.duckdb(str(self.database)),
            pipelines_dir=str(self.root / pipelines_folder),
        )

    def source_args(self, **overrides: Any) -> Dict[str, Any]:
        args: Dict[str, Any] = {
            "api_base_url": self.api.base_url,
            "account_id": DEFAULT_ACCOUNT_ID,
            "gateway_id": DEFAULT_GATEWAY_ID,
            "api_token": DEFAULT_TOKEN,
            # the pacer is process-wide: tests that are not about pacing must not share a budget
            "rate_limit_requests": UNPACED,
        }
        args.update(overrides)
        return args

    def run(
        self, pipelines_folder: str = "pipelines", max_pages: Optional[int] = None, **overrides: Any
    ) -> ForwardSummary:
        return run_forward(
            self.pipeline(pipelines_folder), max_pages=max_pages, **self.source_args(**overrides)
        )

    def run_until_caught_up(self, max_runs: int = 50, **kwargs: Any) -> List[ForwardSummary]:
        summaries = []
        for _ in range(max_runs):
            summaries.append(self.run(**kwargs))
            if not summaries[-1].page_budget_reached:
                return summaries
        raise AssertionError(f"not caught up after {max_runs} runs")

    def query(self, sql: str) -> List[tuple]:
        with duckdb.connect(str(self.database), read_only=True) as connection:
            return connection.execute(sql).fetchall()

    def query_write(self, sql: str) -> None:
        with duckdb.connect(str(self.database)) as connection:
            connection.execute(sql)

    def ids(self) -> List[str]:
        return [row[0] for row in self.query("SELECT id FROM ai_gateway.aig_logs")]

    def env(self, **extra: str) -> Dict[str, str]:
        """Environment of a pipeline script run in this workspace, configured by env vars."""
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION"))
        }
        env.update(
            {
                "SOURCES__AIG_SOURCE__API_BASE_URL": self.api.base_url,
                "SOURCES__AIG_SOURCE__ACCOUNT_ID": DEFAULT_ACCOUNT_ID,
                "SOURCES__AIG_SOURCE__GATEWAY_ID": DEFAULT_GATEWAY_ID,
                "SOURCES__AIG_SOURCE__API_TOKEN": DEFAULT_TOKEN,
                "SOURCES__AIG_SOURCE__RATE_LIMIT_REQUESTS": str(UNPACED),
                "DLT_DATA_DIR": str(self.root / "dlt_data"),
                "DESTINATION__DUCKDB__CREDENTIALS": str(self.database),
            }
        )
        env.update(extra)
        return env

    def script(
        self,
        *args: str,
        env: Optional[Dict[str, str]] = None,
        script: Path = FORWARD_SCRIPT,
        timeout: float = 120,
        input: Optional[str] = None,
    ) -> subprocess.CompletedProcess:
        """Runs a pipeline script from this empty folder (so no .dlt of the project applies)."""
        return run_python(
            str(script),
            *args,
            cwd=self.root,
            env=self.env() if env is None else env,
            timeout=timeout,
            input=input,
        )

    def start(
        self, *args: str, script: Path = FORWARD_SCRIPT, env: Optional[Dict[str, str]] = None
    ) -> subprocess.Popen:
        """Starts a pipeline script in the background, output discarded."""
        return subprocess.Popen(
            [sys.executable, str(script), *args],
            cwd=self.root,
            env=self.env() if env is None else env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill_after(self, process: subprocess.Popen, requests: int) -> None:
        """SIGKILLs `process` once the emulator has served `requests` more list requests than
        now (or after 60 s), and waits for it."""
        target = len(self.api.logs_requests()) + requests
        deadline = time.monotonic() + 60
        while len(self.api.logs_requests()) < target and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    def dlt_info(self, verbose: bool = True) -> subprocess.CompletedProcess:
        """`dlt pipeline aig_logs info [-v]` over the scripts' pipelines folder."""
        folder = str(self.root / "dlt_data" / "pipelines")
        return run_python(
            "-m",
            "dlt",
            "pipeline",
            "--pipelines-dir",
            folder,
            "aig_logs",
            "info",
            *(["-v"] if verbose else []),
            cwd=self.root,
            env=self.env(),
        )


def run_python(
    *args: str, cwd: Path, env: Dict[str, str], timeout: float = 120, input: Optional[str] = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )


def run_demo(script: Path, folder: Path) -> subprocess.CompletedProcess:
    """A script's --demo from an empty folder with no Cloudflare settings at all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION"))}
    env["DLT_DATA_DIR"] = str(folder / "dlt_data")
    return run_python(str(script), "--demo", cwd=folder, env=env, timeout=300)


@pytest.fixture
def workspace(tmp_path: Path, api: LogsApiEmulator) -> Workspace:
    return Workspace(tmp_path, api)


def stored_ids(api: LogsApiEmulator) -> List[str]:
    """Ids of every log the emulated gateway holds, visible or not."""
    return [log.id for log in api.gateway().store.snapshot()]


def merge_statements(pipeline: dlt.Pipeline) -> List[str]:
    """The merge SQL dlt executed for the table in the last load package."""
    load_id = pipeline.list_completed_load_packages()[-1]
    package = pipeline.get_load_package_info(load_id)
    jobs = package.jobs["completed_jobs"]
    sql_files = [job.file_path for job in jobs if job.job_file_info.file_format == "sql"]
    return [line for path in sql_files for line in Path(path).read_text().splitlines()]
