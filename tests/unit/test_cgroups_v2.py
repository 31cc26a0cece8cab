"""The v2 manager against a fake unified cgroupfs (corral.cgroups.testing): no root needed."""

from __future__ import annotations

import errno
import os
import posix
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import corral.cgroups as cgroups
from corral.cgroups import _base
from corral.cgroups._base import LAST_WORDS_PREFIX, leave_last_words
from corral.cgroups.devices import run_program
from corral.cgroups.testing import V2_CONTROLLERS, FakeCgroupfs
from corral.cgroups.v2 import V2Manager, cpu_weight
from corral.errors import CgroupError, KernelError

PATH = "/corral/c1"


def open_v2(fake: FakeCgroupfs) -> V2Manager:
    mgr = cgroups.open_manager(PATH, root=fake.root, mountinfo=fake.mountinfo)
    assert isinstance(mgr, V2Manager)
    return mgr


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeCgroupfs]:
    with FakeCgroupfs(str(tmp_path), "v2") as fake:
        yield fake


@pytest.fixture
def mgr(fake: FakeCgroupfs) -> V2Manager:
    mgr = open_v2(fake)
    mgr.create()
    fake.writes.clear()
    return mgr


def files(fake: FakeCgroupfs) -> list[tuple[str, str]]:
    """The writes as (file name, value)."""
    return [(path.rsplit("/", 1)[1], value) for path, value in fake.writes]


# -- create, join, destroy --------------------------------------------------------------------


def test_create_enables_controllers_in_every_ancestor(fake: FakeCgroupfs) -> None:
    mgr = open_v2(fake)
    assert not mgr.exists()
    mgr.create()
    assert mgr.exists()
    everything = " ".join(V2_CONTROLLERS)
    assert fake.read("cgroup.subtree_control") == everything
    assert fake.read("corral/cgroup.subtree_control") == everything
    # never in the leaf: a cgroup with processes cannot pass controllers down
    assert fake.read("corral/c1/cgroup.subtree_control") == ""
    assert fake.read("corral/c1/cgroup.controllers") == everything
    assert os.path.exists(f"{fake.root}{PATH}/memory.max")
    fake.writes.clear()
    mgr.create()  # already there: no writes at all
    assert fake.writes == []


def test_create_enables_only_what_is_missing(tmp_path: Path) -> None:
    with FakeCgroupfs(str(tmp_path), "v2", controllers=("cpu", "memory", "pids")) as fake:
        Path(fake.root, "cgroup.subtree_control").write_text("memory")
        open_v2(fake).create()
        assert fake.writes[0] == ("cgroup.subtree_control", "+cpu +pids")
        assert fake.read("cgroup.subtree_control") == "memory cpu pids"


def test_create_falls_back_to_one_controller_at_a_time(fake: FakeCgroupfs) -> None:
    fake.fail["cgroup.subtree_control"] = errno.EBUSY  # the combined write is refused
    open_v2(fake).create()
    assert fake.written("cgroup.subtree_control")[:2] == ["+cpuset", "+cpu"]
    assert fake.read("cgroup.subtree_control") == " ".join(V2_CONTROLLERS)


def test_procs_add_pids(mgr: V2Manager, fake: FakeCgroupfs) -> None:
    assert mgr.procs_files() == [f"{fake.root}{PATH}/cgroup.procs"]
    mgr.add(123)
    fake.mkdir(f"{fake.root}{PATH}/sub")
    Path(f"{fake.root}{PATH}/sub/cgroup.procs").write_text("456\n")
    assert sorted(mgr.pids()) == [123, 456]


def test_destroy(mgr: V2Manager, fake: FakeCgroupfs) -> None:
    fake.mkdir(f"{fake.root}{PATH}/sub")
    fake.busy["corral/c1"] = 2
    mgr.destroy()
    assert not mgr.exists()
    assert os.path.isdir(f"{fake.root}/corral")
    mgr.destroy()


# -- set() ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shares", "weight"), [(2, "1"), (1024, "39"), (262144, "10000"), (512, "20"), (100, "4")]
)
def test_cpu_weight_conversion(shares: int, weight: str) -> None:
    assert cpu_weight("f", shares) == weight
    assert cpu_weight("f", 0) is None


def test_cpu(mgr: V2Manager, fake: FakeCgroupfs) -> None:
    mgr.set(
        {
            "cpu": {
                "shares": 1024,
                "quota": 50000,
                "period": 100000,
                "burst": 1000,
                "cpus": "0-1",
                "mems": "0",
                "idle": 0,
            }
        }
    )
    assert files(fake) == [
        ("cpu.max", "50000 100000"),
        ("cpu.weight", "39"),
        ("cpu.max.burst", "1000"),
        ("cpu.idle", "0"),
        ("cpuset.cpus", "0-1"),
        ("cpuset.mems", "0"),
    ]


@pytest.mark.parametrize(
    ("cpu", "written"),
    [
        ({"quota": -1}, "max"),
        ({"quota": -1, "period": 50000}, "max 50000"),
        ({"quota": 20000}, "20000"),
        ({"period": 50000}, "30000 50000"),  # keeps the current quota
    ],
)
def test_cpu_max(mgr: V2Manager, fake: FakeCgroupfs, cpu: dict[str, int], written: str) -> None:
    Path(f"{fake.root}{PATH}/cpu.max").write_text("30000 100000\n")
    mgr.set({"cpu": cpu})
    assert files(fake) == [("cpu.max", written)]


def test_memory(mgr: V2Manager, fake: FakeCgroupfs) -> None:
    mgr.set(
        {
            "memory": {
                "limit": 256 << 20,
                "swap": 512 << 20,
                "reservation": 64 << 20,
                "kernel": 1 << 20,
                "useHierarchy": True,
                "disableOOMKiller": False,
            }
        }
    )
    assert files(fake) == [
        ("memory.swap.max", str(256 << 20)),  # v2 swap is swap alone: 512M - 256M
        ("memory.max", str(256 << 20)),
        ("memory.low", str(64 << 20)),
    ]


@pytest.mark.parametrize(
    ("memory", "written"),
    [
        ({"limit": -1}, [("memory.swap.max", "max"), ("memory.max", "max")]),
        ({"limit": 100, "swap": 100}, [("memory.swap.max", "0"), ("memory.max", "100")]),
        ({"limit": 100, "swap": -1}, [("memory.swap.max", "max"), ("memory.max", "100")]),
        ({"limit": 100}, [("memory.max", "100")]),
        ({"reservation": -1}, [("memory.low", "max")]),
        ({"swappiness": -1}, []),
    ],
)
def test_memory_conversions(
    mgr: V2Manager, fake: FakeCgroupfs, memory: dict[str, int], written: list[tuple[str, str]]
) -> None:
    mgr.set({"memory": memory})
    assert files(fake) == written


def test_swap_without_swap_accounting(tmp_path: Path) -> None:
    with FakeCgroupfs(str(tmp_path), "v2", missing=("memory.swap.max",)) as fake:
        mgr = open_v2(fake)
        mgr.create()
        with pytest.raises(CgroupError) as info:
            mgr.set({"memory": {"limit": 100, "swap": 200}})
        assert str(info.value) == (
            "linux.resources.memory.swap: memory.swap.max is not available on this host"
            " (swap accounting off)"
        )
        mgr.set({"memory": {"limit": -1}})
        assert fake.written("memory.max") == ["max"]


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ({"memory": {"swappiness": 10}}, "linux.resources.memory.swappiness: cgroup v2 has no"),
        ({"memory": {"disableOOMKiller": True}}, "cannot disable the OOM killer"),
        ({"memory": {"kernelTCP": 1 << 20}}, "linux.resources.memory.kernelTCP:"),
        ({"memory": {"useHierarchy": False}}, "always hierarchical"),
        ({"cpu": {"realtimeRuntime": 1000}}, "linux.resources.cpu.realtimeRuntime: cgroup v2"),
        ({"cpu": {"realtimePeriod": 1000}}, "no real-time"),
        ({"network": {"classID": 7}}, "net_cls does not exist on cgroup v2"),
        ({"network": {"priorities": [{"name": "eth0", "priority": 1}]}}, "net_prio does not"),
        ({"blockIO": {"leafWeight": 100}}, "linux.resources.blockIO.leafWeight: cgroup v2"),
        (
            {"blockIO": {"weightDevice": [{"major": 8, "minor": 0, "leafWeight": 100}]}},
            r"linux.resources.blockIO.weightDevice\[0\].leafWeight: cgroup v2 has no leaf",
        ),
    ],
)
def test_fields_v2_cannot_honour(
    mgr: V2Manager, fake: FakeCgroupfs, resources: dict[str, object], message: str
) -> None:
    with pytest.raises(CgroupError, match=message):
        mgr.set({"pids": {"limit": 1}, **resources})
    assert fake.writes == []


def test_neutral_values_of_v1_only_fields_pass(mgr: V2Manager, fake: FakeCgroupfs) -> None:
    mgr.set(
        {
            "memory": {"swappiness": -1, "disableOOMKiller": False, "kernelTCP": 0},
            "cpu": {"realtimeRuntime": 0, "realtimePeriod": 0},
            "network": {"classID": 0},
        }
    )
    assert fake.writes == []


@pytest.mark.parametrize(("limit", "text"), [(100, "100"), (0, "max"), (-1, "max")])
def test_pids(mgr: V2Manager, fake: FakeCgroupfs, limit: int, text: str) -> None:
    mgr.set({"pids": {"limit": limit}})
    assert files(fake) == [("pids.max", text)]


@pytest.mark.parametrize(("weight", "io_weight"), [(10, "1"), (500, "4950"), (1000, "10000")])
def test_io_weight_conversion(
    mgr: V2Manager, fake: FakeCgroupfs, weight: int, io_weight: str
) -> None:
    mgr.set({"blockIO": {"weight": weight}})
    assert files(fake) == [("io.weight", io_weight)]


def test_io_with_bfq(mgr: V2Manager, fake: FakeCgroupfs) -> None:
    Path(f"{fake.root}{PATH}/io.bfq.weight").write_text("default 100\n")
    mgr.set({"blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 50}]}})
    assert files(fake) == [("io.bfq.weight", "500"), ("io.bfq.weight", "8:0 50")]


def test_device_weights_need_bfq(mgr: V2Manager) -> None:
    with pytest.raises(CgroupError) as info:
        mgr.set({"blockIO": {"weightDevice": [{"major": 8, "minor": 0, "weight": 50}]}})
    assert str(info.value) == (
        "linux.resources.blockIO.weightDevice[0].weight: io.bfq.weight is not available on this"
        " host (per-device weights need the BFQ I/O scheduler)"
    )


def test_io_max_one_line_per_device(mgr: V2Manager, fake: FakeCgroupfs) -> None:
    mgr.set(
        {
            "blockIO": {
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                "throttleWriteBpsDevice": [
                    {"major": 8, "minor": 0, "rate": 2097152},
                    {"major": 8, "minor": 16, "rate": 0},
                ],
                "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 100}],
                "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 200}],
            }
        }
    )
    assert files(fake) == [
        ("io.max", "8:0 rbps=1048576 wbps=2097152 riops=100 wiops=200"),
        ("io.max", "8:16 wbps=max"),  # 0 lifts the limit, as on v1
    ]


def test_hugetlb_and_rdma(mgr: V2Manager, fake: FakeCgroupfs) -> None:
    mgr.set(
        {
            "hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}],
            "rdma": {"mlx5_0": {"hcaObjects": 7}},
        }
    )
    assert files(fake) == [("hugetlb.2MB.max", str(4 << 20)), ("rdma.max", "mlx5_0 hca_object=7")]


def test_unified_passthrough_goes_last(mgr: V2Manager, fake: FakeCgroupfs) -> None:
    mgr.set({"unified": {"memory.high": "1G", "pids.max": "9"}, "pids": {"limit": 5}})
    assert files(fake) == [("pids.max", "5"), ("memory.high", "1G"), ("pids.max", "9")]


def test_unified_key_for_a_controller_not_enabled(tmp_path: Path) -> None:
    with FakeCgroupfs(str(tmp_path), "v2", controllers=("cpu", "pids")) as fake:
        mgr = open_v2(fake)
        mgr.create()
        with pytest.raises(CgroupError) as info:
            mgr.set({"unified": {"memory.high": "1G"}})
        assert str(info.value) == (
            'linux.resources.unified["memory.high"]: memory.high is not available on this host'
            " (the memory controller is not enabled for this cgroup; the parent's"
            " cgroup.subtree_control must list it)"
        )
        with pytest.raises(CgroupError, match=r"linux.resources.memory.limit: memory.max is not"):
            mgr.set({"memory": {"limit": 100}})


def test_kernel_refusal_names_file_and_error(mgr: V2Manager, fake: FakeCgroupfs) -> None:
    fake.fail["corral/c1/cpuset.cpus"] = errno.EINVAL
    with pytest.raises(CgroupError) as info:
        mgr.set({"cpu": {"cpus": "99"}})
    assert str(info.value) == (
        f"linux.resources.cpu.cpus: writing '99' to {fake.root}{PATH}/cpuset.cpus: Invalid argument"
    )


def test_devices_install_an_ebpf_filter(mgr: V2Manager, fake: FakeCgroupfs) -> None:
    mgr.set({"pids": {"limit": 3}})
    assert fake.device_programs == {}  # no devices list: the filter is left alone
    mgr.set(
        {
            "devices": [
                {"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"},
            ]
        }
    )
    program = fake.device_programs["corral/c1"]
    assert run_program(program, "c", 1, 3, "rw")
    assert not run_program(program, "c", 1, 5, "r")
    mgr.set({"devices": []})  # an empty list denies everything, as on v1
    assert not run_program(fake.device_programs["corral/c1"], "c", 1, 3, "r")


def test_device_filter_failure_is_a_cgroup_error(
    mgr: V2Manager, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(directory: str, program: bytes) -> None:
        raise KernelError("bpf(BPF_PROG_LOAD)", errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(_base, "attach_device_filter", refuse)
    with pytest.raises(CgroupError) as info:
        mgr.set({"devices": [{"allow": False, "access": "rwm"}]})
    assert str(info.value) == (
        "linux.resources.devices: installing the eBPF filter: bpf(BPF_PROG_LOAD):"
        " Operation not permitted"
    )


# -- freezer and kill -------------------------------------------------------------------------


def test_freeze_waits_for_cgroup_events(tmp_path: Path) -> None:
    with FakeCgroupfs(str(tmp_path), "v2", freeze_ticks=4) as fake:
        mgr = open_v2(fake)
        mgr.create()
        mgr.freeze()
        assert mgr.frozen()
        assert fake.slept == 4
        assert fake.written("cgroup.freeze") == ["1"]
        mgr.thaw()
        assert not mgr.frozen()
        assert fake.slept == 8


def test_freeze_timeout_thaws_again(tmp_path: Path) -> None:
    with FakeCgroupfs(str(tmp_path), "v2", freeze_ticks=10**9) as fake:
        mgr = open_v2(fake)
        mgr.create()
        with pytest.raises(
            CgroupError,
            match=r"freezing .*: cgroup.events did not change within"
            r" 0.02s; thawed it again",
        ):
            mgr.freeze(timeout=0.02)
        assert fake.written("cgroup.freeze") == ["1", "0"]


@pytest.mark.parametrize("want", ["0", "1"])
def test_a_cgroup_removed_while_waiting_ends_the_wait_at_once(
    mgr: V2Manager, fake: FakeCgroupfs, monkeypatch: pytest.MonkeyPatch, want: str
) -> None:
    """The container ends and is deleted while cgroup.events is polled: a thaw has nothing
    left to do, a freeze says why at once; neither polls a missing file for FREEZE_TIMEOUT.

    (``fake`` is a fixture set up before ``monkeypatch``, so the patch of the fake's writer is
    undone before the fake itself is: the real writer is what stays.)"""
    write = _base.raw_write

    def raw_write(path: str, data: str) -> None:
        write(path, data)
        if path.endswith("/cgroup.freeze") and data == want:
            fake.rmdir(mgr.dir)

    monkeypatch.setattr(_base, "raw_write", raw_write)
    before = fake.slept
    if want == "0":
        mgr.thaw()
        mgr.thaw()  # gone before the write: nothing to do either
    else:
        with pytest.raises(CgroupError, match="removed meanwhile"):
            mgr.freeze()
    assert fake.slept - before < 5  # not FREEZE_TIMEOUT's worth of polling


def test_freeze_needs_cgroup_freeze(tmp_path: Path) -> None:
    with FakeCgroupfs(str(tmp_path), "v2", missing=("cgroup.freeze",)) as fake:
        mgr = open_v2(fake)
        mgr.create()
        assert not mgr.can_freeze()
        with pytest.raises(
            CgroupError,
            match=r"cgroup.freeze is not available on this host"
            r" \(needs Linux 5.2 or later\)",
        ):
            mgr.freeze()


def test_sigkill_writes_cgroup_kill(mgr: V2Manager, fake: FakeCgroupfs) -> None:
    mgr.add(999999)
    mgr.kill(9)
    assert files(fake)[-1] == ("cgroup.kill", "1")
    assert mgr.pids() == []


def test_other_signals_freeze_signal_thaw(
    mgr: V2Manager, fake: FakeCgroupfs, sleeper: subprocess.Popen[bytes]
) -> None:
    mgr.add(sleeper.pid)
    mgr.kill(15)
    assert sleeper.wait(5) == -15
    assert fake.written("cgroup.freeze") == ["1", "0"]


def test_sigkill_without_cgroup_kill(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    with FakeCgroupfs(str(tmp_path), "v2", missing=("cgroup.kill",)) as fake:
        mgr = open_v2(fake)
        mgr.create()
        mgr.add(sleeper.pid)
        mgr.kill(9)
        assert sleeper.wait(5) == -9


def test_signal_errors_other_than_gone(mgr: V2Manager, monkeypatch: pytest.MonkeyPatch) -> None:
    def deny(pid: int, sig: int) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    mgr.add(12345)
    monkeypatch.setattr(posix, "kill", deny)  # what the managers call
    with pytest.raises(CgroupError, match=r"sending signal 15 to process 12345"):
        mgr.kill(15)
    assert not mgr.frozen()  # thawed on the way out


# -- stats, OOM -------------------------------------------------------------------------------


def test_stats(mgr: V2Manager, fake: FakeCgroupfs) -> None:
    def put(name: str, text: str) -> None:
        Path(f"{fake.root}{PATH}/{name}").write_text(text)

    put(
        "cpu.stat",
        "usage_usec 30\nuser_usec 20\nsystem_usec 10\nnr_periods 5\n"
        "nr_throttled 1\nthrottled_usec 7\n",
    )
    put("memory.current", "4096\n")
    put("memory.peak", "8192\n")
    put("memory.max", "1048576\n")
    put("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    put("memory.swap.current", "100\n")
    put("memory.swap.max", "1000\n")
    put("memory.stat", "anon 10\nfile 20\n")
    put("pids.current", "2\n")
    put("pids.max", "50\n")
    put("io.stat", "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0\n")
    put("hugetlb.2MB.current", "2097152\n")
    put("hugetlb.2MB.events", "max 4\n")
    stats = mgr.stats()
    assert stats["cpu"] == {
        "usage": {"total": 30000, "percpu": [], "kernel": 10000, "user": 20000},
        "throttling": {"periods": 5, "throttledPeriods": 1, "throttledTime": 7000},
    }
    assert stats["memory"]["usage"] == {"usage": 4096, "max": 8192, "failcnt": 3, "limit": 1048576}
    # swap is reported as memory+swap, as runc does, so it reads like v1
    assert stats["memory"]["swap"] == {"usage": 4196, "max": 0, "failcnt": 0, "limit": 1049576}
    assert stats["memory"]["cache"] == 20
    assert stats["memory"]["raw"] == {"anon": 10, "file": 20}
    assert stats["pids"] == {"current": 2, "limit": 50}
    assert stats["blkio"]["ioServiceBytesRecursive"] == [
        {"major": 8, "minor": 0, "op": "Read", "value": 1},
        {"major": 8, "minor": 0, "op": "Write", "value": 2},
        {"major": 8, "minor": 0, "op": "Discard", "value": 0},
    ]
    assert stats["blkio"]["ioServicedRecursive"][1] == {
        "major": 8,
        "minor": 0,
        "op": "Write",
        "value": 4,
    }
    assert stats["hugetlb"]["2MB"] == {"usage": 2097152, "max": 0, "failcnt": 4}


def test_stats_unlimited(mgr: V2Manager) -> None:
    stats = mgr.stats()
    assert stats["memory"]["usage"]["limit"] == _base.MAX_UINT64
    assert stats["memory"]["swap"]["limit"] == _base.MAX_UINT64
    assert stats["pids"] == {"current": 0, "limit": 0}


def test_stats_read_errors_are_cgroup_errors(mgr: V2Manager, fake: FakeCgroupfs) -> None:
    Path(f"{fake.root}{PATH}/memory.current").write_text("lots\n")
    with pytest.raises(CgroupError, match=r"memory.current: expected a number, got 'lots'"):
        mgr.stats()


def test_oom(mgr: V2Manager, fake: FakeCgroupfs) -> None:
    fd = mgr.oom_events()
    try:
        assert os.read(fd, 100).startswith(b"low 0")
    finally:
        os.close(fd)
    Path(f"{fake.root}{PATH}/memory.events").write_text("oom 2\noom_kill 1\n")
    assert mgr.oom_kill_count() == 1
    mgr.destroy()
    with pytest.raises(CgroupError, match=r"opening .*memory.events"):
        mgr.oom_events()


def test_oom_watch_reports_the_growth_of_oom_kill(mgr: V2Manager, fake: FakeCgroupfs) -> None:
    events = Path(f"{fake.root}{PATH}/memory.events")
    events.write_text("low 0\nhigh 0\nmax 0\noom 1\noom_kill 1\n")  # before the watch: not new
    watch = mgr.oom_watch()
    try:
        assert watch.mask == 0x002 | 0x008  # POLLPRI | POLLERR on memory.events
        assert watch.take() == 0
        events.write_text("low 0\nhigh 0\nmax 4\noom 2\noom_kill 3\n")
        assert watch.take() == 2
        events.write_text("low 0\nhigh 0\nmax 5\noom 2\noom_kill 3\n")  # other counters moved
        assert watch.take() == 0
    finally:
        watch.close()


def test_oom_watch_reads_the_last_words_once_the_cgroup_is_gone(
    mgr: V2Manager, fake: FakeCgroupfs, tmp_path: Path
) -> None:
    """The remover copies memory.events into each watcher's file in the state directory before
    the rmdir; a watcher that only reads after it (its own file then fails) still sees the
    OOM that killed the init."""
    events = Path(f"{fake.root}{PATH}/memory.events")
    events.write_text("oom 0\noom_kill 0\n")
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    mine = state_dir / f"{LAST_WORDS_PREFIX}{os.getpid()}"
    last_words = os.open(mine, os.O_RDWR | os.O_CREAT, 0o600)
    watch = mgr.oom_watch(last_words)
    try:
        assert watch.take() == 0
        events.write_text("oom 1\noom_kill 1\n")  # the OOM; the watcher is not scheduled
        (state_dir / "state.bin").write_bytes(b"")  # other entries are left alone
        leave_last_words(mgr.memory_dir(), str(state_dir), sorted(os.listdir(state_dir)))
        assert (state_dir / "state.bin").read_bytes() == b""
        mine.unlink()  # the state directory goes; the open file stays readable
        # the cgroup's file now fails to read, as memory.events after rmdir (ENODEV)
        unreadable = os.open(tmp_path / "w", os.O_WRONLY | os.O_CREAT, 0o600)
        os.dup2(unreadable, watch.fd)
        os.close(unreadable)
        assert watch.take() == 1
        assert watch.take() == 0  # counted once
    finally:
        watch.close()
        os.close(last_words)


def test_oom_watch_without_last_words_keeps_its_count(mgr: V2Manager, fake: FakeCgroupfs) -> None:
    events = Path(f"{fake.root}{PATH}/memory.events")
    events.write_text("oom 1\noom_kill 1\n")
    watch = mgr.oom_watch()
    try:
        null = os.open("/dev/null", os.O_WRONLY)
        os.dup2(null, watch.fd)
        os.close(null)
        assert watch.take() == 0
    finally:
        watch.close()


def test_oom_watch_without_memory_is_a_cgroup_error(tmp_path: Path) -> None:
    with FakeCgroupfs(str(tmp_path), "v2", controllers=("pids",)) as fake:
        mgr = open_v2(fake)
        mgr.create()
        with pytest.raises(CgroupError, match=r"memory.events"):
            mgr.oom_watch()
