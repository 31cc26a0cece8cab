"""Fixtures the unit tests share (the session-wide ones are in tests/conftest.py)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live process (``sleep 60``) whose pid a test can put in a fake cgroup; killed after."""
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()
