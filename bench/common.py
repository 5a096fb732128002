"""Helpers of the benchmark scripts: run a pipeline script as a child and measure it."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

from aig_source.emulator import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_GATEWAY_ID,
    DEFAULT_TOKEN,
    LogsApiEmulator,
)

ROOT = Path(__file__).resolve().parent.parent
UNPACED = 1_000_000


def child_env(api: LogsApiEmulator, folder: str, **extra: str) -> Dict[str, str]:
    """The environment of a pipeline script pointed at the emulator, state kept in `folder`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION"))}
    env.update(
        {
            "SOURCES__AIG_SOURCE__API_BASE_URL": api.base_url,
            "SOURCES__AIG_SOURCE__ACCOUNT_ID": DEFAULT_ACCOUNT_ID,
            "SOURCES__AIG_SOURCE__GATEWAY_ID": DEFAULT_GATEWAY_ID,
            "SOURCES__AIG_SOURCE__API_TOKEN": DEFAULT_TOKEN,
            "DLT_DATA_DIR": str(Path(folder) / "dlt"),
        }
    )
    env.update(extra)
    return env


@dataclass
class ChildRun:
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mib: float
    cpu_seconds: float
    """User plus system CPU time of the pipeline process."""


def run_script(
    script: str, args: List[str], env: Dict[str, str], cwd: str, python: str = sys.executable
) -> ChildRun:
    """Runs `pipelines/<script>` with `python` and measures its wall time and its own peak RSS.

    `python` can be the interpreter of a venv with only the project installed (`pip install -e .`,
    as the Quickstart does): this venv's dev and BigQuery extras also bring pandas (through
    dlt[bigquery]) and SQLAlchemy (through bqemulator), which DuckDB and dlt import on first use
    when present (about 0.7 s and 45 MiB a run that a DuckDB install does not pay).
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(
            [python, str(ROOT / "pipelines" / script), *args],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=err,
            text=True,
        )
        # wait4 reports this child's own resource usage (RUSAGE_CHILDREN would be the maximum
        # over every child so far)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise SystemExit(f"{script} failed: {stderr.strip().splitlines()[-1:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return ChildRun(stdout, stderr, seconds, usage.ru_maxrss / 1024, cpu)
