"""linux.resources on a pure cgroup v2 host, read back from the kernel's own files.

The v2 twin of test_resources.py (which reads v1 files): each test creates a real container
(busybox bundle) and reads its cgroup, ``/sys/fs/cgroup/corral/<id>``. It runs in the v2 lane
(scripts/vm-test.sh: a Debian 12 guest, systemd 252, pure v2) and is skipped on v1 and hybrid
hosts, whose cgroup2 mount has no controllers. What v2 lacks (swappiness, disabling the OOM
killer, real-time CPU, leaf weights, net_cls, net_prio, the TCP memory limit) is refused with one
line naming the field.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers import Bundle, Runc, host
from helpers.resources import (
    assert_refused,
    cgroup_dirs,
    create,
    resources_bundle,
    root_disk,
    status,
    throttles,
)

MiB = 1 << 20

if host.cgroup_mode() != "v2":
    pytest.skip(
        "host is not pure cgroup v2: these tests read v2 files (test_resources.py reads v1's)",
        allow_module_level=True,
    )


def cg_file(cid: str, name: str) -> str:
    with open(f"{host.container_cgroup(name.partition('.')[0], cid)}/{name}") as f:
        return f.read().strip()


def weight(shares: int) -> str:
    """cpu.shares -> cpu.weight as runc converts it (an oracle written out, not imported)."""
    return str(1 + (shares - 2) * 9999 // 262142)


# -- memory, cpu, pids ----------------------------------------------------------------------------


def test_memory_cpu_pids(corral_runc: Runc, bundle: Bundle, cid: str) -> None:
    resources_bundle(
        bundle,
        {
            "memory": {"limit": 64 * MiB, "reservation": 32 * MiB},
            "cpu": {"shares": 512, "quota": 50000, "period": 200000, "cpus": "0", "mems": "0"},
            "pids": {"limit": 10},
        },
    )
    create(corral_runc, bundle, cid)
    assert cg_file(cid, "memory.max") == str(64 * MiB)
    assert cg_file(cid, "memory.low") == str(32 * MiB)
    assert cg_file(cid, "cpu.weight") == weight(512)
    assert cg_file(cid, "cpu.max") == "50000 200000"
    assert cg_file(cid, "cpuset.cpus") == "0"
    assert cg_file(cid, "cpuset.mems") == "0"
    assert cg_file(cid, "pids.max") == "10"


def test_memory_swap(corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str) -> None:
    """OCI's swap is memory+swap; v2's memory.swap.max is swap alone."""
    resources_bundle(bundle, {"memory": {"limit": 64 * MiB, "swap": 96 * MiB}})
    if not host.has_swap_accounting():
        line = assert_refused(
            corral_runc, runc_root, bundle, cid, "linux.resources.memory.swap", "not available"
        )
        assert "memory.swap.max" in line
        return
    create(corral_runc, bundle, cid)
    assert cg_file(cid, "memory.max") == str(64 * MiB)
    assert cg_file(cid, "memory.swap.max") == str(32 * MiB)


def test_memory_unlimited_means_swap_unlimited(corral_runc: Runc, bundle: Bundle, cid: str) -> None:
    resources_bundle(bundle, {"memory": {"limit": -1}})
    create(corral_runc, bundle, cid)
    assert cg_file(cid, "memory.max") == "max"
    if host.has_swap_accounting():
        assert cg_file(cid, "memory.swap.max") == "max"


def test_cpu_idle(corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str) -> None:
    resources_bundle(bundle, {"cpu": {"idle": 1}})
    if not host.has_cgroup_file("cpu", "cpu.idle"):
        assert_refused(corral_runc, runc_root, bundle, cid, "linux.resources.cpu.idle")
        return
    create(corral_runc, bundle, cid)
    assert cg_file(cid, "cpu.idle") == "1"


V1_ONLY = [
    ("memory", {"swappiness": 30}, "linux.resources.memory.swappiness"),
    ("memory", {"disableOOMKiller": True}, "linux.resources.memory.disableOOMKiller"),
    ("memory", {"kernelTCP": 16 * MiB}, "linux.resources.memory.kernelTCP"),
    ("cpu", {"realtimePeriod": 500000, "realtimeRuntime": 0}, "linux.resources.cpu.realtime"),
    ("blockIO", {"leafWeight": 300}, "linux.resources.blockIO.leafWeight"),
    ("network", {"classID": 0x100001}, "linux.resources.network.classID"),
    ("network", {"priorities": [{"name": "lo", "priority": 1}]}, "linux.resources.network"),
]


@pytest.mark.parametrize(
    ("section", "value", "field"), [pytest.param(*v, id=v[2].rsplit(".", 1)[1]) for v in V1_ONLY]
)
def test_v1_only_fields_are_refused(
    corral_runc: Runc,
    runc_root: Path,
    bundle: Bundle,
    cid: str,
    section: str,
    value: dict[str, Any],
    field: str,
) -> None:
    """Fields v2 has no file for: one line naming the field, nothing made (v1 honours them)."""
    resources_bundle(bundle, {section: value})
    line = assert_refused(corral_runc, runc_root, bundle, cid, field)
    assert "v2" in line, line


# -- io, hugetlb, unified -------------------------------------------------------------------------


def test_io_max(corral_runc: Runc, bundle: Bundle, cid: str) -> None:
    """The four throttles of a device go into one io.max line."""
    major, minor = root_disk()
    resources_bundle(bundle, {"blockIO": throttles(major, minor)})
    create(corral_runc, bundle, cid)
    assert (
        cg_file(cid, "io.max") == f"{major}:{minor} rbps=1048576 wbps=2097152 riops=100 wiops=200"
    )


def test_io_weight(corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str) -> None:
    """io.bfq.weight where BFQ is loaded, else io.weight (iocost); neither: the field's error."""
    resources_bundle(bundle, {"blockIO": {"weight": 500}})
    files = host.cgroup_files("io")
    name = next((f for f in ("io.bfq.weight", "io.weight") if f in files), None)
    if name is None:
        assert_refused(corral_runc, runc_root, bundle, cid, "linux.resources.blockIO.weight")
        return
    create(corral_runc, bundle, cid)
    # BFQ takes blkio's 10-1000; iocost's io.weight is 1-10000, converted as runc does.
    expected = "500" if name == "io.bfq.weight" else str(1 + (500 - 10) * 9999 // 990)
    assert cg_file(cid, name).splitlines()[0].split()[-1] == expected


def test_hugepage_limits(corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str) -> None:
    resources_bundle(bundle, {"hugepageLimits": [{"pageSize": "2MB", "limit": 4 * MiB}]})
    if not host.has_cgroup_file("hugetlb", "hugetlb.2MB.max"):
        assert_refused(corral_runc, runc_root, bundle, cid, "linux.resources.hugepageLimits")
        return
    create(corral_runc, bundle, cid)
    assert cg_file(cid, "hugetlb.2MB.max") == str(4 * MiB)


def test_unified(corral_runc: Runc, bundle: Bundle, cid: str) -> None:
    """Written as given; the kernel rounds memory.high down to a page."""
    resources_bundle(bundle, {"unified": {"memory.high": "50000000", "pids.max": "7"}})
    create(corral_runc, bundle, cid)
    assert 50000000 - 4096 < int(cg_file(cid, "memory.high")) <= 50000000
    assert cg_file(cid, "pids.max") == "7"


def test_unified_unknown_file_is_refused(
    corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str
) -> None:
    resources_bundle(bundle, {"unified": {"memory.nosuchfile": "1"}})
    assert_refused(
        corral_runc, runc_root, bundle, cid, 'linux.resources.unified["memory.nosuchfile"]'
    )


# -- devices: the eBPF filter ---------------------------------------------------------------------


# -- update ---------------------------------------------------------------------------------------


@pytest.fixture
def running(corral_runc: Runc, bundle: Bundle, cid: str) -> str:
    resources_bundle(bundle, {"memory": {"limit": 64 * MiB}, "pids": {"limit": 10}})
    corral_runc("run", "-d", "--bundle", bundle, cid, check=True)
    return cid


def test_update(corral_runc: Runc, running: str) -> None:
    cid = running
    flags = ["--memory", "128m", "--pids-limit", "20", "--cpu-quota", "30000"]
    flags += ["--cpu-period", "100000", "--cpu-share", "256", "--cpuset-cpus", "0"]
    corral_runc("update", *flags, cid, check=True)
    assert cg_file(cid, "memory.max") == str(128 * MiB)
    assert cg_file(cid, "pids.max") == "20"
    assert cg_file(cid, "cpu.max") == "30000 100000"
    assert cg_file(cid, "cpu.weight") == weight(256)
    assert cg_file(cid, "cpuset.cpus") == "0"
    if host.has_swap_accounting():
        corral_runc("update", "--memory", "32m", "--memory-swap", "48m", cid, check=True)
        assert cg_file(cid, "memory.max") == str(32 * MiB)
        assert cg_file(cid, "memory.swap.max") == str(16 * MiB)
    doc = json.dumps({"pids": {"limit": 30}, "cpu": {"shares": 1}})
    done = corral_runc("update", "--resources", "-", cid, input=doc)
    assert done.returncode == 1 and "linux.resources.cpu.shares" in done.stderr, done
    assert cg_file(cid, "pids.max") == "20"  # nothing of a refused document is written
    assert status(corral_runc, cid) == "running"


# -- pause / resume (cgroup.freeze), kill (cgroup.kill) -------------------------------------------


def _wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_pause_resume_and_kill_all(corral_runc: Runc, bundle: Bundle, cid: str) -> None:
    bundle.set(args=["sh", "-c", "sleep 100 & sleep 100 & while :; do :; done"])
    corral_runc("run", "-d", "--bundle", bundle, cid, check=True)
    corral_runc("pause", cid, check=True)
    assert status(corral_runc, cid) == "paused"
    assert cg_file(cid, "cgroup.freeze") == "1"
    assert "frozen 1" in cg_file(cid, "cgroup.events").splitlines()
    usage = [line for line in cg_file(cid, "cpu.stat").splitlines() if "usage_usec" in line]
    time.sleep(0.5)
    assert [line for line in cg_file(cid, "cpu.stat").splitlines() if "usage_usec" in line] == usage
    corral_runc("resume", cid, check=True)
    assert status(corral_runc, cid) == "running"
    assert "frozen 0" in cg_file(cid, "cgroup.events").splitlines()
    corral_runc("pause", cid, check=True)
    corral_runc("kill", "--all", cid, "KILL", check=True)  # frozen processes die too
    _wait_until(lambda: status(corral_runc, cid) == "stopped")
    _wait_until(lambda: cg_file(cid, "cgroup.procs") == "")
    corral_runc("delete", cid, check=True)
    assert cgroup_dirs(cid) == []
