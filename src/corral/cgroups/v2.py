"""The cgroup v2 manager (a unified host: one cgroup2 tree at /sys/fs/cgroup).

On v2 a container's cgroup is a single directory. A controller works in a cgroup only if its
parent lists it in ``cgroup.subtree_control``, so creating a cgroup means enabling the
controllers on the way down; and a cgroup that holds processes cannot hand controllers to
children ("no internal processes"), so only the ancestors are touched, never the leaf.

The files differ from v1 and so do some units; the conversions below are runc's and crun's, so
a config gives the same limits with either runtime:

- ``cpu.shares`` (2..262144) -> ``cpu.weight`` (1..10000): ``1 + (shares - 2) * 9999 // 262142``
- ``blockIO.weight`` (10..1000) -> ``io.weight`` (1..10000): ``1 + (weight - 10) * 9999 // 990``
  (``io.bfq.weight`` takes the v1 number unchanged when the BFQ scheduler is there)
- ``memory.swap`` is memory+swap (a v1 notion) -> ``memory.swap.max`` is swap alone: swap - limit
- -1 ("unlimited" on v1) -> "max"
- ``devices`` (devices.allow/deny on v1) -> an eBPF program attached to the cgroup
  (:mod:`corral.cgroups.devices` builds it, :mod:`corral.sys.bpf` loads it)
"""

import posix

from corral import _posix
from corral.cgroups import _base, v2_frozen
from corral.cgroups._base import (
    SIGKILL,
    Manager,
    cpu_list,
    device_number,
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
    table_writes,
    uint,
    unsupported,
    v2_limit,
)
from corral.errors import CgroupError, KernelError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from corral.cgroups._base import Row

    # A planned write: (controller, file, text, field).
    Op = tuple[str, str, str, str]


def cpu_weight(field: str, value: "Any") -> str | None:
    """cpu.shares -> cpu.weight, as runc and crun convert it."""
    text = shares(field, value)
    return None if text is None else str(1 + (int(text) - 2) * 9999 // 262142)


def _hierarchy(field: str, value: "Any") -> str | None:
    if _base.flag(field, value) == "0":
        raise CgroupError(f"{field}: cgroup v2 is always hierarchical; false cannot be honoured")
    return None


# OCI field (under linux.resources) -> (controller, file, converter), for one-value fields;
# the rows with "" as file are fields v2 has no file for: any value other than "not set" is an
# error rather than silently dropped.
_TABLE: "tuple[Row, ...]" = (
    ("memory.reservation", "memory", "memory.low", v2_limit),
    ("memory.useHierarchy", "memory", "", _hierarchy),
    ("memory.kernelTCP", "memory", "", unsupported("cgroup v2 has no TCP memory limit")),
    ("memory.swappiness", "memory", "", unsupported("cgroup v2 has no per-cgroup swappiness")),
    (
        "memory.disableOOMKiller",
        "memory",
        "",
        unsupported("cgroup v2 cannot disable the OOM killer"),
    ),
    ("cpu.shares", "cpu", "cpu.weight", cpu_weight),
    ("cpu.burst", "cpu", "cpu.max.burst", uint),
    ("cpu.realtimePeriod", "cpu", "", unsupported("cgroup v2 has no real-time CPU limits")),
    ("cpu.realtimeRuntime", "cpu", "", unsupported("cgroup v2 has no real-time CPU limits")),
    ("cpu.idle", "cpu", "cpu.idle", idle),
    ("cpu.cpus", "cpuset", "cpuset.cpus", cpu_list),
    ("cpu.mems", "cpuset", "cpuset.mems", cpu_list),
    ("pids.limit", "pids", "pids.max", pids_max),
    ("blockIO.leafWeight", "io", "", unsupported("cgroup v2 has no leaf weights")),
    ("network.classID", "", "", unsupported("net_cls does not exist on cgroup v2")),
)

_IO_MAX_KEYS = (
    ("throttleReadBpsDevice", "rbps"),
    ("throttleWriteBpsDevice", "wbps"),
    ("throttleReadIOPSDevice", "riops"),
    ("throttleWriteIOPSDevice", "wiops"),
)


class V2Manager(Manager):
    """A container's cgroup on a unified (cgroup v2) host; ``root`` is the cgroup2 mount."""

    __slots__ = ("dir", "root")
    mode = "v2"

    def __init__(self, path: str, root: str) -> None:
        super().__init__(path)
        self.root = root
        self.dir = root + path

    # -- life cycle

    def create(self) -> None:
        """mkdir -p, enabling every available controller in each ancestor (as runc does).

        Enabling fails in an ancestor that holds processes itself; that is not fatal here,
        because a limit that then cannot be set is reported by :meth:`set`, naming the field.
        """
        current = self.root
        for part in self.path.strip("/").split("/"):
            _enable_controllers(current)
            current = f"{current}/{part}"
            try:
                _base.mkdir(current)
            except FileExistsError:
                pass
            except OSError as err:
                raise CgroupError(f"creating cgroup {current}: {err.strerror}") from None

    def procs_files(self) -> list[str]:
        return [self.dir + "/cgroup.procs"]

    def _dirs(self) -> list[str]:
        return [self.dir]

    def _procs_dir(self) -> str:
        return self.dir

    # -- freezer (cgroup.freeze, Linux 5.2)

    def can_freeze(self) -> bool:
        return _posix.exists(self.dir + "/cgroup.freeze")

    def freeze(self, timeout: float | None = None) -> None:
        """Write 1 to cgroup.freeze, then wait for cgroup.events to say "frozen 1".

        The write only asks; every process must reach a point where it can stop, and the
        kernel flips "frozen" in cgroup.events once all have.
        """
        self._set_frozen("1", timeout)

    def thaw(self, timeout: float | None = None) -> None:
        self._set_frozen("0", timeout)

    def _set_frozen(self, want: str, timeout: float | None) -> None:
        """A cgroup removed before or during the wait (its processes ended and the container
        was deleted meanwhile) ends a thaw at once, and a freeze with CgroupError at once,
        instead of polling a missing cgroup.events until the timeout (as v1.thaw)."""
        try:
            _base.write(self.dir, "cgroup.freeze", want, why="needs Linux 5.2 or later")
        except CgroupError:
            if want == "0" and not _posix.isdir(self.dir):
                return
            raise
        timeout = _base.FREEZE_TIMEOUT if timeout is None else timeout

        def done_or_gone() -> bool:
            return not _posix.isdir(self.dir) or self._events().get("frozen", 0) == int(want)

        if not _base.wait_for(done_or_gone, timeout):
            verb = "freezing" if want == "1" else "thawing"
            if want == "1":
                _base.write(self.dir, "cgroup.freeze", "0")
            raise CgroupError(
                f"{verb} {self.dir}: cgroup.events did not change within {timeout:g}s"
                + ("; thawed it again" if want == "1" else "")
            )
        if want == "1" and not _posix.isdir(self.dir):
            raise CgroupError(f"freezing {self.dir}: the cgroup was removed meanwhile")

    def _events(self) -> dict[str, int]:
        return read_keyed(self.dir + "/cgroup.events")

    def frozen(self) -> bool:
        return v2_frozen(self.dir)

    def kill(self, sig: int) -> None:
        """SIGKILL: one write to cgroup.kill (Linux 5.14), which the kernel applies to every
        process atomically, frozen or forking. Other signals: freeze, signal, thaw."""
        if sig == SIGKILL and _posix.exists(self.dir + "/cgroup.kill"):
            _base.write(self.dir, "cgroup.kill", "1")
            return
        super().kill(sig)

    # -- resources

    def set(self, resources: "dict[str, Any]") -> None:
        """Apply linux.resources, as corral.spec.validate checked them: plan every write, then
        write.

        ``unified`` entries go last, so they override the typed fields (as in runc); the device
        filter is installed after the files.
        """
        res = resources
        ops: list[Op] = self._memory_ops(res) + self._cpu_ops(res)
        ops += table_writes(res, _TABLE)
        ops += self._io_ops(res) + self._misc_ops(res) + self._unified_ops(res)
        program = self._device_program(res)
        _base.apply(
            [(self.dir, name, text, field, False) for _, name, text, field in ops],
            self._why_missing,
        )
        if program is not None:
            try:
                _base.attach_device_filter(self.dir, program)
            except KernelError as err:
                raise CgroupError(f"linux.resources.devices: installing the eBPF filter: {err}")

    def _why_missing(self, directory: str, name: str) -> str:
        """A file is missing on v2 mostly because its controller is not enabled here."""
        controller = name.partition(".")[0]
        available = (read(directory + "/cgroup.controllers") or "").split()
        if controller not in ("cgroup", *available):
            return (
                f"the {controller} controller is not enabled for this cgroup; the parent's"
                " cgroup.subtree_control must list it"
            )
        return _base.hint(name)

    def _memory_ops(self, res: "dict[str, Any]") -> "list[Op]":
        """memory.max and memory.swap.max (swap without memory, unlike v1's memsw)."""
        mem = section(res, "memory")
        field = "linux.resources.memory."
        lim = limit(field + "limit", mem["limit"]) if mem.get("limit") is not None else None
        swap = limit(field + "swap", mem["swap"]) if mem.get("swap") is not None else None
        ops: list[Op] = []
        swap_max = _swap_max(field, lim, swap)
        if swap_max == "max" and swap is None:
            # Unlimited memory means unlimited swap too, where swap accounting exists.
            if _posix.exists(self.dir + "/memory.swap.max"):
                ops.append(("memory", "memory.swap.max", "max", field + "limit"))
        elif swap_max is not None:
            ops.append(("memory", "memory.swap.max", swap_max, field + "swap"))
        if lim:
            ops.append(("memory", "memory.max", "max" if lim == "-1" else lim, field + "limit"))
        return ops

    def _cpu_ops(self, res: "dict[str, Any]") -> "list[Op]":
        """cpu.max is "QUOTA PERIOD" in one file; QUOTA "max" is no limit.

        When only one of the two is given the other is kept from the current cpu.max (runc
        would reset the quota to "max" when only the period changes).
        """
        cpu = section(res, "cpu")
        field = "linux.resources.cpu."
        quota = limit(field + "quota", cpu["quota"]) if cpu.get("quota") is not None else None
        period = uint(field + "period", cpu["period"]) if cpu.get("period") is not None else None
        if quota is None and period is None:
            return []
        if quota is None:
            quota = (read(self.dir + "/cpu.max") or "max").split()[0]
        elif int(quota) <= 0:
            quota = "max"
        text = f"{quota} {period}" if period else quota
        return [("cpu", "cpu.max", text, field + ("quota" if cpu.get("quota") else "period"))]

    def _io_ops(self, res: "dict[str, Any]") -> "list[Op]":
        """io.weight (or io.bfq.weight), per-device BFQ weights, and io.max throttles."""
        bio = section(res, "blockIO")
        field = "linux.resources.blockIO"
        bfq = _posix.exists(self.dir + "/io.bfq.weight")
        ops: list[Op] = []
        if bio.get("weight") is not None:
            text = _base.blkio_weight(field + ".weight", bio["weight"])
            if text and bfq:
                ops.append(("io", "io.bfq.weight", text, field + ".weight"))
            elif text:
                weight = 1 + (int(text) - 10) * 9999 // 990
                ops.append(("io", "io.weight", str(weight), field + ".weight"))
        for where, entry in items(field + ".weightDevice", bio.get("weightDevice")):
            dev = device_number(where, entry)
            if entry.get("leafWeight") is not None:
                unsupported("cgroup v2 has no leaf weights")(
                    where + ".leafWeight", entry["leafWeight"]
                )
            text = _base.blkio_weight(where + ".weight", entry.get("weight") or 0)
            if text:  # only BFQ has per-device weights; apply() reports io.bfq.weight missing
                ops.append(("io", "io.bfq.weight", f"{dev} {text}", where + ".weight"))
        # One io.max line per device, with every limit given for it.
        lines: dict[str, list[str]] = {}
        fields: dict[str, str] = {}
        for key, name in _IO_MAX_KEYS:
            for where, entry in items(f"{field}.{key}", bio.get(key)):
                dev = device_number(where, entry)
                rate = entry.get("rate") or 0
                lines.setdefault(dev, []).append(f"{name}={rate or 'max'}")
                fields.setdefault(dev, where)
        for dev, settings in lines.items():
            ops.append(("io", "io.max", f"{dev} {' '.join(settings)}", fields[dev]))
        return ops

    def _misc_ops(self, res: "dict[str, Any]") -> "list[Op]":
        ops: list[Op] = []
        for where, entry in items("linux.resources.hugepageLimits", res.get("hugepageLimits")):
            size = page_size(where + ".pageSize", entry.get("pageSize"))
            value = str(entry["limit"])
            ops.append(("hugetlb", f"hugetlb.{size}.max", value, where))
        if section(res, "network").get("priorities"):
            raise CgroupError(
                "linux.resources.network.priorities: net_prio does not exist on cgroup v2"
            )
        for where, line in _base.rdma_lines(res.get("rdma")):
            ops.append(("rdma", "rdma.max", line, where))
        return ops

    def _device_program(self, res: "dict[str, Any]") -> bytes | None:
        """v2 has no devices.allow: the kernel asks an eBPF program attached to the cgroup
        (BPF_CGROUP_DEVICE) on every device open and mknod. The rules are replayed with v1's
        semantics and compiled (corral.cgroups.devices); None when the config has no list."""
        if res.get("devices") is None:
            return None
        from corral.cgroups import devices

        return devices.compile_program(*devices.emulate(_base.device_rules(res["devices"])))

    def _unified_ops(self, res: "dict[str, Any]") -> "list[Op]":
        """linux.resources.unified: file name -> value, written as given."""
        unified = res.get("unified")
        if unified is None:
            return []
        ops: list[Op] = []
        for key, value in unified.items():  # names of files, as validate checked
            where = f'linux.resources.unified["{key}"]'
            ops.append((key.partition(".")[0], key, value, where))
        return ops

    # -- reading

    def stats(self) -> "dict[str, Any]":
        d = self.dir
        return {
            "cpu": _cpu_stats(d),
            "memory": _memory_stats(d),
            "pids": _base.pids_stats(d if _posix.exists(d + "/pids.max") else None),
            "blkio": _io_stats(d),
            "hugetlb": _hugetlb_stats(d),
        }

    def oom_events(self) -> int:
        """memory.events, opened for reading: poll(2) for POLLPRI wakes on every change."""
        try:
            return posix.open(self.dir + "/memory.events", posix.O_RDONLY | posix.O_CLOEXEC)
        except OSError as err:
            raise CgroupError(f"opening {self.dir}/memory.events: {err.strerror}") from None

    def memory_dir(self) -> str:
        return self.dir

    def oom_kill_count(self) -> int:
        return read_keyed(self.dir + "/memory.events").get("oom_kill", 0)

    def mount_sources(self) -> list[tuple[str, str]]:
        return [(self.dir, "")]

    def to_state(self) -> "dict[str, Any]":
        return {"mode": "v2", "path": self.path, "root": self.root}

    # -- born in the cgroup (clone3's CLONE_INTO_CGROUP, Linux 5.7)

    def open_dir(self) -> int:
        """An O_PATH fd of the cgroup's directory: what clone3 takes to start a child in it."""
        try:
            return posix.open(self.dir, posix.O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC)
        except OSError as err:
            raise CgroupError(f"opening {self.dir}: {err.strerror}") from None

    def memory_ceiling(self) -> int | None:
        """The lowest memory.max or memory.high from the cgroup up to the root, in bytes:
        what a process in the cgroup can be charged before reclaim throttles or the OOM killer
        acts; None when nothing limits it."""
        lowest: int | None = None
        directory = self.dir
        while len(directory) > len(self.root):
            for name in ("memory.max", "memory.high"):
                text = read(f"{directory}/{name}")
                if text and text != "max":
                    lowest = int(text) if lowest is None else min(lowest, int(text))
            directory = directory.rsplit("/", 1)[0]
        return lowest


def _enable_controllers(directory: str) -> None:
    """Write "+c" for every controller ``directory`` has but does not pass down yet."""
    available = (read(directory + "/cgroup.controllers") or "").split()
    enabled = (read(directory + "/cgroup.subtree_control") or "").split()
    missing = [c for c in available if c not in enabled]
    if not missing:
        return
    target = directory + "/cgroup.subtree_control"
    try:
        _base.raw_write(target, " ".join("+" + c for c in missing))
    except OSError:
        for c in missing:  # one at a time, so one refusal does not block the others
            try:
                _base.raw_write(target, "+" + c)
            except OSError:
                pass


def _swap_max(field: str, lim: str | None, swap: str | None) -> str | None:
    """OCI swap (memory+swap) -> memory.swap.max (swap alone); None for "leave as is"."""
    if swap is None:
        return "max" if lim == "-1" else None
    if swap == "-1":
        return "max"
    # A memory limit, not above swap: corral.spec.validate's rule, checked before.
    return str(int(swap) - int(lim or 0))


# -- stats parsers --------------------------------------------------------------------------


def _cpu_stats(d: str) -> "dict[str, Any]":
    """cpu.stat counts microseconds; runc reports nanoseconds. v2 has no per-CPU counters."""
    stat = read_keyed(d + "/cpu.stat")
    return {
        "usage": {
            "total": stat.get("usage_usec", 0) * 1000,
            "percpu": [],
            "kernel": stat.get("system_usec", 0) * 1000,
            "user": stat.get("user_usec", 0) * 1000,
        },
        "throttling": {
            "periods": stat.get("nr_periods", 0),
            "throttledPeriods": stat.get("nr_throttled", 0),
            "throttledTime": stat.get("throttled_usec", 0) * 1000,
        },
    }


def _memory_stats(d: str) -> "dict[str, Any]":
    """As runc: "swap" is reported as memory+swap so that numbers read like v1's."""
    raw = read_keyed(d + "/memory.stat")
    usage = _base.memory_entry(
        read_uint(d + "/memory.current"),
        read_uint(d + "/memory.peak"),
        read_keyed(d + "/memory.events").get("max", 0),
        read_uint(d + "/memory.max"),
    )
    swap_limit = read_uint(d + "/memory.swap.max")
    if swap_limit != _base.MAX_UINT64 and usage["limit"] != _base.MAX_UINT64:
        swap_limit += usage["limit"]
    swap = _base.memory_entry(
        read_uint(d + "/memory.swap.current") + usage["usage"],
        0,
        read_keyed(d + "/memory.swap.events").get("max", 0),
        swap_limit,
    )
    return {
        "cache": raw.get("file", 0),
        "usage": usage,
        "swap": swap,
        "kernel": _base.memory_entry(),
        "kernelTCP": _base.memory_entry(),
        "raw": raw,
    }


def _io_stats(d: str) -> "dict[str, Any]":
    """io.stat: "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0" per device."""
    names = {
        "rbytes": ("ioServiceBytesRecursive", "Read"),
        "wbytes": ("ioServiceBytesRecursive", "Write"),
        "dbytes": ("ioServiceBytesRecursive", "Discard"),
        "rios": ("ioServicedRecursive", "Read"),
        "wios": ("ioServicedRecursive", "Write"),
        "dios": ("ioServicedRecursive", "Discard"),
    }
    out: dict[str, Any] = {"ioServiceBytesRecursive": [], "ioServicedRecursive": []}
    for line in (read(d + "/io.stat") or "").splitlines():
        device, *pairs = line.split()
        for pair in pairs:
            key, _, value = pair.partition("=")
            if key in names and value.isdigit():
                table, op = names[key]
                out[table].append(_base.blkio_entry(device, op, int(value)))
    return out


def _hugetlb_stats(d: str) -> "dict[str, Any]":
    out: dict[str, Any] = {}
    if not _posix.isdir(d):
        return out
    for name in sorted(posix.listdir(d)):
        if name.startswith("hugetlb.") and name.endswith(".max") and name.count(".") == 2:
            size = name[len("hugetlb.") : -len(".max")]
            base = f"{d}/hugetlb.{size}"
            out[size] = {
                "usage": read_uint(base + ".current"),
                "max": 0,
                "failcnt": read_keyed(base + ".events").get("max", 0),
            }
    return out
