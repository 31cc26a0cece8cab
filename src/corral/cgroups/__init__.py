"""Control groups: how a container gets its limits, its accounting and its kill switch.

A cgroup is a directory in a special filesystem. Processes join it by writing their pid into
its ``cgroup.procs``; limits are files next to it (``memory.max``, ``pids.max``); and the kernel
applies them to every process inside and to every sub-directory. A container's cgroup is where
the runtime puts its init process before ``execve``, so everything it forks stays inside.

Linux has two designs, and hosts mount them in three ways:

**v1** (2008): one tree per *controller*. ``/sys/fs/cgroup/memory/corral/abc`` holds the memory
limit, ``/sys/fs/cgroup/cpu/corral/abc`` the CPU shares, ``/sys/fs/cgroup/pids/...`` the pids
limit, and so on, each tree with its own file names and units (``memory.limit_in_bytes``,
``cpu.cfs_quota_us``). A container is one directory per tree and its init joins each of them.
There is also ``name=systemd``, a tree with no controller that only tracks processes.

**v2** (Linux 4.5, the default of current distributions): one *unified* tree at
``/sys/fs/cgroup`` in which every controller lives. A container is one directory. A parent
grants controllers to its children through ``cgroup.subtree_control``, freezing is
``cgroup.freeze``, ``cgroup.kill`` kills everything at once, and file names and units changed
(``memory.max``, ``cpu.max``, ``cpu.weight``).

**hybrid**: the v1 trees, plus a cgroup2 mount at ``/sys/fs/cgroup/unified`` that holds no
controllers (they are all bound to v1) but still offers v2's core files. systemd uses it to track
services; corral puts containers in it too, for ``cgroup.kill``.

:func:`detect` tells them apart from ``/proc/self/mountinfo``; :func:`open_manager` returns a
:class:`Manager` (``v1.V1Manager`` for v1 and hybrid, ``v2.V2Manager`` for v2) that hides the
difference; :func:`from_state` rebuilds one from the container's state file without looking at
the host again.

This package is on the runtime's start-up path, and every verb reads a container's status
through :func:`frozen`; so importing it loads no manager (they come with :func:`open_manager`
and :func:`from_state`), and neither ``os`` nor ``__future__`` (see corral._posix).
"""

from corral import _posix
from corral.errors import CgroupError, SpecError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from corral.cgroups._base import Manager as Manager

DEFAULT_ROOT = "/sys/fs/cgroup"
DEFAULT_PARENT = "corral"  # relative cgroupsPath values live under /corral
SYSTEMD_RUNNING = "/run/systemd/system"  # exists when systemd is PID 1 (sd_booted(3))

#: runc adds these rules after the config's own device rules (specconv.AllowedDevices), so that
#: a container can use /dev/null & co even when config.json denies everything else. The runtime
#: appends them to linux.resources.devices before calling :meth:`Manager.set`.
DEFAULT_DEVICE_RULES: "tuple[dict[str, Any], ...]" = (
    {"allow": True, "type": "c", "access": "m"},  # mknod of any char device
    {"allow": True, "type": "b", "access": "m"},  # mknod of any block device
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},  # /dev/null
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},  # /dev/zero
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},  # /dev/full
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},  # /dev/tty
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},  # /dev/urandom
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},  # /dev/random
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},  # /dev/pts/*
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},  # /dev/ptmx
    {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"},  # /dev/net/tun
)


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (\\040)."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def cgroup_mounts(root: str, mountinfo: str) -> dict[str, tuple[str, str]]:
    """Mount point -> (fstype, super options) of each cgroup/cgroup2 mount at or under root.

    A mountinfo line: ``ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE
    SUPEROPTS``. For v1 the controllers are in the super options ("rw,cpu,cpuacct").
    """
    try:
        with open(mountinfo, "rb") as f:
            text = f.read().decode()
    except OSError as err:
        raise CgroupError(f"reading {mountinfo}: {err.strerror}") from None
    mounts: dict[str, tuple[str, str]] = {}
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, fs = left.split(" "), right.split(" ")
        if not sep or len(fields) < 5 or len(fs) < 3:
            continue
        point = _unescape(fields[4])
        if point != root and not point.startswith(root + "/"):
            continue
        if fs[0] in ("cgroup", "cgroup2"):
            mounts[point] = (fs[0], fs[2])
        else:
            mounts.pop(point, None)  # mounted over: what was there is hidden now
    return mounts


def _mode(mounts: dict[str, tuple[str, str]], root: str) -> str:
    if mounts.get(root, ("",))[0] == "cgroup2":
        return "v2"
    if any(fs == "cgroup" for fs, _ in mounts.values()):
        unified = mounts.get(root + "/unified", ("",))[0] == "cgroup2"
        return "hybrid" if unified else "v1"
    raise CgroupError(f"no cgroup filesystem is mounted at {root} (see /proc/self/mountinfo)")


def detect(root: str = DEFAULT_ROOT, mountinfo: str = "/proc/self/mountinfo") -> str:
    """The host's cgroup layout: "v2" (unified), "hybrid" (v1 + <root>/unified) or "v1"."""
    root = root.rstrip("/") or "/"
    return _mode(cgroup_mounts(root, mountinfo), root)


def _normalize(field: str, given: str, path: str, base: list[str]) -> str:
    """Resolve "." and ".." in ``path`` under ``base`` components; escaping base is an error."""
    parts = list(base)
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if len(parts) <= len(base):
                top = "/" + "/".join(base) if base else "the cgroup root"
                raise SpecError(field, f"{given!r} escapes {top} through '..'")
            parts.pop()
        else:
            parts.append(part)
    if len(parts) == len(base):
        top = "/" + "/".join(base) if base else "the root cgroup"
        raise SpecError(field, f"{given!r} is {top}; a container needs a cgroup of its own")
    return "/" + "/".join(parts)


def resolve_path(cgroups_path: str | None, container_id: str, *, systemd: bool = False) -> str:
    """The container's cgroup path from OCI ``linux.cgroupsPath``.

    Empty: ``/corral/<id>``. Absolute: itself, normalized, relative to each hierarchy's root.
    Relative: under ``/corral/``. Any ".." that climbs out of the root (or out of /corral for a
    relative path) is refused: the runtime would otherwise create, limit, freeze and remove a
    cgroup that is not the container's. ``slice:prefix:name`` is the systemd driver's form.
    """
    field = "linux.cgroupsPath"
    if cgroups_path is not None and not isinstance(cgroups_path, str):
        raise SpecError(field, f"must be a string, got {cgroups_path!r}")
    if "\0" in (cgroups_path or "") or "\0" in container_id:
        raise SpecError(field, "must not contain a NUL byte")
    if systemd:
        if not cgroups_path:
            return f"system.slice:corral:{container_id}"
        if cgroups_path.count(":") != 2 or "/" in cgroups_path:
            raise SpecError(
                field,
                f"must have the form slice:prefix:name with --systemd-cgroup, got {cgroups_path!r}",
            )
        return cgroups_path
    if not cgroups_path:
        return _normalize(field, container_id, container_id, [DEFAULT_PARENT])
    if cgroups_path.startswith("/"):
        return _normalize(field, cgroups_path, cgroups_path, [])
    if cgroups_path.count(":") == 2:
        raise SpecError(
            field,
            f"{cgroups_path!r} is the systemd form slice:prefix:name, which needs --systemd-cgroup",
        )
    return _normalize(field, cgroups_path, cgroups_path, [DEFAULT_PARENT])


def _hierarchies(mounts: dict[str, tuple[str, str]]) -> list[tuple[str, str]]:
    from corral.cgroups.v1 import controllers_of

    out: list[tuple[str, str]] = []
    seen = set()
    for point in sorted(mounts):
        fstype, options = mounts[point]
        names = controllers_of(options) if fstype == "cgroup" else ""
        if names and names not in seen:  # the same hierarchy mounted twice: use one
            seen.add(names)
            out.append((point, names))
    return out


def open_manager(
    path: str,
    *,
    mode: str | None = None,
    root: str = DEFAULT_ROOT,
    mountinfo: str = "/proc/self/mountinfo",
    systemd: bool = False,
    systemd_running: str = SYSTEMD_RUNNING,
) -> "Manager":
    """The Manager for cgroup ``path`` (from :func:`resolve_path`) on this host.

    ``mode`` is "v1", "hybrid" or "v2"; None detects it. Nothing is created until
    :meth:`Manager.create`. With ``systemd``, ``path`` is ``slice:prefix:name`` and the
    manager is a :class:`corral.cgroups.systemd.SystemdManager` around the cgroupfs one.
    """
    if systemd:
        if not _posix.isdir(systemd_running):
            raise UsageError(
                "systemd cgroup driver requested (--systemd-cgroup) but systemd is not running"
            )
        from corral.cgroups.systemd import SystemdManager, parse_path

        slice_name, unit, cgroup_path = parse_path(path)
        inner = open_manager(cgroup_path, mode=mode, root=root, mountinfo=mountinfo)
        return SystemdManager(slice_name, unit, inner)
    if not path.startswith("/") or path.rstrip("/") == "":
        raise CgroupError(f"cgroup path {path!r} must be absolute and not the root")
    root = root.rstrip("/") or "/"
    if mode == "v2":
        from corral.cgroups.v2 import V2Manager

        return V2Manager(path, root)
    mounts = cgroup_mounts(root, mountinfo)
    mode = mode or _mode(mounts, root)
    if mode == "v2":
        return open_manager(path, mode="v2", root=root)
    if mode not in ("v1", "hybrid"):
        raise CgroupError(f"unknown cgroup mode {mode!r} (expected v1, hybrid or v2)")
    from corral.cgroups.v1 import V1Manager

    hierarchies = _hierarchies(mounts)
    if not hierarchies:
        raise CgroupError(f"no cgroup v1 hierarchy is mounted under {root}")
    return V1Manager(path, hierarchies, root + "/unified" if mode == "hybrid" else None)


def from_state(state: "dict[str, Any]") -> "Manager":
    """Rebuild a Manager from :meth:`Manager.to_state`, without reading mountinfo again."""
    try:
        mode, path = state["mode"], state["path"]
        if mode == "systemd":
            from corral.cgroups.systemd import SystemdManager

            inner = from_state(state["inner"])
            return SystemdManager(str(state["slice"]), str(state["unit"]), inner, adopted=True)
        if mode == "v2":
            from corral.cgroups.v2 import V2Manager

            return V2Manager(path, state["root"])
        if mode in ("v1", "hybrid"):
            from corral.cgroups.v1 import V1Manager

            hierarchies = [(str(m), str(n)) for m, n in state["hierarchies"]]
            return V1Manager(path, hierarchies, state.get("unified") if mode == "hybrid" else None)
    except (KeyError, TypeError, ValueError):
        pass
    raise CgroupError(f"the container's state has an unreadable cgroup record: {state!r}")


def frozen(state: "dict[str, Any]") -> bool:
    """Whether the cgroup recorded in ``state`` (:meth:`Manager.to_state`) is frozen now.

    The status of a container (``state``, and the guard of every verb) asks this; it reads the
    one file that says so without loading a manager: v1's ``freezer.state``, v2's
    ``cgroup.events``. The managers' ``frozen()`` is this same function.
    """
    mode, path = state.get("mode"), state.get("path")
    if mode == "systemd":
        return frozen(state["inner"])
    if mode == "v2":
        return v2_frozen(f"{state['root']}{path}")
    for mount, names in state.get("hierarchies") or ():
        if "freezer" in names.split(","):
            return v1_frozen(f"{mount}{path}")
    return False


def _dirs_of(state: "dict[str, Any]") -> "list[str] | None":
    """The container's directory in each hierarchy, from its record; None for systemd's (its
    manager knows more: the unit)."""
    mode, path = state.get("mode"), state.get("path")
    if mode == "v2":
        return [f"{state['root']}{path}"]
    if mode in ("v1", "hybrid"):
        dirs = [f"{mount}{path}" for mount, _ in state.get("hierarchies") or ()]
        if mode == "hybrid" and state.get("unified"):
            dirs.append(f"{state['unified']}{path}")
        return dirs
    return None


def has_processes(state: "dict[str, Any]") -> "bool | None":
    """Whether any cgroup of the record holds a process (its cgroup.procs, sub-cgroups too);
    None when the record is systemd's. ``delete`` of a stopped container asks this before
    loading a manager: usually the answer is no, and nothing else is needed."""
    dirs = _dirs_of(state)
    if dirs is None:
        return None
    for top in dirs:
        for level in _posix.subdirs_bottom_up(top):
            if _read(level + "/cgroup.procs"):
                return True
    return False


def remove_if_empty(state: "dict[str, Any]", parent: str = "/" + DEFAULT_PARENT) -> bool:
    """``delete``'s light path: rmdir the record's cgroups (sub-cgroups first) and ``parent``
    where it is left empty, without loading a manager (a third of delete's start-up). The
    kernel refuses rmdir of a cgroup that holds a process, so this never removes a busy one:
    False (some may be gone already) when any rmdir fails or the record is systemd's, and the
    caller goes the manager's way, which waits for leaving processes."""
    dirs = _dirs_of(state)
    if dirs is None:
        return False
    import posix

    for top in dirs:
        for level in _posix.subdirs_bottom_up(top):
            try:
                posix.rmdir(level)
            except FileNotFoundError:
                pass
            except OSError:
                return False
    path = str(state.get("path") or "")
    if path.startswith(parent.rstrip("/") + "/"):
        for top in dirs:
            try:
                posix.rmdir(top[: len(top) - len(path)] + parent)
            except OSError:
                pass  # not empty (other containers), or gone: as prune_parent
    return True


def v1_frozen(directory: str) -> bool:
    """A v1 freezer cgroup says FROZEN (not THAWED, nor FREEZING: still on its way)."""
    return _read(directory + "/freezer.state") == "FROZEN"


def v2_frozen(directory: str) -> bool:
    """A v2 cgroup's cgroup.events says "frozen 1"."""
    return "\nfrozen 1" in "\n" + _read(directory + "/cgroup.events")


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode().strip()
    except FileNotFoundError:
        return ""
    except OSError as err:
        raise CgroupError(f"reading {path}: {err.strerror}") from None


def __getattr__(name: str) -> object:
    if name == "Manager":  # loaded on demand, with the managers
        from corral.cgroups._base import Manager

        return Manager
    raise AttributeError(f"module 'corral.cgroups' has no attribute {name!r}")


__all__ = [
    "DEFAULT_DEVICE_RULES",
    "Manager",
    "detect",
    "from_state",
    "open_manager",
    "resolve_path",
]
