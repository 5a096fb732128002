"""pytest fixtures for testing against the Logs API emulator.

Enable with `pytest_plugins = ["aig_source.emulator.pytest_plugin"]` in a `conftest.py`.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from .server import LogsApiEmulator


@pytest.fixture
def logs_api() -> Iterator[LogsApiEmulator]:
    """A started emulator on 127.0.0.1 (ephemeral port), stopped after the test."""
    with LogsApiEmulator(seed=11) as emulator:
        yield emulator
