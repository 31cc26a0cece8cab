"""``rm -f`` and ``stop`` of a running container under CPU load: no stall (issue 10).

They SIGKILL the container through the cgroup (freeze, signal, thaw); the init dies as soon as
it is thawed and its monitor deletes the container, cgroup included, while the kill still
polled freezer.state: ~half the tries under load waited out FREEZE_TIMEOUT (5 s).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_engine_run import NOTHING, leftovers

from helpers.engine import corral

TRIES = 20
LIMIT = 2.5  # seconds; each try takes ~0.5 s under this load, a stall 5 s or more


@pytest.fixture
def cpu_load() -> Iterator[None]:
    """Two busy loops per CPU, so the killer and the container's monitor race for CPUs."""
    busy = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(2 * (os.cpu_count() or 1))
    ]
    try:
        yield
    finally:
        for proc in busy:
            proc.kill()
        for proc in busy:
            proc.wait()


def test_rm_force_and_stop_do_not_stall_under_load(root: Path, cpu_load: None) -> None:
    took = []
    for i in range(TRIES):
        name = f"c{i}"
        corral(root, "run", "-d", "--name", name, "busybox", "sleep", "60")
        started = time.monotonic()
        if i % 2:
            corral(root, "stop", "-t", "0", name)  # sleep as PID 1 ignores SIGTERM: SIGKILL
            took.append(("stop", time.monotonic() - started))
            corral(root, "rm", name)
        else:
            corral(root, "rm", "-f", name)
            took.append(("rm -f", time.monotonic() - started))
    slow = [(verb, round(seconds, 2)) for verb, seconds in took if seconds >= LIMIT]
    assert slow == [], took
    assert leftovers(root) == NOTHING


def test_rm_force_kills_without_the_stop_signal(tmp_path: Path) -> None:
    """docker's ``rm -f`` sends SIGKILL, not the stop signal: a TERM trap never runs."""
    root = tmp_path / "root"
    out = tmp_path / "out"
    out.mkdir()
    trap = 'trap "echo bye > /out/bye; exit 0" TERM; echo up > /out/up; while :; do sleep 0.1; done'
    corral(root, "run", "-d", "--name", "trapper", "-v", f"{out}:/out", "busybox",
           "sh", "-c", trap)  # fmt: skip
    deadline = time.monotonic() + 15
    while not (out / "up").exists():
        assert time.monotonic() < deadline, "the container did not start"
        time.sleep(0.05)
    corral(root, "rm", "-f", "trapper")
    assert not (out / "bye").exists()
    assert leftovers(root) == NOTHING
