"""The systemd cgroup driver for real: corral-runc --systemd-cgroup on a host where systemd is
PID 1, and containerd 1.6 with runc's SystemdCgroup option running corral-runc.

Each container's cgroup is a transient scope, ``system.slice:corral:<id>`` ->
``corral-<id>.scope`` at /sys/fs/cgroup/system.slice/corral-<id>.scope; its limits are read
back from systemd (``systemctl show``) and from the kernel's files. These tests run in the VM
lane (``bash scripts/vm-test.sh tests/integration/test_cgroups_systemd.py``: a Debian 12 guest,
systemd 252, pure cgroup v2) and are skipped where systemd is not running (this CI's host).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from helpers import Bundle, Runc, host
from helpers.resources import resources_bundle

MiB = 1 << 20

if not os.path.isdir("/run/systemd/system"):
    pytest.skip(
        "systemd is not running on this host (no /run/systemd/system): the systemd cgroup driver "
        "is tested in the VM lane (scripts/vm-test.sh)",
        allow_module_level=True,
    )
if host.cgroup_mode() != "v2":
    pytest.skip(
        "these tests read cgroup v2 files (the VM lane is pure v2)", allow_module_level=True
    )


def unit(cid: str) -> str:
    return f"corral-{cid}.scope"


def scope_dir(cid: str) -> str:
    return f"/sys/fs/cgroup/system.slice/{unit(cid)}"


def show(name: str, *props: str) -> dict[str, str]:
    done = subprocess.run(
        ["systemctl", "show", name, *(f"--property={p}" for p in props)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


def cg(cid: str, name: str) -> str:
    with open(f"{scope_dir(cid)}/{name}") as f:
        return f.read().strip()


def systemd_bundle(bundle: Bundle, cid: str, resources: dict[str, object]) -> Bundle:
    resources_bundle(bundle, resources)
    with bundle.edit() as config:
        config["linux"]["cgroupsPath"] = f"system.slice:corral:{cid}"
    return bundle


def init_pid(corral_runc: Runc, cid: str) -> int:
    pid: int = json.loads(corral_runc("state", cid, check=True).stdout)["pid"]
    return pid


def test_create_makes_a_scope_with_the_limits(corral_runc: Runc, bundle: Bundle, cid: str) -> None:
    systemd_bundle(
        bundle,
        cid,
        {
            "memory": {"limit": 64 * MiB, "reservation": 16 * MiB},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"},
            "pids": {"limit": 10},
        },
    )
    started = time.monotonic()
    corral_runc("--systemd-cgroup", "create", "--bundle", bundle, cid, check=True)
    took = time.monotonic() - started
    props = show(
        unit(cid),
        "ActiveState",
        "Slice",
        "Delegate",
        "MemoryMax",
        "MemoryLow",
        "TasksMax",
        "CPUWeight",
        "CPUQuotaPerSecUSec",
        "AllowedCPUs",
        "DevicePolicy",
        "ControlGroup",
    )
    assert props["ActiveState"] == "active", props
    assert props["Slice"] == "system.slice"
    assert props["Delegate"] == "yes"
    assert props["MemoryMax"] == str(64 * MiB)
    assert props["MemoryLow"] == str(16 * MiB)
    assert props["TasksMax"] == "10"
    assert props["CPUWeight"] == str(1 + (512 - 2) * 9999 // 262142)
    assert props["CPUQuotaPerSecUSec"] == "500ms"
    assert props["AllowedCPUs"] == "0"
    assert props["DevicePolicy"] == "strict"
    assert props["ControlGroup"] == f"/system.slice/{unit(cid)}"
    # the kernel's files, as systemd and then corral wrote them
    assert cg(cid, "memory.max") == str(64 * MiB)
    assert cg(cid, "pids.max") == "10"
    assert cg(cid, "cpu.max") == "50000 100000"
    assert cg(cid, "cpuset.cpus") == "0"
    pid = init_pid(corral_runc, cid)
    with open(f"/proc/{pid}/cgroup") as f:
        assert f.read().strip() == f"0::/system.slice/{unit(cid)}"
    peak = cg(cid, "memory.peak") if os.path.exists(f"{scope_dir(cid)}/memory.peak") else "?"
    print(f"create with --systemd-cgroup took {took:.2f}s; the scope's memory.peak {peak}")
    corral_runc("start", cid, check=True)
    corral_runc("kill", cid, "KILL", check=True)
    deadline = time.monotonic() + 30
    while json.loads(corral_runc("state", cid, check=True).stdout)["status"] != "stopped":
        assert time.monotonic() < deadline, "the container did not stop"
        time.sleep(0.2)
    corral_runc("delete", cid, check=True)
    assert show(unit(cid), "LoadState")["LoadState"] == "not-found"
    assert not os.path.exists(scope_dir(cid))


def test_update_goes_through_systemd(corral_runc: Runc, bundle: Bundle, cid: str) -> None:
    systemd_bundle(bundle, cid, {"memory": {"limit": 64 * MiB}, "pids": {"limit": 10}})
    corral_runc("--systemd-cgroup", "create", "--bundle", bundle, cid, check=True)
    corral_runc(
        "update",
        "--memory",
        str(32 * MiB),
        "--pids-limit",
        "20",
        "--cpu-quota",
        "20000",
        "--cpu-period",
        "100000",
        cid,
        check=True,
    )
    props = show(unit(cid), "MemoryMax", "TasksMax", "CPUQuotaPerSecUSec")
    assert props == {
        "MemoryMax": str(32 * MiB),
        "TasksMax": "20",
        "CPUQuotaPerSecUSec": "200ms",
    }
    assert cg(cid, "memory.max") == str(32 * MiB)
    assert cg(cid, "pids.max") == "20"
    assert cg(cid, "cpu.max") == "20000 100000"
    corral_runc("delete", "--force", cid, check=True)
    assert show(unit(cid), "LoadState")["LoadState"] == "not-found"
    assert not os.path.exists(scope_dir(cid))


def test_run_in_a_scope(corral_runc: Runc, bundle: Bundle, cid: str) -> None:
    """A foreground run: the program sees its scope as its cgroup, and the unit goes after."""
    resources_bundle(bundle, {"pids": {"limit": 10}}, args=["cat", "/proc/self/cgroup"])
    with bundle.edit() as config:
        config["linux"]["cgroupsPath"] = f"system.slice:corral:{cid}"
        config["linux"]["namespaces"] = [
            ns for ns in config["linux"]["namespaces"] if ns["type"] != "cgroup"
        ]
    done = corral_runc("--systemd-cgroup", "run", "--bundle", bundle, cid)
    assert (done.returncode, done.stdout.strip()) == (0, f"0::/system.slice/{unit(cid)}"), done
    assert show(unit(cid), "LoadState")["LoadState"] == "not-found"


def test_cgroup_manager_systemd_flag(corral_runc: Runc, bundle: Bundle, cid: str) -> None:
    systemd_bundle(bundle, cid, {"pids": {"limit": 7}})
    corral_runc("--cgroup-manager", "systemd", "create", "--bundle", bundle, cid, check=True)
    assert show(unit(cid), "TasksMax")["TasksMax"] == "7"
    corral_runc("delete", "--force", cid, check=True)
    assert show(unit(cid), "LoadState")["LoadState"] == "not-found"


@pytest.mark.parametrize("path", ["/corral/x", "system.slice:corral", "system:corral:x"])
def test_bad_cgroups_path(
    corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str, path: str
) -> None:
    with bundle.edit() as config:
        config["linux"]["cgroupsPath"] = path
    done = corral_runc("--systemd-cgroup", "create", "--bundle", bundle, cid)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, done
    assert "linux.cgroupsPath" in lines[0] and "Traceback" not in done.stderr
    assert list(runc_root.iterdir()) == []


# -- containerd ------------------------------------------------------------------------------


@pytest.mark.skipif(not shutil.which("containerd"), reason="containerd is not installed")
def test_containerd_systemd_cgroup_memory_limit_and_oom(tmp_path: Path) -> None:
    """containerd 1.6 with runc's option SystemdCgroup = true (``ctr run --runc-systemd-cgroup``
    sets it for the task) and corral-runc as the binary: the container's cgroup is the scope,
    the memory limit is the unit's, and the OOM kill reaches containerd as a /tasks/oom event."""
    from helpers import clients
    from helpers.runc import new_cid

    runtime = clients.runtime_under_test()
    with clients.containerd(tmp_path / "ctrd") as ctrd:
        flags = [*ctrd.run_flags(runtime), "--runc-systemd-cgroup"]
        events_log = tmp_path / "events"
        with open(events_log, "w") as out:
            events = subprocess.Popen(ctrd.ctr.argv("events"), stdout=out, stderr=out)
        try:
            # a running one: its cgroup and its limit
            cid = new_cid()
            ctrd.ctr.ok(
                "run",
                *flags,
                "-d",
                "--cgroup",
                f"system.slice:ctr:{cid}",
                "--memory-limit",
                str(48 * MiB),
                ctrd.image,
                cid,
                "sleep",
                "60",
            )
            name = f"ctr-{cid}.scope"
            assert show(name, "MemoryMax")["MemoryMax"] == str(48 * MiB)
            pid = int(ctrd.ctr.ok("tasks", "ls").split(cid, 1)[1].split()[0])
            with open(f"/proc/{pid}/cgroup") as f:
                assert f.read().strip() == f"0::/system.slice/{name}"
            ctrd.ctr("tasks", "kill", "--signal", "SIGKILL", cid)
            clients.wait_for("the task to stop", lambda: "RUNNING" not in ctrd.task_status(cid))
            ctrd.ctr.ok("tasks", "delete", cid)
            ctrd.ctr.ok("containers", "delete", cid)
            assert show(name, "LoadState")["LoadState"] == "not-found"

            # an OOM: tail buffers /dev/zero (one endless line) until the limit kills it
            oom = new_cid()
            done = ctrd.ctr(
                "run",
                *flags,
                "--rm",
                "--cgroup",
                f"system.slice:ctr:{oom}",
                "--memory-limit",
                str(32 * MiB),
                ctrd.image,
                oom,
                "tail",
                "/dev/zero",
                timeout=300,
            )
            assert done.returncode == 137, done
            try:
                clients.wait_for(
                    "containerd's /tasks/oom event",
                    lambda: any(
                        "/tasks/oom" in line and oom in line
                        for line in events_log.read_text().splitlines()
                    ),
                    timeout=30,
                )
            except AssertionError as err:
                raise AssertionError(f"{err}; ctr events said:\n{events_log.read_text()}") from None
            assert show(f"ctr-{oom}.scope", "LoadState")["LoadState"] == "not-found"
        finally:
            events.terminate()
            events.wait(10)
