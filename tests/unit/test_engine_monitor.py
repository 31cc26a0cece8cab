"""The monitor's pure parts: the waiter's code, json-file logs and rotation, docker's flag
grammar, restart and health rules."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from corral.engine import views
from corral.engine.containers.logs import read_entries
from corral.engine.monitor import health, waiter
from corral.engine.monitor.config import (
    Healthcheck,
    MonitorConfig,
    parse_duration,
    parse_restart,
    restart_delay,
    should_restart,
)
from corral.engine.monitor.logfile import LogWriter
from corral.errors import UsageError

SOURCES = Path(waiter.__file__).parent


@pytest.mark.parametrize(("machine", "gas", "objcopy"), [
    ("x86_64", "as", "objcopy"),
    ("aarch64", "aarch64-linux-gnu-as", "aarch64-linux-gnu-objcopy"),
])  # fmt: skip
def test_the_code_is_what_its_source_assembles_to(
    machine: str, gas: str, objcopy: str, tmp_path: Path
) -> None:
    if os.uname().machine != "x86_64":
        pytest.skip("the assemblers are named for an x86_64 host")
    obj, raw = tmp_path / "w.o", tmp_path / "w.bin"
    subprocess.run([gas, "-o", obj, SOURCES / f"waiter-{machine}.s"], check=True)
    subprocess.run([objcopy, "-O", "binary", "-j", ".text", obj, raw], check=True)
    elf = waiter.waiter_elf(machine)
    assert elf is not None and elf[120:] == raw.read_bytes()


def test_the_waiter_records_its_childs_exit_and_waits_for_the_release(tmp_path: Path) -> None:
    exit_file = tmp_path / "exit"
    fd = os.open(exit_file, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    child_r, child_w = os.pipe()
    # what it holds for the container's life (a reserved port's socket, the shortcut's map)
    import socket

    held = [socket.socket(), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)]
    links = [os.readlink(f"/proc/self/fd/{s.fileno()}") for s in held]
    pid = os.fork()
    if pid == 0:  # pragma: no cover - becomes the waiter
        grandchild = os.fork()
        if grandchild == 0:
            os.write(out_w, b"hello\n")
            os._exit(7)
        os.write(child_w, str(grandchild).encode())
        waiter.become_waiter(fd, out_r, err_r, [s.fileno() for s in held])
    for x in (fd, out_w, err_w, child_w, out_r, err_r):
        os.close(x)
    for s in held:
        s.close()
    child = int(os.read(child_r, 32))
    os.close(child_r)
    import time

    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}/cmdline").read_bytes() != b"corral-waiter\0":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert sorted(int(n) for n in os.listdir(f"/proc/{pid}/fd")) == list(range(10))
    assert [os.readlink(f"/proc/{pid}/fd/{n}") for n in (8, 9)] == links
    logs = os.open(f"/proc/{pid}/fd/4", os.O_RDONLY)
    assert os.read(logs, 64) == b"hello\n"
    os.close(logs)
    release = os.open(f"/proc/{pid}/fd/7", os.O_WRONLY)
    time.sleep(0.2)
    assert waiter.exit_status(exit_file.read_bytes(), child) is not None  # recorded, waiting
    os.write(release, b"x")
    os.close(release)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    assert waiter.exit_code(waiter.exit_status(exit_file.read_bytes(), child) or 0) == 7


def test_log_lines_streams_partial_lines_and_rotation(tmp_path: Path) -> None:
    path = str(tmp_path / "container.log")
    log = LogWriter(path, max_size=300, max_file=3)
    log.write("stdout", b"one\ntw")
    log.write("stderr", b"err\n")
    log.write("stdout", b"o\n")
    log.write("stdout", b"no newline")
    log.close()
    entries = [(e.stream, e.data) for e in read_entries(path)]
    assert entries == [("stdout", b"one\n"), ("stderr", b"err\n"), ("stdout", b"two\n"),
                       ("stdout", b"no newline")]  # fmt: skip
    first = json.loads(Path(path + ".1").read_text().splitlines()[0])
    assert set(first) == {"log", "stream", "time"} and first["time"].endswith("Z")
    assert [e.data for e in read_entries(path, tail=2)] == [b"two\n", b"no newline"]
    log = LogWriter(path, max_size=200, max_file=2)
    for i in range(20):
        log.write("stdout", b"line %d\n" % i)
    log.close()
    assert not os.path.exists(path + ".2")
    assert [e.data for e in read_entries(path, tail=1)] == [b"line 19\n"]


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30.0), ("1m30s", 90.0), ("500ms", 0.5), ("2h", 7200.0), ("0", 0.0), ("1.5s", 1.5),
])  # fmt: skip
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text, "--health-interval") == seconds


@pytest.mark.parametrize("text", ["", "10", "1x", "s", "1m 2s"])
def test_bad_durations_name_the_flag(text: str) -> None:
    with pytest.raises(UsageError, match="--health-interval"):
        parse_duration(text, "--health-interval")


def test_restart_policies() -> None:
    assert parse_restart("on-failure:3") == ("on-failure", 3)
    assert parse_restart("always") == ("always", 0)
    for bad in ("sometimes", "always:3", "on-failure:x"):
        with pytest.raises(UsageError, match="--restart"):
            parse_restart(bad)
    on_failure = MonitorConfig(restart="on-failure", max_retries=3)
    assert [should_restart(on_failure, 1, n, False) for n in range(4)] == [True] * 3 + [False]
    assert not should_restart(on_failure, 0, 0, False)
    assert should_restart(MonitorConfig(restart="always"), 0, 50, False)
    assert not should_restart(MonitorConfig(restart="always"), 1, 0, True)  # stopped by the user
    assert [restart_delay(n, 1.0) for n in range(3)] == [0.1, 0.2, 0.4]
    assert restart_delay(5, 60.0) == 0.1


def test_health_transitions() -> None:
    check = Healthcheck(["CMD-SHELL", "true"], retries=2)
    fail: health.Probe = {"Start": "a", "End": "b", "ExitCode": 1, "Output": "x" * 5000}
    ok: health.Probe = {**fail, "ExitCode": 0, "Output": ""}
    now = health.apply(health.initial(), fail, check, in_start_period=True)
    assert (now["Status"], now["FailingStreak"]) == ("starting", 0)
    now = health.apply(now, fail, check, in_start_period=False)
    assert (now["Status"], now["FailingStreak"]) == ("starting", 1)
    now = health.apply(now, fail, check, in_start_period=False)
    assert (now["Status"], now["FailingStreak"]) == ("unhealthy", 2)
    assert len(now["Log"][-1]["Output"]) == 4096
    now = health.apply(now, ok, check, in_start_period=False)
    assert (now["Status"], now["FailingStreak"]) == ("healthy", 0)
    for _ in range(10):
        now = health.apply(now, ok, check, in_start_period=False)
    assert len(now["Log"]) == 5
    assert views.health_suffix("starting") == " (health: starting)"
    assert views.health_suffix("unhealthy") == " (unhealthy)"


def test_the_monitor_never_creates_a_missing_database(tmp_path: Path) -> None:
    """A monitor that outlives its root (removed under it) must not bring corral.db back."""
    from corral.engine.db import connect
    from corral.engine.monitor.server import _query

    gone = tmp_path / "gone" / "corral.db"
    gone.parent.mkdir()
    assert _query(str(gone), "SELECT 1") is None
    assert not gone.exists()
    connect(tmp_path / "corral.db").close()
    assert _query(str(tmp_path / "corral.db"), "SELECT n FROM generation") == [{"n": 0}]
