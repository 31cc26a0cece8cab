"""What the v1 and v2 managers share: the Manager interface, the kernel seam, file helpers,
the conversions of OCI values (checked before by corral.spec.validate) into file contents, and
the stats parsers.

The kernel seam
---------------
On cgroupfs a ``mkdir`` creates a cgroup *with* its control files, an ``rmdir`` removes a
directory that still holds them, and a write has side effects (``+memory`` into
``cgroup.subtree_control`` enables a controller, ``FROZEN`` into ``freezer.state`` starts
freezing). A plain directory tree does none of that, so every kernel effect of this package goes
through five module-level names: :func:`raw_write`, :func:`mkdir`, :func:`rmdir`, :data:`sleep`
and :func:`attach_device_filter`. The unit tests replace them with a small fake kernel
(:mod:`corral.cgroups.testing`) and run the real managers on a temporary directory; nothing else
needs to be mocked.
"""

import posix
import time

from corral import _posix
from corral.errors import CgroupError

TYPE_CHECKING = False  # typing costs 8 ms to import; mypy still reads these blocks
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    # A converter checks one OCI value and returns the text to write, or None for "leave as is".
    Converter = Callable[[str, Any], str | None]
    # One row of a resource table: (OCI field under linux.resources, controller, file, converter).
    Row = tuple[str, str, str, Converter]

#: How long freeze() and thaw() wait for the kernel before giving up, in seconds.
FREEZE_TIMEOUT = 5.0
#: How long destroy() retries an rmdir that fails with EBUSY (processes still exiting).
DESTROY_TIMEOUT = 2.0
#: What the stats report for an unlimited value, as runc does (Go's math.MaxUint64).
MAX_UINT64 = (1 << 64) - 1

# The signal and errno modules cost an import each; these numbers are fixed on Linux.
SIGKILL = 9
ENOENT, EBUSY, EINVAL = 2, 16, 22


# -- the kernel seam ------------------------------------------------------------------------


def raw_write(path: str, data: str) -> None:
    """Write ``data`` to a control file in one write(2), as the kernel wants one value per call."""
    fd = posix.open(path, posix.O_WRONLY | posix.O_TRUNC | posix.O_CLOEXEC)
    try:
        posix.write(fd, data.encode())
    finally:
        posix.close(fd)


def mkdir(path: str) -> None:
    """Create one cgroup (the kernel fills it with control files)."""
    posix.mkdir(path, 0o755)


def rmdir(path: str) -> None:
    """Remove one empty cgroup (control files do not count as content on cgroupfs)."""
    posix.rmdir(path)


sleep = time.sleep


def attach_device_filter(directory: str, program: bytes) -> None:
    """Make the eBPF ``program`` the device filter of cgroup v2 ``directory`` (bpf(2))."""
    from corral.sys import bpf

    bpf.replace_device_filter(directory, program)


# -- the interface --------------------------------------------------------------------------


class Manager:
    """One container's cgroup, on every hierarchy the host has.

    ``path`` is the cgroup path inside each hierarchy (``/corral/<id>``), as returned by
    :func:`corral.cgroups.resolve_path`. Subclasses: ``V1Manager`` (v1 and hybrid hosts) and
    ``V2Manager`` (unified hosts). The runtime uses them in this order: ``create``, ``set``,
    ``procs_files`` (opened before fork, written by the init just before exec), then ``freeze``,
    ``thaw``, ``kill``, ``stats``, ``set`` again for ``update``, and ``destroy`` on delete.
    """

    __slots__ = ("path",)
    mode = ""

    def __init__(self, path: str) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.mode} {self.path}>"

    def create(self) -> None:
        """Make the container's cgroup (``mkdir -p``) on every hierarchy it uses."""
        raise NotImplementedError

    def procs_files(self) -> list[str]:
        """Every ``cgroup.procs`` file the container's init must join (by writing "0")."""
        raise NotImplementedError

    def add(self, pid: int) -> None:
        """Move process ``pid`` into the container's cgroup on every hierarchy."""
        for path in self.procs_files():
            try:
                raw_write(path, str(pid))
            except OSError as err:
                raise CgroupError(f"adding process {pid} to {path}: {err.strerror}") from None

    def pids(self) -> list[int]:
        """Every process in the container's cgroup and its sub-cgroups."""
        return read_pids(self._procs_dir())

    def exists(self) -> bool:
        """Whether any of the container's cgroup directories still exists."""
        return any(_posix.isdir(d) for d in self._dirs())

    def freeze(self, timeout: float | None = None) -> None:
        """Freeze every process, and return only once the kernel reports them frozen."""
        raise NotImplementedError

    def thaw(self, timeout: float | None = None) -> None:
        """Undo :meth:`freeze`, and return only once the kernel reports them running."""
        raise NotImplementedError

    def frozen(self) -> bool:
        """Whether the cgroup is frozen now (a freeze in progress does not count)."""
        raise NotImplementedError

    def can_freeze(self) -> bool:
        """Whether this host has a freezer for the container (v1 without freezer: no)."""
        return True

    def kill(self, sig: int) -> None:
        """Send ``sig`` to every process in the cgroup, including ones forking right now.

        Signalling a list of pids races with processes that fork in between, so the cgroup is
        frozen first, signalled, then thawed. A cgroup that was frozen before stays frozen,
        except after SIGKILL: a frozen process dies only once it runs again. A cgroup that is
        gone has no process to signal, also when it goes while this runs (the container ended
        and was deleted): that ends the kill at once, without an error. If freezing fails
        otherwise, the processes are signalled anyway (racy beats not at all) and the
        freezer's error is raised.
        """
        if not self.exists():
            return
        if not self.can_freeze():
            signal_all(self.pids(), sig)
            return
        was_frozen = self.frozen()
        try:
            self.freeze()
        except CgroupError:
            signal_all(self.pids(), sig)
            if self._gone():
                return
            raise
        try:
            signal_all(self.pids(), sig)
        finally:
            if not was_frozen or sig == SIGKILL:
                try:
                    self.thaw()
                except CgroupError:
                    if not self._gone():
                        raise

    def destroy(self) -> None:
        """Remove the container's cgroup everywhere, sub-cgroups first. Gone already is fine."""
        failures = [msg for d in self._dirs() if (msg := remove_tree(d))]
        if failures:
            raise CgroupError("; ".join(failures))

    def prune_parent(self, parent: str) -> None:
        """rmdir ``parent`` (e.g. the default "/corral") in every hierarchy if it is now empty.

        Only for the parent corral itself made; a busy or non-empty one is left alone, and a
        create racing with this retries its mkdir (see mkdir_p).
        """
        if not self.path.startswith(parent.rstrip("/") + "/"):
            return
        for d in self._dirs():
            base = d[: len(d) - len(self.path)]
            try:
                posix.rmdir(base + parent)
            except OSError:
                pass

    def join_plan(self) -> tuple[list[str], list[str]]:
        """How a new container process joins: (background, own) lists of files.

        *own*: the process writes "0" to each itself, as late as possible before exec, so the
        pages a forked Python process dirties are not charged to the container's memory.
        *background*: hierarchies without controllers that the runtime may move the process
        into in parallel (the kernel's first migration through cgroup.procs can wait 10-20 ms
        for an RCU grace period). On v2 everything is in the one hierarchy: all *own*.
        """
        return [], self.procs_files()

    def set(self, resources: "dict[str, Any]") -> None:
        """Apply OCI ``linux.resources`` (also what ``update`` calls with a partial dict)."""
        raise NotImplementedError

    def stats(self) -> "dict[str, Any]":
        """Usage counters, shaped like runc's ``events --stats`` data."""
        raise NotImplementedError

    def mount_sources(self) -> list[tuple[str, str]]:
        """(host directory, name) per hierarchy, to bind at ``/sys/fs/cgroup/<name>``."""
        raise NotImplementedError

    def oom_events(self) -> int:
        """A file descriptor that wakes up a poller when the kernel's OOM killer acts here.

        v1: an eventfd registered through ``cgroup.event_control``; it becomes readable (read 8
        bytes: the number of events) on each OOM and when the cgroup is removed. v2: the
        ``memory.events`` file; poll it for POLLPRI, then call :meth:`oom_kill_count`. The
        caller owns (and closes) the descriptor.
        """
        raise NotImplementedError

    def oom_kill_count(self) -> int:
        """How many processes the OOM killer has killed in this cgroup so far."""
        raise NotImplementedError

    def oom_watch(self, last_words: int = -1) -> "OomWatch":
        """An :class:`OomWatch` on this cgroup (for ``events``); CgroupError without memory."""
        return OomWatch(self, last_words)

    def memory_dir(self) -> str:
        """The container's directory in the memory hierarchy (CgroupError if none)."""
        raise NotImplementedError

    def to_state(self) -> "dict[str, Any]":
        """Everything :func:`corral.cgroups.from_state` needs, as JSON-able data."""
        raise NotImplementedError

    # -- for subclasses

    def _gone(self) -> bool:
        """Whether the cgroup (or its freezer) was removed: no process is left in it."""
        return not self.exists() or not self.can_freeze()

    def _dirs(self) -> list[str]:
        """The container's directory in each hierarchy."""
        raise NotImplementedError

    def _procs_dir(self) -> str:
        """The directory whose cgroup.procs files list the container's processes."""
        raise NotImplementedError


class OomWatch:
    """The OOM notifications of one cgroup, as a pollable fd and a count of new events.

    ``fd`` goes into a ``select.poll`` with ``mask``; when it wakes, :meth:`take` says how many
    OOM events happened since the last call (0 for a spurious wake-up) and re-arms the fd.

    v1: the eventfd of ``memory.oom_control``; reading it returns (and resets) the number of
    notifications, one per OOM, plus one when the cgroup is removed, which is not an OOM: if the
    memory cgroup is gone when it is read, that one is subtracted. v2: ``memory.events``; the
    kernel flags it POLLPRI on every change, reading it (from offset 0) re-arms the poll, and
    the new OOMs are the growth of ``oom_kill`` since the last read.

    On v2 the file dies with the cgroup (reads fail with ENODEV), and a watcher that wakes up
    after the container's remover did its rmdir would lose the OOM that killed the init. So the
    watcher may pass ``last_words``: a file the remover fills with the cgroup's final
    ``memory.events`` before the rmdir (see :func:`leave_last_words`); it is read instead once
    the cgroup's own file cannot be.
    """

    __slots__ = ("_directory", "_last_words", "_seen", "_v2", "fd", "mask")

    def __init__(self, manager: Manager, last_words: int = -1) -> None:
        self._v2 = manager.mode == "v2"
        self._last_words = last_words
        self.fd = manager.oom_events()
        self.mask = 0x002 | 0x008 if self._v2 else 0x001  # POLLPRI|POLLERR, or POLLIN
        self._directory = manager.memory_dir()
        self._seen = 0
        if self._v2:
            self._seen = self._v2_count()
        else:
            posix.set_blocking(self.fd, False)

    def _v2_count(self) -> int:
        try:
            text = posix.pread(self.fd, 4096, 0).decode()
        except OSError:
            if self._last_words < 0:
                return self._seen
            text = posix.pread(self._last_words, 4096, 0).decode()  # "" if none were left
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return self._seen

    def take(self) -> int:
        """How many OOM events since the last call (never blocks)."""
        if self._v2:
            count = self._v2_count()
            new, self._seen = max(count - self._seen, 0), max(count, self._seen)
            return new
        present = _posix.isdir(self._directory)
        try:
            raw = posix.read(self.fd, 8)
        except BlockingIOError:
            return 0
        except OSError as err:
            raise CgroupError(f"reading OOM notifications: {err.strerror}") from None
        count = int.from_bytes(raw, "little") if len(raw) == 8 else 0
        if not present:
            count -= 1  # the notification the kernel sends when the cgroup is removed
        return max(count, 0)

    def close(self) -> None:
        if self.fd >= 0:
            posix.close(self.fd)
            self.fd = -1


#: The names of the files in a container's state directory where ``events`` watchers wait
#: for the cgroup's last words ("oom-watch.<pid>"); see OomWatch.
LAST_WORDS_PREFIX = "oom-watch."


def leave_last_words(memory_dir: str, state_dir: str, names: list[str]) -> None:
    """Copy the cgroup's ``memory.events`` into each watcher's file among ``names`` (the
    entries of ``state_dir``), just before the cgroup is removed: what a v2 OomWatch reads
    once the cgroup's own file is gone. A watcher's file may vanish meanwhile; that is fine."""
    try:
        text = _read_bytes(f"{memory_dir}/memory.events")
    except OSError:
        return
    for name in names:
        if name.startswith(LAST_WORDS_PREFIX):
            try:
                fd = posix.open(f"{state_dir}/{name}", posix.O_WRONLY | posix.O_CLOEXEC)
            except OSError:
                continue
            try:
                posix.write(fd, text)
            finally:
                posix.close(fd)


def _read_bytes(path: str) -> bytes:
    fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
    try:
        return posix.read(fd, 4096)
    finally:
        posix.close(fd)


# -- file helpers ---------------------------------------------------------------------------

# Why a file can be missing, for the error message. Keyed by file name.
_HINTS = {
    "memory.memsw.limit_in_bytes": "swap accounting off",
    "memory.swap.max": "swap accounting off",
    "memory.kmem.tcp.limit_in_bytes": "kernel memory accounting off",
    "blkio.leaf_weight": "needs the CFQ I/O scheduler, removed in Linux 5.0",
    "blkio.leaf_weight_device": "needs the CFQ I/O scheduler, removed in Linux 5.0",
    "io.bfq.weight": "per-device weights need the BFQ I/O scheduler",
    "blkio.bfq.weight": "needs the BFQ I/O scheduler; CFQ's blkio.weight left with Linux 5.0",
    "blkio.bfq.weight_device": "per-device weights need the BFQ I/O scheduler",
    "cpu.idle": "needs Linux 5.15 or later",
    "cpu.cfs_burst_us": "needs Linux 5.14 or later",
    "cpu.max.burst": "needs Linux 5.14 or later",
    "cpu.rt_period_us": "kernel built without CONFIG_RT_GROUP_SCHED",
    "cpu.rt_runtime_us": "kernel built without CONFIG_RT_GROUP_SCHED",
}


def hint(name: str) -> str:
    """Why ``name`` may be absent on a host, or ""."""
    if name.startswith("hugetlb."):
        return "this huge page size is not supported here"
    return _HINTS.get(name, "")


def write(directory: str, name: str, value: str, field: str = "", why: str = "") -> None:
    """Write ``value`` to ``directory/name``; on failure a CgroupError that names ``field``."""
    try:
        raw_write(f"{directory}/{name}", value)
    except OSError as err:
        raise write_error(directory, name, value, field, err, why) from None


def write_error(
    directory: str, name: str, value: str, field: str, err: OSError, why: str = ""
) -> CgroupError:
    """The one-line error for a failed write: missing file, missing cgroup, or kernel refusal.

    ``why`` explains the failure when the caller knows more than the errno says.
    """
    where = f"{field}: " if field else ""
    if err.errno == ENOENT:
        if not _posix.isdir(directory):
            return CgroupError(f"{where}cgroup {directory} does not exist")
        why = why or hint(name)
        return CgroupError(
            f"{where}{name} is not available on this host" + (f" ({why})" if why else "")
        )
    if not why and err.errno == EBUSY and name.startswith("memory."):
        why = "the cgroup already uses more memory than that"
    return CgroupError(
        f"{where}writing {value!r} to {directory}/{name}: {err.strerror}"
        + (f" ({why})" if why else "")
    )


def apply(
    targets: list[tuple[str, str, str, str, bool]],
    why_missing: "Callable[[str, str], str] | None" = None,
) -> None:
    """Write planned values: (directory, file, text, field, retry_if_refused) in order.

    Every file is checked first, so a host that lacks one changes nothing. A write marked
    ``retry_if_refused`` that the kernel refuses with EINVAL is tried once more at the end,
    after the values it depends on are in.
    """
    for d, name, text, field, _ in targets:
        if not _posix.exists(f"{d}/{name}"):
            why = why_missing(d, name) if why_missing else ""
            raise write_error(d, name, text, field, OSError(ENOENT, "missing"), why)
    later = []
    for d, name, text, field, retry in targets:
        try:
            raw_write(f"{d}/{name}", text)
        except OSError as err:
            if not (retry and err.errno == EINVAL):
                raise write_error(d, name, text, field, err) from None
            later.append((d, name, text, field))
    for d, name, text, field in later:
        write(d, name, text, field)


def read(path: str) -> str | None:
    """The stripped text of a control file, or None when it does not exist."""
    try:
        with open(path, "rb") as f:
            return f.read().decode().strip()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise CgroupError(f"reading {path}: {err.strerror}") from None


def read_uint(path: str) -> int:
    """A number from a one-value file; "max" is MAX_UINT64 and a missing file 0 (as runc)."""
    text = read(path)
    if not text:
        return 0
    if text == "max":
        return MAX_UINT64
    try:
        return max(int(text.split()[0]), 0)
    except ValueError:
        raise CgroupError(f"{path}: expected a number, got {text!r}") from None


def read_keyed(path: str) -> dict[str, int]:
    """A flat keyed file ("key value" per line: memory.stat, cpu.stat, memory.events)."""
    out: dict[str, int] = {}
    for line in (read(path) or "").splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = int(value)
        except ValueError:
            continue  # "max" and other words are not counters
    return out


def read_pids(directory: str) -> list[int]:
    """The pids in ``directory``'s cgroup.procs and in those of every sub-cgroup."""
    pids: list[int] = []
    for level in reversed(_posix.subdirs_bottom_up(directory)):  # parents first
        for line in (read(level + "/cgroup.procs") or "").split():
            pids.append(int(line))
    return pids


def signal_all(pids: "Iterable[int]", sig: int) -> None:
    """Send ``sig`` to each pid; one that has exited meanwhile is not an error."""
    for pid in pids:
        try:
            posix.kill(pid, sig)
        except ProcessLookupError:
            pass
        except OSError as err:
            raise CgroupError(f"sending signal {sig} to process {pid}: {err.strerror}") from None


def mkdir_p(base: str, path: str, on_new_level: "Callable[[str, str], None] | None" = None) -> None:
    """Create ``base + path`` level by level; ``on_new_level(parent, child)`` after each level.

    The callback runs for levels that already existed too, so a half-made tree (a crash in the
    middle of a create) is repaired by the next create.
    """
    for attempt in range(5):
        current = base
        try:
            for part in path.strip("/").split("/"):
                parent, current = current, f"{current}/{part}"
                try:
                    mkdir(current)
                except FileExistsError:
                    pass
                if on_new_level is not None:
                    on_new_level(parent, current)
            return
        except FileNotFoundError:
            if attempt == 4:  # a delete pruned an empty parent under us: start again
                raise CgroupError(f"creating cgroup {current}: parent keeps vanishing") from None
        except OSError as err:
            raise CgroupError(f"creating cgroup {current}: {err.strerror}") from None


def remove_tree(directory: str, timeout: float | None = None) -> str:
    """rmdir ``directory`` and its sub-cgroups, deepest first; "" or an error message.

    rmdir fails with EBUSY while the cgroup still holds a process, and a killed process needs
    a moment to leave (its parent must reap it, or the kernel must finish tearing it down), so
    EBUSY is retried with a growing delay for up to ``timeout`` seconds.
    """
    deadline = time.monotonic() + (DESTROY_TIMEOUT if timeout is None else timeout)
    levels = _posix.subdirs_bottom_up(directory)
    delay = 0.001
    for level in levels:
        while True:
            try:
                rmdir(level)
                break
            except FileNotFoundError:
                break
            except OSError as err:
                if err.errno != EBUSY or time.monotonic() >= deadline:
                    return f"removing cgroup {level}: {err.strerror}"
            sleep(delay)
            delay = min(delay * 2, 0.1)
    return ""


def wait_for(check: "Callable[[], bool]", timeout: float) -> bool:
    """Poll ``check`` with a growing delay until it is true (True) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while not check():
        if time.monotonic() >= deadline:
            return False
        sleep(delay)
        delay = min(delay * 2, 0.05)
    return True


# -- OCI values to file contents -----------------------------------------------------------
# The values were checked by corral.spec.validate (create: with the whole config; update: with
# validate_resources) before any cgroup exists; these turn them into the text a control file
# takes, and trust them. Each takes the JSON path of the field (for the errors of a host that
# lacks the file) and the value, and returns the text, or None when the value means "not set"
# (runc's zero values).


def flag(field: str, value: "Any") -> str | None:
    """A JSON boolean as the kernel's "1"/"0"."""
    return "1" if value else "0"


def uint(field: str, value: "Any") -> str | None:
    """A count where 0 means "not set" (realtime period, burst, classID...)."""
    return str(value) if value else None


def limit(field: str, value: "Any") -> str | None:
    """A byte or time limit: -1 is unlimited, 0 is "not set" (as in runc)."""
    return str(value) if value else None


def v2_limit(field: str, value: "Any") -> str | None:
    """A v1-style limit written for v2: -1 becomes "max"."""
    text = limit(field, value)
    return "max" if text == "-1" else text


def shares(field: str, value: "Any") -> str | None:
    """cpu.shares (2..262144), 0 meaning "not set"."""
    return str(value) if value else None


def idle(field: str, value: "Any") -> str | None:
    """cpu.idle: 0 or 1 (1 puts the cgroup in SCHED_IDLE)."""
    return str(value)


def pids_max(field: str, value: "Any") -> str | None:
    """pids.max: a positive limit, or "max" for 0 and below (the spec's "unlimited")."""
    return str(value) if value > 0 else "max"


def swappiness(field: str, value: "Any") -> str | None:
    """memory.swappiness: 0..100."""
    return str(value)


def cpu_list(field: str, value: "Any") -> str | None:
    """A kernel CPU or NUMA node list such as "0-3,8"; "" means "not set"."""
    return str(value) or None


def blkio_weight(field: str, value: "Any") -> str | None:
    """A block I/O weight (10..1000), 0 meaning "not set"."""
    return str(value) if value else None


def device_number(field: str, entry: "dict[str, Any]") -> str:
    """The "MAJ:MIN" of an entry with major and minor."""
    return f"{entry['major']}:{entry['minor']}"


def page_size(field: str, value: "Any") -> str:
    """A huge page size as the kernel names it in hugetlb.<size>.* files: 2MB, 1GB, 64KB."""
    return str(value)


def section(resources: "dict[str, Any]", name: str) -> "dict[str, Any]":
    """``resources[name]`` ({} when absent)."""
    value: dict[str, Any] = resources.get(name) or {}
    return value


def items(field: str, value: "Any") -> "list[tuple[str, dict[str, Any]]]":
    """The entries of a JSON list of objects, each with its JSON path."""
    return [(f"{field}[{i}]", entry) for i, entry in enumerate(value or ())]


def table_writes(
    resources: "dict[str, Any]", rows: "Iterable[Row]"
) -> list[tuple[str, str, str, str]]:
    """Run a resource table: (controller, file, text, field) for each field that is set."""
    out = []
    for dotted, controller, name, convert in rows:
        sect, _, key = dotted.partition(".")
        value = section(resources, sect).get(key)
        if value is None:
            continue
        field = "linux.resources." + dotted
        text = convert(field, value)
        if text is not None:
            out.append((controller, name, text, field))
    return out


def unsupported(reason: str) -> "Converter":
    """A converter for a field this cgroup version cannot honour: only "not set" values pass.

    This is about the host, not the value (the same config is fine on the other version), so
    it is a CgroupError, not a SpecError.
    """

    def convert(field: str, value: "Any") -> str | None:
        if value is None or value is False or value == 0 or value == -1:
            return None
        raise CgroupError(f"{field}: {reason}")

    return convert


def priority(field: str, entry: "dict[str, Any]") -> str:
    """A net_prio.ifpriomap line, "eth0 5", from {"name": "eth0", "priority": 5}."""
    return f"{entry['name']} {entry['priority']}"


def rdma_lines(value: "Any") -> list[tuple[str, str]]:
    """rdma.max lines, "mlx5_0 hca_handle=2 hca_object=2000", each with its JSON path."""
    out = []
    for device, entry in (value or {}).items():
        where = f'linux.resources.rdma["{device}"]'
        parts = [device]
        for key, name in (("hcaHandles", "hca_handle"), ("hcaObjects", "hca_object")):
            if entry.get(key) is not None:
                parts.append(f"{name}={entry[key]}")
        if len(parts) > 1:
            out.append((where, " ".join(parts)))
    return out


def device_rules(rules: "Any") -> list[tuple[bool, str, str]]:
    """OCI linux.resources.devices as (allow, type, "MAJ:MIN access").

    A missing type is "a" (all), a missing access "rwm", and a missing (or -1) major or minor
    the wildcard "*".
    """
    out = []
    for rule in rules or ():
        kind = rule.get("type") or "a"
        access = rule.get("access") or "rwm"
        numbers = []
        for key in ("major", "minor"):
            value = rule.get(key)
            numbers.append("*" if value is None or value == -1 else str(value))
        letters = "".join(c for c in "rwm" if c in access)
        out.append((bool(rule["allow"]), kind, f"{numbers[0]}:{numbers[1]} {letters}"))
    return out


# -- stats ----------------------------------------------------------------------------------


def memory_entry(
    usage: int = 0, max_usage: int = 0, failcnt: int = 0, limit: int = 0
) -> dict[str, int]:
    """runc's MemoryEntry."""
    return {"usage": usage, "max": max_usage, "failcnt": failcnt, "limit": limit}


def blkio_entry(device: str, op: str, value: int) -> "dict[str, Any]":
    """runc's BlkioEntry from "MAJ:MIN", an operation name and a value."""
    major, _, minor = device.partition(":")
    return {"major": int(major), "minor": int(minor), "op": op, "value": value}


def pids_stats(directory: str | None) -> dict[str, int]:
    """pids.current and pids.max; an unlimited pids.max is reported as 0, as runc does."""
    if directory is None:
        return {"current": 0, "limit": 0}
    limit_text = read(directory + "/pids.max")
    return {
        "current": read_uint(directory + "/pids.current"),
        "limit": int(limit_text) if limit_text and limit_text != "max" else 0,
    }
