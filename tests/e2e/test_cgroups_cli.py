"""Cgroups as a user meets them through ``corral-runc``: the seeds' two demos (a fork loop under
pids.limit, an allocation loop under a memory limit, OOM-killed and reported by ``events``),
``events``, malformed resources, and a create killed midway.

Against runc (``CORRAL_RUNC=runc``) the demos and the ``events`` tests pass where they do not
read corral's cgroup layout (``/sys/fs/cgroup/<hierarchy>/corral/<id>``); the malformed-input
cases test corral's contract (one line naming the JSON field), which runc does not keep; and
runc's ``events`` stream does not end when the container stops, which corral's does.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers import Bundle, Runc, host

MiB = 1 << 20


def cgroup_dirs(cid: str) -> list[str]:
    """Every cgroup directory (v1 hierarchies, the hybrid unified tree, v2) named ``cid``."""
    return glob.glob(f"/sys/fs/cgroup/*/corral/{cid}") + glob.glob(f"/sys/fs/cgroup/corral/{cid}")


def wait_until(check: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def state(corral_runc: Runc, cid: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(corral_runc("state", cid, check=True).stdout)
    return value


# -- demo (a): a fork loop under pids.limit -------------------------------------------------------


def test_pids_limit_stops_a_fork_loop(corral_runc: Runc, bundle: Bundle, cid: str) -> None:
    """20 background sleeps under a limit of 10 processes: the shell cannot fork past the
    limit and says so; the host (this test) goes on forking."""

    def edit(config: dict[str, Any]) -> None:
        config["linux"]["resources"] = {"pids": {"limit": 10}}

    script = "for i in $(seq 20); do sleep 2 & done; echo started; wait; echo done"
    bundle.set(args=["sh", "-c", script], edit=edit)
    done = corral_runc("run", "--bundle", bundle, cid, timeout=30)
    output = done.stdout + done.stderr
    assert "can't fork" in output or "Resource temporarily unavailable" in output, output
    # The host carries on: it can still start processes.
    assert subprocess.run(["true"], check=False).returncode == 0
    assert cgroup_dirs(cid) == []


def test_pids_limit_counts_in_the_kernel(corral_runc: Runc, bundle: Bundle, cid: str) -> None:
    """The kernel counted the refused forks (pids.events), and events --stats reports the
    limit and the count; the init (outside the forking subshell) keeps running."""

    def edit(config: dict[str, Any]) -> None:
        config["linux"]["resources"] = {"pids": {"limit": 10}}

    script = "(for i in $(seq 20); do sleep 100 & done); sleep 100"
    bundle.set(args=["sh", "-c", script], edit=edit)
    corral_runc("run", "-d", "--bundle", bundle, cid, check=True)
    d = host.container_cgroup("pids", cid)

    def refused() -> bool:
        return Path(d + "/pids.events").read_text().split() != ["max", "0"]

    wait_until(refused, what="a refused fork in pids.events")
    stats = json.loads(corral_runc("events", "--stats", cid, check=True).stdout)
    current = int(Path(d + "/pids.current").read_text())
    assert stats["data"]["pids"] == {"current": current, "limit": 10}
    assert 2 <= current <= 10
    assert state(corral_runc, cid)["status"] == "running"


# -- demo (b): an allocation loop under a memory limit --------------------------------------------


def _oom_bundle(bundle: Bundle, gate: Path) -> None:
    """A shell that waits for ``gate`` (a host directory bound at /gate) to hold "go", then
    doubles a string until the memory limit (64 MiB, swap included where the host accounts
    swap; skipped where it does not and swap is on) stops it."""
    memory = host.hard_memory_limit(64 * MiB)
    gate.mkdir()

    def edit(config: dict[str, Any]) -> None:
        config["linux"]["resources"] = {"memory": memory}
        config["mounts"].append(
            {
                "destination": "/gate",
                "type": "bind",
                "source": str(gate),
                "options": ["rbind", "rw"],
            }
        )

    script = "while [ ! -e /gate/go ]; do sleep 0.05; done; x=a; while :; do x=$x$x; done"
    bundle.set(args=["sh", "-c", script], edit=edit)


def _start_events(corral_runc: Runc, cid: str, out: Path) -> subprocess.Popen[bytes]:
    """``events --interval 1s`` in the background; returns once its first stats event is out
    (so its OOM registration is in place before anything allocates)."""
    proc: subprocess.Popen[bytes] = corral_runc.popen(
        "events", "--interval", "1s", cid, stdout=out.open("wb"), stderr=subprocess.STDOUT
    )
    wait_until(lambda: out.read_text().count("\n") >= 1, what="the first stats event")
    return proc


def test_memory_limit_oom_kill_run_status_and_events(
    corral_runc: Runc, bundle: Bundle, cid: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    _oom_bundle(bundle, gate)
    run_out = tmp_path / "run.out"
    run = corral_runc.popen(
        "run",
        "--bundle",
        bundle,
        cid,
        stdin=subprocess.DEVNULL,
        stdout=run_out.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(
            lambda: (
                corral_runc("state", cid).returncode == 0
                and state(corral_runc, cid)["status"] == "running"
            ),
            what="running",
        )
        events_out = tmp_path / "events.out"
        events = _start_events(corral_runc, cid, events_out)
        # events is stopped while the OOM happens and the foreground run reaps the init and
        # removes the cgroup: the race that a busy host can lose by chance, made certain. The
        # OOM count must outlive the cgroup (on v2 its memory.events dies with the rmdir).
        events.send_signal(signal.SIGSTOP)
        try:
            (gate / "go").write_text("go")
            assert run.wait(timeout=30) == 137, run_out.read_text()  # 128 + SIGKILL
            assert corral_runc("state", cid).returncode != 0  # deleted: the cgroup is gone
        finally:
            events.send_signal(signal.SIGCONT)
        assert events.wait(timeout=10) == 0  # the stream ends with the container
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    lines = [json.loads(line) for line in events_out.read_text().splitlines()]
    assert {"type": "oom", "id": cid} in lines, lines
    stats = [e for e in lines if e["type"] == "stats"]
    assert stats and stats[0]["id"] == cid
    assert stats[0]["data"]["memory"]["usage"]["limit"] == 64 * MiB


def test_memory_limit_oom_kill_create_start(
    corral_runc: Runc, bundle: Bundle, cid: str, tmp_path: Path
) -> None:
    """create -> events & -> start: the init dies of SIGKILL, state says stopped, and the
    kernel's counter agrees with the event."""
    gate = tmp_path / "gate"
    _oom_bundle(bundle, gate)
    corral_runc("create", "--bundle", bundle, cid, check=True)
    events_out = tmp_path / "events.out"
    events = _start_events(corral_runc, cid, events_out)
    corral_runc("start", cid, check=True)
    (gate / "go").write_text("go")
    assert events.wait(timeout=30) == 0
    assert state(corral_runc, cid)["status"] == "stopped"
    assert {"type": "oom", "id": cid} in [
        json.loads(x) for x in events_out.read_text().splitlines()
    ]
    assert host.oom_kill_count(cid) == 1
    corral_runc("delete", cid, check=True)
    assert cgroup_dirs(cid) == []


# -- events ---------------------------------------------------------------------------------------


def test_events_stats_has_runcs_field_names(corral_runc: Runc, bundle: Bundle, cid: str) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["linux"]["resources"] = {"memory": {"limit": 32 * MiB}, "pids": {"limit": 50}}

    bundle.set(args=["sleep", "30"], edit=edit)
    corral_runc("run", "-d", "--bundle", bundle, cid, check=True)
    out = corral_runc("events", "--stats", cid, check=True).stdout
    assert out.count("\n") == 1
    event = json.loads(out)
    assert (event["type"], event["id"]) == ("stats", cid)
    data = event["data"]
    assert set(data["cpu"]["usage"]) >= {"total", "percpu", "kernel", "user"}
    assert data["cpu"]["usage"]["total"] > 0
    assert set(data["memory"]) >= {"cache", "usage", "swap", "kernel", "raw"}
    assert set(data["memory"]["usage"]) == {"usage", "max", "failcnt", "limit"}
    assert data["memory"]["usage"]["limit"] == 32 * MiB
    assert data["memory"]["usage"]["usage"] > 0
    assert data["pids"] == {"current": 1, "limit": 50}
    assert "ioServiceBytesRecursive" in data["blkio"]


def test_events_stream_every_interval_until_the_container_exits(
    corral_runc: Runc, bundle: Bundle, cid: str, tmp_path: Path
) -> None:
    bundle.set(args=["sleep", "2"])
    corral_runc("run", "-d", "--bundle", bundle, cid, check=True)
    started = time.monotonic()
    done = corral_runc("events", "--interval", "300ms", cid, timeout=15)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert 3 <= len(lines) <= 8, lines
    assert all(e["type"] == "stats" and e["id"] == cid for e in lines)
    assert elapsed < 4


def test_events_of_a_stopped_container(corral_runc: Runc, bundle: Bundle, cid: str) -> None:
    bundle.set(args=["true"])
    corral_runc("run", "-d", "--bundle", bundle, cid, check=True)
    wait_until(lambda: state(corral_runc, cid)["status"] == "stopped", what="stopped")
    done = corral_runc("events", cid)
    assert done.returncode == 1
    assert "not running" in done.stderr


# -- malformed resources --------------------------------------------------------------------------


def _resources(value: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def edit(config: dict[str, Any]) -> None:
        config["linux"]["resources"] = value

    return edit


def _cgroups_path(value: str) -> Callable[[dict[str, Any]], None]:
    def edit(config: dict[str, Any]) -> None:
        config["linux"]["cgroupsPath"] = value

    return edit


BAD = [
    ("memory.limit -5", _resources({"memory": {"limit": -5}}), "linux.resources.memory.limit"),
    (
        "memory.limit string",
        _resources({"memory": {"limit": "64m"}}),
        "linux.resources.memory.limit",
    ),
    (
        "memory.swap below limit",
        _resources({"memory": {"limit": 64 * MiB, "swap": MiB}}),
        "linux.resources.memory.swap",
    ),
    (
        "memory.swappiness 200",
        _resources({"memory": {"swappiness": 200}}),
        "linux.resources.memory.swappiness",
    ),
    ("pids.limit x", _resources({"pids": {"limit": "x"}}), "linux.resources.pids.limit"),
    ("cpu.shares 1", _resources({"cpu": {"shares": 1}}), "linux.resources.cpu.shares"),
    ("cpu.quota -7", _resources({"cpu": {"quota": -7}}), "linux.resources.cpu.quota"),
    ("cpu.cpus garbage", _resources({"cpu": {"cpus": "0-x"}}), "linux.resources.cpu.cpus"),
    (
        "blockIO.weight 5000",
        _resources({"blockIO": {"weight": 5000}}),
        "linux.resources.blockIO.weight",
    ),
    (
        "blockIO throttle without major",
        _resources({"blockIO": {"throttleReadBpsDevice": [{"minor": 0, "rate": 1}]}}),
        "linux.resources.blockIO.throttleReadBpsDevice[0].major",
    ),
    (
        "device type z",
        _resources({"devices": [{"allow": True, "type": "z", "access": "rwm"}]}),
        "linux.resources.devices[0].type",
    ),
    (
        "device access x",
        _resources({"devices": [{"allow": True, "type": "c", "access": "x"}]}),
        "linux.resources.devices[0].access",
    ),
    ("cgroupsPath escaping with ..", _cgroups_path("../../../escape"), "linux.cgroupsPath"),
    ("absolute cgroupsPath escaping", _cgroups_path("/a/../../escape"), "linux.cgroupsPath"),
]


@pytest.mark.parametrize(("edit", "field"), [pytest.param(e, f, id=n) for n, e, f in BAD])
def test_bad_resources(
    corral_runc: Runc,
    runc_root: Path,
    bundle: Bundle,
    cid: str,
    edit: Callable[[dict[str, Any]], None],
    field: str,
) -> None:
    """corral only: one line naming the field, exit 1, no state directory, no cgroup."""
    bundle.set(args=["true"], edit=edit)
    done = corral_runc("create", "--bundle", bundle, cid)
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert field in lines[0], lines[0]
    assert list(runc_root.iterdir()) == []
    assert cgroup_dirs(cid) == []
    assert glob.glob("/sys/fs/cgroup/*/escape") + glob.glob("/sys/fs/cgroup/escape") == []


# -- devices ------------------------------------------------------------------------------------


def test_devices_enforced(corral_runc: Runc, bundle: Bundle, cid: str) -> None:
    """Deny-all in the config: the defaults let the container mknod any char device (and use
    /dev/null & co), but reading /dev/mem's number (1:1) through a node it made is refused by
    the kernel: the devices controller on v1, the BPF_CGROUP_DEVICE program on v2."""

    def edit(config: dict[str, Any]) -> None:
        caps = config["process"]["capabilities"]
        for kind in ("bounding", "effective", "permitted"):
            caps[kind].append("CAP_MKNOD")
        config["linux"]["resources"] = {"devices": [{"allow": False, "access": "rwm"}]}

    script = "mknod /dev/m c 1 1 && head -c1 /dev/m; echo rc=$?; echo x >/dev/null && echo null-ok"
    bundle.set(args=["sh", "-c", script], edit=edit)
    done = corral_runc("run", "--bundle", bundle, cid)
    assert "rc=1" in done.stdout, done
    assert "null-ok" in done.stdout, done
    assert "Operation not permitted" in done.stderr + done.stdout, done


# -- crash safety ---------------------------------------------------------------------------------


def test_delete_after_killed_create_removes_cgroups(
    corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str, tmp_path: Path
) -> None:
    """SIGKILL the create while a prestart hook sleeps: cgroups exist on every hierarchy and an
    init waits; ``delete --force`` removes all of it."""
    hook_pid = tmp_path / "hook.pid"

    def edit(config: dict[str, Any]) -> None:
        config["linux"]["resources"] = {"memory": {"limit": 64 * MiB}, "pids": {"limit": 20}}
        config["hooks"] = {
            "prestart": [
                {
                    "path": "/bin/sh",
                    "args": ["sh", "-c", f"echo $$ > {hook_pid}; exec sleep 60"],
                }
            ]
        }

    bundle.set(args=["true"], edit=edit)
    create = corral_runc.popen(
        "create",
        "--bundle",
        bundle,
        cid,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(hook_pid.exists, what="the prestart hook")
        made = cgroup_dirs(cid)
        if host.cgroup_mode() == "v2":
            assert made == [host.container_cgroup("memory", cid)], made  # the one tree
        else:
            assert len(made) >= 8, made  # cpu, cpuacct, cpuset, memory, ..., unified
        create.send_signal(signal.SIGKILL)
        create.wait()
    finally:
        if create.poll() is None:
            create.kill()
            create.wait()
        _kill_pid_in(hook_pid)
    done = corral_runc("delete", "--force", cid)
    assert done.returncode == 0, done.stderr
    assert cgroup_dirs(cid) == []
    assert list(runc_root.iterdir()) == []


def _kill_pid_in(path: Path) -> None:
    try:
        pid = int(path.read_text())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# -- rules between fields are checked before anything exists (issue 10) --------------------------


@pytest.mark.parametrize("dry_run", [False, True], ids=["create", "create --dry-run"])
def test_swap_below_limit_fails_before_anything_exists(
    tmp_path: Path, bundle: Bundle, cid: str, dry_run: bool
) -> None:
    """swap < memory is config.json's mistake: found by validation, so neither the runtime's
    root nor a cgroup (under a parent of the test's own) is ever made, and --dry-run says so."""
    parent = f"corral-swap-{cid}"
    bundle.set(
        args=["true"],
        edit=lambda config: config["linux"].update(
            resources={"memory": {"limit": 64 * MiB, "swap": MiB}},
            cgroupsPath=f"/{parent}/{cid}",
        ),
    )
    root = tmp_path / "never-made"
    runc = Runc(root)
    try:
        done = runc("create", *(["--dry-run"] if dry_run else []), "--bundle", bundle, cid)
        assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
        assert done.stderr.strip() == (
            f"{bundle}/config.json: linux.resources.memory.swap: is memory+swap and must not be"
            f" below memory.limit ({64 * MiB}), got {MiB}"
        )
        assert not root.exists()
        assert glob.glob(f"/sys/fs/cgroup/*/{parent}") + glob.glob(f"/sys/fs/cgroup/{parent}") == []
    finally:
        for left in glob.glob(f"/sys/fs/cgroup/*/{parent}/{cid}") + glob.glob(
            f"/sys/fs/cgroup/*/{parent}"
        ):
            os.rmdir(left)
        if root.exists():
            runc("delete", "--force", cid)
