"""corral.cgroups on this host's real cgroups (root). Every test uses its own /corral-test-<hex>
cgroup and removes it; the module checks at the end that nothing named corral-test* is left.

The v1/hybrid manager runs on the host's layout. The v2 manager runs too, on the hybrid host's
cgroup2 mount (/sys/fs/cgroup/unified): it has no controllers there, but creating, joining,
freezing, cgroup.kill and removing are the real v2 code paths.
"""

from __future__ import annotations

import os
import select
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

import corral.cgroups as cgroups
from corral.cgroups import Manager
from corral.cgroups.v1 import V1Manager
from corral.cgroups.v2 import V2Manager
from corral.errors import CgroupError
from helpers import host

pytestmark = pytest.mark.integration

ROOT = "/sys/fs/cgroup"


def _host_mode() -> str:
    try:
        return cgroups.detect()
    except CgroupError:
        return ""


MODE = _host_mode()
if os.geteuid() != 0 or not MODE:
    pytest.skip("needs root and mounted cgroups", allow_module_level=True)

needs_v1 = pytest.mark.skipif(MODE == "v2", reason="host runs pure cgroup v2")
needs_unified = pytest.mark.skipif(
    not os.path.exists(f"{ROOT}/unified/cgroup.procs") and MODE != "v2",
    reason="no cgroup2 mount",
)


def leftovers() -> list[str]:
    found = []
    for dirpath, dirnames, _ in os.walk(ROOT):
        found += [f"{dirpath}/{d}" for d in dirnames if d.startswith("corral-test")]
    return found


@pytest.fixture(scope="module", autouse=True)
def no_leaks() -> Iterator[None]:
    assert leftovers() == [], "left by an earlier run"
    yield
    assert leftovers() == []


def cleanup(mgr: Manager) -> None:
    """Kill whatever is left, thaw, remove: what `delete --force` does."""
    if mgr.exists():
        if mgr.can_freeze() and mgr.frozen():
            mgr.thaw()
        mgr.kill(9)
        mgr.destroy()
    assert not mgr.exists()


@pytest.fixture
def mgr() -> Iterator[Manager]:
    mgr = cgroups.open_manager(f"/corral-test-{uuid.uuid4().hex[:12]}")
    try:
        mgr.create()
        yield mgr
    finally:
        cleanup(mgr)


@pytest.fixture
def v2mgr() -> Iterator[Manager]:
    root = ROOT if MODE == "v2" else f"{ROOT}/unified"
    mgr = cgroups.open_manager(f"/corral-test-{uuid.uuid4().hex[:12]}", mode="v2", root=root)
    try:
        mgr.create()
        yield mgr
    finally:
        cleanup(mgr)


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start a process that joins ``mgr`` just before exec, as the runtime's init does: the
    cgroup.procs files are opened before fork and the child writes "0" to each."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(mgr: Manager, argv: list[str], **kw: object) -> subprocess.Popen[bytes]:
        fds = [os.open(f, os.O_WRONLY | os.O_CLOEXEC) for f in mgr.procs_files()]

        def join() -> None:
            for fd in fds:
                os.write(fd, b"0")

        try:
            proc: subprocess.Popen[bytes] = subprocess.Popen(  # type: ignore[call-overload]
                argv, preexec_fn=join, **kw
            )
        finally:
            for fd in fds:
                os.close(fd)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def wait_gone(mgr: Manager, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while mgr.pids() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert mgr.pids() == []


# -- v1 / hybrid ------------------------------------------------------------------------------


@needs_v1
def test_create_join_and_pids(mgr: Manager, spawn: Callable[..., subprocess.Popen[bytes]]) -> None:
    assert isinstance(mgr, V1Manager)
    for directory, _name in mgr.mount_sources():
        assert os.path.isdir(directory)
    proc = spawn(mgr, ["sleep", "60"])
    assert mgr.pids() == [proc.pid]
    with open(f"/proc/{proc.pid}/cgroup") as f:
        lines = f.read().splitlines()
    joined = [line for line in lines if line.endswith(mgr.path)]
    assert len(joined) == len(mgr.procs_files())  # every hierarchy, unified included
    again = cgroups.from_state(mgr.to_state())
    assert again.pids() == [proc.pid]


@needs_v1
def test_cpuset_inherited(mgr: Manager) -> None:
    d = f"{ROOT}/cpuset{mgr.path}"
    assert read(f"{d}/cpuset.cpus") == read(f"{ROOT}/cpuset/cpuset.cpus")
    assert read(f"{d}/cpuset.mems") == read(f"{ROOT}/cpuset/cpuset.mems")


@needs_v1
def test_nested_path_inherits_cpuset_at_each_level() -> None:
    top = f"/corral-test-{uuid.uuid4().hex[:12]}"
    mgr = cgroups.open_manager(f"{top}/inner/c1")
    parent = cgroups.open_manager(top)
    try:
        mgr.create()
        for level in (top, f"{top}/inner", f"{top}/inner/c1"):
            assert read(f"{ROOT}/cpuset{level}/cpuset.cpus") != ""
    finally:
        cleanup(mgr)
        parent.destroy()
        assert not parent.exists()


@needs_v1
def test_freeze_stops_a_busy_loop_and_thaw_resumes_it(
    mgr: Manager, spawn: Callable[..., subprocess.Popen[bytes]]
) -> None:
    proc = spawn(mgr, ["sh", "-c", "while :; do :; done"])
    time.sleep(0.1)
    mgr.freeze()
    assert mgr.frozen()
    assert read(f"{ROOT}/freezer{mgr.path}/freezer.state") == "FROZEN"
    before = cpu_ticks(proc.pid)
    time.sleep(0.3)
    assert cpu_ticks(proc.pid) == before, "a frozen process must not run"
    mgr.thaw()
    assert not mgr.frozen()
    assert read(f"{ROOT}/freezer{mgr.path}/freezer.state") == "THAWED"
    time.sleep(0.3)
    assert cpu_ticks(proc.pid) > before


@needs_v1
def test_kill_sigterm_freeze_signal_thaw(
    mgr: Manager, spawn: Callable[..., subprocess.Popen[bytes]]
) -> None:
    proc = spawn(mgr, ["sleep", "60"])
    mgr.kill(15)
    assert proc.wait(5) == -15
    assert not mgr.frozen()


@needs_v1
def test_kill_of_a_paused_container_keeps_it_paused(
    mgr: Manager, spawn: Callable[..., subprocess.Popen[bytes]]
) -> None:
    proc = spawn(mgr, ["sleep", "60"])
    mgr.freeze()
    mgr.kill(15)
    assert mgr.frozen()
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(0.2)  # frozen: the signal waits
    mgr.thaw()
    assert proc.wait(5) == -15


@needs_v1
@needs_unified
def test_sigkill_uses_unified_cgroup_kill_and_kills_forks_and_frozen(
    mgr: Manager, spawn: Callable[..., subprocess.Popen[bytes]]
) -> None:
    assert os.path.exists(f"{ROOT}/unified{mgr.path}/cgroup.kill")
    proc = spawn(mgr, ["sh", "-c", "sleep 60 & sleep 60 & sleep 60 & wait"])
    deadline = time.monotonic() + 5
    while len(mgr.pids()) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(mgr.pids()) == 4
    mgr.freeze()
    mgr.kill(9)
    assert proc.wait(5) == -9
    wait_gone(mgr)
    assert not mgr.frozen()


@needs_v1
def test_destroy_right_after_kill(
    mgr: Manager, spawn: Callable[..., subprocess.Popen[bytes]]
) -> None:
    spawn(mgr, ["sh", "-c", "sleep 60 & sleep 60"])
    mgr.kill(9)
    mgr.destroy()  # retries EBUSY while the processes finish exiting
    assert not mgr.exists()
    mgr.destroy()


@needs_v1
def test_memory_limits_read_back(mgr: Manager) -> None:
    d = f"{ROOT}/memory{mgr.path}"
    resources = {"memory": {"limit": 64 << 20, "reservation": 32 << 20, "swappiness": 0}}
    if host.has_swap_accounting():
        resources["memory"]["swap"] = 128 << 20
    mgr.set(resources)
    assert int(read(f"{d}/memory.limit_in_bytes")) == 64 << 20
    assert int(read(f"{d}/memory.soft_limit_in_bytes")) == 32 << 20
    assert read(f"{d}/memory.swappiness") == "0"
    if "swap" in resources["memory"]:
        assert int(read(f"{d}/memory.memsw.limit_in_bytes")) == 128 << 20
        # grow both: memsw must be raised first, or the kernel refuses the memory limit
        mgr.set({"memory": {"limit": 512 << 20, "swap": 1 << 30}})
        assert int(read(f"{d}/memory.limit_in_bytes")) == 512 << 20
        mgr.set({"memory": {"limit": -1}})
        assert int(read(f"{d}/memory.memsw.limit_in_bytes")) > 1 << 40
    else:
        with pytest.raises(CgroupError, match=r"swap accounting off"):
            mgr.set({"memory": {"limit": 1 << 30, "swap": 2 << 30}})


@needs_v1
def test_memory_limit_below_usage_is_refused_clearly(
    mgr: Manager, spawn: Callable[..., subprocess.Popen[bytes]]
) -> None:
    proc = spawn(mgr, ["sleep", "60"])
    try:
        swap = {"swap": 4096} if host.has_swap_accounting() else {}
        mgr.set({"memory": {"limit": 4096, **swap}})
    except CgroupError as err:  # the kernel could not reclaim down to 4 KiB
        assert str(err).startswith("linux.resources.memory.limit: writing '4096' to ")
        assert str(err).endswith(
            "memory.limit_in_bytes: Device or resource busy (the cgroup already uses more"
            " memory than that)"
        )
    else:  # or it took the limit and the OOM killer made room
        assert proc.wait(5) == -9


@needs_v1
def test_pids_cpu_cpuset_read_back(mgr: Manager) -> None:
    mgr.set(
        {
            "pids": {"limit": 10},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        }
    )
    assert read(f"{ROOT}/pids{mgr.path}/pids.max") == "10"
    cpu = next(d for d, name in mgr.mount_sources() if "cpu" in name.split(","))
    assert read(f"{cpu}/cpu.shares") == "512"
    assert read(f"{cpu}/cpu.cfs_quota_us") == "50000"
    assert read(f"{cpu}/cpu.cfs_period_us") == "100000"
    assert read(f"{ROOT}/cpuset{mgr.path}/cpuset.cpus") == "0"
    assert read(f"{ROOT}/cpuset{mgr.path}/cpuset.mems") == "0"
    # a smaller period with its quota: the order/retry dance must get it in
    mgr.set({"cpu": {"quota": 5000, "period": 10000}})
    assert read(f"{cpu}/cpu.cfs_period_us") == "10000"
    assert read(f"{cpu}/cpu.cfs_quota_us") == "5000"
    mgr.set({"pids": {"limit": 0}, "cpu": {"quota": -1}})
    assert read(f"{ROOT}/pids{mgr.path}/pids.max") == "max"
    assert read(f"{cpu}/cpu.cfs_quota_us") == "-1"
    if host.has_cgroup_file("cpu", "cpu.idle"):
        mgr.set({"cpu": {"idle": 1}})
        assert read(f"{cpu}/cpu.idle") == "1"
    else:
        with pytest.raises(CgroupError, match=r"^linux.resources.cpu.idle: cpu.idle is not avail"):
            mgr.set({"cpu": {"idle": 1}})


@needs_v1
def test_kernel_refusal_is_a_cgroup_error(mgr: Manager) -> None:
    with pytest.raises(CgroupError) as info:
        mgr.set({"cpu": {"cpus": "4095"}})
    assert str(info.value).startswith("linux.resources.cpu.cpus: writing '4095' to ")
    assert f"/sys/fs/cgroup/cpuset{mgr.path}/cpuset.cpus: " in str(info.value)
    assert str(info.value).rsplit(": ", 1)[1] in (
        "Invalid argument",
        "Numerical result out of range",
    )


def first_block_device() -> str:
    with open("/proc/partitions") as f:
        for line in f.read().splitlines()[2:]:
            major, minor, _blocks, name = line.split()
            if os.path.exists(f"/sys/block/{name}"):
                return f"{major}:{minor}"
    pytest.skip("no block device")


@needs_v1
def test_blkio(mgr: Manager) -> None:
    if not host.has_controller("blkio"):
        with pytest.raises(CgroupError, match=r"blkio controller is not mounted"):
            mgr.set({"blockIO": {"weight": 300}})
        return
    d = f"{host.hierarchy('blkio')}{mgr.path}"
    files = host.cgroup_files("blkio")
    weight_file = next((f for f in ("blkio.weight", "blkio.bfq.weight") if f in files), None)
    if weight_file:
        mgr.set({"blockIO": {"weight": 300}})
        assert read(f"{d}/{weight_file}") == "300"
    else:
        with pytest.raises(CgroupError, match=r"blockIO.weight: blkio.bfq.weight is not avail"):
            mgr.set({"blockIO": {"weight": 300}})
    dev = first_block_device()
    major, minor = (int(n) for n in dev.split(":"))
    mgr.set(
        {"blockIO": {"throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": 1048576}]}}
    )
    assert read(f"{d}/blkio.throttle.read_bps_device") == f"{dev} 1048576"
    if "blkio.leaf_weight" in files:
        mgr.set({"blockIO": {"leafWeight": 500}})
        assert read(f"{d}/blkio.leaf_weight") == "500"
    else:
        with pytest.raises(CgroupError, match=r"blkio.leaf_weight is not available on this host"):
            mgr.set({"blockIO": {"leafWeight": 500}})


@needs_v1
@pytest.mark.parametrize(
    ("controller", "name", "resources", "expected"),
    [
        (
            "hugetlb",
            "hugetlb.2MB.limit_in_bytes",
            {"hugepageLimits": [{"pageSize": "2MB", "limit": 1 << 21}]},
            str(1 << 21),
        ),
        ("net_cls", "net_cls.classid", {"network": {"classID": 1}}, "1"),
        (
            "net_prio",
            "net_prio.ifpriomap",
            {"network": {"priorities": [{"name": "lo", "priority": 5}]}},
            "lo 5",
        ),
    ],
)
def test_controllers_a_host_may_lack(
    mgr: Manager, controller: str, name: str, resources: dict[str, object], expected: str
) -> None:
    """Mounted: the value reads back. Not mounted, or no such file: a clear CgroupError."""
    assert isinstance(mgr, V1Manager)
    if not host.has_controller(controller):
        with pytest.raises(CgroupError, match=rf"the {controller} controller is not mounted"):
            mgr.set(resources)
    elif not host.has_cgroup_file(controller, name):
        with pytest.raises(CgroupError, match=rf"{name} is not available on this host"):
            mgr.set(resources)
    else:
        mgr.set(resources)
        assert expected in read(f"{host.hierarchy(controller)}{mgr.path}/{name}").splitlines()


@needs_v1
def test_unified_needs_v2(mgr: Manager) -> None:
    with pytest.raises(CgroupError, match=r"needs cgroup v2"):
        mgr.set({"unified": {"memory.high": "1G"}})


@needs_v1
def test_device_rules(mgr: Manager, spawn: Callable[..., subprocess.Popen[bytes]]) -> None:
    mgr.set(
        {
            "devices": [
                {"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"},
            ]
        }
    )
    listed = read(f"{ROOT}/devices{mgr.path}/devices.list").splitlines()
    assert listed == ["c 1:3 rw"]
    proc = spawn(
        mgr,
        ["sh", "-c", "echo ok > /dev/null && echo null-ok; head -c1 /dev/zero || echo zero-denied"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = proc.communicate(timeout=10)
    assert b"null-ok" in out
    assert b"zero-denied" in out
    assert b"Operation not permitted" in out


@needs_v1
def test_stats(mgr: Manager, spawn: Callable[..., subprocess.Popen[bytes]]) -> None:
    spawn(mgr, ["sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 60"])
    mgr.set({"pids": {"limit": 20}})
    time.sleep(0.3)
    stats = mgr.stats()
    assert stats["pids"]["current"] >= 1
    assert stats["pids"]["limit"] == 20
    assert stats["memory"]["usage"]["usage"] > 0
    assert stats["cpu"]["usage"]["total"] > 0
    assert len(stats["cpu"]["usage"]["percpu"]) == os.cpu_count()
    assert isinstance(stats["memory"]["raw"], dict) and stats["memory"]["raw"]


@needs_v1
def test_oom_event(mgr: Manager, spawn: Callable[..., subprocess.Popen[bytes]]) -> None:
    mgr.set({"memory": host.hard_memory_limit(32 << 20)})
    efd = mgr.oom_events()
    try:
        proc = spawn(mgr, ["python3", "-c", "x = bytearray(256 << 20)"], stderr=subprocess.DEVNULL)
        assert proc.wait(20) == -9
        readable, _, _ = select.select([efd], [], [], 5)
        assert readable == [efd]
        assert int.from_bytes(os.read(efd, 8), "little") >= 1
    finally:
        os.close(efd)
    assert mgr.oom_kill_count() >= 1


# -- v2 code paths on the real cgroup2 mount --------------------------------------------------


@needs_unified
def test_v2_create_join_freeze_thaw(
    v2mgr: Manager, spawn: Callable[..., subprocess.Popen[bytes]]
) -> None:
    assert isinstance(v2mgr, V2Manager)
    proc = spawn(v2mgr, ["sh", "-c", "while :; do :; done"])
    assert v2mgr.pids() == [proc.pid]
    time.sleep(0.1)
    v2mgr.freeze()
    assert v2mgr.frozen()
    assert "frozen 1" in read(f"{v2mgr.dir}/cgroup.events")
    before = cpu_ticks(proc.pid)
    time.sleep(0.3)
    assert cpu_ticks(proc.pid) == before
    v2mgr.thaw()
    assert not v2mgr.frozen()
    time.sleep(0.3)
    assert cpu_ticks(proc.pid) > before


# Seconds to wait for a killed process: generous, for the v2 lane's emulated guest under load
# (a full v2 set once missed 5 s there).
SLOW = 30


@needs_unified
def test_v2_kill(v2mgr: Manager, spawn: Callable[..., subprocess.Popen[bytes]]) -> None:
    term = spawn(v2mgr, ["sleep", "60"])
    v2mgr.kill(15)
    assert term.wait(SLOW) == -15
    proc = spawn(v2mgr, ["sh", "-c", "sleep 60 & sleep 60 & wait"])
    v2mgr.freeze()
    v2mgr.kill(9)  # cgroup.kill: kills frozen processes too
    assert proc.wait(SLOW) == -9
    wait_gone(v2mgr)
    v2mgr.destroy()
    assert not v2mgr.exists()


@needs_unified
def test_v2_missing_controller_is_a_clear_error(v2mgr: Manager) -> None:
    if MODE == "v2":
        pytest.skip("controllers are there on a pure v2 host")
    with pytest.raises(CgroupError) as info:
        v2mgr.set({"pids": {"limit": 10}})
    assert str(info.value) == (
        "linux.resources.pids.limit: pids.max is not available on this host (the pids controller"
        " is not enabled for this cgroup; the parent's cgroup.subtree_control must list it)"
    )


PROBE = """
import os, sys
for spec in sys.argv[1:]:
    name, mode = spec.split(":")
    flags = {"r": os.O_RDONLY, "w": os.O_WRONLY, "rw": os.O_RDWR}[mode]
    try:
        os.close(os.open(name, flags))
        print(spec, "ok")
    except PermissionError:
        print(spec, "denied")
"""
DEVICES = {
    name: numbers
    for name, numbers in {
        "/dev/null": ("c", 1, 3),
        "/dev/zero": ("c", 1, 5),
        "/dev/full": ("c", 1, 7),
        "/dev/urandom": ("c", 1, 9),
        "/dev/kmsg": ("c", 1, 11),  # not in runc's defaults
        "/dev/loop0": ("b", 7, 0),
    }.items()
    if os.path.exists(name)
}


@needs_unified
@pytest.mark.parametrize(
    "rules",
    [
        [
            {"allow": False, "access": "rwm"},
            {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"},
            {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "r"},
        ],
        [
            {"allow": True, "access": "rwm"},
            {"allow": False, "type": "c", "major": 1, "minor": 7, "access": "w"},
            {"allow": False, "type": "c", "major": 1, "minor": 9},
        ],
        [{"allow": False, "access": "rwm"}, *cgroups.DEFAULT_DEVICE_RULES],
    ],
    ids=["allow-list", "deny-list", "runc-defaults"],
)
def test_v2_device_filter_matches_the_kernel(
    v2mgr: Manager, spawn: Callable[..., subprocess.Popen[bytes]], rules: list[dict[str, object]]
) -> None:
    """The kernel enforces the eBPF program, and decides as the program's interpreter says."""
    from corral.cgroups import _base
    from corral.cgroups.devices import compile_program, emulate, run_program

    assert isinstance(v2mgr, V2Manager)
    v2mgr.set({"devices": rules})
    v2mgr.set({"devices": rules})  # again (an update): the old program is replaced
    from corral.sys import bpf

    fd = os.open(v2mgr.dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert len(bpf.device_program_ids(fd)) == 1
    finally:
        os.close(fd)
    specs = [f"{dev}:{mode}" for dev in DEVICES for mode in ("r", "w", "rw")]
    proc = spawn(v2mgr, ["python3", "-I", "-c", PROBE, *specs], stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=20)
    kernel = dict(line.split() for line in out.decode().splitlines())
    program = compile_program(*emulate(_base.device_rules(rules)))
    for spec in specs:
        dev, mode = spec.split(":")
        expected = run_program(program, *DEVICES[dev], mode)
        assert kernel[spec] == ("ok" if expected else "denied"), spec
    assert "denied" in kernel.values() and "ok" in kernel.values()
