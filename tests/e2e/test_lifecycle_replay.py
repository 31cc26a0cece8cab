"""Replay the calls containerd, conmon (podman) and dockerd make to ``runc``, with their flags.

The call shapes are the ones their runc bindings build:

- containerd-shim-runc-v2 (go-runc): ``--root R --log LOG --log-format json create --bundle B
  --pid-file P [--console-socket S] ID``, then ``start ID``, ``state ID``,
  ``exec --process FILE --detach --pid-file P2 ID``, ``kill [--all] ID SIGNUM``,
  ``ps --format json ID``, ``delete [--force] ID``;
- conmon: ``--root R [--systemd-cgroup] create --bundle B --pid-file P --no-new-keyring
  [--preserve-fds N] ID``;
- dockerd (through containerd's runc options, and its own update): ``update --resources - ID``,
  ``pause ID``, ``resume ID``.

Where the exact words matter to those callers (containerd matches "does not exist" and
"not running" in runc's errors), the same call is made to the real runc 1.1 with the same bundle
and the two messages are compared.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import Bundle, Runc, cleanup_containers, new_cid
from helpers.console import ConsoleSocket, read_until

# -- helpers --------------------------------------------------------------------------------------


def cgroup_dirs(cid: str) -> list[str]:
    """The container's cgroup directories, in every v1 hierarchy, the unified tree, or v2."""
    return glob.glob(f"/sys/fs/cgroup/*/corral/{cid}") + glob.glob(f"/sys/fs/cgroup/corral/{cid}")


def state(runc: Runc, cid: str) -> dict[str, Any]:
    done = runc("state", cid, check=True)
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def wait_status(runc: Runc, cid: str, want: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        st = state(runc, cid)
        if st["status"] == want:
            return st
        assert time.monotonic() < deadline, f"status stayed {st['status']!r}, wanted {want!r}"
        time.sleep(0.02)


def wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Wait until ``pid`` is no longer a live process (gone, or a zombie awaiting its reaper)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except FileNotFoundError:
            return
        if stat[stat.rfind(b")") + 2 :].split()[0] in (b"Z", b"X"):
            return
        assert time.monotonic() < deadline, f"process {pid} is still alive"
        time.sleep(0.02)


def assert_all_gone(root: Path, cid: str, pid: int) -> None:
    """After delete: no state directory, no live process, no cgroup directory."""
    assert not (root / cid).exists(), f"state directory {root / cid} is still there"
    wait_gone(pid)
    assert cgroup_dirs(cid) == [], f"cgroup directories left: {cgroup_dirs(cid)}"


def ns(pid: int, kind: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def log_entries(path: Path) -> list[dict[str, Any]]:
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def containerd_process(args: list[str], *, terminal: bool = False) -> dict[str, Any]:
    """An exec process as containerd writes it to process.json (runtime-spec Process)."""
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    return {
        "terminal": terminal,
        "user": {"uid": 0, "gid": 0},
        "args": args,
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "cwd": "/",
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": True,
    }


@pytest.fixture
def real_runc(tmp_path: Path) -> Iterator[Runc]:
    """The real runc 1.1, with its own --root, for comparing messages."""
    root = tmp_path / "runc-root"
    root.mkdir()
    yield Runc(root, ["runc"])
    problems = cleanup_containers(root, ["runc"])
    assert problems == [], problems


# -- containerd -----------------------------------------------------------------------------------


def test_containerd_terminal(
    corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str, tmp_path: Path
) -> None:
    bundle.set(args=["sh"], terminal=True)
    log = tmp_path / "log.json"
    pid_file = tmp_path / "init.pid"
    console = ConsoleSocket(tmp_path / "console.sock")
    try:
        corral_runc(
            "--log", log, "--log-format", "json", "create", "--bundle", bundle,
            "--pid-file", pid_file, "--console-socket", console.path, cid, check=True,
        )
        master = console.wait_master()
        assert os.isatty(master)
        pid = int(pid_file.read_text())
        st = state(corral_runc, cid)
        assert (st["status"], st["pid"]) == ("created", pid)
        corral_runc("--log", log, "--log-format", "json", "start", cid, check=True)
        assert state(corral_runc, cid)["status"] == "running"
        os.write(master, b"tty; echo $((6*7))-$$\n")
        out = read_until(master, b"42-1")
        assert b"/dev/pts/0" in out
        os.write(master, b"exit 3\n")
        st = wait_status(corral_runc, cid, "stopped")
        assert st["pid"] == 0
        corral_runc("--log", log, "--log-format", "json", "delete", cid, check=True)
    finally:
        console.close()
    assert_all_gone(runc_root, cid, pid)
    assert [e for e in log_entries(log) if e["level"] == "error"] == []


def test_containerd_pipes(
    corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str, tmp_path: Path
) -> None:
    """No terminal: the shim hands the runtime pipes as stdio, which the container inherits."""
    bundle.set(args=["sh", "-c", 'read line; echo "out:$line"; echo "err:$line" >&2'])
    pid_file = tmp_path / "init.pid"
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    stderr_r, stderr_w = os.pipe()
    try:
        argv = corral_runc.argv(
            "--log", tmp_path / "log.json", "--log-format", "json", "create", "--bundle", bundle,
            "--pid-file", pid_file, cid,
        )
        done = subprocess.run(
            argv, stdin=stdin_r, stdout=stdout_w, stderr=stderr_w, timeout=30, check=False
        )
        for fd in (stdin_r, stdout_w, stderr_w):
            os.close(fd)
        stdin_r = stdout_w = stderr_w = -1
        assert done.returncode == 0
        pid = int(pid_file.read_text())
        assert state(corral_runc, cid) | {"pid": pid} == state(corral_runc, cid)
        corral_runc("start", cid, check=True)
        os.write(stdin_w, b"hello\n")
        os.close(stdin_w)
        stdin_w = -1
        with os.fdopen(stdout_r, "rb") as out, os.fdopen(stderr_r, "rb") as err:
            stdout_r = stderr_r = -1
            assert (out.read(), err.read()) == (b"out:hello\n", b"err:hello\n")
        wait_status(corral_runc, cid, "stopped")
        corral_runc("delete", cid, check=True)
    finally:
        for fd in (stdin_r, stdin_w, stdout_r, stdout_w, stderr_r, stderr_w):
            if fd >= 0:
                os.close(fd)
    assert_all_gone(runc_root, cid, pid)


def test_containerd_exec_ps_kill(
    corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str, tmp_path: Path
) -> None:
    bundle.set(args=["sleep", "100"])
    g = ["--log", str(tmp_path / "log.json"), "--log-format", "json"]
    pid_file = tmp_path / "init.pid"
    corral_runc(*g, "create", "--bundle", bundle, "--pid-file", pid_file, cid, check=True)
    init = int(pid_file.read_text())
    corral_runc(*g, "start", cid, check=True)
    assert state(corral_runc, cid)["status"] == "running"

    process = tmp_path / "exec-process.json"
    process.write_text(json.dumps(containerd_process(["sleep", "100"])))
    exec_pid_file = tmp_path / "exec.pid"
    corral_runc(
        *g, "exec", "--process", process, "--detach", "--pid-file", exec_pid_file, cid,
        check=True,
    )
    exec_pid = int(exec_pid_file.read_text())
    assert exec_pid != init
    for kind in ("pid", "mnt", "uts", "ipc", "net"):
        assert ns(exec_pid, kind) == ns(init, kind), kind
    assert ns(exec_pid, "pid") != ns(os.getpid(), "pid")
    with open(f"/proc/{exec_pid}/cmdline", "rb") as f:
        assert f.read() == b"sleep\x00100\x00"

    pids = json.loads(corral_runc(*g, "ps", "--format", "json", cid, check=True).stdout)
    assert sorted(pids) == sorted([init, exec_pid])

    corral_runc(*g, "kill", "--all", cid, "9", check=True)
    wait_status(corral_runc, cid, "stopped")
    wait_gone(exec_pid)
    corral_runc(*g, "delete", cid, check=True)
    assert_all_gone(runc_root, cid, init)
    assert log_entries(tmp_path / "log.json") == []


def test_containerd_kill_term_then_force_delete(
    corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str, tmp_path: Path
) -> None:
    # sh as PID 1 ignores SIGTERM unless it traps it, so trap it as a real init would.
    bundle.set(args=["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"])
    pid_file = tmp_path / "init.pid"
    corral_runc("create", "--bundle", bundle, "--pid-file", pid_file, cid, check=True)
    pid = int(pid_file.read_text())
    corral_runc("start", cid, check=True)
    wait_status(corral_runc, cid, "running")
    time.sleep(0.1)  # let sh install its trap
    corral_runc("kill", cid, "15", check=True)
    wait_status(corral_runc, cid, "stopped")
    corral_runc("delete", "--force", cid, check=True)
    assert_all_gone(runc_root, cid, pid)


def test_delete_force_running(
    corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str, tmp_path: Path
) -> None:
    bundle.set(args=["sleep", "100"])
    pid_file = tmp_path / "init.pid"
    corral_runc("create", "--bundle", bundle, "--pid-file", pid_file, cid, check=True)
    pid = int(pid_file.read_text())
    corral_runc("start", cid, check=True)
    corral_runc("delete", "--force", cid, check=True)
    assert_all_gone(runc_root, cid, pid)


@pytest.mark.parametrize("form", ["--log-format=json", "--log-format json", "-log-format=json"])
def test_log_format_json_errors(
    corral_runc: Runc, runc_root: Path, cid: str, tmp_path: Path, form: str
) -> None:
    log = tmp_path / "log.json"
    done = corral_runc("--log", log, *form.split(" "), "start", cid)
    assert done.returncode != 0
    assert done.stderr.strip() == "container does not exist"
    entries = log_entries(log)
    assert len(entries) == 1, entries
    entry = entries[0]
    assert entry["level"] == "error"
    assert "container does not exist" in entry["msg"]
    assert set(entry) >= {"level", "msg", "time"}
    assert time.strptime(entry["time"][:19], "%Y-%m-%dT%H:%M:%S")


# -- conmon / podman ------------------------------------------------------------------------------


def test_conmon_systemd_cgroup_refused(
    corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str
) -> None:
    if os.path.isdir("/run/systemd/system"):
        pytest.skip("systemd runs here: tests/integration/test_cgroups_systemd.py tests the driver")
    bundle.set(args=["true"])
    done = corral_runc("--systemd-cgroup", "create", "--bundle", bundle, cid)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "systemd" in lines[0], done.stderr
    assert list(runc_root.iterdir()) == []
    assert cgroup_dirs(cid) == []


def test_podman_create_no_new_keyring(
    corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str, tmp_path: Path
) -> None:
    bundle.set(args=["cat", "/proc/self/stat"])
    pid_file = tmp_path / "conmon.pid"
    corral_runc(
        "create", "--bundle", bundle, "--pid-file", pid_file, "--no-new-keyring", cid,
        check=True,
    )
    pid = int(pid_file.read_text())
    st = state(corral_runc, cid)
    assert (st["status"], st["pid"]) == ("created", pid)
    corral_runc("start", cid, check=True)
    wait_status(corral_runc, cid, "stopped")
    corral_runc("delete", cid, check=True)
    assert_all_gone(runc_root, cid, pid)


def test_preserve_fds(
    corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str, tmp_path: Path
) -> None:
    """conmon passes sockets as fds 3.. with LISTEN_FDS; --preserve-fds 2 keeps 3 and 4 open."""
    bundle.set(
        args=["sh", "-c", 'echo "three $LISTEN_FDS" >&3; echo four >&4; '
              'for n in 3 4 5; do [ -e /proc/$$/fd/$n ] && echo "$n open"; done; true'],
        env=["PATH=/bin", "LISTEN_FDS=2"],
    )
    one, two = tmp_path / "fd3", tmp_path / "fd4"
    wrapper = 'exec "$@" 3>"$F3" 4>"$F4" 5>"$F4"'  # fd 5 is open but not preserved
    argv = ["sh", "-c", wrapper, "sh",
            *corral_runc.argv("run", "--preserve-fds", "2", "--bundle", bundle, cid)]
    done = subprocess.run(
        argv, env={**os.environ, "F3": str(one), "F4": str(two)}, capture_output=True,
        text=True, timeout=30, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert one.read_text() == "three 2\n"
    assert two.read_text() == "four\n"
    assert done.stdout == "3 open\n4 open\n"
    assert not (runc_root / cid).exists()


# -- dockerd --------------------------------------------------------------------------------------


def _cgroup_file(cid: str, controller: str, name: str) -> str:
    return Path(f"/sys/fs/cgroup/{controller}/corral/{cid}/{name}").read_text().strip()


def test_dockerd_update_pause_resume(
    corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str, tmp_path: Path
) -> None:
    bundle.set(args=["sleep", "100"])
    log = tmp_path / "log.json"
    g = ["--log", str(log), "--log-format", "json"]
    pid_file = tmp_path / "init.pid"
    corral_runc(*g, "create", "--bundle", bundle, "--pid-file", pid_file, cid, check=True)
    pid = int(pid_file.read_text())
    corral_runc(*g, "start", cid, check=True)

    resources = {"memory": {"limit": 64 << 20}, "pids": {"limit": 50}, "cpu": {"shares": 512}}
    corral_runc(*g, "update", "--resources", "-", cid, input=json.dumps(resources), check=True)
    assert _cgroup_file(cid, "pids", "pids.max") == "50"
    assert _cgroup_file(cid, "memory", "memory.limit_in_bytes") == str(64 << 20)
    assert _cgroup_file(cid, "cpu", "cpu.shares") == "512"
    with open(f"/proc/{pid}/cgroup") as f:
        assert f"/corral/{cid}" in f.read()

    corral_runc(*g, "pause", cid, check=True)
    assert state(corral_runc, cid)["status"] == "paused"
    assert _cgroup_file(cid, "freezer", "freezer.state") == "FROZEN"
    listed = json.loads(corral_runc("list", "--format", "json", check=True).stdout)
    assert [(c["id"], c["status"]) for c in listed] == [(cid, "paused")]
    corral_runc(*g, "resume", cid, check=True)
    assert state(corral_runc, cid)["status"] == "running"
    assert _cgroup_file(cid, "freezer", "freezer.state") == "THAWED"

    corral_runc(*g, "kill", cid, "KILL", check=True)
    wait_status(corral_runc, cid, "stopped")
    corral_runc(*g, "delete", cid, check=True)
    assert_all_gone(runc_root, cid, pid)
    assert log_entries(log) == []


def test_kill_paused_then_force_delete(
    corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str, tmp_path: Path
) -> None:
    bundle.set(args=["sleep", "100"])
    pid_file = tmp_path / "init.pid"
    corral_runc("create", "--bundle", bundle, "--pid-file", pid_file, cid, check=True)
    pid = int(pid_file.read_text())
    corral_runc("start", cid, check=True)
    corral_runc("pause", cid, check=True)
    corral_runc("delete", "--force", cid, check=True)
    assert_all_gone(runc_root, cid, pid)


# -- the state machine and run ---------------------------------------------------------------------


def test_state_machine(
    corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str, tmp_path: Path
) -> None:
    bundle.set(args=["sleep", "100"])
    pid_file = tmp_path / "init.pid"
    corral_runc("create", "--bundle", bundle, "--pid-file", pid_file, cid, check=True)
    pid = int(pid_file.read_text())
    st = state(corral_runc, cid)
    assert (st["id"], st["status"], st["pid"]) == (cid, "created", pid)
    assert st["bundle"] == str(bundle)
    assert (runc_root / cid).is_dir()
    assert cgroup_dirs(cid) != []
    corral_runc("start", cid, check=True)
    assert state(corral_runc, cid)["status"] == "running"
    corral_runc("kill", cid, "SIGKILL", check=True)
    st = wait_status(corral_runc, cid, "stopped")
    assert st["pid"] == 0
    done = corral_runc("kill", cid, "9")
    assert (done.returncode, done.stderr.strip()) == (1, "container not running")
    corral_runc("delete", cid, check=True)
    assert not (runc_root / cid).exists()
    assert list(runc_root.iterdir()) == []
    wait_gone(pid)
    assert cgroup_dirs(cid) == []
    done = corral_runc("state", cid)
    assert (done.returncode, done.stderr.strip()) == (1, "container does not exist")


def test_relative_pid_file(
    corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str, tmp_path: Path
) -> None:
    """A relative --pid-file is relative to the caller's directory, as with runc."""
    bundle.set(args=["sleep", "100"])
    workdir = tmp_path / "work"
    workdir.mkdir()
    corral_runc("create", "--bundle", bundle, "--pid-file", "init.pid", cid, cwd=workdir,
                check=True)
    assert int((workdir / "init.pid").read_text()) == state(corral_runc, cid)["pid"]
    assert not (bundle.path / "init.pid").exists()
    corral_runc("delete", "--force", cid, check=True)


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["sh", "-c", "exit 7"], 7),
        (["true"], 0),
        (["sh", "-c", "exit 255"], 255),
    ],
)
def test_run_exit_code(
    corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str, args: list[str], code: int
) -> None:
    bundle.set(args=args)
    done = corral_runc("run", "--bundle", bundle, cid)
    assert done.returncode == code, done.stderr
    assert list(runc_root.iterdir()) == []
    assert cgroup_dirs(cid) == []


def test_run_killed_by_signal(
    corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str, tmp_path: Path
) -> None:
    bundle.set(args=["sleep", "100"])
    proc = corral_runc.popen(
        "run", "--bundle", bundle, cid, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            done = corral_runc("state", cid)
            if done.returncode == 0 and json.loads(done.stdout)["status"] == "running":
                break
            assert time.monotonic() < deadline and proc.poll() is None, "run never got running"
            time.sleep(0.02)
        corral_runc("kill", cid, "9", check=True)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + 9, err
    assert list(runc_root.iterdir()) == []
    assert cgroup_dirs(cid) == []


def test_run_detached_then_force_delete(
    corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str, tmp_path: Path
) -> None:
    bundle.set(args=["sleep", "100"])
    pid_file = tmp_path / "init.pid"
    start = time.monotonic()
    corral_runc("run", "-d", "--pid-file", pid_file, "--bundle", bundle, cid, check=True)
    assert time.monotonic() - start < 10
    pid = int(pid_file.read_text())
    assert state(corral_runc, cid)["status"] == "running"
    corral_runc("delete", "--force", cid, check=True)
    assert_all_gone(runc_root, cid, pid)


def test_run_keep(corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str) -> None:
    bundle.set(args=["sh", "-c", "exit 3"])
    done = corral_runc("run", "--keep", "--bundle", bundle, cid)
    assert done.returncode == 3, done.stderr
    st = state(corral_runc, cid)
    assert (st["status"], st["pid"]) == ("stopped", 0)
    assert [c["id"] for c in json.loads(corral_runc("list", "--format", "json").stdout)] == [cid]
    corral_runc("delete", cid, check=True)
    assert list(runc_root.iterdir()) == []
    assert cgroup_dirs(cid) == []


# -- the same mistakes, the same words as runc -----------------------------------------------------


def _error_line(done: Any) -> str:
    """The message of a failed call: runc writes a logrus line, corral the bare message."""
    assert done.returncode != 0
    text: str = done.stderr.strip()
    assert text, "no error message"
    return text


@contextlib.contextmanager
def _both_created(
    corral_runc: Runc, real_runc: Runc, bundle: Bundle, cid: str
) -> Iterator[None]:
    corral_runc("create", "--bundle", bundle, cid, check=True)
    real_runc("create", "--bundle", bundle, cid, check=True)
    try:
        yield
    finally:
        corral_runc("delete", "--force", cid)
        real_runc("delete", "--force", cid)


def test_messages_match_runc(
    corral_runc: Runc, real_runc: Runc, bundle: Bundle, tmp_path: Path
) -> None:
    bundle.set(args=["sleep", "100"])
    missing = new_cid()
    for argv in (["state", missing], ["start", missing], ["kill", missing, "9"],
                 ["delete", missing]):
        ours, theirs = corral_runc(*argv), real_runc(*argv)
        assert "container does not exist" in _error_line(theirs), theirs.stderr
        assert "container does not exist" in _error_line(ours), (argv, ours.stderr)
        assert ours.returncode == theirs.returncode == 1

    cid = new_cid()
    with _both_created(corral_runc, real_runc, bundle, cid):
        # runc 1.1 says "container with given ID already exists" (older runc and crun: "container
        # with id exists: ID"); corral keeps the older words, which also name the id.
        ours = corral_runc("create", "--bundle", bundle, cid)
        theirs = real_runc("create", "--bundle", bundle, cid)
        assert "already exists" in _error_line(theirs), theirs.stderr
        assert f"container with id exists: {cid}" == _error_line(ours), ours.stderr
        assert ours.returncode == theirs.returncode == 1

        for runc in (corral_runc, real_runc):
            runc("start", cid, check=True)
            runc("kill", cid, "9", check=True)
            wait_status(runc, cid, "stopped")
        ours, theirs = corral_runc("kill", cid, "9"), real_runc("kill", cid, "9")
        assert "container not running" in _error_line(theirs), theirs.stderr
        assert "container not running" in _error_line(ours), ours.stderr
        # Both keep a stopped container until delete, and report it the same way.
        assert state(corral_runc, cid)["status"] == state(real_runc, cid)["status"] == "stopped"
