"""Benchmark of one scheduled forward job, step by step, as a GitHub runner runs it: a fresh
clone, a fresh virtual environment, the install (the package cache warm), then `forward.py`
loading the logs of the last 5 minutes from the emulator. Runs the install both ways: pip (what
the workflows did, with `setup-python`'s pip cache) and uv (what they do now). A runner adds
`actions/checkout` and `actions/setup-python` (a few seconds each) and loads into BigQuery
instead of DuckDB; neither can be measured here.

Run: .venv/bin/python -m bench.job
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from aig_source.emulator import LogsApiEmulator
from bench.common import ROOT, UNPACED, child_env

INSTALLS = {
    "pip": ["{python} -m pip install -q '.[bigquery]'"],
    "uv": [
        "{python} -m pip install -q 'uv>=0.9,<1'",
        "{venv}/bin/uv pip install -q --python {python} '.[bigquery]'",
    ],
}


def timed(command: str, cwd: str, env: Dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, shell=True, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def job(installer: str, api: LogsApiEmulator, folder: Path) -> List[str]:
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    checkout = folder / f"checkout_{installer}"
    venv = folder / f"venv_{installer}"
    python = venv / "bin" / "python"
    steps = {
        "clone": timed(f"git clone -q {ROOT} {checkout}", str(folder), env),
        "venv": timed(f"python3 -m venv {venv}", str(folder), env),
    }
    steps["install"] = sum(
        timed(step.format(python=python, venv=venv), str(checkout), env)
        for step in INSTALLS[installer]
    )
    run_env = child_env(
        api,
        str(folder / f"state_{installer}"),
        DESTINATION__DUCKDB__CREDENTIALS=str(folder / f"{installer}.duckdb"),
        SOURCES__AIG_SOURCE__RATE_LIMIT_REQUESTS=str(UNPACED),
        SOURCES__AIG_SOURCE__FORWARD_START="5m",
    )
    steps["forward.py"] = timed(f"{python} pipelines/forward.py", str(checkout), run_env)
    total = sum(steps.values())
    parts = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in steps.items())
    return [f"{installer}: {parts}; total {total:.1f} s ({int(-(-total // 60))} billed minutes)"]


def main() -> None:
    with tempfile.TemporaryDirectory() as folder, LogsApiEmulator() as api:
        api.generate(3_500, hours=5 / 60)  # 5 minutes of 1M logs a day
        for installer in INSTALLS:
            for line in job(installer, api, Path(folder)):
                print(line, flush=True)


if __name__ == "__main__":
    main()
