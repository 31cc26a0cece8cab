"""A fake cgroupfs for tests: real managers, real files, no root, no kernel.

:class:`FakeCgroupfs` builds a directory tree that looks like ``/sys/fs/cgroup`` on a v1, hybrid
or v2 host, writes a matching ``mountinfo``, and replaces the kernel seam of
:mod:`corral.cgroups._base` (``raw_write``, ``mkdir``, ``rmdir``, ``sleep``,
``attach_device_filter``) with functions that imitate what cgroupfs does on top of plain files:

- ``mkdir`` fills the new directory with the control files the kernel would create (on v2 only
  for the controllers the parent's ``cgroup.subtree_control`` enables; v1 cpusets start empty);
- ``rmdir`` removes those files first, and fails with EBUSY while ``cgroup.procs`` lists a pid
  or a sub-cgroup exists;
- writes to ``cgroup.subtree_control``, ``cgroup.procs``, ``freezer.state``, ``cgroup.freeze`` and
  ``cgroup.kill`` have their kernel meaning; ``writes`` records every write in order;
- ``attach_device_filter`` records the eBPF program per cgroup in ``device_programs`` (run it
  with ``corral.cgroups.devices.run_program``);
- ``sleep`` advances the fake's clock: a v1 freeze stays FREEZING for ``freeze_ticks`` sleeps,
  and v2's ``cgroup.events`` catches up with ``cgroup.freeze`` after ``freeze_ticks`` sleeps.

Usage (pytest)::

    fake = FakeCgroupfs(str(tmp_path), "v2")
    with fake:
        mgr = corral.cgroups.open_manager("/corral/c1", root=fake.root, mountinfo=fake.mountinfo)
        mgr.create()

Not imported by the runtime.
"""

from __future__ import annotations

import errno
import os

from corral.cgroups import _base
from corral.errors import KernelError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType

V1_HIERARCHIES = (
    "cpu,cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "blkio",
    "pids",
    "hugetlb",
    "net_cls,net_prio",
    "rdma",
    "name=systemd",
)
V2_CONTROLLERS = ("cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc")

_UNLIMITED_V1 = "9223372036854771712"
_MEMORY_V1 = {
    f"memory.{prefix}{name}": value
    for prefix in ("", "memsw.", "kmem.", "kmem.tcp.")
    for name, value in (
        ("limit_in_bytes", _UNLIMITED_V1),
        ("usage_in_bytes", "0"),
        ("max_usage_in_bytes", "0"),
        ("failcnt", "0"),
    )
}
_HUGE_V1 = {
    f"hugetlb.{size}.{name}": value
    for size in ("2MB", "1GB")
    for name, value in (
        ("limit_in_bytes", _UNLIMITED_V1),
        ("usage_in_bytes", "0"),
        ("max_usage_in_bytes", "0"),
        ("failcnt", "0"),
    )
}

# Control files per v1 controller, with the contents a new cgroup has.
V1_FILES: dict[str, dict[str, str]] = {
    "cpu": {
        "cpu.shares": "1024",
        "cpu.cfs_quota_us": "-1",
        "cpu.cfs_period_us": "100000",
        "cpu.cfs_burst_us": "0",
        "cpu.rt_period_us": "1000000",
        "cpu.rt_runtime_us": "0",
        "cpu.idle": "0",
        "cpu.stat": "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n",
    },
    "cpuacct": {
        "cpuacct.usage": "0",
        "cpuacct.usage_percpu": "0 0 ",
        "cpuacct.usage_all": "cpu user system\n0 0 0\n1 0 0\n",
        "cpuacct.stat": "user 0\nsystem 0\n",
    },
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": "", "cpuset.cpu_exclusive": "0"},
    "memory": {
        **_MEMORY_V1,
        "memory.soft_limit_in_bytes": _UNLIMITED_V1,
        "memory.swappiness": "60",
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        "memory.use_hierarchy": "1",
        "memory.stat": "cache 0\nrss 0\n",
        "cgroup.event_control": "",
    },
    "devices": {"devices.allow": "", "devices.deny": "", "devices.list": "a *:* rwm\n"},
    "freezer": {"freezer.state": "THAWED", "freezer.self_freezing": "0"},
    "blkio": {
        "blkio.bfq.weight": "100",
        "blkio.bfq.weight_device": "default 100\n",
        "blkio.throttle.read_bps_device": "",
        "blkio.throttle.write_bps_device": "",
        "blkio.throttle.read_iops_device": "",
        "blkio.throttle.write_iops_device": "",
        "blkio.throttle.io_service_bytes_recursive": "Total 0\n",
        "blkio.throttle.io_serviced_recursive": "Total 0\n",
    },
    "pids": {"pids.max": "max", "pids.current": "0"},
    "hugetlb": _HUGE_V1,
    "net_cls": {"net_cls.classid": "0"},
    "net_prio": {"net_prio.ifpriomap": "", "net_prio.prioidx": "1"},
    "rdma": {"rdma.max": "", "rdma.current": ""},
    "name=systemd": {},
}
V1_COMMON = {
    "cgroup.procs": "",
    "tasks": "",
    "notify_on_release": "0",
    "cgroup.clone_children": "0",
}

V2_CORE = {
    "cgroup.procs": "",
    "cgroup.threads": "",
    "cgroup.controllers": "",
    "cgroup.subtree_control": "",
    "cgroup.events": "populated 0\nfrozen 0\n",
    "cgroup.freeze": "0",
    "cgroup.kill": "",
    "cgroup.type": "domain",
    "cgroup.max.depth": "max",
    "cgroup.stat": "nr_descendants 0\nnr_dying_descendants 0\n",
    "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
}
V2_FILES: dict[str, dict[str, str]] = {
    "cpu": {
        "cpu.weight": "100",
        "cpu.max": "max 100000",
        "cpu.max.burst": "0",
        "cpu.idle": "0",
        "cpu.stat": (
            "usage_usec 0\nuser_usec 0\nsystem_usec 0\nnr_periods 0\nnr_throttled 0\n"
            "throttled_usec 0\n"
        ),
    },
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": "", "cpuset.cpus.effective": "0-3"},
    "io": {"io.weight": "default 100", "io.max": "", "io.stat": ""},
    "memory": {
        "memory.max": "max",
        "memory.low": "0",
        "memory.high": "max",
        "memory.min": "0",
        "memory.swap.max": "max",
        "memory.current": "0",
        "memory.peak": "0",
        "memory.swap.current": "0",
        "memory.stat": "anon 0\nfile 0\n",
        "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
        "memory.swap.events": "high 0\nmax 0\nfail 0\n",
    },
    "pids": {"pids.max": "max", "pids.current": "0"},
    "hugetlb": {
        f"hugetlb.{size}.{name}": value
        for size in ("2MB", "1GB")
        for name, value in (("max", "max"), ("current", "0"), ("events", "max 0\n"))
    },
    "rdma": {"rdma.max": "", "rdma.current": ""},
    "misc": {"misc.max": "", "misc.current": ""},
}


class FakeCgroupfs:
    """A fake cgroup filesystem under ``base``: ``root`` is its /sys/fs/cgroup.

    ``mode``: "v1", "hybrid" or "v2". ``missing``: file names the fake never creates (to act
    out an older kernel or a host with swap accounting off). ``hierarchies`` (v1) and
    ``controllers`` (v2) choose what is mounted or available.
    """

    def __init__(
        self,
        base: str,
        mode: str = "v2",
        *,
        missing: tuple[str, ...] = (),
        hierarchies: tuple[str, ...] = V1_HIERARCHIES,
        controllers: tuple[str, ...] = V2_CONTROLLERS,
        freeze_ticks: int = 0,
    ) -> None:
        self.base = base
        self.mode = mode
        self.root = base + "/cgroup"
        self.mountinfo = base + "/mountinfo"
        self.missing = set(missing)
        self.hierarchies = hierarchies
        self.controllers = controllers
        self.freeze_ticks = freeze_ticks
        self.writes: list[tuple[str, str]] = []  # (path relative to root, data)
        self.fail: dict[str, int] = {}  # path relative to root -> errno for its next write
        self.busy: dict[str, int] = {}  # path relative to root -> EBUSY rmdirs before success
        self.slept = 0
        self.device_programs: dict[str, bytes] = {}  # path relative to root -> eBPF program
        self._ticks: dict[str, int] = {}
        self._saved: dict[str, object] = {}
        self._build()

    # -- layout

    def _build(self) -> None:
        os.makedirs(self.root)
        lines = [
            "22 27 0:21 / /proc rw,relatime - proc proc rw",
            f"31 23 0:28 / {self.root} rw,nosuid - tmpfs tmpfs rw,mode=755",
        ]
        if self.mode == "v2":
            lines[1] = f"31 23 0:28 / {self.root} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate"
            self._fill(self.root, V2_CORE)
            self._put(self.root, "cgroup.controllers", " ".join(self.controllers))
            self._put(self.root, "cpuset.cpus.effective", "0-3")
            self._put(self.root, "cpuset.mems.effective", "0")
        else:
            for i, names in enumerate(self.hierarchies):
                point = f"{self.root}/{names.removeprefix('name=')}"
                os.mkdir(point)
                self._fill(point, V1_COMMON)
                for controller in names.split(","):
                    self._fill(point, V1_FILES[controller])
                if "cpuset" in names.split(","):
                    self._put(point, "cpuset.cpus", "0-3")
                    self._put(point, "cpuset.mems", "0")
                lines.append(
                    f"{32 + i} 31 0:{29 + i} / {point} rw,nosuid - cgroup cgroup rw,{names}"
                )
            if self.mode == "hybrid":
                point = self.root + "/unified"
                os.mkdir(point)
                self._fill(point, V2_CORE)
                lines.append(f"60 31 0:60 / {point} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate")
        with open(self.mountinfo, "w") as f:
            f.write("\n".join(lines) + "\n")

    def _put(self, directory: str, name: str, text: str) -> None:
        if name not in self.missing:
            with open(f"{directory}/{name}", "w") as f:
                f.write(text)

    def _fill(self, directory: str, files: dict[str, str]) -> None:
        for name, text in files.items():
            self._put(directory, name, text)

    def _hierarchy(self, path: str) -> str:
        """The top directory under root that ``path`` belongs to ("" on v2)."""
        if self.mode == "v2":
            return ""
        return path[len(self.root) + 1 :].split("/")[0]

    def rel(self, path: str) -> str:
        return path[len(self.root) + 1 :]

    # -- reading, for assertions

    def read(self, rel: str) -> str:
        with open(f"{self.root}/{rel}") as f:
            return f.read()

    def written(self, rel_suffix: str) -> list[str]:
        """Everything written to files whose relative path ends with ``rel_suffix``."""
        return [data for path, data in self.writes if path.endswith(rel_suffix)]

    # -- the seam

    def __enter__(self) -> FakeCgroupfs:
        for name in ("raw_write", "mkdir", "rmdir", "sleep", "attach_device_filter"):
            self._saved[name] = getattr(_base, name)
            setattr(_base, name, getattr(self, name))
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for name, saved in self._saved.items():
            setattr(_base, name, saved)

    def mkdir(self, path: str) -> None:
        os.mkdir(path)
        hierarchy = self._hierarchy(path)
        parent = os.path.dirname(path)
        if self.mode == "v2" or hierarchy == "unified":
            self._fill(path, V2_CORE)
            enabled = _read(parent + "/cgroup.subtree_control").split()
            self._put(path, "cgroup.controllers", " ".join(enabled))
            for controller in enabled:
                self._fill(path, V2_FILES[controller])
            return
        names = next(h for h in self.hierarchies if h.removeprefix("name=") == hierarchy)
        self._fill(path, V1_COMMON)
        for controller in names.split(","):
            self._fill(path, V1_FILES[controller])

    def rmdir(self, path: str) -> None:
        rel = self.rel(path)
        if self.busy.get(rel, 0) > 0:
            self.busy[rel] -= 1
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), path)
        if _read(path + "/cgroup.procs").strip():
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), path)
        entries = os.listdir(path)  # FileNotFoundError when gone, as the kernel says
        if any(os.path.isdir(f"{path}/{e}") for e in entries):
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), path)
        for entry in entries:
            os.unlink(f"{path}/{entry}")
        os.rmdir(path)

    def raw_write(self, path: str, data: str) -> None:
        rel = self.rel(path)
        if rel in self.fail:
            code = self.fail.pop(rel)
            raise OSError(code, os.strerror(code), path)
        if not os.path.isfile(path):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        self.writes.append((rel, data))
        directory, name = os.path.split(path)
        if name == "cgroup.subtree_control":
            self._subtree_control(directory, data)
        elif name == "cgroup.procs":
            pids = _read(path).split()
            self._set(path, "\n".join([*pids, str(os.getpid()) if data == "0" else data]))
        elif name == "cgroup.kill":
            self._set(directory + "/cgroup.procs", "")
        elif name == "freezer.state":
            stuck = data == "FROZEN" and self._ticks.get(directory, self.freeze_ticks) > 0
            self._ticks.setdefault(directory, self.freeze_ticks)
            self._set(path, "FREEZING" if stuck else data)
            if data == "THAWED":
                self._ticks.pop(directory, None)
        elif name == "cgroup.freeze":
            self._set(path, data)
            self._ticks[directory] = self.freeze_ticks
            self._sync_events()
        else:
            self._set(path, data)

    def attach_device_filter(self, directory: str, program: bytes) -> None:
        if not os.path.isdir(directory):
            raise KernelError("open", errno.ENOENT, os.strerror(errno.ENOENT), directory)
        self.device_programs[self.rel(directory)] = program

    def sleep(self, seconds: float) -> None:
        self.slept += 1
        for directory in list(self._ticks):
            self._ticks[directory] = max(self._ticks[directory] - 1, 0)
            state = directory + "/freezer.state"
            if self._ticks[directory] == 0 and _read(state) == "FREEZING":
                self._set(state, "FROZEN")
        self._sync_events()

    def _sync_events(self) -> None:
        """v2: "frozen" in cgroup.events follows cgroup.freeze once the ticks ran out."""
        for directory, ticks in self._ticks.items():
            freeze = directory + "/cgroup.freeze"
            if ticks == 0 and os.path.exists(freeze):
                events = _read(directory + "/cgroup.events").splitlines()
                lines = [e for e in events if not e.startswith("frozen ")]
                self._set(
                    directory + "/cgroup.events",
                    "\n".join([*lines, f"frozen {_read(freeze).strip()}"]) + "\n",
                )

    def _subtree_control(self, directory: str, data: str) -> None:
        available = _read(directory + "/cgroup.controllers").split()
        enabled = _read(directory + "/cgroup.subtree_control").split()
        for token in data.split():
            name = token.lstrip("+-")
            if name not in available:
                raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), directory)
            if token.startswith("-") and name in enabled:
                enabled.remove(name)
            elif not token.startswith("-") and name not in enabled:
                enabled.append(name)
        self._set(directory + "/cgroup.subtree_control", " ".join(enabled))

    @staticmethod
    def _set(path: str, text: str) -> None:
        with open(path, "w") as f:
            f.write(text)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""
