"""``corral-runc`` beyond the basic lifecycle: the README's demo, terminals, signals, --no-pivot,
rlimits, --debug, events, exec's flags, ps, list, a killed create, and the mount options
tmpcopyup and the recursive ``r*`` attributes.

They pass against runc 1.1 too (``CORRAL_RUNC=runc``), except where corral promises more:
runc 1.1's ``delete --force`` after a killed ``create`` leaves the cgroups behind, and its
``events`` stream may outlive the container.
"""

from __future__ import annotations

import glob
import json
import os
import pty
import re
import select
import shlex
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from helpers import Bundle, BundleFactory, Runc, new_cid
from helpers.console import ConsoleSocket, read_until
from helpers.paths import REPO

# -- helpers --------------------------------------------------------------------------------------


def cgroup_dirs(cid: str) -> list[str]:
    """The container's cgroup directories, wherever the runtime put them (corral: under
    ``corral/``; runc: at the top, or under our own cgroup)."""
    return glob.glob(f"/sys/fs/cgroup/**/{cid}", recursive=True)


def status_of(runc: Runc, cid: str) -> str:
    return str(json.loads(runc("state", cid, check=True).stdout)["status"])


def wait_status(runc: Runc, cid: str, want: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (got := status_of(runc, cid)) != want:
        assert time.monotonic() < deadline, f"status stayed {got!r}, wanted {want!r}"
        time.sleep(0.02)


def wait_for(predicate: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(b")") + 2 :].split()[0] not in (b"Z", b"X")


def read_to_end(fd: int, timeout: float = 10.0) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"output did not end; got {buf!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            return buf
        if not chunk:
            return buf
        buf += chunk


def demo_script() -> str:
    """DEMO_SCRIPT exactly as scripts/install.sh defines it (bash evaluates the assignment)."""
    text = (REPO / "scripts" / "install.sh").read_text()
    match = re.search(r"^DEMO_SCRIPT=.*?\n(?:'.*\n)*", text, re.M)
    assert match, "DEMO_SCRIPT not found in scripts/install.sh"
    done = subprocess.run(
        ["bash", "-c", match.group(0) + 'printf %s "$DEMO_SCRIPT"'],
        capture_output=True, text=True, check=True,
    )
    assert "hostname" in done.stdout and "ps -o pid,comm" in done.stdout, done.stdout
    return done.stdout


# -- (a) the README's demo ------------------------------------------------------------------------


def test_readme_demo(corral_runc: Runc, tmp_path: Path, cid: str) -> None:
    """ACCEPTANCE 1: the bundle install.sh builds, run as the README shows."""
    from corral.bundle import make_busybox_bundle

    path = make_busybox_bundle(
        str(tmp_path / "busybox"), ["sh", "-c", demo_script()], hostname="corral"
    )
    done = corral_runc("run", "--bundle", path, cid, timeout=30)
    assert done.returncode == 0 and done.stderr == "", done
    lines = done.stdout.splitlines()
    config = json.loads((Path(path) / "config.json").read_text())
    top = sorted(os.listdir(Path(path) / "rootfs"))
    assert lines[0] == "pid: 1"
    assert lines[1] == f"hostname: {config['hostname']}" == "hostname: corral"
    assert lines[2] == "root: " + " ".join(top)
    assert lines[2] == "root: bin dev etc home proc root run sys tmp var"  # as the README says
    assert lines[3] == "processes:"
    assert lines[4].split() == ["PID", "COMMAND"]
    assert lines[5].split() == ["1", "sh"]
    assert lines[6].split()[1] == "ps" and len(lines) == 8
    assert lines[7] == "network: lo"


def test_readme_demo_loopback_only_and_exit_code(
    corral_runc: Runc, tmp_path: Path, cid: str
) -> None:
    from corral.bundle import make_busybox_bundle

    script = "cat /proc/net/dev; echo ---; ip link; exit 7"
    path = make_busybox_bundle(str(tmp_path / "busybox"), ["sh", "-c", script])
    done = corral_runc("run", "--bundle", path, cid)
    assert done.returncode == 7, done
    net_dev, _, ip_link = done.stdout.partition("---\n")
    interfaces = [line.split(":")[0].strip() for line in net_dev.splitlines()[2:]]
    assert interfaces == ["lo"], done.stdout
    links = re.findall(r"^\d+: ([^:@]+)", ip_link, re.M)
    assert links == ["lo"], done.stdout


# -- (b) a foreground terminal --------------------------------------------------------------------


def test_run_terminal_without_console_socket(
    corral_runc: Runc, bundle: Bundle, cid: str
) -> None:
    """``run`` of a terminal container with our stdin a tty: the runtime proxies a pty."""
    script = 'tty; [ -t 0 ] && echo stdin-is-a-tty; read line; echo "got-$line"; exit 5'
    bundle.set(args=["sh", "-c", script], terminal=True)
    argv = corral_runc.argv("run", "--bundle", bundle, cid)
    pid, master = pty.fork()
    if pid == 0:  # the child: corral-runc, with a tty as its stdin, stdout and stderr
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    try:
        out = read_until(master, b"stdin-is-a-tty")
        assert b"/dev/pts/0" in out, out
        os.write(master, b"hello\n")
        out = read_until(master, b"got-hello")
        read_to_end(master)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(master)
    assert os.waitstatus_to_exitcode(status) == 5


# -- (c) run forwards signals ---------------------------------------------------------------------


def test_run_forwards_sigterm(corral_runc: Runc, bundle: Bundle, cid: str) -> None:
    script = 'trap "echo got-term; exit 3" TERM; echo ready; while :; do sleep 0.1; done'
    bundle.set(args=["sh", "-c", script])
    proc = corral_runc.popen(
        "run", "--bundle", bundle, cid,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, out, err) == (3, b"got-term\n", b"")


# -- (d) --no-pivot -------------------------------------------------------------------------------


@pytest.mark.parametrize("no_pivot", [True, False], ids=["no-pivot", "pivot"])
def test_no_pivot(
    corral_runc: Runc, bundle: Bundle, cid: str, tmp_path: Path, no_pivot: bool
) -> None:
    bundle.set(args=["sh", "-c", "cat /proc/self/mountinfo; ls /"])
    trace = tmp_path / "trace"
    strace = Runc(
        corral_runc.root,
        ["strace", "-f", "-qq", "-e", "trace=pivot_root", "-o", str(trace), *corral_runc.command],
    )
    flags = ["--no-pivot"] if no_pivot else []
    done = strace("run", *flags, "--bundle", bundle, cid)
    assert done.returncode == 0 and done.stderr == "", done
    roots = [line.split() for line in done.stdout.splitlines() if line.split()[4:5] == ["/"]]
    assert len(roots) == 1, done.stdout
    rootfs = os.path.realpath(bundle.rootfs)
    # field 4 is the mount's root inside its filesystem: the bundle's rootfs directory
    assert rootfs.endswith(roots[0][3]) and roots[0][3].endswith("/rootfs"), roots
    assert "bin" in done.stdout.split() and "config.json" not in done.stdout
    pivots = [line for line in trace.read_text().splitlines() if "pivot_root(" in line]
    assert (pivots == []) == no_pivot, pivots


# -- (e) an rlimit above what the runtime may raise -----------------------------------------------


def test_rlimit_above_hard_limit_without_cap_sys_resource(
    corral_runc: Runc, bundle: Bundle, runc_root: Path
) -> None:
    """Without CAP_SYS_RESOURCE (capsh drops it), a hard limit above ours is a one-line error."""

    def rlimit(hard: int) -> Any:
        def edit(config: dict[str, Any]) -> None:
            config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": hard, "soft": 1024}]

        return edit

    lower = "ulimit -Sn 1024 && ulimit -Hn 4096 && exec "  # our hard limit: 4096

    def run_without_cap(hard: int, cid: str) -> subprocess.CompletedProcess[str]:
        bundle.set(args=["sh", "-c", "ulimit -Hn"], edit=rlimit(hard))
        command = shlex.join(corral_runc.argv("run", "--bundle", bundle, cid))
        return subprocess.run(
            ["capsh", "--drop=cap_sys_resource", "--", "-c", lower + command],
            capture_output=True, text=True, timeout=30, check=False,
        )

    done = run_without_cap(2048, new_cid())  # lowering needs no capability
    assert (done.returncode, done.stdout) == (0, "2048\n"), done

    cid = new_cid()
    done = run_without_cap(8192, cid)  # raising does
    assert done.returncode == 1 and done.stdout == "", done
    if "CORRAL_RUNC" not in os.environ:  # corral's contract: one line naming the field
        lines = done.stderr.splitlines()
        assert len(lines) == 1, done.stderr
        assert "process.rlimits[0]" in lines[0] and "RLIMIT_NOFILE" in lines[0], lines
    assert list(runc_root.iterdir()) == []
    assert cgroup_dirs(cid) == []


# -- (f) --debug ----------------------------------------------------------------------------------


def test_debug_log(corral_runc: Runc, bundle: Bundle, cid: str, tmp_path: Path) -> None:
    log = tmp_path / "runtime.log"
    bundle.set(args=["true"])
    done = corral_runc("--debug", "--log", log, "run", "--bundle", bundle, cid)
    assert done.returncode == 0, done
    debug = [line for line in log.read_text().splitlines() if "level=debug" in line]
    assert len(debug) >= 2, log.read_text()
    assert all(line.startswith('time="') for line in debug)
    # without --debug, nothing at debug level
    quiet = tmp_path / "quiet.log"
    corral_runc("--log", quiet, "run", "--bundle", bundle, new_cid(), check=True)
    assert "level=debug" not in (quiet.read_text() if quiet.exists() else "")


# -- (g) events -----------------------------------------------------------------------------------


def test_events_stream_ends_with_the_container(
    corral_runc: Runc, bundle: Bundle, cid: str
) -> None:
    bundle.set(args=["sleep", "1.5"])
    corral_runc("run", "-d", "--bundle", bundle, cid, check=True)
    started = time.monotonic()
    done = corral_runc("events", "--interval", "100ms", cid, timeout=15)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done
    events = [json.loads(line) for line in done.stdout.splitlines()]
    stats = [e for e in events if e["type"] == "stats"]
    assert len(stats) >= 5, events
    assert all(e["id"] == cid and "data" in e for e in stats)
    assert "pids" in stats[0]["data"] and stats[0]["data"]["pids"]["current"] >= 1
    assert elapsed < 5, "events went on after the container exited"


# -- (h) exec -------------------------------------------------------------------------------------


@pytest.fixture
def running(corral_runc: Runc, bundle: Bundle, cid: str) -> str:
    bundle.set(args=["sleep", "60"])
    corral_runc("run", "-d", "--bundle", bundle, cid, check=True)
    return cid


def test_exec_tty_console_socket(corral_runc: Runc, running: str, tmp_path: Path) -> None:
    console = ConsoleSocket(tmp_path / "console.sock")
    pid_file = tmp_path / "exec.pid"
    try:
        corral_runc(
            "exec", "-d", "--tty", "--console-socket", console.path, "--pid-file", pid_file,
            running, "sh", check=True,
        )
        master = console.wait_master()
        read_until(master, b"# ")  # the shell's prompt
        os.write(master, b"tty; [ -t 1 ] && echo out-is-a-tty-$((2 + 3))\n")
        out = read_until(master, b"out-is-a-tty-5")
        assert b"/dev/pts/" in out, out
        pid = int(pid_file.read_text())
        assert alive(pid)
        os.write(master, b"exit\n")
        wait_for(lambda: not alive(pid), "the exec'd shell to exit")
    finally:
        console.close()
    assert status_of(corral_runc, running) == "running"


def test_exec_flags(corral_runc: Runc, running: str) -> None:
    script = "id; pwd; echo A=$A; grep CapBnd /proc/self/status"
    done = corral_runc(
        "exec", "--user", "1000:1000", "--cwd", "/tmp", "--env", "A=B", "--cap", "CAP_NET_RAW",
        "--additional-gids", "10", "--additional-gids", "20", running, "sh", "-c", script,
    )
    assert done.returncode == 0 and done.stderr == "", done
    lines = done.stdout.splitlines()
    assert lines[0] == "uid=1000 gid=1000 groups=10,20"
    assert lines[1:3] == ["/tmp", "A=B"]
    net_raw = 1 << 13
    assert int(lines[3].split()[1], 16) & net_raw
    # and without --cap, the container's default bounding set has no CAP_NET_RAW
    done = corral_runc("exec", running, "grep", "CapBnd", "/proc/self/status", check=True)
    assert not int(done.stdout.split()[1], 16) & net_raw


# -- (i) ps ---------------------------------------------------------------------------------------


def test_ps(corral_runc: Runc, bundle: Bundle, cid: str) -> None:
    bundle.set(args=["sh", "-c", "sleep 60 & sleep 61 & wait"])
    corral_runc("run", "-d", "--bundle", bundle, cid, check=True)
    wait_for(
        lambda: len(json.loads(corral_runc("ps", "--format", "json", cid).stdout)) == 3,
        "three processes in the container",
    )
    pids = sorted(json.loads(corral_runc("ps", "--format", "json", cid, check=True).stdout))

    table = corral_runc("ps", cid, check=True).stdout.splitlines()
    assert table[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    rows = [line.split() for line in table[1:]]
    assert sorted(int(r[1]) for r in rows) == pids  # only the container's, none of the host's
    assert sorted(" ".join(r[7:]) for r in rows) == [
        "sh -c sleep 60 & sleep 61 & wait", "sleep 60", "sleep 61",
    ]

    table = corral_runc("ps", cid, "-o", "pid,comm", check=True).stdout.splitlines()
    assert table[0].split() == ["PID", "COMMAND"]
    rows = [line.split() for line in table[1:]]
    assert sorted(int(r[0]) for r in rows) == pids
    assert sorted(r[1] for r in rows) == ["sh", "sleep", "sleep"]


# -- (j) list -------------------------------------------------------------------------------------


def test_list_created_running_stopped(
    corral_runc: Runc, make_bundle: BundleFactory
) -> None:
    created, running, stopped = sorted(new_cid() for _ in range(3))
    corral_runc("create", "--bundle", make_bundle(["sleep", "60"]), created, check=True)
    corral_runc("run", "-d", "--bundle", make_bundle(["sleep", "60"]), running, check=True)
    corral_runc("run", "-d", "--bundle", make_bundle(["true"]), stopped, check=True)
    wait_status(corral_runc, stopped, "stopped")

    table = corral_runc("list", check=True).stdout.splitlines()
    assert table[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    rows = {r.split()[0]: r.split() for r in table[1:]}
    assert {cid: rows[cid][2] for cid in rows} == {
        created: "created", running: "running", stopped: "stopped",
    }
    assert rows[stopped][1] == "0" and rows[running][1] != "0"


# -- (k) delete --force after a killed create -----------------------------------------------------


def test_delete_force_after_create_killed_midway(
    corral_runc: Runc, bundle: Bundle, cid: str, runc_root: Path, tmp_path: Path
) -> None:
    """DESIGN.md "Crash safety": whatever a killed create made, delete --force removes."""
    hook_pid = tmp_path / "hook.pid"

    def edit(config: dict[str, Any]) -> None:
        config["hooks"] = {"prestart": [{
            "path": "/bin/sh",
            "args": ["sh", "-c", f"echo $$ > {hook_pid}; exec sleep 60"],
        }]}

    bundle.set(args=["sleep", "60"], edit=edit)
    proc = corral_runc.popen(
        "create", "--bundle", bundle, cid,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    hook = 0
    try:
        wait_for(lambda: hook_pid.exists() and hook_pid.read_text().strip(), "the prestart hook")
        hook = int(hook_pid.read_text())
        assert cgroup_dirs(cid), "the cgroup should exist while create is blocked in the hook"
        proc.kill()  # SIGKILL: create dies mid-way, leaving what it made so far
        proc.wait(10)
        os.kill(hook, signal.SIGKILL)
        assert (runc_root / cid).is_dir()

        done = corral_runc("delete", "--force", cid)
        assert (done.returncode, done.stderr) == (0, ""), done
        assert not (runc_root / cid).exists()
        assert cgroup_dirs(cid) == []
        assert corral_runc("state", cid).returncode != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if hook and alive(hook):
            os.kill(hook, signal.SIGKILL)


# -- mount options: tmpcopyup and the recursive attributes ----------------------------------------


def test_tmpcopyup(corral_runc: Runc, bundle: Bundle, cid: str) -> None:
    etc = bundle.rootfs / "etc"
    (etc / "sub").mkdir()
    (etc / "sub" / "deep").write_text("deep\n")
    os.chown(etc / "sub" / "deep", 1000, 1001)
    os.chmod(etc / "sub", 0o751)
    os.symlink("../hostname", etc / "sub" / "link")
    before = sorted(os.listdir(etc))

    def edit(config: dict[str, Any]) -> None:
        config["mounts"].append({"destination": "/etc", "type": "tmpfs", "source": "tmpfs",
                                 "options": ["tmpcopyup", "nosuid"]})

    script = (
        "ls -A /etc; cat /etc/hostname /etc/sub/deep /etc/sub/link; stat -c '%a %u:%g %n' "
        "/etc/sub /etc/sub/deep; readlink /etc/sub/link; echo new > /etc/added; "
        "grep ' /etc ' /proc/self/mountinfo"
    )
    bundle.set(args=["sh", "-c", script], edit=edit)
    done = corral_runc("run", "--bundle", bundle, cid)
    assert done.returncode == 0 and done.stderr == "", done
    lines = done.stdout.splitlines()
    n = len(before)
    assert lines[:n] == before
    hostname = (etc / "hostname").read_text().strip()
    assert lines[n : n + 4] == [hostname, "deep", hostname, "751 0:0 /etc/sub"]
    assert lines[n + 4] == "644 1000:1001 /etc/sub/deep"
    assert lines[n + 5] == "../hostname"
    assert " - tmpfs " in lines[n + 6]  # /etc is the tmpfs ...
    assert not (etc / "added").exists()  # ... so the image is untouched


def test_rro_reaches_nested_mounts(
    corral_runc: Runc, bundle: Bundle, cid: str, tmp_path: Path
) -> None:
    """rbind + rro: the bind and a mount nested in its source are read-only; plain ro leaves the
    nested one writable."""
    source = tmp_path / "data"
    (source / "sub").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(source / "sub")], check=True)
    try:
        script = (
            "touch /data/top 2>/dev/null && echo top-rw || echo top-ro; "
            "touch /data/sub/x 2>/dev/null && echo sub-rw || echo sub-ro"
        )
        results = {}
        for option in ("rro", "ro"):
            def edit(config: dict[str, Any], option: str = option) -> None:
                config["mounts"].append({"destination": "/data", "type": "bind",
                                         "source": str(source), "options": ["rbind", option]})

            bundle.set(args=["sh", "-c", script], edit=edit)
            done = corral_runc("run", "--bundle", bundle, new_cid())
            assert done.returncode == 0 and done.stderr == "", done
            results[option] = done.stdout.split()
            with bundle.edit() as config:
                config["mounts"].pop()
        assert results == {"rro": ["top-ro", "sub-ro"], "ro": ["top-ro", "sub-rw"]}
        assert not (source / "top").exists() and (source / "sub" / "x").exists()
    finally:
        subprocess.run(["umount", str(source / "sub")], check=True)
