"""``corral exec | top | stats | rename | ps --filter --format | container prune`` as a user
types them, against a tmp ``--root``; ``exec -it`` through a pty the test drives, with a
window resize that ``stty size`` inside must see."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import struct
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.engine import CORRAL, corral

LOOP = "while true; do sleep 1; done"


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "root"
    corral(root, "image", "busybox")
    yield root
    ids = corral(root, "ps", "-aq", check=False).stdout.split()
    if ids:
        corral(root, "rm", "-f", *ids, check=False)


@pytest.fixture
def web(root: Path) -> str:
    corral(root, "run", "-d", "--name", "web", "busybox", "sh", "-c", LOOP)
    return "web"


def one_line(done: object, code: int, *fragments: str) -> None:
    assert getattr(done, "returncode") == code, done  # noqa: B009
    err = str(getattr(done, "stderr"))  # noqa: B009
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err


def test_exec_runs_in_the_container_with_env_workdir_user(root: Path, web: str) -> None:
    out = corral(root, "exec", web, "sh", "-c", "echo $$ $(hostname) $(cat /proc/1/comm)").stdout
    pid, _hostname, init = out.split()
    assert pid != "1" and init == "sh"  # in the container's pid namespace, beside its init
    done = corral(root, "exec", "-e", "A=1", "-w", "/tmp", "-u", "65534:65534", web,
                  "sh", "-c", "echo $A $(pwd) $(id -u):$(id -g); exit 3", check=False)  # fmt: skip
    assert (done.returncode, done.stdout) == (3, "1 /tmp 65534:65534\n")
    assert corral(root, "exec", "-i", web, "cat", input="through stdin\n").stdout == (
        "through stdin\n"
    )


def test_exec_errors_are_dockers(root: Path, web: str) -> None:
    one_line(corral(root, "exec", web, "nothere", check=False), 127, "nothere")
    one_line(corral(root, "exec", web, "/etc", check=False), 126, "/etc")
    one_line(corral(root, "exec", "nobody", "true", check=False), 1, "No such container: nobody")
    corral(root, "create", "--name", "idle", "busybox", "true")
    one_line(corral(root, "exec", "idle", "true", check=False), 1, "is not running")
    one_line(corral(root, "exec", "-w", "tmp", web, "true", check=False), 1, "--workdir")
    one_line(corral(root, "exec", "-u", "bob:x", web, "true", check=False), 1, "--user")


def _winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _read_until(fd: int, needle: bytes, timeout: float = 20.0) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"waited for {needle!r}, saw {seen!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    return seen


def test_exec_it_is_a_terminal_that_follows_the_window_size(root: Path, web: str) -> None:
    script = "tty; stty size; read line; stty size; exit 5"
    pid, master = pty.fork()
    if pid == 0:  # the user's shell: a session leader whose controlling terminal is the pty
        _winsize(0, 31, 97)  # the window's size before corral starts
        os.execv(CORRAL, [CORRAL, "--root", str(root), "exec", "-it", web, "sh", "-c", script])
    try:
        out = _read_until(master, b"31 97")
        assert b"/dev/pts/" in out, out
        _winsize(master, 42, 111)  # the kernel sends SIGWINCH to corral exec, which passes it on
        time.sleep(0.5)
        os.write(master, b"go\r")
        out = _read_until(master, b"42 111")
        _read_until(master, b"\x00", timeout=10)  # until EOF
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 5
        pid = 0
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(master)


def test_top_stats_rename(root: Path, web: str) -> None:
    lines = corral(root, "top", web).stdout.splitlines()
    assert lines[0].split()[:3] == ["UID", "PID", "PPID"]
    assert any(LOOP in line for line in lines[1:]), lines
    pid_only = corral(root, "top", web, "-o", "pid,comm").stdout.splitlines()
    assert pid_only[0].split() == ["PID", "COMMAND"] and len(pid_only) >= 2
    stats = corral(root, "stats", "--no-stream").stdout.splitlines()
    assert stats[0].split()[:4] == ["CONTAINER", "ID", "NAME", "CPU"]
    row = stats[1].split()
    assert row[1] == "web" and row[-1] in ("1", "2")  # pids: sh, and its sleep now and then
    as_json = json.loads(corral(root, "stats", "--no-stream", "--format", "json", web).stdout)
    assert as_json["Name"] == "web" and as_json["MemUsage"].endswith("B")
    corral(root, "rename", web, "site")
    assert corral(root, "ps", "--format", "{{.Names}}").stdout == "site\n"
    assert corral(root, "exec", "site", "true").returncode == 0
    corral(root, "create", "--name", "other", "busybox", "true")
    one_line(corral(root, "rename", "site", "other", check=False), 1, "already in use")
    one_line(corral(root, "top", "other", check=False), 1, "is not running")


def test_ps_filters_and_formats(root: Path, web: str) -> None:
    corral(root, "run", "--name", "done3", "busybox", "sh", "-c", "exit 3", check=False)
    corral(root, "create", "--name", "fresh", "busybox", "true")

    def names(*args: str) -> list[str]:
        return corral(root, "ps", "--format", "{{.Names}}", *args).stdout.split()

    assert names() == ["web"]
    assert sorted(names("-a")) == ["done3", "fresh", "web"]
    assert names("-f", "status=exited") == ["done3"]
    assert sorted(names("-f", "status=exited", "-f", "status=created")) == ["done3", "fresh"]
    assert names("-f", "exited=3") == ["done3"]
    assert names("-a", "-f", "name=fre") == ["fresh"]
    assert sorted(names("-a", "-f", "ancestor=busybox")) == ["done3", "fresh", "web"]
    assert names("-a", "-f", "ancestor=docker.io/library/busybox:latest", "-f", "name=web") == [
        "web"
    ]
    assert names("-l") == ["fresh"]
    table = corral(root, "ps", "-a", "--format", "table {{.Names}}\\t{{.State}}").stdout
    lines = table.splitlines()
    assert lines[0].split() == ["NAMES", "STATE"] and ["web", "running"] in [
        line.split() for line in lines
    ]
    rows = [json.loads(line) for line in corral(root, "ps", "--format", "json").stdout.splitlines()]
    assert [r["Names"] for r in rows] == ["web"] and rows[0]["State"] == "running"
    one_line(corral(root, "ps", "-f", "colour=red", check=False), 1, "invalid filter 'colour'")
    one_line(corral(root, "ps", "-f", "status=asleep", check=False), 1, "status=asleep")
    one_line(corral(root, "ps", "--format", "{{.Nope}}", check=False), 1, "--format")


def test_container_prune_asks_and_keeps_running_ones(root: Path, web: str) -> None:
    corral(root, "run", "--name", "gone", "busybox", "true")
    done = corral(root, "container", "prune", input="n\n")
    assert "Are you sure" in done.stdout and "gone" in corral(root, "ps", "-a").stdout
    done = corral(root, "container", "prune", "-f")
    assert "Deleted Containers:" in done.stdout
    assert corral(root, "ps", "-a", "--format", "{{.Names}}").stdout == "web\n"
