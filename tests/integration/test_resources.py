"""linux.resources through ``corral-runc create``, read back from the kernel's own files.

Each test writes a resource into config.json, creates a real container (busybox bundle) and
reads the control file of the container's cgroup (``/sys/fs/cgroup/<hierarchy>/corral/<id>``).
Where the host lacks a controller or a file (hugetlb, net_cls, net_prio, rdma, BFQ's or CFQ's
weights, swap accounting, cpu.idle, real-time groups: probed by ``helpers.host``), the test
asserts the one-line error that names the field, and that nothing was left behind; where the
host has it, the test reads the value back from the kernel.

The host is cgroup v1 hybrid (the CI machine); v2's logic is unit-tested on the fake tree of
``corral.cgroups.testing`` (tests/unit/test_cgroups_v2.py).
"""

from __future__ import annotations

import json
import os
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

CG = "/sys/fs/cgroup"
MiB = 1 << 20

if host.cgroup_mode() != "v1":
    pytest.skip(
        "host is not cgroup v1 or hybrid: these tests read v1 files (v2 is unit-tested)",
        allow_module_level=True,
    )


def cg_file(hierarchy: str, cid: str, name: str) -> str:
    with open(f"{CG}/{hierarchy}/corral/{cid}/{name}") as f:
        return f.read().strip()


# -- memory ---------------------------------------------------------------------------------------


def test_memory(corral_runc: Runc, bundle: Bundle, cid: str) -> None:
    resources_bundle(
        bundle,
        {
            "memory": {
                "limit": 64 * MiB,
                "reservation": 32 * MiB,
                "swappiness": 30,
                "disableOOMKiller": True,
            }
        },
    )
    create(corral_runc, bundle, cid)
    assert cg_file("memory", cid, "memory.limit_in_bytes") == str(64 * MiB)
    assert cg_file("memory", cid, "memory.soft_limit_in_bytes") == str(32 * MiB)
    assert cg_file("memory", cid, "memory.swappiness") == "30"
    assert "oom_kill_disable 1" in cg_file("memory", cid, "memory.oom_control").splitlines()


def test_memory_swap(corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str) -> None:
    """memory.swap is memory+swap on v1 (memory.memsw.*), which only swap accounting has."""
    resources_bundle(bundle, {"memory": {"limit": 64 * MiB, "swap": 96 * MiB}})
    if not host.has_swap_accounting():
        line = assert_refused(
            corral_runc, runc_root, bundle, cid, "linux.resources.memory.swap", "not available"
        )
        assert "swap accounting off" in line
        return
    create(corral_runc, bundle, cid)
    assert cg_file("memory", cid, "memory.limit_in_bytes") == str(64 * MiB)
    assert cg_file("memory", cid, "memory.memsw.limit_in_bytes") == str(96 * MiB)


def test_memory_unlimited_means_swap_unlimited(corral_runc: Runc, bundle: Bundle, cid: str) -> None:
    """Without swap accounting there is no swap limit to lift: only memory's is written."""
    resources_bundle(bundle, {"memory": {"limit": -1}})
    create(corral_runc, bundle, cid)
    big = int(cg_file("memory", cid, "memory.limit_in_bytes"))
    assert big > 1 << 60
    if host.has_swap_accounting():
        assert int(cg_file("memory", cid, "memory.memsw.limit_in_bytes")) == big


# -- cpu ------------------------------------------------------------------------------------------


def test_cpu(corral_runc: Runc, bundle: Bundle, cid: str) -> None:
    resources_bundle(
        bundle,
        {"cpu": {"shares": 512, "quota": 50000, "period": 200000, "cpus": "0", "mems": "0"}},
    )
    create(corral_runc, bundle, cid)
    assert cg_file("cpu", cid, "cpu.shares") == "512"
    assert cg_file("cpu", cid, "cpu.cfs_quota_us") == "50000"
    assert cg_file("cpu", cid, "cpu.cfs_period_us") == "200000"
    assert cg_file("cpuset", cid, "cpuset.cpus") == "0"
    assert cg_file("cpuset", cid, "cpuset.mems") == "0"


def test_cpu_idle(corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str) -> None:
    """cpu.idle (SCHED_IDLE for the whole cgroup) came with Linux 5.15."""
    resources_bundle(bundle, {"cpu": {"idle": 1}})
    if not host.has_cgroup_file("cpu", "cpu.idle"):
        line = assert_refused(corral_runc, runc_root, bundle, cid, "linux.resources.cpu.idle")
        assert "cpu.idle is not available on this host (needs Linux 5.15" in line
        return
    create(corral_runc, bundle, cid)
    assert cg_file("cpu", cid, "cpu.idle") == "1"


def test_cpu_realtime(corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str) -> None:
    """With CONFIG_RT_GROUP_SCHED, a new cgroup's parent (/corral) has no real-time budget
    (rt_runtime_us 0), so only a period and a zero runtime fit; a runtime the parent cannot
    grant is refused with the field named. Without it, the fields are refused by name."""
    resources_bundle(bundle, {"cpu": {"realtimePeriod": 500000, "realtimeRuntime": 0}})
    if not host.has_cgroup_file("cpu", "cpu.rt_period_us"):
        line = assert_refused(
            corral_runc, runc_root, bundle, cid, "linux.resources.cpu.realtimePeriod"
        )
        assert "CONFIG_RT_GROUP_SCHED" in line
        return
    create(corral_runc, bundle, cid)
    assert cg_file("cpu", cid, "cpu.rt_period_us") == "500000"
    assert cg_file("cpu", cid, "cpu.rt_runtime_us") == "0"
    corral_runc("delete", "--force", cid, check=True)

    resources_bundle(bundle, {"cpu": {"realtimePeriod": 1000000, "realtimeRuntime": 10000}})
    assert_refused(corral_runc, runc_root, bundle, cid, "linux.resources.cpu.realtimeRuntime")


# -- pids -----------------------------------------------------------------------------------------


def test_pids(corral_runc: Runc, bundle: Bundle, cid: str) -> None:
    resources_bundle(bundle, {"pids": {"limit": 10}})
    create(corral_runc, bundle, cid)
    assert cg_file("pids", cid, "pids.max") == "10"


# -- block I/O ------------------------------------------------------------------------------------


def test_blkio_throttles(corral_runc: Runc, bundle: Bundle, cid: str) -> None:
    """The throttle layer is in every kernel with the blkio controller, whatever the scheduler."""
    major, minor = root_disk()
    resources_bundle(bundle, {"blockIO": throttles(major, minor)})
    create(corral_runc, bundle, cid)
    d = f"{major}:{minor}"
    assert cg_file("blkio", cid, "blkio.throttle.read_bps_device") == f"{d} 1048576"
    assert cg_file("blkio", cid, "blkio.throttle.write_bps_device") == f"{d} 2097152"
    assert cg_file("blkio", cid, "blkio.throttle.read_iops_device") == f"{d} 100"
    assert cg_file("blkio", cid, "blkio.throttle.write_iops_device") == f"{d} 200"


def _weight_file() -> str | None:
    """CFQ's blkio.weight left with Linux 5.0; BFQ's blkio.bfq.weight takes the same numbers.
    None on a kernel with neither (no BFQ built or loaded)."""
    files = host.cgroup_files("blkio")
    return next((f for f in ("blkio.weight", "blkio.bfq.weight") if f in files), None)


def test_blkio_weight(corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str) -> None:
    major, minor = root_disk()
    throttle = [{"major": major, "minor": minor, "rate": 1048576}]
    resources_bundle(bundle, {"blockIO": {"weight": 500, "throttleReadBpsDevice": throttle}})
    weight_file = _weight_file()
    if weight_file is None:
        line = assert_refused(
            corral_runc,
            runc_root,
            bundle,
            cid,
            "linux.resources.blockIO.weight",
            "blkio.bfq.weight is not available on this host",
        )
        assert "BFQ" in line
        return
    create(corral_runc, bundle, cid)
    weight = cg_file("blkio", cid, weight_file)
    assert weight.split()[-1] == "500", weight
    assert cg_file("blkio", cid, "blkio.throttle.read_bps_device") == f"{major}:{minor} 1048576"


def test_blkio_weight_device_on_a_bfq_disk(
    corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str
) -> None:
    """blkio.bfq.weight_device takes only disks whose scheduler is BFQ: the loop device made
    here is switched to bfq for the test. A kernel without BFQ has no such file: refused."""
    import subprocess

    if not host.has_cgroup_file("blkio", "blkio.bfq.weight_device"):
        resources_bundle(
            bundle, {"blockIO": {"weightDevice": [{"major": 7, "minor": 0, "weight": 300}]}}
        )
        line = assert_refused(
            corral_runc,
            runc_root,
            bundle,
            cid,
            "linux.resources.blockIO.weightDevice[0].weight",
            "blkio.bfq.weight_device is not available on this host",
        )
        assert "BFQ" in line
        return
    image = Path(str(bundle)) / "disk.img"
    with open(image, "wb") as f:
        f.truncate(1 * MiB)
    loop = subprocess.run(
        ["losetup", "--find", "--show", str(image)], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        name = os.path.basename(loop)
        Path(f"/sys/block/{name}/queue/scheduler").write_text("bfq")
        major, minor = Path(f"/sys/block/{name}/dev").read_text().strip().split(":")
        rule = {"major": int(major), "minor": int(minor), "weight": 300}
        resources_bundle(bundle, {"blockIO": {"weightDevice": [rule]}})
        create(corral_runc, bundle, cid)
        assert f"{major}:{minor} 300" in cg_file("blkio", cid, "blkio.bfq.weight_device")
        corral_runc("delete", "--force", cid, check=True)
    finally:
        subprocess.run(["losetup", "-d", loop], check=True)


def test_blkio_leaf_weight(corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str) -> None:
    """Leaf weights were CFQ's, which left with Linux 5.0."""
    resources_bundle(bundle, {"blockIO": {"leafWeight": 500}})
    if host.has_cgroup_file("blkio", "blkio.leaf_weight"):
        create(corral_runc, bundle, cid)
        assert cg_file("blkio", cid, "blkio.leaf_weight") == "500"
        return
    line = assert_refused(
        corral_runc, runc_root, bundle, cid, "linux.resources.blockIO.leafWeight", "not available"
    )
    assert "CFQ" in line


# -- controllers a host may not have --------------------------------------------------------------


def _rdma_device() -> str:
    """An RDMA device of this host, or a made-up name where there is none."""
    names = (
        sorted(os.listdir("/sys/class/infiniband"))
        if os.path.isdir("/sys/class/infiniband")
        else []
    )
    return names[0] if names else "mlx5_0"


@pytest.mark.parametrize(
    ("resources", "field", "controller", "name", "expected"),
    [
        pytest.param(
            {"hugepageLimits": [{"pageSize": "2MB", "limit": 4 * MiB}]},
            "linux.resources.hugepageLimits[0]",
            "hugetlb",
            "hugetlb.2MB.limit_in_bytes",
            str(4 * MiB),
            id="hugepageLimits",
        ),
        pytest.param(
            {"network": {"classID": 0x100001}},
            "linux.resources.network.classID",
            "net_cls",
            "net_cls.classid",
            str(0x100001),
            id="network.classID",
        ),
        pytest.param(
            {"network": {"priorities": [{"name": "lo", "priority": 5}]}},
            "linux.resources.network.priorities[0]",
            "net_prio",
            "net_prio.ifpriomap",
            "lo 5",
            id="network.priorities",
        ),
        pytest.param(
            {"rdma": {_rdma_device(): {"hcaHandles": 2}}},
            f'linux.resources.rdma["{_rdma_device()}"]',
            "rdma",
            "rdma.max",
            f"{_rdma_device()} hca_handle=2",
            id="rdma",
        ),
    ],
)
def test_controllers_a_host_may_lack(
    corral_runc: Runc,
    runc_root: Path,
    bundle: Bundle,
    cid: str,
    resources: dict[str, Any],
    field: str,
    controller: str,
    name: str,
    expected: str,
) -> None:
    """Where the host has the controller and file, the value is in the kernel's file; where it
    does not, create fails with one line naming the field and what is missing."""
    resources_bundle(bundle, resources)
    if not host.has_controller(controller):
        assert_refused(
            corral_runc,
            runc_root,
            bundle,
            cid,
            field,
            f"the {controller} controller is not mounted",
        )
    elif not host.has_cgroup_file(controller, name):
        assert_refused(corral_runc, runc_root, bundle, cid, field, f"{name} is not available")
    elif controller == "rdma" and not os.path.isdir("/sys/class/infiniband"):
        assert_refused(corral_runc, runc_root, bundle, cid, field, name)  # no device to limit
    else:
        create(corral_runc, bundle, cid)
        assert expected in cg_file(controller, cid, name).splitlines()


def test_unified_needs_cgroup_v2(
    corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str
) -> None:
    """This module runs on v1 and hybrid hosts (see the docstring)."""
    resources_bundle(bundle, {"unified": {"memory.high": "50000000"}})
    assert_refused(corral_runc, runc_root, bundle, cid, "linux.resources.unified", "cgroup v2")


# -- devices --------------------------------------------------------------------------------------


def test_devices_list(corral_runc: Runc, bundle: Bundle, cid: str) -> None:
    """Deny all, then the config's rules, then runc's default allowances (/dev/null & co)."""
    rules = [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 4, "minor": 64, "access": "rw"},
        {"allow": True, "type": "b", "major": 7, "access": "r"},
    ]
    resources_bundle(bundle, {"devices": rules})
    create(corral_runc, bundle, cid)
    listed = set(cg_file("devices", cid, "devices.list").splitlines())
    assert {"c 4:64 rw", "b 7:* r", "c 1:3 rwm", "c 1:5 rwm", "c 136:* rwm"} <= listed
    assert "a *:* rwm" not in listed


# -- update ---------------------------------------------------------------------------------------


@pytest.fixture
def running(corral_runc: Runc, bundle: Bundle, cid: str) -> str:
    resources_bundle(bundle, {"memory": {"limit": 64 * MiB}, "pids": {"limit": 10}})
    corral_runc("run", "-d", "--bundle", bundle, cid, check=True)
    return cid


def test_update_flags(corral_runc: Runc, running: str) -> None:
    cid = running
    corral_runc(
        "update",
        "--memory",
        "128m",
        "--pids-limit",
        "20",
        "--cpu-quota",
        "30000",
        "--cpu-period",
        "100000",
        "--cpu-share",
        "256",
        "--cpuset-cpus",
        "0",
        cid,
        check=True,
    )
    assert cg_file("memory", cid, "memory.limit_in_bytes") == str(128 * MiB)
    assert cg_file("pids", cid, "pids.max") == "20"
    assert cg_file("cpu", cid, "cpu.cfs_quota_us") == "30000"
    assert cg_file("cpu", cid, "cpu.cfs_period_us") == "100000"
    assert cg_file("cpu", cid, "cpu.shares") == "256"
    assert cg_file("cpuset", cid, "cpuset.cpus") == "0"
    assert status(corral_runc, cid) == "running"


def test_update_memory_and_swap_shrink_and_grow(corral_runc: Runc, running: str) -> None:
    cid = running
    if not host.has_swap_accounting():
        done = corral_runc("update", "--memory", "256m", "--memory-swap", "512m", cid)
        assert done.returncode == 1, done
        assert done.stderr.count("\n") == 1, done.stderr
        assert "linux.resources.memory.swap" in done.stderr
        assert "swap accounting off" in done.stderr
        assert cg_file("memory", cid, "memory.limit_in_bytes") == str(64 * MiB)  # unchanged
        return
    corral_runc("update", "--memory", "256m", "--memory-swap", "512m", cid, check=True)
    assert cg_file("memory", cid, "memory.limit_in_bytes") == str(256 * MiB)
    assert cg_file("memory", cid, "memory.memsw.limit_in_bytes") == str(512 * MiB)
    corral_runc("update", "--memory", "32m", "--memory-swap", "48m", cid, check=True)
    assert cg_file("memory", cid, "memory.limit_in_bytes") == str(32 * MiB)
    assert cg_file("memory", cid, "memory.memsw.limit_in_bytes") == str(48 * MiB)


def test_update_resources_file(corral_runc: Runc, running: str, tmp_path: Path) -> None:
    cid = running
    path = tmp_path / "resources.json"
    path.write_text(json.dumps({"memory": {"limit": 96 * MiB}, "pids": {"limit": 15}}))
    corral_runc("update", "--resources", str(path), cid, check=True)
    assert cg_file("memory", cid, "memory.limit_in_bytes") == str(96 * MiB)
    assert cg_file("pids", cid, "pids.max") == "15"
    assert status(corral_runc, cid) == "running"


def test_update_resources_stdin(corral_runc: Runc, running: str) -> None:
    cid = running
    doc = json.dumps({"cpu": {"shares": 768}, "pids": {"limit": 25}})
    corral_runc("update", "--resources", "-", cid, input=doc, check=True)
    assert cg_file("cpu", cid, "cpu.shares") == "768"
    assert cg_file("pids", cid, "pids.max") == "25"
    assert status(corral_runc, cid) == "running"


def test_update_blkio_weight(corral_runc: Runc, running: str) -> None:
    """Without a weight file (no BFQ, no CFQ) the update is one line naming the field, and the
    other value in the same document is not written either."""
    cid = running
    doc = json.dumps({"cpu": {"shares": 768}, "blockIO": {"weight": 200}})
    weight_file = _weight_file()
    if weight_file is None:
        done = corral_runc("update", "--resources", "-", cid, input=doc)
        assert done.returncode == 1, done
        assert done.stderr.count("\n") == 1, done.stderr
        assert "linux.resources.blockIO.weight: blkio.bfq.weight is not available" in done.stderr
        assert cg_file("cpu", cid, "cpu.shares") != "768"
    else:
        corral_runc("update", "--resources", "-", cid, input=doc, check=True)
        assert cg_file("cpu", cid, "cpu.shares") == "768"
        assert cg_file("blkio", cid, weight_file).split()[-1] == "200"
    assert status(corral_runc, cid) == "running"


def test_update_bad_value_changes_nothing(corral_runc: Runc, running: str) -> None:
    cid = running
    done = corral_runc(
        "update",
        "--resources",
        "-",
        cid,
        input=json.dumps({"pids": {"limit": 30}, "cpu": {"shares": 1}}),
    )
    assert done.returncode == 1
    assert "linux.resources.cpu.shares" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert cg_file("pids", cid, "pids.max") == "10"
    assert status(corral_runc, cid) == "running"


# -- pause / resume -------------------------------------------------------------------------------


def _counter_bundle(bundle: Bundle, host_dir: Path) -> Bundle:
    host_dir.mkdir()

    def edit(config: dict[str, Any]) -> None:
        config["mounts"].append(
            {
                "destination": "/out",
                "type": "bind",
                "source": str(host_dir),
                "options": ["rbind", "rw"],
            }
        )

    script = "i=0; while :; do i=$((i+1)); echo $i > /out/n.tmp; mv /out/n.tmp /out/n; done"
    return bundle.set(args=["sh", "-c", script], edit=edit)


def _count(host_dir: Path) -> int:
    for _ in range(100):
        try:
            return int((host_dir / "n").read_text())
        except (FileNotFoundError, ValueError):
            time.sleep(0.01)
    raise AssertionError("the counter never appeared")


def test_pause_stops_progress_and_resume_restarts_it(
    corral_runc: Runc, bundle: Bundle, cid: str, tmp_path: Path
) -> None:
    host_dir = tmp_path / "out"
    _counter_bundle(bundle, host_dir)
    corral_runc("run", "-d", "--bundle", bundle, cid, check=True)
    first = _count(host_dir)
    time.sleep(0.2)
    assert _count(host_dir) > first
    corral_runc("pause", cid, check=True)
    assert status(corral_runc, cid) == "paused"
    usage = cg_file("cpuacct", cid, "cpuacct.usage")
    frozen_at = _count(host_dir)
    time.sleep(0.5)
    assert _count(host_dir) == frozen_at
    assert cg_file("cpuacct", cid, "cpuacct.usage") == usage
    corral_runc("resume", cid, check=True)
    assert status(corral_runc, cid) == "running"
    time.sleep(0.3)
    assert _count(host_dir) > frozen_at


def test_kill_all_on_a_paused_container(
    corral_runc: Runc, bundle: Bundle, cid: str, tmp_path: Path
) -> None:
    bundle.set(args=["sh", "-c", "sleep 100 & sleep 100 & wait"])
    corral_runc("run", "-d", "--bundle", bundle, cid, check=True)
    corral_runc("pause", cid, check=True)
    corral_runc("kill", "--all", cid, "KILL", check=True)
    _wait_until(lambda: status(corral_runc, cid) == "stopped")
    _wait_until(lambda: cg_file("pids", cid, "cgroup.procs") == "")
    corral_runc("delete", cid, check=True)
    assert cgroup_dirs(cid) == []


def test_delete_force_of_a_paused_container(
    corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str
) -> None:
    bundle.set(args=["sh", "-c", "sleep 100 & sleep 100 & wait"])
    corral_runc("run", "-d", "--bundle", bundle, cid, check=True)
    corral_runc("pause", cid, check=True)
    done = corral_runc("delete", cid)
    assert done.returncode == 1 and "paused" in done.stderr
    corral_runc("delete", "--force", cid, check=True)
    assert cgroup_dirs(cid) == []
    assert list(runc_root.iterdir()) == []


def _wait_until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# -- update: the same validation as create, before anything changes (issue 10) -------------------


@pytest.mark.parametrize(
    ("doc", "field", "message"),
    [
        pytest.param(
            {"pids": {"limit": 20}, "hugepageLimits": [{"pageSize": "1TB", "limit": 0}]},
            "linux.resources.hugepageLimits[0].pageSize",
            'must be a page size like "2MB", got "1TB"',
            id="page size 1TB",
        ),
        pytest.param(
            {"pids": {"limit": 20}, "memory": {"swappiness": -1}},
            "linux.resources.memory.swappiness",
            "must be a non-negative integer, got -1",
            id="swappiness -1",
        ),
        pytest.param(
            {"pids": {"limit": 20}, "memory": {"swap": 32 * MiB}},
            "linux.resources.memory.swap",
            f"is memory+swap and must not be below memory.limit ({64 * MiB}), got {32 * MiB}",
            id="swap below the container's memory limit",
        ),
    ],
)
def test_update_resources_are_validated_before_anything_changes(
    corral_runc: Runc, running: str, doc: dict[str, Any], field: str, message: str
) -> None:
    """update --resources gets config.json's rules, with the container's own values for the
    rules between fields: one line naming the field, and the good values beside the bad one
    (pids.limit 20) are not written either."""
    cid = running
    done = corral_runc("update", "--resources", "-", cid, input=json.dumps(doc))
    assert done.returncode == 1, done
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.strip() == f"{field}: {message}"
    assert cg_file("pids", cid, "pids.max") == "10"
    assert cg_file("memory", cid, "memory.limit_in_bytes") == str(64 * MiB)
    # What the container records did not change either: a later update merges with it.
    corral_runc("update", "--pids-limit", "30", cid, check=True)
    assert cg_file("memory", cid, "memory.limit_in_bytes") == str(64 * MiB)


def test_update_flags_are_validated_and_name_the_flag(corral_runc: Runc, running: str) -> None:
    cid = running
    done = corral_runc("update", "--memory-swap", "32m", "--pids-limit", "20", cid)
    assert done.returncode == 1, done
    assert done.stderr.strip() == (
        f"--memory-swap: is memory+swap and must not be below memory.limit ({64 * MiB}),"
        f" got {32 * MiB}"
    )
    assert cg_file("pids", cid, "pids.max") == "10"
    done = corral_runc("update", "--cpu-share", "1", cid)
    assert (done.returncode, done.stderr.strip()) == (
        1,
        "--cpu-share: must be 0 (not set) or 2 to 262144, got 1",
    )
