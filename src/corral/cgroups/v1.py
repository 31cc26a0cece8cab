"""The cgroup v1 manager (pure v1 and hybrid hosts).

On v1 every controller hierarchy is its own directory tree (``/sys/fs/cgroup/memory``,
``/sys/fs/cgroup/cpu`` or ``cpu,cpuacct``, ..., plus ``name=systemd``, a hierarchy with no
controller that only groups processes). A container's cgroup is therefore one directory *per
hierarchy*, and a process must be written into the ``cgroup.procs`` of each. On a hybrid host the
cgroup2 tree at ``unified/`` is one more such hierarchy: it has no controllers, but it gives
``cgroup.kill`` and ``cgroup.events`` for free, so the container joins it too.

Resources map onto files through ``_TABLE``; the few fields whose writes depend on each other
(memory and swap, CFS quota and period, block I/O, devices) have small planners of their own.
"""

import posix
import time

from corral import _posix
from corral.cgroups import _base, v1_frozen
from corral.cgroups._base import (
    SIGKILL,
    Manager,
    blkio_weight,
    cpu_list,
    device_number,
    flag,
    idle,
    items,
    limit,
    page_size,
    pids_max,
    read,
    read_keyed,
    read_uint,
    section,
    shares,
    swappiness,
    table_writes,
    uint,
)
from corral.errors import CgroupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from corral.cgroups._base import Row

    # A planned write: (controller, file, text, field, retry_on_einval_at_the_end).
    Op = tuple[str, str, str, str, bool]

# OCI field (under linux.resources) -> (controller, file, converter), for the fields that are
# one value into one file. Order matters where the kernel checks one value against another:
# the real-time period goes before the runtime that must fit in it.
_TABLE: "tuple[Row, ...]" = (
    ("memory.reservation", "memory", "memory.soft_limit_in_bytes", limit),
    ("memory.kernelTCP", "memory", "memory.kmem.tcp.limit_in_bytes", limit),
    ("memory.swappiness", "memory", "memory.swappiness", swappiness),
    ("memory.disableOOMKiller", "memory", "memory.oom_control", flag),
    ("memory.useHierarchy", "memory", "memory.use_hierarchy", flag),
    ("cpu.shares", "cpu", "cpu.shares", shares),
    ("cpu.burst", "cpu", "cpu.cfs_burst_us", uint),
    ("cpu.realtimePeriod", "cpu", "cpu.rt_period_us", uint),
    ("cpu.realtimeRuntime", "cpu", "cpu.rt_runtime_us", limit),
    ("cpu.idle", "cpu", "cpu.idle", idle),
    ("cpu.cpus", "cpuset", "cpuset.cpus", cpu_list),
    ("cpu.mems", "cpuset", "cpuset.mems", cpu_list),
    ("pids.limit", "pids", "pids.max", pids_max),
    ("network.classID", "net_cls", "net_cls.classid", uint),
)

_THROTTLE = (
    ("throttleReadBpsDevice", "blkio.throttle.read_bps_device"),
    ("throttleWriteBpsDevice", "blkio.throttle.write_bps_device"),
    ("throttleReadIOPSDevice", "blkio.throttle.read_iops_device"),
    ("throttleWriteIOPSDevice", "blkio.throttle.write_iops_device"),
)

# Mount options of a v1 cgroup mount that are not controller names.
_NOT_CONTROLLERS = frozenset(
    ("rw", "ro", "noprefix", "clone_children", "xattr", "cpuset_v2_mode", "favordynmods")
)


def controllers_of(options: str) -> str:
    """The controllers of a v1 mount from its super options: "rw,cpu,cpuacct" -> "cpu,cpuacct"."""
    names = [
        o
        for o in options.split(",")
        if o not in _NOT_CONTROLLERS and ("=" not in o or o.startswith("name="))
    ]
    return ",".join(names)


class V1Manager(Manager):
    """A container's cgroup on a v1 or hybrid host.

    ``hierarchies`` lists (mount point, "controller,controller") for each mounted v1 hierarchy;
    ``unified`` is the cgroup2 mount point on a hybrid host, or None.
    """

    __slots__ = ("_by_controller", "hierarchies", "mode", "unified")

    def __init__(self, path: str, hierarchies: list[tuple[str, str]], unified: str | None) -> None:
        super().__init__(path)
        self.hierarchies = hierarchies
        self.unified = unified
        self.mode = "hybrid" if unified else "v1"
        self._by_controller = {
            c: mount + path for mount, names in hierarchies for c in names.split(",")
        }

    # -- life cycle

    def create(self) -> None:
        for mount, names in self.hierarchies:
            cpuset = "cpuset" in names.split(",")
            _base.mkdir_p(mount, self.path, _inherit_cpuset if cpuset else None)
        if self.unified:
            _base.mkdir_p(self.unified, self.path)

    def procs_files(self) -> list[str]:
        return [d + "/cgroup.procs" for d in self._dirs()]

    def join_plan(self) -> tuple[list[str], list[str]]:
        """The init joins every v1 hierarchy itself through ``tasks``, memory last.

        Moving *one's own thread* through a v1 ``tasks`` file does not take the kernel's global
        threadgroup lock, whose first writer waits out an RCU grace period (measured here: 0.05
        ms against 10-20 ms through ``cgroup.procs``); the init is single-threaded, so its
        only thread is the whole process.

        The hybrid host's cgroup2 tree is not joined: it has no controllers, so it limits
        nothing; it has no ``tasks`` file, so joining it costs that grace period (measured: it
        made ``run`` 30% slower); and the one thing it offers, cgroup.kill, spares a pid
        namespace's init. ``kill`` uses the v1 freezer, as on pure v1 hosts.
        """
        memory = self._by_controller.get("memory")
        own = [mount + self.path + "/tasks" for mount, _ in self.hierarchies]
        own.sort(key=lambda p: memory is not None and p.startswith(memory + "/"))
        return [], own

    def _dirs(self) -> list[str]:
        dirs = [mount + self.path for mount, _ in self.hierarchies]
        return [*dirs, self.unified + self.path] if self.unified else dirs

    def _procs_dir(self) -> str:
        for name in ("freezer", "pids", "memory"):
            if name in self._by_controller:
                return self._by_controller[name]
        return self._dirs()[0]

    def _dir(self, controller: str, field: str) -> str:
        """The container's directory in ``controller``'s hierarchy, or a CgroupError."""
        try:
            return self._by_controller[controller]
        except KeyError:
            where = f"{field}: " if field else ""
            raise CgroupError(
                f"{where}the {controller} controller is not mounted on this host"
            ) from None

    # -- freezer

    def can_freeze(self) -> bool:
        """A freezer hierarchy holding this container's directory (a half-removed container
        may have lost it already; then kill signals the pids directly)."""
        d = self._by_controller.get("freezer")
        return d is not None and _posix.isdir(d)

    def freeze(self, timeout: float | None = None) -> None:
        """Write FROZEN until freezer.state says FROZEN (runc's loop).

        The kernel answers FREEZING while some task has not reached a freezable point yet.
        Writing FROZEN again retries those tasks, and every 50th try a short thaw lets tasks
        that keep forking settle. If the cgroup never freezes it is thawed again: a cgroup left
        half frozen is worse than an error.
        """
        d = self._dir("freezer", "")
        timeout = _base.FREEZE_TIMEOUT if timeout is None else timeout
        deadline = time.monotonic() + timeout
        tries = 0
        while True:
            if tries % 50 == 49:
                _base.write(d, "freezer.state", "THAWED")
                _base.sleep(0.01)
            _base.write(d, "freezer.state", "FROZEN")
            state = read(d + "/freezer.state")
            if state == "FROZEN":
                return
            if state is None and not _posix.isdir(d):
                raise CgroupError(f"freezing {d}: the cgroup is gone (its processes ended)")
            if state != "FREEZING":
                raise CgroupError(f"freezing {d}: unexpected freezer.state {state!r}")
            if time.monotonic() >= deadline:
                _base.write(d, "freezer.state", "THAWED")
                raise CgroupError(
                    f"freezing {d}: still FREEZING after {timeout:g}s (a process is stuck in"
                    " the kernel, in uninterruptible I/O for example); thawed it again"
                )
            _base.sleep(0.001)
            tries += 1

    def thaw(self, timeout: float | None = None) -> None:
        """Write THAWED and wait until freezer.state says so.

        A cgroup removed before or during the wait (its processes all ended and the container
        was deleted, e.g. by its monitor while ``kill`` thawed it) has nothing left to thaw:
        that ends the wait at once instead of polling a missing file until the timeout.
        """
        d = self._dir("freezer", "")
        try:
            _base.write(d, "freezer.state", "THAWED")
        except CgroupError:
            if not _posix.isdir(d):
                return
            raise

        def thawed_or_gone() -> bool:
            state = read(d + "/freezer.state")
            return state == "THAWED" or (state is None and not _posix.isdir(d))

        if not _base.wait_for(thawed_or_gone, _base.FREEZE_TIMEOUT if timeout is None else timeout):
            raise CgroupError(f"thawing {d}: freezer.state is still {read(d + '/freezer.state')}")

    def frozen(self) -> bool:
        d = self._by_controller.get("freezer")
        return d is not None and v1_frozen(d)

    def pids(self) -> list[int]:
        """The container's processes; on hybrid also those only in the cgroup2 tree so far (a
        process is moved there in the background, see join_plan)."""
        found = super().pids()
        if self.unified and _posix.isdir(self.unified + self.path):
            found = sorted(set(found) | set(_base.read_pids(self.unified + self.path)))
        return found

    def kill(self, sig: int) -> None:
        """On hybrid, SIGKILL goes through the unified ``cgroup.kill`` first.

        cgroup.kill (Linux 5.14) kills every process atomically, forks included. But it does
        not kill a pid namespace's init (seen here: it is sent like a signal from inside the
        namespace, which the init ignores), and a process frozen by the v1 freezer dies only
        once thawed, so whatever is still listed afterwards gets the freeze-signal-thaw
        treatment, which signals each pid from our namespace and thaws.
        """
        if sig == SIGKILL and self.unified:
            kill_file = self.unified + self.path + "/cgroup.kill"
            if _posix.exists(kill_file):
                _base.write(self.unified + self.path, "cgroup.kill", "1")
                if not self.pids():
                    return
        super().kill(sig)

    # -- resources

    def set(self, resources: "dict[str, Any]") -> None:
        """Apply linux.resources, as corral.spec.validate checked them: plan every write, then
        write. Nothing is written when the host lacks the controller or file a value needs
        (CgroupError naming the field)."""
        res = resources
        if res.get("unified"):
            raise CgroupError(
                f"linux.resources.unified: needs cgroup v2; this host runs cgroup {self.mode}"
            )
        ops: list[Op] = self._memory_ops(res) + self._cpu_ops(res)
        ops += [(c, f, t, fld, False) for c, f, t, fld in table_writes(res, _TABLE)]
        ops += self._blkio_ops(res) + self._misc_ops(res) + self._device_ops(res)
        _base.apply([(self._dir(c, fld), f, t, fld, retry) for c, f, t, fld, retry in ops])

    def _memory_ops(self, res: "dict[str, Any]") -> "list[Op]":
        """memory.limit_in_bytes and memory.memsw.limit_in_bytes, in an order the kernel takes.

        On v1 "swap" is memory+swap, which must never be below the memory limit, including
        in between the two writes: growing both, swap goes first; shrinking, memory goes first.
        ``kernel`` is ignored, as in runc: kernel memory limits are deprecated and their file
        refuses writes on current kernels.
        """
        mem = section(res, "memory")
        field = "linux.resources.memory."
        lim = limit(field + "limit", mem["limit"]) if mem.get("limit") is not None else None
        swap = limit(field + "swap", mem["swap"]) if mem.get("swap") is not None else None
        memory = self._by_controller.get("memory")
        has_memsw = memory is not None and _posix.exists(memory + "/memory.memsw.limit_in_bytes")
        if lim == "-1" and swap is None and has_memsw:
            swap = "-1"  # unlimited memory means unlimited swap too
        # swap >= limit: corral.spec.validate's rule, checked before.
        lim_op: Op = ("memory", "memory.limit_in_bytes", lim or "", field + "limit", False)
        swap_op: Op = ("memory", "memory.memsw.limit_in_bytes", swap or "", field + "swap", False)
        if lim and swap:
            current = read_uint(f"{memory}/memory.limit_in_bytes") if memory else 0
            grow = swap == "-1" or current < int(swap)
            return [swap_op, lim_op] if grow else [lim_op, swap_op]
        return [lim_op] if lim else [swap_op] if swap else []

    def _cpu_ops(self, res: "dict[str, Any]") -> "list[Op]":
        """CFS period and quota. The kernel checks quota/period against the parent's, so a
        smaller period can be refused (EINVAL) until the new quota is in; runc writes the
        period, then the quota, then retries a refused period, and so does this."""
        cpu = section(res, "cpu")
        field = "linux.resources.cpu."
        quota = limit(field + "quota", cpu["quota"]) if cpu.get("quota") is not None else None
        period = uint(field + "period", cpu["period"]) if cpu.get("period") is not None else None
        ops: list[Op] = []
        if period:
            ops.append(("cpu", "cpu.cfs_period_us", period, field + "period", bool(quota)))
        if quota:
            ops.append(("cpu", "cpu.cfs_quota_us", quota, field + "quota", False))
        return ops

    def _blkio_ops(self, res: "dict[str, Any]") -> "list[Op]":
        """Weights and throttles. CFQ's blkio.weight left with Linux 5.0; BFQ's blkio.bfq.weight
        takes the same numbers, so whichever this kernel has is used (as runc does)."""
        bio = section(res, "blockIO")
        field = "linux.resources.blockIO"
        d = self._by_controller.get("blkio")
        cfq = d is not None and _posix.exists(d + "/blkio.weight")
        weight_file = "blkio.weight" if cfq else "blkio.bfq.weight"
        device_file = "blkio.weight_device" if cfq else "blkio.bfq.weight_device"
        ops: list[Op] = []
        for key, name in (("weight", weight_file), ("leafWeight", "blkio.leaf_weight")):
            if bio.get(key) is not None:
                text = blkio_weight(f"{field}.{key}", bio[key])
                if text:
                    ops.append(("blkio", name, text, f"{field}.{key}", False))
        for where, entry in items(field + ".weightDevice", bio.get("weightDevice")):
            dev = device_number(where, entry)
            for key, name in (("weight", device_file), ("leafWeight", "blkio.leaf_weight_device")):
                if entry.get(key) is not None:
                    text = blkio_weight(f"{where}.{key}", entry[key])
                    if text:
                        ops.append(("blkio", name, f"{dev} {text}", f"{where}.{key}", False))
        for key, name in _THROTTLE:
            for where, entry in items(f"{field}.{key}", bio.get(key)):
                rate = entry.get("rate") or 0
                ops.append(("blkio", name, f"{device_number(where, entry)} {rate}", where, False))
        return ops

    def _misc_ops(self, res: "dict[str, Any]") -> "list[Op]":
        """Huge pages, interface priorities, RDMA: one line per list entry."""
        ops: list[Op] = []
        field = "linux.resources.hugepageLimits"
        for where, entry in items(field, res.get("hugepageLimits")):
            size = page_size(where + ".pageSize", entry.get("pageSize"))
            value = str(entry["limit"])
            ops.append(("hugetlb", f"hugetlb.{size}.limit_in_bytes", value, where, False))
        field = "linux.resources.network.priorities"
        for where, entry in items(field, section(res, "network").get("priorities")):
            ops.append(
                ("net_prio", "net_prio.ifpriomap", _base.priority(where, entry), where, False)
            )
        for where, line in _base.rdma_lines(res.get("rdma")):
            ops.append(("rdma", "rdma.max", line, where, False))
        return ops

    def _device_ops(self, res: "dict[str, Any]") -> "list[Op]":
        """Deny everything, then apply each rule in order, as runc does.

        Only when the config has a ``devices`` list: an ``update`` without one leaves the rules
        alone; an empty list denies every device.
        """
        if res.get("devices") is None:
            return []
        field = "linux.resources.devices"
        ops: list[Op] = [("devices", "devices.deny", "a", field, False)]
        for i, (allow, kind, rest) in enumerate(_base.device_rules(res["devices"])):
            line = "a" if kind == "a" else f"{kind} {rest}"
            name = "devices.allow" if allow else "devices.deny"
            ops.append(("devices", name, line, f"{field}[{i}]", False))
        return ops

    # -- reading

    def stats(self) -> "dict[str, Any]":
        get = self._by_controller.get
        return {
            "cpu": _cpu_stats(get("cpuacct"), get("cpu")),
            "memory": _memory_stats(get("memory")),
            "pids": _base.pids_stats(get("pids")),
            "blkio": _blkio_stats(get("blkio")),
            "hugetlb": _hugetlb_stats(get("hugetlb")),
        }

    def oom_events(self) -> int:
        """Register an eventfd for memory.oom_control through cgroup.event_control.

        The kernel keeps its own reference to the cgroup, so the control file is closed
        right after registering; the eventfd also fires once when the cgroup is removed.
        """
        d = self._dir("memory", "")
        efd = posix.eventfd(0, posix.EFD_CLOEXEC)
        try:
            cfd = posix.open(d + "/memory.oom_control", posix.O_RDONLY | posix.O_CLOEXEC)
            try:
                _base.raw_write(d + "/cgroup.event_control", f"{efd} {cfd}")
            finally:
                posix.close(cfd)
        except OSError as err:
            posix.close(efd)
            raise CgroupError(f"registering for OOM events in {d}: {err.strerror}") from None
        return efd

    def memory_dir(self) -> str:
        return self._dir("memory", "")

    def oom_kill_count(self) -> int:
        d = self._dir("memory", "")
        return read_keyed(d + "/memory.oom_control").get("oom_kill", 0)

    def mount_sources(self) -> list[tuple[str, str]]:
        out = [(mount + self.path, mount.rsplit("/", 1)[-1]) for mount, _ in self.hierarchies]
        if self.unified:
            out.append((self.unified + self.path, "unified"))
        return out

    def to_state(self) -> "dict[str, Any]":
        return {
            "mode": self.mode,
            "path": self.path,
            "hierarchies": [[mount, names] for mount, names in self.hierarchies],
            "unified": self.unified,
        }


def _inherit_cpuset(parent: str, child: str) -> None:
    """A new v1 cpuset cgroup starts with empty cpus and mems, and a cgroup with no CPUs
    cannot take a process; copy the parent's, as runc does."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        if read(f"{child}/{name}") == "":
            _base.write(child, name, read(f"{parent}/{name}") or "")


# -- stats parsers --------------------------------------------------------------------------


def _cpu_stats(cpuacct: str | None, cpu: str | None) -> "dict[str, Any]":
    """cpuacct counts nanoseconds, except cpuacct.stat which counts clock ticks (USER_HZ)."""
    usage: dict[str, Any] = {"total": 0, "percpu": [], "kernel": 0, "user": 0}
    if cpuacct is not None:
        usage["total"] = read_uint(cpuacct + "/cpuacct.usage")
        usage["percpu"] = [int(v) for v in (read(cpuacct + "/cpuacct.usage_percpu") or "").split()]
        rows = (read(cpuacct + "/cpuacct.usage_all") or "").splitlines()[1:]
        columns = [row.split() for row in rows if len(row.split()) == 3]
        if columns:
            usage["percpu_kernel"] = [int(c[2]) for c in columns]
            usage["percpu_user"] = [int(c[1]) for c in columns]
        ticks = read_keyed(cpuacct + "/cpuacct.stat")
        hz = posix.sysconf("SC_CLK_TCK")
        usage["kernel"] = ticks.get("system", 0) * 1_000_000_000 // hz
        usage["user"] = ticks.get("user", 0) * 1_000_000_000 // hz
    stat = read_keyed(cpu + "/cpu.stat") if cpu is not None else {}
    throttling = {
        "periods": stat.get("nr_periods", 0),
        "throttledPeriods": stat.get("nr_throttled", 0),
        "throttledTime": stat.get("throttled_time", 0),
    }
    return {"usage": usage, "throttling": throttling}


def _memory_stats(d: str | None) -> "dict[str, Any]":
    """usage/swap/kernel/kernelTCP entries; on v1 "swap" is memory+swap, as runc reports it."""
    if d is None:
        empty = _base.memory_entry()
        return {
            "cache": 0,
            "usage": empty,
            "swap": empty,
            "kernel": empty,
            "kernelTCP": empty,
            "raw": {},
        }

    def entry(prefix: str) -> dict[str, int]:
        return _base.memory_entry(
            read_uint(f"{d}/{prefix}.usage_in_bytes"),
            read_uint(f"{d}/{prefix}.max_usage_in_bytes"),
            read_uint(f"{d}/{prefix}.failcnt"),
            read_uint(f"{d}/{prefix}.limit_in_bytes"),
        )

    raw = read_keyed(d + "/memory.stat")
    return {
        "cache": raw.get("cache", 0),
        "usage": entry("memory"),
        "swap": entry("memory.memsw"),
        "kernel": entry("memory.kmem"),
        "kernelTCP": entry("memory.kmem.tcp"),
        "raw": raw,
    }


def _blkio_stats(d: str | None) -> "dict[str, Any]":
    """Per-device byte and operation counts: BFQ's files if present, else CFQ's, else the
    throttle layer's (which every kernel has), as runc picks them."""
    out: dict[str, Any] = {"ioServiceBytesRecursive": [], "ioServicedRecursive": []}
    if d is None:
        return out
    for prefix in ("blkio.bfq.", "blkio.", "blkio.throttle."):
        if _posix.exists(f"{d}/{prefix}io_service_bytes_recursive"):
            break
    for key, name in (
        ("ioServiceBytesRecursive", "io_service_bytes_recursive"),
        ("ioServicedRecursive", "io_serviced_recursive"),
    ):
        for line in (read(f"{d}/{prefix}{name}") or "").splitlines():
            fields = line.split()
            if len(fields) == 3:  # "8:0 Read 4096"; the last line is "Total N"
                out[key].append(_base.blkio_entry(fields[0], fields[1], int(fields[2])))
    return out


def _hugetlb_stats(d: str | None) -> "dict[str, Any]":
    out: dict[str, Any] = {}
    if d is None:
        return out
    for name in sorted(posix.listdir(d)):
        if name.startswith("hugetlb.") and name.endswith(".limit_in_bytes"):
            size = name[len("hugetlb.") : -len(".limit_in_bytes")]
            base = f"{d}/hugetlb.{size}"
            out[size] = {
                "usage": read_uint(base + ".usage_in_bytes"),
                "max": read_uint(base + ".max_usage_in_bytes"),
                "failcnt": read_uint(base + ".failcnt"),
            }
    return out
