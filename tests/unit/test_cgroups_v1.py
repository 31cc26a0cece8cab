"""The v1 / hybrid manager against a fake cgroupfs (corral.cgroups.testing): no root needed."""

from __future__ import annotations

import errno
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import corral.cgroups as cgroups
from corral.cgroups import _base
from corral.cgroups.testing import V1_HIERARCHIES, FakeCgroupfs
from corral.cgroups.v1 import V1Manager
from corral.errors import CgroupError

PATH = "/corral/c1"


def open_v1(fake: FakeCgroupfs) -> V1Manager:
    mgr = cgroups.open_manager(PATH, root=fake.root, mountinfo=fake.mountinfo)
    assert isinstance(mgr, V1Manager)
    return mgr


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeCgroupfs]:
    with FakeCgroupfs(str(tmp_path), "hybrid") as fake:
        yield fake


@pytest.fixture
def mgr(fake: FakeCgroupfs) -> V1Manager:
    mgr = open_v1(fake)
    mgr.create()
    fake.writes.clear()
    return mgr


# -- create, join, list, destroy ----------------------------------------------------------------


def test_create_makes_a_directory_in_every_hierarchy(fake: FakeCgroupfs) -> None:
    mgr = open_v1(fake)
    assert not mgr.exists()
    mgr.create()
    assert mgr.exists()
    for names in V1_HIERARCHIES:
        assert os.path.isdir(f"{fake.root}/{names.removeprefix('name=')}{PATH}")
    assert os.path.isdir(f"{fake.root}/unified{PATH}")
    assert os.path.isfile(f"{fake.root}/unified{PATH}/cgroup.kill")
    mgr.create()  # again: nothing to do, no error


def test_create_copies_cpuset_down_every_new_level(fake: FakeCgroupfs) -> None:
    open_v1(fake).create()
    for level in ("cpuset/corral", "cpuset/corral/c1"):
        assert fake.read(f"{level}/cpuset.cpus") == "0-3"
        assert fake.read(f"{level}/cpuset.mems") == "0"


def test_create_repairs_an_empty_cpuset_left_by_a_crash(fake: FakeCgroupfs) -> None:
    os.makedirs(f"{fake.root}/cpuset/corral")
    Path(f"{fake.root}/cpuset/corral/cpuset.cpus").write_text("")
    Path(f"{fake.root}/cpuset/corral/cpuset.mems").write_text("")
    open_v1(fake).create()
    assert fake.read("cpuset/corral/cpuset.cpus") == "0-3"
    assert fake.read("cpuset/corral/c1/cpuset.cpus") == "0-3"


def test_create_reports_mkdir_failures(fake: FakeCgroupfs, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: str) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", path)

    monkeypatch.setattr(_base, "mkdir", refuse)
    with pytest.raises(CgroupError, match=r"creating cgroup .*/corral: Permission denied"):
        open_v1(fake).create()


def test_procs_files_add_and_pids(mgr: V1Manager, fake: FakeCgroupfs) -> None:
    files = mgr.procs_files()
    assert len(files) == len(V1_HIERARCHIES) + 1
    assert f"{fake.root}/name=systemd" not in "".join(files)
    assert f"{fake.root}/systemd{PATH}/cgroup.procs" in files
    assert files[-1] == f"{fake.root}/unified{PATH}/cgroup.procs"
    mgr.add(4242)
    assert all(Path(f).read_text() == "4242" for f in files)
    # a sub-cgroup's processes are the container's too
    os.mkdir(f"{fake.root}/freezer{PATH}/sub")
    Path(f"{fake.root}/freezer{PATH}/sub/cgroup.procs").write_text("77\n78\n")
    assert sorted(mgr.pids()) == [77, 78, 4242]


def test_add_reports_the_kernel_error(mgr: V1Manager, fake: FakeCgroupfs) -> None:
    fake.fail[f"memory{PATH}/cgroup.procs"] = errno.ESRCH
    with pytest.raises(CgroupError, match=r"adding process 9 to .*/memory/corral/c1/cgroup.procs"):
        mgr.add(9)


def test_destroy_removes_sub_cgroups_first_and_is_idempotent(
    mgr: V1Manager, fake: FakeCgroupfs
) -> None:
    fake.mkdir(f"{fake.root}/memory{PATH}/sub")
    fake.mkdir(f"{fake.root}/memory{PATH}/sub/deeper")
    mgr.destroy()
    assert not mgr.exists()
    assert os.path.isdir(f"{fake.root}/memory/corral")  # the parent stays, as with runc
    mgr.destroy()


def test_destroy_retries_ebusy(mgr: V1Manager, fake: FakeCgroupfs) -> None:
    fake.busy[f"pids{PATH}"] = 3  # processes still exiting
    mgr.destroy()
    assert not mgr.exists()
    assert fake.slept >= 3


def test_destroy_gives_up_on_a_cgroup_that_stays_busy(
    mgr: V1Manager, fake: FakeCgroupfs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_base, "DESTROY_TIMEOUT", 0.01)
    Path(f"{fake.root}/pids{PATH}/cgroup.procs").write_text(str(os.getpid()))
    with pytest.raises(CgroupError, match=r"removing cgroup .*pids/corral/c1: Device or resource"):
        mgr.destroy()
    # the others went anyway
    assert not os.path.exists(f"{fake.root}/blkio{PATH}")


# -- set() ------------------------------------------------------------------------------------


def test_memory(mgr: V1Manager, fake: FakeCgroupfs) -> None:
    mgr.set(
        {
            "memory": {
                "limit": 256 << 20,
                "reservation": 128 << 20,
                "swap": 512 << 20,
                "kernel": 1 << 20,  # ignored, as runc does
                "kernelTCP": 64 << 20,
                "swappiness": 10,
                "disableOOMKiller": True,
                "useHierarchy": True,
            }
        }
    )
    d = f"memory{PATH}"
    assert fake.writes == [
        (f"{d}/memory.limit_in_bytes", str(256 << 20)),  # below the current limit: first
        (f"{d}/memory.memsw.limit_in_bytes", str(512 << 20)),
        (f"{d}/memory.soft_limit_in_bytes", str(128 << 20)),
        (f"{d}/memory.kmem.tcp.limit_in_bytes", str(64 << 20)),
        (f"{d}/memory.swappiness", "10"),
        (f"{d}/memory.oom_control", "1"),
        (f"{d}/memory.use_hierarchy", "1"),
    ]


def test_memory_growing_writes_memsw_first(mgr: V1Manager, fake: FakeCgroupfs) -> None:
    """memsw must never be below the memory limit, in between the two writes too."""
    mgr.set({"memory": {"limit": 100 << 20, "swap": 200 << 20}})
    fake.writes.clear()
    mgr.set({"memory": {"limit": 1 << 30, "swap": 2 << 30}})
    assert [w[0].rsplit("/", 1)[1] for w in fake.writes] == [
        "memory.memsw.limit_in_bytes",
        "memory.limit_in_bytes",
    ]
    fake.writes.clear()
    mgr.set({"memory": {"limit": 1 << 20, "swap": -1}})
    assert fake.writes[0] == (f"memory{PATH}/memory.memsw.limit_in_bytes", "-1")


def test_unlimited_memory_means_unlimited_swap(mgr: V1Manager, fake: FakeCgroupfs) -> None:
    mgr.set({"memory": {"limit": -1}})
    assert fake.written("memory.memsw.limit_in_bytes") == ["-1"]
    assert fake.written("memory.limit_in_bytes") == ["-1"]


def test_swap_without_swap_accounting(tmp_path: Path) -> None:
    with FakeCgroupfs(str(tmp_path), "v1", missing=("memory.memsw.limit_in_bytes",)) as fake:
        mgr = open_v1(fake)
        mgr.create()
        fake.writes.clear()
        with pytest.raises(CgroupError) as info:
            mgr.set({"memory": {"limit": 100 << 20, "swap": 200 << 20}})
        assert str(info.value) == (
            "linux.resources.memory.swap: memory.memsw.limit_in_bytes is not available on this"
            " host (swap accounting off)"
        )
        assert fake.writes == []
        mgr.set({"memory": {"limit": -1}})  # implied unlimited swap is skipped quietly
        assert fake.written("memory.limit_in_bytes") == ["-1"]


@pytest.mark.parametrize(
    ("missing", "cpu", "message"),
    [
        (
            ("cpu.idle",),
            {"idle": 1},
            "linux.resources.cpu.idle: cpu.idle is not available on this host"
            " (needs Linux 5.15 or later)",
        ),
        (
            ("cpu.rt_period_us", "cpu.rt_runtime_us"),
            {"realtimePeriod": 500000, "realtimeRuntime": 1000},
            "linux.resources.cpu.realtimePeriod: cpu.rt_period_us is not available on this"
            " host (kernel built without CONFIG_RT_GROUP_SCHED)",
        ),
        (
            ("cpu.cfs_burst_us",),
            {"burst": 1000},
            "linux.resources.cpu.burst: cpu.cfs_burst_us is not available on this host"
            " (needs Linux 5.14 or later)",
        ),
    ],
    ids=["idle", "realtime", "burst"],
)
def test_cpu_files_an_older_or_smaller_kernel_lacks(
    tmp_path: Path, missing: tuple[str, ...], cpu: dict[str, int], message: str
) -> None:
    with FakeCgroupfs(str(tmp_path), "hybrid", missing=missing) as fake:
        mgr = open_v1(fake)
        mgr.create()
        fake.writes.clear()
        with pytest.raises(CgroupError) as info:
            mgr.set({"cpu": {"shares": 512, **cpu}})
        assert str(info.value) == message
        assert fake.writes == []


def test_memory_limit_refused_by_the_kernel(mgr: V1Manager, fake: FakeCgroupfs) -> None:
    fake.fail[f"memory{PATH}/memory.limit_in_bytes"] = errno.EBUSY
    with pytest.raises(CgroupError) as info:
        mgr.set({"memory": {"limit": 4096}})
    assert str(info.value) == (
        f"linux.resources.memory.limit: writing '4096' to {fake.root}/memory{PATH}/"
        "memory.limit_in_bytes: Device or resource busy (the cgroup already uses more memory"
        " than that)"
    )


def test_cpu(mgr: V1Manager, fake: FakeCgroupfs) -> None:
    mgr.set(
        {
            "cpu": {
                "shares": 512,
                "quota": 50000,
                "period": 100000,
                "burst": 1000,
                "realtimePeriod": 1000000,
                "realtimeRuntime": 950000,
                "cpus": "0-1,3",
                "mems": "0",
                "idle": 1,
            }
        }
    )
    assert [(p.split("/")[0], p.rsplit("/", 1)[1], v) for p, v in fake.writes] == [
        ("cpu,cpuacct", "cpu.cfs_period_us", "100000"),
        ("cpu,cpuacct", "cpu.cfs_quota_us", "50000"),
        ("cpu,cpuacct", "cpu.shares", "512"),
        ("cpu,cpuacct", "cpu.cfs_burst_us", "1000"),
        ("cpu,cpuacct", "cpu.rt_period_us", "1000000"),
        ("cpu,cpuacct", "cpu.rt_runtime_us", "950000"),
        ("cpu,cpuacct", "cpu.idle", "1"),
        ("cpuset", "cpuset.cpus", "0-1,3"),
        ("cpuset", "cpuset.mems", "0"),
    ]


def test_cpu_period_refused_before_the_quota_is_retried(mgr: V1Manager, fake: FakeCgroupfs) -> None:
    fake.fail[f"cpu,cpuacct{PATH}/cpu.cfs_period_us"] = errno.EINVAL
    mgr.set({"cpu": {"quota": 5000, "period": 10000}})
    assert fake.writes == [
        (f"cpu,cpuacct{PATH}/cpu.cfs_quota_us", "5000"),
        (f"cpu,cpuacct{PATH}/cpu.cfs_period_us", "10000"),
    ]


def test_cpu_period_refused_without_quota_is_an_error(mgr: V1Manager, fake: FakeCgroupfs) -> None:
    fake.fail[f"cpu,cpuacct{PATH}/cpu.cfs_period_us"] = errno.EINVAL
    with pytest.raises(CgroupError, match=r"linux.resources.cpu.period: writing '10000'"):
        mgr.set({"cpu": {"period": 10000}})


def test_unlimited_quota_and_zero_values(mgr: V1Manager, fake: FakeCgroupfs) -> None:
    mgr.set({"cpu": {"quota": -1, "shares": 0, "period": 0}, "memory": {"limit": 0}})
    assert fake.writes == [(f"cpu,cpuacct{PATH}/cpu.cfs_quota_us", "-1")]


@pytest.mark.parametrize(("limit", "text"), [(100, "100"), (0, "max"), (-1, "max")])
def test_pids(mgr: V1Manager, fake: FakeCgroupfs, limit: int, text: str) -> None:
    mgr.set({"pids": {"limit": limit}})
    assert fake.writes == [(f"pids{PATH}/pids.max", text)]


def test_block_io_on_a_bfq_kernel(mgr: V1Manager, fake: FakeCgroupfs) -> None:
    mgr.set(
        {
            "blockIO": {
                "weight": 300,
                "weightDevice": [{"major": 8, "minor": 0, "weight": 500}],
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                "throttleWriteBpsDevice": [{"major": 8, "minor": 16, "rate": 2097152}],
                "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 100}],
                "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 200}],
            }
        }
    )
    assert [(p.rsplit("/", 1)[1], v) for p, v in fake.writes] == [
        ("blkio.bfq.weight", "300"),
        ("blkio.bfq.weight_device", "8:0 500"),
        ("blkio.throttle.read_bps_device", "8:0 1048576"),
        ("blkio.throttle.write_bps_device", "8:16 2097152"),
        ("blkio.throttle.read_iops_device", "8:0 100"),
        ("blkio.throttle.write_iops_device", "8:0 200"),
    ]


def test_block_io_on_a_cfq_kernel(mgr: V1Manager, fake: FakeCgroupfs) -> None:
    for name in ("blkio.weight", "blkio.weight_device", "blkio.leaf_weight"):
        Path(f"{fake.root}/blkio{PATH}/{name}").write_text("")
    mgr.set(
        {
            "blockIO": {
                "weight": 10,
                "leafWeight": 1000,
                "weightDevice": [{"major": 8, "minor": 0, "weight": 20}],
            }
        }
    )
    assert [(p.rsplit("/", 1)[1], v) for p, v in fake.writes] == [
        ("blkio.weight", "10"),
        ("blkio.leaf_weight", "1000"),
        ("blkio.weight_device", "8:0 20"),
    ]


def test_weights_on_a_kernel_without_bfq_or_cfq(mgr: V1Manager, fake: FakeCgroupfs) -> None:
    """A 5.0+ kernel without BFQ has no weight file at all: one line naming the field and the
    file, nothing written (not even the throttle given with it)."""
    for name in ("blkio.bfq.weight", "blkio.bfq.weight_device"):
        os.unlink(f"{fake.root}/blkio{PATH}/{name}")
    throttle = {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1}]}
    with pytest.raises(CgroupError) as info:
        mgr.set({"blockIO": {"weight": 300, **throttle}})
    assert str(info.value) == (
        "linux.resources.blockIO.weight: blkio.bfq.weight is not available on this host"
        " (needs the BFQ I/O scheduler; CFQ's blkio.weight left with Linux 5.0)"
    )
    with pytest.raises(CgroupError) as info:
        mgr.set({"blockIO": {"weightDevice": [{"major": 8, "minor": 0, "weight": 500}]}})
    assert str(info.value) == (
        "linux.resources.blockIO.weightDevice[0].weight: blkio.bfq.weight_device is not"
        " available on this host (per-device weights need the BFQ I/O scheduler)"
    )
    assert fake.writes == []


def test_leaf_weight_needs_cfq(mgr: V1Manager) -> None:
    with pytest.raises(CgroupError) as info:
        mgr.set({"blockIO": {"leafWeight": 500}})
    assert str(info.value) == (
        "linux.resources.blockIO.leafWeight: blkio.leaf_weight is not available on this host"
        " (needs the CFQ I/O scheduler, removed in Linux 5.0)"
    )


def test_hugepages(mgr: V1Manager, fake: FakeCgroupfs) -> None:
    mgr.set(
        {"hugepageLimits": [{"pageSize": "2MB", "limit": 1 << 30}, {"pageSize": "1GB", "limit": 0}]}
    )
    assert fake.writes == [
        (f"hugetlb{PATH}/hugetlb.2MB.limit_in_bytes", str(1 << 30)),
        (f"hugetlb{PATH}/hugetlb.1GB.limit_in_bytes", "0"),
    ]
    with pytest.raises(CgroupError) as info:
        mgr.set({"hugepageLimits": [{"pageSize": "64KB", "limit": 1}]})
    assert str(info.value) == (
        "linux.resources.hugepageLimits[0]: hugetlb.64KB.limit_in_bytes is not available on this"
        " host (this huge page size is not supported here)"
    )


def test_network_and_rdma(mgr: V1Manager, fake: FakeCgroupfs) -> None:
    mgr.set(
        {
            "network": {"classID": 0x100001, "priorities": [{"name": "eth0", "priority": 5}]},
            "rdma": {"mlx5_0": {"hcaHandles": 3, "hcaObjects": 10000}, "mlx4_0": {}},
        }
    )
    assert fake.writes == [
        (f"net_cls,net_prio{PATH}/net_cls.classid", str(0x100001)),
        (f"net_cls,net_prio{PATH}/net_prio.ifpriomap", "eth0 5"),
        (f"rdma{PATH}/rdma.max", "mlx5_0 hca_handle=3 hca_object=10000"),
    ]


def test_devices_deny_all_then_each_rule_in_order(mgr: V1Manager, fake: FakeCgroupfs) -> None:
    mgr.set(
        {
            "devices": [
                {"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"},
                {"allow": True, "type": "c", "major": 136, "access": "mwr"},
                {"allow": False, "type": "b", "major": 8, "minor": 0},
                *cgroups.DEFAULT_DEVICE_RULES[:1],
            ]
        }
    )
    assert [(p.rsplit("/", 1)[1], v) for p, v in fake.writes] == [
        ("devices.deny", "a"),
        ("devices.deny", "a"),
        ("devices.allow", "c 1:3 rw"),
        ("devices.allow", "c 136:* rwm"),
        ("devices.deny", "b 8:0 rwm"),
        ("devices.allow", "c *:* m"),
    ]


def test_devices_untouched_without_a_list(mgr: V1Manager, fake: FakeCgroupfs) -> None:
    mgr.set({"pids": {"limit": 1}})
    assert fake.written("devices.deny") == []
    mgr.set({"devices": []})
    assert fake.written("devices.deny") == ["a"]


def test_unified_needs_v2(mgr: V1Manager) -> None:
    with pytest.raises(
        CgroupError,
        match=r"linux.resources.unified: needs cgroup v2; this host"
        " runs cgroup hybrid",
    ):
        mgr.set({"unified": {"memory.high": "1G"}})


def test_controller_not_mounted(tmp_path: Path) -> None:
    hierarchies = tuple(h for h in V1_HIERARCHIES if h not in ("hugetlb", "net_cls,net_prio"))
    with FakeCgroupfs(str(tmp_path), "v1", hierarchies=hierarchies) as fake:
        mgr = open_v1(fake)
        mgr.create()
        fake.writes.clear()
        with pytest.raises(CgroupError) as info:
            mgr.set({"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]})
        assert str(info.value) == (
            "linux.resources.hugepageLimits[0]: the hugetlb controller is not mounted on this host"
        )
        with pytest.raises(CgroupError, match=r"linux.resources.network.classID: the net_cls"):
            mgr.set({"pids": {"limit": 3}, "network": {"classID": 1}})
        assert fake.writes == []
        mgr.set({"network": {"classID": 0}})  # "not set": fine anywhere


def test_set_on_a_cgroup_that_was_never_created(fake: FakeCgroupfs) -> None:
    with pytest.raises(CgroupError, match=r"linux.resources.pids.limit: cgroup .* does not exist"):
        open_v1(fake).set({"pids": {"limit": 1}})


# -- freezer ----------------------------------------------------------------------------------


def test_freeze_and_thaw(mgr: V1Manager, fake: FakeCgroupfs) -> None:
    assert not mgr.frozen()
    mgr.freeze()
    assert mgr.frozen()
    assert fake.read(f"freezer{PATH}/freezer.state") == "FROZEN"
    mgr.thaw()
    assert not mgr.frozen()
    assert fake.read(f"freezer{PATH}/freezer.state") == "THAWED"


def test_freeze_waits_through_freezing(tmp_path: Path) -> None:
    with FakeCgroupfs(str(tmp_path), "hybrid", freeze_ticks=3) as fake:
        mgr = open_v1(fake)
        mgr.create()
        mgr.freeze()
        assert mgr.frozen()
        assert fake.slept == 3
        assert fake.written("freezer.state") == ["FROZEN"] * 4  # re-written each round, as runc


def test_freeze_that_never_completes_thaws_again(tmp_path: Path) -> None:
    with FakeCgroupfs(str(tmp_path), "hybrid", freeze_ticks=10**9) as fake:
        mgr = open_v1(fake)
        mgr.create()
        # long enough for the 50 tries before a periodic thaw on a loaded host (the fake's
        # sleep takes no time; 0.05 s was too short with other work on the 2 CPUs)
        with pytest.raises(CgroupError, match=r"still FREEZING after 0.5s .* thawed it again"):
            mgr.freeze(timeout=0.5)
        assert fake.read(f"freezer{PATH}/freezer.state") == "THAWED"
        assert "THAWED" in fake.written("freezer.state")[:-1]  # the periodic thaw of runc's loop


def test_unexpected_freezer_state(mgr: V1Manager, fake: FakeCgroupfs) -> None:
    fake.fail[f"freezer{PATH}/freezer.state"] = errno.EINVAL
    with pytest.raises(CgroupError, match=r"writing 'FROZEN'"):
        mgr.freeze()


def test_no_freezer_hierarchy(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    hierarchies = tuple(h for h in V1_HIERARCHIES if h != "freezer")
    with FakeCgroupfs(str(tmp_path), "v1", hierarchies=hierarchies) as fake:
        mgr = open_v1(fake)
        mgr.create()
        assert not mgr.can_freeze()
        assert not mgr.frozen()
        with pytest.raises(CgroupError, match=r"the freezer controller is not mounted"):
            mgr.freeze()
        mgr.add(sleeper.pid)
        mgr.kill(15)  # still works: signals each pid
        assert sleeper.wait(5) == -15


# -- kill -------------------------------------------------------------------------------------


def test_kill_freezes_signals_and_thaws(
    mgr: V1Manager, fake: FakeCgroupfs, sleeper: subprocess.Popen[bytes]
) -> None:
    mgr.add(sleeper.pid)
    mgr.kill(15)
    assert sleeper.wait(5) == -15
    assert fake.written("freezer.state") == ["FROZEN", "THAWED"]
    assert fake.written("cgroup.kill") == []


def test_kill_leaves_a_paused_container_paused(
    mgr: V1Manager, fake: FakeCgroupfs, sleeper: subprocess.Popen[bytes]
) -> None:
    mgr.add(sleeper.pid)
    mgr.freeze()
    mgr.kill(15)
    assert mgr.frozen()
    assert sleeper.wait(5) == -15  # the fake does not really freeze it


def test_sigkill_on_hybrid_uses_cgroup_kill(
    mgr: V1Manager, fake: FakeCgroupfs, sleeper: subprocess.Popen[bytes]
) -> None:
    mgr.add(sleeper.pid)
    mgr.freeze()
    mgr.kill(9)
    assert fake.written("cgroup.kill") == ["1"]
    # the fake's cgroup.kill empties only the unified dir; the v1 view still lists the pid, so
    # the freeze-signal-thaw pass runs and thaws (a v1-frozen process dies only when thawed)
    assert sleeper.wait(5) == -9
    assert not mgr.frozen()


def test_sigkill_on_pure_v1(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    with FakeCgroupfs(str(tmp_path), "v1") as fake:
        mgr = open_v1(fake)
        mgr.create()
        mgr.add(sleeper.pid)
        mgr.kill(9)
        assert sleeper.wait(5) == -9
        assert fake.written("freezer.state") == ["FROZEN", "THAWED"]


# -- stats, OOM -------------------------------------------------------------------------------


def test_stats(mgr: V1Manager, fake: FakeCgroupfs) -> None:
    def put(rel: str, text: str) -> None:
        Path(f"{fake.root}/{rel}").write_text(text)

    cpu, mem = f"cpu,cpuacct{PATH}", f"memory{PATH}"
    put(f"{cpu}/cpuacct.usage", "3000\n")
    put(f"{cpu}/cpuacct.usage_percpu", "1000 2000 \n")
    put(f"{cpu}/cpuacct.usage_all", "cpu user system\n0 600 400\n1 1500 500\n")
    put(f"{cpu}/cpuacct.stat", "user 3\nsystem 1\n")
    put(f"{cpu}/cpu.stat", "nr_periods 10\nnr_throttled 2\nthrottled_time 999\n")
    put(f"{mem}/memory.usage_in_bytes", "4096")
    put(f"{mem}/memory.max_usage_in_bytes", "8192")
    put(f"{mem}/memory.failcnt", "1")
    put(f"{mem}/memory.limit_in_bytes", "1048576")
    put(f"{mem}/memory.memsw.usage_in_bytes", "5000")
    put(f"{mem}/memory.stat", "cache 100\nrss 200\ntotal_cache 100\n")
    put(f"pids{PATH}/pids.current", "3")
    put(
        f"blkio{PATH}/blkio.throttle.io_service_bytes_recursive",
        "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\nTotal 12288\n",
    )
    put(f"blkio{PATH}/blkio.throttle.io_serviced_recursive", "8:0 Read 1\nTotal 1\n")
    put(f"hugetlb{PATH}/hugetlb.2MB.usage_in_bytes", "2097152")
    stats = mgr.stats()
    hz = os.sysconf("SC_CLK_TCK")
    assert stats["cpu"] == {
        "usage": {
            "total": 3000,
            "percpu": [1000, 2000],
            "percpu_kernel": [400, 500],
            "percpu_user": [600, 1500],
            "kernel": 1 * 10**9 // hz,
            "user": 3 * 10**9 // hz,
        },
        "throttling": {"periods": 10, "throttledPeriods": 2, "throttledTime": 999},
    }
    assert stats["memory"]["usage"] == {"usage": 4096, "max": 8192, "failcnt": 1, "limit": 1048576}
    assert stats["memory"]["swap"]["usage"] == 5000
    assert stats["memory"]["kernel"]["limit"] == 9223372036854771712
    assert stats["memory"]["cache"] == 100
    assert stats["memory"]["raw"] == {"cache": 100, "rss": 200, "total_cache": 100}
    assert stats["pids"] == {"current": 3, "limit": 0}  # "max" reads as 0, as in runc
    assert stats["blkio"] == {
        "ioServiceBytesRecursive": [
            {"major": 8, "minor": 0, "op": "Read", "value": 4096},
            {"major": 8, "minor": 0, "op": "Write", "value": 8192},
            {"major": 8, "minor": 0, "op": "Sync", "value": 0},
        ],
        "ioServicedRecursive": [{"major": 8, "minor": 0, "op": "Read", "value": 1}],
    }
    assert stats["hugetlb"]["2MB"] == {"usage": 2097152, "max": 0, "failcnt": 0}
    assert set(stats["hugetlb"]) == {"2MB", "1GB"}


def test_stats_without_controllers(tmp_path: Path) -> None:
    with FakeCgroupfs(str(tmp_path), "v1", hierarchies=("name=systemd",)) as fake:
        mgr = open_v1(fake)
        mgr.create()
        stats = mgr.stats()
        assert stats["cpu"]["usage"]["total"] == 0
        assert stats["memory"]["usage"]["usage"] == 0
        assert stats["pids"] == {"current": 0, "limit": 0}
        assert stats["hugetlb"] == {}


def test_oom_events_registers_an_eventfd(mgr: V1Manager, fake: FakeCgroupfs) -> None:
    fd = mgr.oom_events()
    try:
        (line,) = fake.written("cgroup.event_control")
        efd, cfd = line.split()
        assert int(efd) == fd
        assert int(cfd) != fd
        os.eventfd_write(fd, 1)  # what the kernel does on an OOM
        assert os.eventfd_read(fd) == 1
    finally:
        os.close(fd)
    Path(f"{fake.root}/memory{PATH}/memory.oom_control").write_text(
        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"
    )
    assert mgr.oom_kill_count() == 2


def test_kill_of_a_removed_cgroup_is_a_no_op(mgr: V1Manager, fake: FakeCgroupfs) -> None:
    mgr.destroy()
    mgr.kill(9)
    assert fake.writes == []


def test_kill_signals_even_when_freezing_fails(
    tmp_path: Path, sleeper: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_base, "FREEZE_TIMEOUT", 0.02)
    with FakeCgroupfs(str(tmp_path), "v1", freeze_ticks=10**9) as fake:
        mgr = open_v1(fake)
        mgr.create()
        mgr.add(sleeper.pid)
        with pytest.raises(CgroupError, match="still FREEZING"):
            mgr.kill(15)
        assert sleeper.wait(5) == -15


def test_oom_watch_counts_notifications_but_not_the_removal(
    mgr: V1Manager, fake: FakeCgroupfs
) -> None:
    watch = mgr.oom_watch()
    try:
        assert watch.mask == 0x001  # POLLIN on the eventfd
        assert watch.take() == 0  # nothing yet, and it does not block
        os.eventfd_write(watch.fd, 2)  # two OOMs
        assert watch.take() == 2
        assert watch.take() == 0
        os.eventfd_write(watch.fd, 1)  # one more OOM, then the cgroup is removed (one more)
        os.eventfd_write(watch.fd, 1)
        mgr.destroy()
        assert watch.take() == 1
    finally:
        watch.close()
        watch.close()  # closing twice is harmless


def test_join_plan_hybrid_self_joins_v1_through_tasks_memory_last(
    mgr: V1Manager, fake: FakeCgroupfs
) -> None:
    """v1 hierarchies are joined by the process itself through ``tasks`` (no global lock),
    memory last; the cgroup2 tree of a hybrid host is not joined (no controllers there)."""
    background, own = mgr.join_plan()
    assert background == []
    assert all(p.endswith("/tasks") for p in own)
    assert own[-1] == f"{fake.root}/memory{PATH}/tasks"
    assert f"{fake.root}/pids{PATH}/tasks" in own


# -- a cgroup removed while freeze, thaw or kill polls it (issue 10: rm -f stalled 5 s) --------


def _remove_container_cgroup(fake: FakeCgroupfs) -> None:
    """What the runtime's delete does once the container's last process is gone."""
    for names in (*V1_HIERARCHIES, "unified"):
        directory = f"{fake.root}/{names.removeprefix('name=')}{PATH}"
        if os.path.isdir(directory):
            Path(directory, "cgroup.procs").write_text("")
            fake.rmdir(directory)


def _vanish_after(fake: FakeCgroupfs, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """Remove the container's cgroup right after ``value`` is written to freezer.state."""
    write = _base.raw_write

    def raw_write(path: str, data: str) -> None:
        write(path, data)
        if path.endswith(f"freezer{PATH}/freezer.state") and data == value:
            _remove_container_cgroup(fake)

    monkeypatch.setattr(_base, "raw_write", raw_write)


def test_thaw_ends_at_once_when_the_cgroup_vanishes(
    mgr: V1Manager, fake: FakeCgroupfs, monkeypatch: pytest.MonkeyPatch
) -> None:
    mgr.freeze()
    _vanish_after(fake, monkeypatch, "THAWED")
    started = time.monotonic()
    mgr.thaw()  # no error: nothing is left to thaw
    assert time.monotonic() - started < 1.0  # not FREEZE_TIMEOUT (5 s) of polling
    assert not mgr.exists()
    mgr.thaw()  # gone before the write: also nothing to do


def test_sigkill_ends_at_once_when_the_container_is_deleted_during_the_thaw(
    mgr: V1Manager,
    fake: FakeCgroupfs,
    sleeper: subprocess.Popen[bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """rm -f: SIGKILL through freeze-signal-thaw; the init dies as soon as it is thawed and its
    monitor deletes the container, cgroup included, while kill still waits for THAWED."""
    mgr.add(sleeper.pid)
    _vanish_after(fake, monkeypatch, "THAWED")
    started = time.monotonic()
    mgr.kill(9)
    assert time.monotonic() - started < 1.0
    assert sleeper.wait(5) == -9
    assert not mgr.exists()


@pytest.mark.parametrize("sig", [15, 9])
def test_kill_ends_at_once_when_the_cgroup_vanishes_while_freezing(
    tmp_path: Path, sleeper: subprocess.Popen[bytes], sig: int
) -> None:
    """The processes end (and the container is deleted) while the freezer is still FREEZING:
    kill has nothing left to signal, so it returns at once and without an error."""
    with FakeCgroupfs(str(tmp_path), "v1", freeze_ticks=10**9) as fake:
        mgr = open_v1(fake)
        mgr.create()
        mgr.add(sleeper.pid)
        tick = fake.sleep

        def sleep(seconds: float) -> None:
            tick(seconds)
            if fake.slept == 3:
                sleeper.kill()
                _remove_container_cgroup(fake)

        # Patched by hand, not with monkeypatch: its undo would run after the fake's exit and
        # leave the fake's sleep in place for every later test of this process.
        _base.sleep = sleep
        try:
            started = time.monotonic()
            mgr.kill(sig)
        finally:
            _base.sleep = tick
        assert time.monotonic() - started < 1.0
        assert fake.slept == 3
        assert not mgr.exists()


def test_freeze_of_a_cgroup_that_vanishes_says_so_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeCgroupfs(str(tmp_path), "hybrid", freeze_ticks=10**9) as fake:
        mgr = open_v1(fake)
        mgr.create()
        def read_then_vanish(path: str) -> str | None:  # removed between the write and the read
            _remove_container_cgroup(fake)
            return _base.read(path)

        monkeypatch.setattr("corral.cgroups.v1.read", read_then_vanish)
        with pytest.raises(CgroupError, match=r"^freezing .*/freezer/corral/c1: the cgroup "):
            mgr.freeze()
        assert fake.slept == 0
