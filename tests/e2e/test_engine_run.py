"""``corral run`` and friends as a user types them, against a tmp ``--root``: the built-in busybox
image, exit codes, env/workdir/user, --rm leaving nothing, -d + logs + stop + rm, isolation of
containers' writes, rmi refusing an image in use, and the disk use of 10 containers."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from helpers.engine import corral


def mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if str(path) in line]


def leftovers(root: Path) -> dict[str, object]:
    """Everything a removed container could leave: dirs, runtime state, snapshots, rows, mounts."""
    containers = root / "containers"
    info = json.loads(corral(root, "info", "-f", "json").stdout)
    runtime = Path(info["runtime_root"])  # on /run's tmpfs, one directory per root
    assert str(runtime).startswith("/run/corral-engine/"), runtime
    return {
        "containers": sorted(os.listdir(containers)) if containers.exists() else [],
        "runtime": sorted(os.listdir(runtime)) if runtime.exists() else [],
        "active_snapshots": info["active_snapshots"],
        "rows": info["containers"],
        "mounts": mounts_under(root),
    }


NOTHING = {"containers": [], "runtime": [], "active_snapshots": 0, "rows": 0, "mounts": []}


def test_run_echo_builds_busybox(root: Path) -> None:
    done = corral(root, "run", "--rm", "busybox", "echo", "hi")
    assert (done.returncode, done.stdout, done.stderr) == (0, "hi\n", "")
    assert corral(root, "images").stdout.splitlines()[1].split()[:2] == ["busybox", "latest"]
    assert leftovers(root) == NOTHING


@pytest.mark.parametrize("code", [0, 1, 3, 42, 255])
def test_exit_code_is_the_programs(root: Path, code: int) -> None:
    done = corral(root, "run", "--rm", "busybox", "sh", "-c", f"exit {code}", check=False)
    assert done.returncode == code, done.stderr


def test_env_workdir_user_hostname_network(root: Path) -> None:
    script = "echo $FOO $HOME; pwd; id -u; id -g; hostname; ls /sys/class/net; cat /proc/net/route"
    done = corral(
        root, "run", "--rm", "-e", "FOO=bar", "-w", "/tmp", "-u", "1000:100",
        "--hostname", "box", "busybox", "sh", "-c", script,
    )  # fmt: skip
    lines = done.stdout.splitlines()
    assert lines[:6] == ["bar /", "/tmp", "1000", "100", "box", "lo"]
    assert len(lines) == 7  # the routing table has its header only: no route out
    out = corral(root, "run", "--rm", "busybox", "sh", "-c", "id -u; echo $HOME; ip link")
    assert out.stdout.startswith("0\n/root\n")
    assert "lo:" in out.stdout and "UP" in out.stdout and "eth" not in out.stdout


def test_rm_leaves_nothing(root: Path) -> None:
    corral(root, "run", "--rm", "busybox", "sh", "-c", "echo data > /file")
    assert leftovers(root) == NOTHING
    corral(root, "run", "--name", "keep", "busybox", "true")
    assert corral(root, "ps", "-aq").stdout.strip() != ""
    assert leftovers(root)["mounts"] == []  # exited: unmounted already
    assert corral(root, "rm", "keep").stdout == "keep\n"
    assert leftovers(root) == NOTHING


def test_detached_logs_stop_rm(root: Path) -> None:
    cid = corral(
        root, "run", "-d", "--name", "svc", "busybox", "sh", "-c",
        "echo out; echo err >&2; trap 'echo bye; exit 7' TERM; while :; do sleep 0.1; done",
    ).stdout.strip()  # fmt: skip
    assert len(cid) == 64
    deadline = time.monotonic() + 10
    while "out" not in corral(root, "logs", "svc").stdout and time.monotonic() < deadline:
        time.sleep(0.05)
    ps = corral(root, "ps").stdout.splitlines()
    assert len(ps) == 2 and cid[:12] in ps[1] and "Up " in ps[1] and ps[1].endswith("svc")
    assert mounts_under(root / "containers" / cid)  # rootfs (and netns) mounted while it runs
    refused = corral(root, "rm", "svc", check=False)
    assert refused.returncode == 1 and "running" in refused.stderr
    assert corral(root, "stop", "-t", "5", "svc").stdout == "svc\n"
    logs = corral(root, "logs", "svc")  # as docker: the container's stderr on ours
    assert (logs.stdout, logs.stderr) == ("out\nbye\n", "err\n")
    ps = corral(root, "ps", "-a").stdout.splitlines()
    assert "Exited (7)" in ps[1]
    assert corral(root, "ps", "-q").stdout == ""
    assert mounts_under(root) == []
    corral(root, "rm", "svc")
    assert leftovers(root) == NOTHING


def test_stop_kills_after_timeout_and_rm_force(root: Path) -> None:
    corral(root, "run", "-d", "--name", "a", "busybox", "sleep", "60")
    corral(root, "run", "-d", "--name", "b", "busybox", "sleep", "60")
    started = time.monotonic()
    corral(root, "stop", "-t", "0.5", "a")  # sleep as PID 1 ignores SIGTERM: SIGKILL follows
    assert time.monotonic() - started < 5
    assert "Exited (137)" in corral(root, "ps", "-a").stdout
    corral(root, "rm", "-f", "a", "b")
    assert leftovers(root) == NOTHING


def test_detached_rm_removes_itself(root: Path) -> None:
    corral(root, "run", "-d", "--rm", "busybox", "true")
    deadline = time.monotonic() + 10
    while leftovers(root) != NOTHING and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leftovers(root) == NOTHING


def test_writes_stay_in_their_own_upper_dir(root: Path) -> None:
    corral(root, "run", "--name", "writer", "busybox", "sh", "-c", "echo mine > /etc/secret")
    done = corral(root, "run", "--rm", "busybox", "cat", "/etc/secret", check=False)
    assert done.returncode == 1 and "No such file" in done.stderr
    uppers = list((root / "snapshots").glob("*/fs/etc/secret"))
    assert len(uppers) == 1 and uppers[0].read_text() == "mine\n"
    lower = json.loads(corral(root, "image", "inspect", "busybox").stdout)[0]
    assert not (Path(lower["GraphDriver"]["Data"]["LowerDir"]) / "etc" / "secret").exists()
    corral(root, "rm", "writer")


def test_rmi_refuses_an_image_in_use(root: Path) -> None:
    corral(root, "create", "--name", "c1", "busybox", "true")
    corral(root, "tag", "busybox", "spare:1")  # one name of several goes, used or not (docker)
    assert corral(root, "rmi", "spare:1").stdout == "Untagged: spare:1\n"
    refused = corral(root, "rmi", "busybox", check=False)
    assert refused.returncode == 1 and "must force" in refused.stderr
    assert "Deleted:" in corral(root, "rmi", "-f", "busybox").stdout
    # the container's layers stay until it goes; it can still run
    corral(root, "start", "c1")
    corral(root, "rm", "-f", "c1")
    assert leftovers(root) == NOTHING
    assert not any((root / "snapshots").iterdir())


def test_errors_are_one_line_with_dockers_exit_codes(root: Path) -> None:
    """docker's codes: run/create 125 when the engine fails, 127 for a command not found, 126
    for one that cannot be invoked; a command line that does not parse 125; other commands 1."""
    for args, code, fragment in [
        (["run", "nope:1", "true"], 125, "No such image"),
        (["create", "nope:1", "true"], 125, "No such image"),
        (["run", "--bogus", "busybox", "true"], 125, "--bogus"),
        (["run", "-u", "alice", "busybox", "true"], 125, "unable to find user alice"),
        (["run", "--rm", "busybox", "/no/such"], 127, "/no/such"),
        (["run", "--rm", "busybox", "nope"], 127, "executable file not found"),
        (["run", "-d", "--rm", "busybox", "/no/such"], 127, "/no/such"),
        (["run", "--rm", "busybox", "/etc"], 126, "permission denied"),
        (["run", "--rm", "busybox", "/etc/passwd"], 126, "permission denied"),
        (["run", "-d", "--rm", "busybox", "/etc/passwd"], 126, "permission denied"),
        (["ps", "--bogus"], 125, "--bogus"),
        (["logs", "--tail"], 125, "--tail"),
        (["run"], 1, "required: IMAGE"),
        (["bogus"], 1, "invalid choice"),
        (["stop", "ghost"], 1, "No such container"),
        (["rm", "ghost"], 1, "No such container"),
        (["logs", "ghost"], 1, "No such container"),
        (["start", "ghost"], 1, "No such container"),
    ]:
        done = corral(root, *args, check=False)
        assert done.returncode == code, (args, done)
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
        assert fragment in done.stderr, (args, done.stderr)
    assert leftovers(root) == NOTHING
    done = corral(root, "run", "--name", "bad", "busybox", "/no/such", check=False)
    assert done.returncode == 127 and "/no/such" in done.stderr
    assert "Created" in corral(root, "ps", "-a").stdout  # as docker: the container stays
    corral(root, "rm", "bad")
    assert leftovers(root) == NOTHING
    corral(root, "create", "--name", "dup", "busybox", "true")
    for verb in ("create", "run"):
        done = corral(root, verb, "--name", "dup", "busybox", "true", check=False)
        assert done.returncode == 125 and "already in use" in done.stderr
    corral(root, "rm", "dup")
    # the container's own status otherwise, including 126/127 from its shell
    for script, code in [("exit 0", 0), ("exit 1", 1), ("exit 125", 125), ("nope", 127)]:
        done = corral(root, "run", "--rm", "busybox", "sh", "-c", script, check=False)
        assert done.returncode == code, (script, done)
    assert leftovers(root) == NOTHING


def du(path: Path) -> int:
    """Bytes of disk used below ``path`` (hard links counted once)."""
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True,
                              check=True).stdout.split()[0])  # fmt: skip


def test_ten_containers_share_one_copy_of_the_layers(root: Path) -> None:
    corral(root, "image", "busybox")
    image_size = du(root / "snapshots")
    ids = [
        corral(root, "run", "-d", "busybox", "sh", "-c", f"echo {i} > /mine; sleep 60").stdout
        for i in range(10)
    ]
    ids = [i.strip() for i in ids]
    try:
        deadline = time.monotonic() + 10
        while len(list((root / "snapshots").glob("*/fs/mine"))) < 10:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        df = corral(root, "system", "df", "-v").stdout
        image_line = next(x for x in df.splitlines() if x.startswith("busybox"))
        assert image_line.split()[-1] == "10"  # CONTAINERS
        assert sum(1 for x in df.splitlines() if "running" in x) == 10
        layers = [p for p in (root / "snapshots").iterdir() if not (p / "work").exists()]
        uppers = [p for p in (root / "snapshots").iterdir() if (p / "work").exists()]
        assert len(layers) == 1 and len(uppers) == 10
        total = du(root / "snapshots")
        assert all(du(p) < 64 * 1024 for p in uppers)
        assert total < image_size + 10 * 64 * 1024  # one copy of the layer, 10 small dirs
    finally:
        corral(root, "rm", "-f", *ids)
    assert leftovers(root) == NOTHING
