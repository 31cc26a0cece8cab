"""The systemd cgroup driver (``--systemd-cgroup``): the container's cgroup is a scope unit.

On a host where systemd is PID 1 it owns the cgroup tree and expects every cgroup under it to
belong to a unit. With this driver, as with runc's, the container gets a *transient scope*:

- ``linux.cgroupsPath`` is ``slice:prefix:name``; the unit is ``prefix-name.scope`` in
  ``slice`` (``system.slice`` when empty), and its cgroup is the slice's path plus the unit:
  ``system.slice:corral:abc`` is ``/system.slice/corral-abc.scope``; ``a-b.slice`` expands to
  ``/a.slice/a-b.slice``; ``-.slice`` is the root.
- The scope is made with StartTransientUnit once the init exists (a scope is a set of
  processes: it cannot be started empty): PIDs=[the init], Delegate=yes (the subtree is the
  container's), accounting on for memory, CPU, tasks and IO, DefaultDependencies=no, and the
  limits systemd has a property for, mapped as runc maps them (:func:`resource_properties`).
  The runtime does it from its side right after fork (``adopt``), then every cgroupfs file is
  still written by the wrapped v2 (or v1) manager, as runc's driver does for what systemd has
  no property for (and the device filter, the swap, the IO and hugetlb limits...).
- ``update`` sends the new properties with SetUnitProperties (runtime=true), then writes the
  files; ``delete`` stops the unit (StopUnit) and resets it if it failed.

Everything else (paths, freeze, kill, stats, OOM events) is the wrapped manager's. D-Bus is
spoken by :mod:`corral.cgroups.dbus`, imported only when a unit is made, changed or stopped.
"""

from __future__ import annotations

import os

from corral.cgroups import _base
from corral.cgroups._base import Manager
from corral.errors import CgroupError, SpecError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from corral.cgroups._base import OomWatch
    from corral.cgroups.dbus import Connection, Variant

    Property = tuple[str, Variant]

FIELD = "linux.cgroupsPath"
INFINITY = (1 << 64) - 1  # systemd's "infinity" for a uint64 limit
DEFAULT_SLICE = "system.slice"
JOB_TIMEOUT = 30.0  # seconds to wait for a start or stop job (runc's)
POLL_INTERVAL = 0.5  # seconds without JobRemoved before asking whether the job still exists
EMPTY_GRACE = 2.0  # seconds an emptied scope is given to go by itself

SYSTEMD = "org.freedesktop.systemd1"
SYSTEMD_PATH = "/org/freedesktop/systemd1"
SYSTEMD_MANAGER = "org.freedesktop.systemd1.Manager"
_UNIT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:-_.\\@")


# -- names ----------------------------------------------------------------------------------


def expand_slice(name: str) -> str:
    """The cgroup path of a slice: ``a-b.slice`` -> ``/a.slice/a-b.slice``; ``-.slice`` -> ""."""
    if not name.endswith(".slice") or "/" in name:
        raise SpecError(FIELD, f"the slice {name!r} must be a systemd slice name ending in .slice")
    if name == "-.slice":
        return ""
    base = name[: -len(".slice")]
    if not base or base.startswith("-") or base.endswith("-") or "--" in base:
        raise SpecError(FIELD, f"{name!r} is not a valid slice name")
    path, prefix = "", ""
    for part in base.split("-"):
        prefix = f"{prefix}-{part}" if prefix else part
        path += f"/{prefix}.slice"
    return path


def parse_path(value: str) -> tuple[str, str, str]:
    """``slice:prefix:name`` -> (slice, unit, cgroup path), as runc reads it."""
    parts = value.split(":")
    if len(parts) != 3 or "/" in value:
        raise SpecError(
            FIELD, f"must have the form slice:prefix:name with --systemd-cgroup, got {value!r}"
        )
    slice_name, prefix, name = parts
    slice_name = slice_name or DEFAULT_SLICE
    if not name:
        raise SpecError(FIELD, f"the name in {value!r} (slice:prefix:name) is empty")
    if name.endswith(".slice"):
        raise SpecError(FIELD, f"{value!r}: a slice as the container's own unit is not supported")
    unit = f"{prefix}-{name}.scope" if prefix else f"{name}.scope"
    if not set(unit) <= _UNIT_CHARS or len(unit) > 255:
        raise SpecError(FIELD, f"{unit!r} is not a valid systemd unit name")
    return slice_name, unit, f"{expand_slice(slice_name)}/{unit}"


# -- resources -> unit properties -----------------------------------------------------------


def cpu_mask(field: str, value: Any) -> bytes | None:
    """A CPU or node list ("0-3,8") as systemd's byte mask: bit n%8 of byte n//8 is n."""
    text = _base.cpu_list(field, value)
    if text is None:
        return None
    mask = bytearray()
    for part in text.split(","):
        low, _, high = part.partition("-")
        for n in range(int(low), int(high or low) + 1):
            if n >= len(mask) * 8:
                mask.extend(b"\0" * (n // 8 + 1 - len(mask)))
            mask[n // 8] |= 1 << (n % 8)
    return bytes(mask)


def _u64(text: str | None) -> int | None:
    return None if text is None else INFINITY if text in ("max", "-1") else int(text)


def _cpu_quota(res: dict[str, Any], current_quota: Callable[[], str]) -> list[Property]:
    """cpu.quota/cpu.period -> CPUQuotaPerSecUSec (rounded up to 10 ms, as systemd keeps it)
    and CPUQuotaPeriodUSec; a period alone keeps the quota in place."""
    from corral.cgroups.dbus import Variant

    cpu = _base.section(res, "cpu")
    field = "linux.resources.cpu."
    quota = _base.limit(field + "quota", cpu["quota"]) if cpu.get("quota") is not None else None
    period = _base.uint(field + "period", cpu["period"]) if cpu.get("period") is not None else None
    if quota is None and period is None:
        return []
    if quota is None:
        quota = current_quota()
    props: list[Property] = []
    per_sec = INFINITY
    if quota not in ("max", "-1") and int(quota) > 0:
        per_sec = int(quota) * 1_000_000 // int(period or 100_000)
        per_sec += -per_sec % 10_000
    props.append(("CPUQuotaPerSecUSec", Variant("t", per_sec)))
    if period:
        props.append(("CPUQuotaPeriodUSec", Variant("t", int(period))))
    return props


def _device_name(kind: str, major: int, proc_devices: str) -> str | None:
    """The driver name of ``major`` in /proc/devices ("136 pts" -> "pts"), or None."""
    try:
        with open(proc_devices, "rb") as f:
            text = f.read().decode()
    except OSError:
        return None
    section = ""
    for line in text.splitlines():
        if line.endswith(":"):
            section = "c" if line.startswith("Character") else "b"
        elif section == kind:
            number, _, name = line.strip().partition(" ")
            if number == str(major):
                return name.strip()
    return None


def device_properties(rules: Any, proc_devices: str = "/proc/devices") -> list[Property]:
    """OCI device rules -> DevicePolicy and DeviceAllow, as runc maps them.

    systemd has no deny list: the rules are replayed (:func:`devices.emulate`) and, when the
    result denies by default, each exception becomes a DeviceAllow entry under the strict
    policy; when it allows by default, systemd is told to allow all and the denials are left
    to corral's own eBPF filter (both programs must allow an access). An exception for a major
    with any minor is named by its driver in /proc/devices ("char-pts"); one that is not
    listed there cannot be expressed and is left out, as runc does.
    """
    from corral.cgroups import devices
    from corral.cgroups.dbus import Variant

    default_allow, exceptions = devices.emulate(_base.device_rules(rules))
    if default_allow:
        return [("DevicePolicy", Variant("s", "auto")), ("DeviceAllow", Variant("a(ss)", []))]
    allow: list[Any] = []
    for kind, major, minor, bits in exceptions:
        access = "".join(c for c, b in (("r", 2), ("w", 4), ("m", 1)) if bits & b)
        group = "char" if kind == "c" else "block"
        if major is None:
            node = f"{group}-*"
        elif minor is None:
            name = _device_name(kind, major, proc_devices)
            if name is None:
                continue
            node = f"{group}-{name}"
        else:
            node = f"/dev/{group}/{major}:{minor}"
        allow.append((node, access))
    return [
        ("DevicePolicy", Variant("s", "strict")),
        ("DeviceAllow", Variant("a(ss)", [])),  # an empty list resets what was there
        ("DeviceAllow", Variant("a(ss)", allow)),
    ]


_UNIFIED = {
    "memory.max": "MemoryMax",
    "memory.high": "MemoryHigh",
    "memory.low": "MemoryLow",
    "memory.min": "MemoryMin",
    "memory.swap.max": "MemorySwapMax",
    "pids.max": "TasksMax",
    "cpu.weight": "CPUWeight",
}


def resource_properties(
    res: dict[str, Any],
    v2: bool = True,
    current_quota: Callable[[], str] = lambda: "max",
    proc_devices: str = "/proc/devices",
) -> list[Property]:
    """The unit properties for OCI ``linux.resources`` (runc's table, docs/cgroups.md).

    Only what the resources set is returned, so that ``update`` changes only that. The values
    are corral.spec.validate's, checked before (create: the config; update: the merged resources).
    """
    from corral.cgroups import v2 as fs2
    from corral.cgroups.dbus import Variant

    props: list[Property] = []

    def add(name: str, value: int | None) -> None:
        if value is not None:
            props.append((name, Variant("t", value)))

    mem = _base.section(res, "memory")
    field = "linux.resources.memory."
    lim = _base.limit(field + "limit", mem["limit"]) if mem.get("limit") is not None else None
    if v2:
        add("MemoryMax", _u64(lim))
        if mem.get("reservation") is not None:
            add("MemoryLow", _u64(_base.limit(field + "reservation", mem["reservation"])))
        swap = _base.limit(field + "swap", mem["swap"]) if mem.get("swap") is not None else None
        add("MemorySwapMax", _u64(fs2._swap_max(field, lim, swap)))
    else:
        add("MemoryLimit", _u64(lim))
    cpu = _base.section(res, "cpu")
    if cpu.get("shares") is not None:
        if v2:
            add("CPUWeight", _u64(fs2.cpu_weight("linux.resources.cpu.shares", cpu["shares"])))
        else:
            add("CPUShares", _u64(_base.shares("linux.resources.cpu.shares", cpu["shares"])))
    props += _cpu_quota(res, current_quota)
    for key, name in (("cpus", "AllowedCPUs"), ("mems", "AllowedMemoryNodes")):
        if cpu.get(key) is not None:
            mask = cpu_mask(f"linux.resources.cpu.{key}", cpu[key])
            if mask is not None:
                props.append((name, Variant("ay", mask)))
    pids = _base.section(res, "pids")
    if pids.get("limit") is not None:
        add("TasksMax", _u64(_base.pids_max("linux.resources.pids.limit", pids["limit"])))
    if not v2:
        weight = _base.section(res, "blockIO").get("weight")
        if weight is not None:
            add("BlockIOWeight", _u64(_base.blkio_weight("linux.resources.blockIO.weight", weight)))
    if res.get("devices") is not None:
        props += device_properties(res["devices"], proc_devices)
    unified = res.get("unified")
    if v2 and isinstance(unified, dict):
        for key, name in _UNIFIED.items():
            value = unified.get(key)
            if isinstance(value, str) and (value == "max" or value.isdigit()):
                add(name, _u64(value))
    return props


# -- D-Bus ----------------------------------------------------------------------------------


def _connect() -> Connection:
    """systemd directly over its private socket (root), else through the system bus."""
    from corral.cgroups import dbus

    if os.geteuid() == 0 and os.path.exists(dbus.SYSTEMD_PRIVATE):
        try:
            return dbus.Connection.open(dbus.SYSTEMD_PRIVATE, bus=False, timeout=JOB_TIMEOUT)
        except CgroupError:
            pass  # e.g. a container's view of /run without systemd's socket behind it
    conn = dbus.Connection.open(dbus.SYSTEM_BUS, bus=True, timeout=JOB_TIMEOUT)
    rule = (
        f"type='signal',sender='{SYSTEMD}',path='{SYSTEMD_PATH}',"
        f"interface='{SYSTEMD_MANAGER}',member='JobRemoved'"
    )
    conn.call(dbus.BUS_NAME, "/org/freedesktop/DBus", dbus.BUS_NAME, "AddMatch", "s", [rule])
    conn.call(SYSTEMD, SYSTEMD_PATH, SYSTEMD_MANAGER, "Subscribe")
    return conn


#: The seam the unit tests replace with a fake systemd (a socketpair).
connect: Callable[[], Connection] = _connect


def _manager_call(conn: Connection, member: str, signature: str, body: list[Any]) -> list[Any]:
    return conn.call(SYSTEMD, SYSTEMD_PATH, SYSTEMD_MANAGER, member, signature, body)


def _wait_job(conn: Connection, job: str, what: str, timeout: float = JOB_TIMEOUT) -> None:
    """Wait for the end of ``job``; a result other than "done" is an error.

    The end is the JobRemoved signal. A job that ends while its unit is already on its way
    (a stop of a scope whose processes were just killed) may end without one reaching us, so
    every POLL_INTERVAL without it the job object is asked for: gone means done.
    """
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = conn.signal(SYSTEMD_MANAGER, "JobRemoved", POLL_INTERVAL)
        if m is None:
            if _job_exists(conn, job):
                continue
            m = conn.signal(SYSTEMD_MANAGER, "JobRemoved", 0)  # read during that call?
            if m is None:
                return
        if len(m.body) == 4 and m.body[1] == job:
            result = m.body[3]
            if result != "done":
                raise CgroupError(f"systemd: {what}: the job ended with {result!r}")
            return
    raise CgroupError(f"systemd: {what}: the job did not end within {timeout:g}s")


def _job_exists(conn: Connection, job: str) -> bool:
    from corral.cgroups.dbus import DBusError

    try:
        conn.call(
            SYSTEMD,
            job,
            "org.freedesktop.DBus.Properties",
            "Get",
            "ss",
            ["org.freedesktop.systemd1.Job", "State"],
        )
    except DBusError:
        return False
    return True


def _gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie counts: our init, not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return True


class SystemdManager(Manager):
    """A container's cgroup as a systemd scope; ``inner`` manages its files on cgroupfs."""

    __slots__ = ("_adopted", "_pending", "inner", "slice", "unit")
    mode = "systemd"

    def __init__(self, slice_name: str, unit: str, inner: Manager, adopted: bool = False) -> None:
        super().__init__(inner.path)
        self.slice = slice_name
        self.unit = unit
        self.inner = inner
        self._adopted = adopted  # the unit exists (from_state), or adopt() made it
        self._pending: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"<SystemdManager {self.slice}/{self.unit} {self.inner!r}>"

    @property
    def v2(self) -> bool:
        return self.inner.mode == "v2"

    # -- life cycle

    def create(self) -> None:
        """Make the scope's directory (systemd takes it as it is when it starts the unit).

        The unit itself is started by :meth:`adopt`, once the init exists; the directory is
        needed before, for the init's bind mount of its cgroup (mount_sources).
        """
        self.inner.create()

    def join_plan(self) -> tuple[list[str], list[str]]:
        """Before the unit exists: the runtime hands the init to :meth:`adopt` (the files
        listed as *background* are where it will be; nothing is opened before fork). Once it
        exists (exec): the wrapped manager's plan."""
        if self._adopted:
            return self.inner.join_plan()
        return self.inner.procs_files(), []

    def adopt(self, pid: int) -> None:
        """Start the scope with ``pid`` in it, wait for systemd, then write the cgroupfs files.

        ProcessLookupError when ``pid`` died first (its own error is the one to report).
        """
        from corral.cgroups.dbus import DBusError, Variant

        accounting = "IOAccounting" if self.v2 else "BlockIOAccounting"
        props: list[Property] = [
            ("Description", Variant("s", f"corral container {self.unit}")),
            ("Slice", Variant("s", self.slice)),
            ("Delegate", Variant("b", True)),
            ("PIDs", Variant("au", [pid])),
            ("MemoryAccounting", Variant("b", True)),
            ("CPUAccounting", Variant("b", True)),
            ("TasksAccounting", Variant("b", True)),
            (accounting, Variant("b", True)),
            ("DefaultDependencies", Variant("b", False)),
            *resource_properties(self._pending, self.v2),
        ]
        conn = connect()
        try:
            for attempt in (1, 2):
                try:
                    job = _manager_call(
                        conn,
                        "StartTransientUnit",
                        "ssa(sv)a(sa(sv))",
                        [self.unit, "replace", list(props), []],
                    )[0]
                    _wait_job(conn, str(job), f"starting {self.unit}")
                    break
                except DBusError as err:
                    if _gone(pid):
                        raise ProcessLookupError(pid) from None
                    if err.name.endswith(".UnitExists") and attempt == 1:
                        # A leftover (failed) unit of the same name: reset it, try once more.
                        self._reset_failed(conn)
                        continue
                    raise CgroupError(f"systemd: starting {self.unit}: {err}") from None
        finally:
            conn.close()
        self._adopted = True
        self.inner.create()  # enables the controllers systemd did not (hugetlb, rdma...)
        self.inner.set(self._pending)
        if not self.v2:
            self.inner.add(pid)  # the v1 hierarchies systemd does not manage

    def _reset_failed(self, conn: Connection) -> None:
        from corral.cgroups.dbus import DBusError

        try:
            _manager_call(conn, "ResetFailedUnit", "s", [self.unit])
        except DBusError:
            pass

    def set(self, resources: dict[str, Any]) -> None:
        """Before the unit exists: check and keep. After: SetUnitProperties, then the files."""
        props = resource_properties(resources, self.v2, self._current_quota)
        if not self._adopted:
            self._pending = resources
            return
        if props:
            from corral.cgroups.dbus import DBusError

            conn = connect()
            try:
                _manager_call(conn, "SetUnitProperties", "sba(sv)", [self.unit, True, list(props)])
            except DBusError as err:
                raise CgroupError(f"systemd: updating {self.unit}: {err}") from None
            finally:
                conn.close()
        self.inner.set(resources)

    def _current_quota(self) -> str:
        if not self.v2:
            return "max"
        return ((_base.read(self.inner._procs_dir() + "/cpu.max") or "max").split() or ["max"])[0]

    def destroy(self) -> None:
        """Stop the scope (systemd removes its cgroup), reset it if it failed, then remove
        whatever is left on cgroupfs.

        A scope whose processes are gone (the runtime kills them first) stops by itself: it is
        given EMPTY_GRACE seconds to go, and is stopped only if it is still there; the stop of
        an empty scope is not waited for long (systemd may wait for an empty-cgroup
        notification it already had), the cgroupfs cleanup after it is ours anyway.
        """
        from corral.cgroups.dbus import DBusError

        try:
            conn = connect()
        except CgroupError:
            if self.inner.exists():
                raise
            conn = None  # nothing left to stop, and no systemd to ask
        if conn is not None:
            empty = not self.inner.exists() or not self.inner.pids()
            if empty:
                # Seen in the VM lane (systemd 252): a call made while systemd is taking an
                # emptied scope down can go unanswered; bound every exchange here.
                conn.sock.settimeout(EMPTY_GRACE)
            try:
                if not (empty and self._gone_by_itself(conn)):
                    job = _manager_call(conn, "StopUnit", "ss", [self.unit, "replace"])[0]
                    wait = EMPTY_GRACE if empty else JOB_TIMEOUT
                    _wait_job(conn, str(job), f"stopping {self.unit}", wait)
            except DBusError as err:
                if not err.name.endswith(".NoSuchUnit"):
                    raise CgroupError(f"systemd: stopping {self.unit}: {err}") from None
            except CgroupError:
                pass  # a failed or slow stop job: the reset below and the rmdirs finish it
            finally:
                try:
                    self._reset_failed(conn)  # an OOM-killed scope stays "failed" until reset
                except CgroupError:
                    pass
                conn.close()
        self.inner.destroy()

    def _gone_by_itself(self, conn: Connection) -> bool:
        """Whether the unit disappears within EMPTY_GRACE seconds (GetUnit: NoSuchUnit)."""
        import time

        from corral.cgroups.dbus import DBusError

        deadline = time.monotonic() + EMPTY_GRACE
        while True:
            try:
                _manager_call(conn, "GetUnit", "s", [self.unit])
            except DBusError as err:
                if err.name.endswith(".NoSuchUnit"):
                    return True
                raise
            if time.monotonic() >= deadline:
                return False
            _base.sleep(0.05)

    def prune_parent(self, parent: str) -> None:
        """The slice is systemd's: nothing of ours to prune."""

    # -- the rest is the wrapped manager's

    def procs_files(self) -> list[str]:
        return self.inner.procs_files()

    def add(self, pid: int) -> None:
        self.inner.add(pid)

    def pids(self) -> list[int]:
        return self.inner.pids()

    def exists(self) -> bool:
        return self.inner.exists()

    def freeze(self, timeout: float | None = None) -> None:
        self.inner.freeze(timeout)

    def thaw(self, timeout: float | None = None) -> None:
        self.inner.thaw(timeout)

    def frozen(self) -> bool:
        return self.inner.frozen()

    def can_freeze(self) -> bool:
        return self.inner.can_freeze()

    def kill(self, sig: int) -> None:
        self.inner.kill(sig)

    def stats(self) -> dict[str, Any]:
        return self.inner.stats()

    def mount_sources(self) -> list[tuple[str, str]]:
        return self.inner.mount_sources()

    def oom_events(self) -> int:
        return self.inner.oom_events()

    def oom_kill_count(self) -> int:
        return self.inner.oom_kill_count()

    def oom_watch(self, last_words: int = -1) -> OomWatch:
        return self.inner.oom_watch(last_words)

    def memory_dir(self) -> str:
        return self.inner.memory_dir()

    def to_state(self) -> dict[str, Any]:
        return {
            "mode": "systemd",
            "path": self.path,
            "slice": self.slice,
            "unit": self.unit,
            "inner": self.inner.to_state(),
        }

    def _dirs(self) -> list[str]:
        return self.inner._dirs()

    def _procs_dir(self) -> str:
        return self.inner._procs_dir()
