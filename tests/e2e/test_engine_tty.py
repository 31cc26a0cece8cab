"""``corral run -it``, ``start -ai``, ``attach`` and the detach keys, typed through a pty the
test drives as a user's terminal: an interactive shell that sees our window size and its
changes, detaching with ctrl-p ctrl-q and attaching again to the same shell, exit codes,
``logs`` of the terminal's output, and docker's errors."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest

from helpers.engine import CORRAL, corral

PROMPT = b"# "
DETACH = b"\x10\x11"  # ctrl-p ctrl-q


@pytest.fixture(autouse=True)
def _busybox(root: Path) -> None:
    corral(root, "image", "busybox")


class Terminal:
    """A corral command whose stdin, stdout and stderr are a pty we hold the master of (the
    user's terminal window), started with a window size."""

    def __init__(self, root: Path, *args: str, rows: int = 31, cols: int = 97) -> None:
        pid, master = pty.fork()
        if pid == 0:  # the user's shell: a session leader whose controlling terminal is the pty
            _winsize(0, rows, cols)
            os.execv(CORRAL, [CORRAL, "--root", str(root), *args])
        self.pid, self.master = pid, master
        self.seen = b""

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def resize(self, rows: int, cols: int) -> None:
        _winsize(self.master, rows, cols)  # the kernel sends SIGWINCH to corral

    def expect(self, needle: bytes, timeout: float = 20.0) -> bytes:
        """Read until ``needle`` has been seen (since the last expect); what was read."""
        deadline = time.monotonic() + timeout
        while needle not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"waited for {needle!r}, saw {self.seen!r}"
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:  # EIO: corral has exited
                    chunk = b""
                assert chunk, f"corral ended before {needle!r}: {self.seen!r}"
                self.seen += chunk
        out, _, self.seen = self.seen.partition(needle)
        return out + needle

    def exit_code(self, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.pid = 0
                return os.waitstatus_to_exitcode(status)
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                try:
                    self.seen += os.read(self.master, 4096)
                except OSError:
                    pass
        raise AssertionError(f"corral did not exit; output {self.seen!r}")

    def close(self) -> None:
        if self.pid:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.pid = 0
        os.close(self.master)


def _winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _state(root: Path, name: str) -> dict[str, object]:
    state = json.loads(corral(root, "inspect", name).stdout)[0]["State"]
    assert isinstance(state, dict)
    return state


def _container_dir(root: Path, name: str) -> Path:
    cid = corral(root, "ps", "-aq", "--no-trunc", "-f", f"name={name}").stdout.split()[0]
    return root / "containers" / cid


def test_run_it_is_an_interactive_shell_with_our_window(root: Path) -> None:
    term = Terminal(root, "run", "-it", "--name", "box", "busybox", "sh")
    try:
        term.expect(PROMPT)
        term.type(b"tty; stty size; echo $((6*7))-$TERM\r")
        out = term.expect(b"42-xterm\r\n")
        assert b"/dev/pts/0\r\n31 97\r\n" in out, out  # its own pty, our window's size
        term.expect(PROMPT)
        term.resize(42, 111)
        time.sleep(0.3)
        term.type(b"stty size\r")
        term.expect(b"42 111\r\n")  # the resize reached its pty
        term.expect(PROMPT)
        term.type(b"exit 3\r")
        assert term.exit_code() == 3  # the shell's
    finally:
        term.close()
    assert _state(root, "box")["ExitCode"] == 3
    logs_done = corral(root, "logs", "box")
    logs = logs_done.stdout  # (text mode: \r\n read as \n)
    assert logs_done.stderr == ""  # a terminal's output is all stdout
    assert "31 97\n42-xterm\n" in logs and "stty size\n42 111\n" in logs, logs
    assert not (_container_dir(root, "box") / "attach").exists()  # the socket went with it


def test_detach_keys_leave_it_running_and_attach_finds_the_same_shell(root: Path) -> None:
    term = Terminal(root, "run", "-it", "--name", "box", "busybox", "sh")
    try:
        term.expect(PROMPT)
        term.type(b"KEPT=in-this-shell\r")
        term.expect(PROMPT)
        term.type(DETACH)
        assert term.exit_code() == 0
    finally:
        term.close()
    assert _state(root, "box")["Running"] is True
    assert (_container_dir(root, "box") / "attach").is_socket()

    term = Terminal(root, "attach", "--detach-keys", "ctrl-x,x", "box", rows=20, cols=60)
    try:
        time.sleep(0.5)
        term.type(b"echo $KEPT; stty size\r")
        term.expect(b"in-this-shell\r\n20 60\r\n")  # the same shell, our size now
        term.type(b"\x18x")
        assert term.exit_code() == 0
    finally:
        term.close()
    assert _state(root, "box")["Running"] is True

    term = Terminal(root, "attach", "box")
    try:
        time.sleep(0.5)
        term.type(b"exit 4\r")
        assert term.exit_code() == 4  # attach ends with the container, with its code
    finally:
        term.close()
    state = _state(root, "box")
    assert (state["Running"], state["ExitCode"]) == (False, 4)

    done = corral(root, "attach", "box", check=False)
    assert done.returncode == 1, done
    assert done.stderr.strip() == (
        "Error: You cannot attach to a stopped container, start it first"
    ), done.stderr


def test_start_ai_attaches_a_created_container(root: Path) -> None:
    corral(root, "create", "-it", "--name", "made", "busybox", "sh")
    term = Terminal(root, "start", "-ai", "made")
    try:
        term.expect(PROMPT)  # its first output reaches us: attached before it started
        term.type(b"echo started-$((1+1)); stty size\r")
        term.expect(b"started-2\r\n31 97\r\n")
        term.type(b"exit 5\r")
        assert term.exit_code() == 5
    finally:
        term.close()
    assert _state(root, "made")["ExitCode"] == 5
    assert "started-2" in corral(root, "logs", "made").stdout


def test_run_it_rm_removes_everything_when_the_shell_exits(root: Path) -> None:
    term = Terminal(root, "run", "-it", "--rm", "busybox", "sh")
    try:
        term.expect(PROMPT)
        term.type(b"exit 0\r")
        assert term.exit_code() == 0
    finally:
        term.close()
    deadline = time.monotonic() + 10
    while corral(root, "ps", "-aq").stdout.strip() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert corral(root, "ps", "-aq").stdout == ""


def test_t_without_a_terminal(root: Path) -> None:
    done = subprocess.run(
        [CORRAL, "--root", str(root), "run", "-it", "busybox", "true"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (1, "the input device is not a TTY\n"), done
    assert corral(root, "ps", "-aq").stdout == ""  # refused before anything was made
    # -t alone (docker's rule: the check is for an attached stdin): a pty, output to us.
    done = subprocess.run(
        [CORRAL, "--root", str(root), "run", "-t", "--name", "plain", "busybox", "sh", "-c",
         "tty; echo out; exit 6"],
        stdin=subprocess.DEVNULL, capture_output=True, check=False,
    )  # fmt: skip
    assert done.returncode == 6, done
    assert done.stdout == b"/dev/pts/0\r\nout\r\n", done
    # -dit needs no terminal either; attach without stdin works from a pipe.
    corral(root, "run", "-dit", "--name", "bg", "busybox", "sh")
    assert _state(root, "bg")["Running"] is True
    done = corral(root, "attach", "bg", check=False, input="")
    assert done.returncode == 1 and "the input device is not a TTY" in done.stderr, done
    done = corral(root, "attach", "--detach-keys", "ctrl-", "bg", check=False)
    assert done.returncode == 1 and "--detach-keys" in done.stderr, done


def test_a_quick_program_with_t_loses_no_output_and_rm_is_done_on_return(root: Path) -> None:
    """``run -t --rm busybox echo hi``: the program may print and exit before the client is
    listed by the monitor (it waits for the monitor's HELLO before starting the container), and
    ``--rm`` has removed the container when ``run`` returns, as docker's does."""
    corral(root, "image", "busybox")
    for _ in range(8):
        done = corral(root, "run", "-t", "--rm", "busybox", "echo", "hi")
        assert done.stdout.replace("\r", "") == "hi\n", done
        assert corral(root, "ps", "-aq").stdout == ""
