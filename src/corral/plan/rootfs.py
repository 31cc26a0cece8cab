"""Turn a config's root, mounts and devices into an ordered list of steps. Pure: no kernel calls.

The container's init carries these steps out (corral.runtime.rootfs) in its own mount
namespace; ``corral-runc create --dry-run`` prints them. Keeping the decisions here (which mounts
are binds, what gets remounted read-only, which devices to create, what to mask) means they are
unit-tested without root, and the kernel side is a short loop.

The order is runc's:
  1. make "/" a slave (or rootfsPropagation) so nothing we mount leaks back to the host;
  2. bind the rootfs onto itself, so it is a mount point pivot_root can use;
  3. each of config.mounts, in order, its destination resolved *inside* the rootfs;
  4. /dev: the default devices, linux.devices, and the /dev/fd, std*, ptmx links
     (only when /dev is not a bind mount of the host's);
  5. (createContainer hooks run here, while the host's root is still reachable)
  6. pivot_root into the rootfs (or MS_MOVE + chroot with --no-pivot);
  7. sysctls, then maskedPaths, readonlyPaths, and root.readonly last.
"""

from corral import _posix
from corral.errors import SpecError
from corral.spec.tables import MOUNT_ATTR__ATIME, mount_flags
from corral.sys import MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC, MS_SLAVE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Devices every container gets when /dev is its own tmpfs (runc's AllowedDevices).
DEFAULT_DEVICES = (
    ("/dev/null", "c", 1, 3),
    ("/dev/zero", "c", 1, 5),
    ("/dev/full", "c", 1, 7),
    ("/dev/tty", "c", 5, 0),
    ("/dev/random", "c", 1, 8),
    ("/dev/urandom", "c", 1, 9),
)
DEV_SYMLINKS = (
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
)
# Filesystems mounted by type; everything else with MS_BIND is a bind mount.
_SPECIAL_TYPES = ("cgroup", "cgroup2")


class Mount:
    """One entry of config.mounts, decided: how to mount it and what to do after."""

    __slots__ = (
        "attr_clr", "attr_set", "copyup", "data", "dest", "field", "flags", "fstype", "is_bind",
        "is_file", "propagation", "remount_flags", "source",
    )

    def __init__(self, field: str, entry: "dict[str, Any]", bundle: str, source_is_file: bool):
        self.field = field
        self.dest = entry["destination"]
        self.fstype = entry.get("type") or ""
        options = list(entry.get("options") or [])
        flags, _clear, propagation, data, extra = mount_flags(options)
        self.is_bind = bool(flags & MS_BIND) or self.fstype == "bind"
        source = entry.get("source") or ""
        if self.is_bind:
            flags |= MS_BIND
            if not source:
                raise SpecError(f"{field}.source", "a bind mount needs a source")
            if not source.startswith("/"):
                source = f"{bundle}/{source}"  # runc: relative bind sources are in the bundle
        self.source = source
        self.is_file = self.is_bind and source_is_file
        self.flags = flags
        self.data = data
        self.propagation = propagation
        # A bind mount ignores every flag but MS_BIND|MS_REC on the first call: the rest
        # (ro, nosuid, ...) takes a second, remounting call.
        more = flags & ~(MS_BIND | MS_REC)
        self.remount_flags = more if self.is_bind and more else 0
        # tmpcopyup (runc's extension, tmpfs only): the new tmpfs starts with a copy of what
        # the image has at the destination. The copy needs it writable: a read-only one is
        # mounted read-write and remounted with its flags after the copy.
        self.copyup = bool(extra["tmpcopyup"]) and self.fstype == "tmpfs" and not self.is_bind
        if self.copyup and flags & MS_RDONLY:
            self.flags = flags & ~MS_RDONLY
            self.remount_flags = flags
        # The recursive options (rro, rnosuid, ...): one mount_setattr(2) with AT_RECURSIVE
        # after the mount, so they reach every mount below the destination (an rbind's too).
        self.attr_set, self.attr_clr = _recursive_attrs(extra["attr_set"], extra["attr_clr"])

    def describe(self) -> str:
        kind = "bind" if self.is_bind else self.fstype
        opts = f" flags={self.flags:#x}" + (f" data={self.data}" if self.data else "")
        if self.copyup:
            opts += " tmpcopyup"
        if self.remount_flags:
            opts += f" remount={self.remount_flags:#x}"
        if self.attr_set or self.attr_clr:
            opts += f" setattr=+{self.attr_set:#x}-{self.attr_clr:#x} recursive"
        return f"mount {kind} {self.source or '-'} -> {self.dest}{opts}"


class RootfsPlan:
    """Everything the init does to build the container's filesystem view, in order."""

    __slots__ = (
        "cgroup_mounts",
        "devices",
        "masked",
        "mounts",
        "no_pivot",
        "own_mount_ns",
        "propagation",
        "readonly_paths",
        "readonly_root",
        "rootfs",
        "setup_dev",
        "symlinks",
        "sysctl",
    )

    def __init__(self) -> None:
        self.rootfs = ""
        self.propagation = MS_SLAVE | MS_REC
        self.mounts: list[Mount] = []
        self.cgroup_mounts: list[Mount] = []
        self.setup_dev = True
        self.devices: list[dict[str, Any]] = []
        self.symlinks: list[tuple[str, str]] = []
        self.no_pivot = False
        # False when the config joins a mount namespace by path or lists none (the caller's
        # is inherited): then the mounts are made in that namespace, "/" is left as it is,
        # the init chroots (pivot_root would swap the root of every process there), and
        # delete detaches what create stacked on the rootfs.
        self.own_mount_ns = True
        self.sysctl: dict[str, str] = {}
        self.masked: list[str] = []
        self.readonly_paths: list[str] = []
        self.readonly_root = False

    def describe(self) -> list[str]:
        """The plan as lines a person can read (``create --dry-run``)."""
        lines = [f"propagation / {self.propagation:#x}"] if self.own_mount_ns else []
        lines.append(f"bind {self.rootfs} -> {self.rootfs}")
        lines += [m.describe() for m in self.mounts]
        for d in self.devices:
            lines.append(
                f"mknod {d['path']} {d['type']} {d.get('major', 0)}:{d.get('minor', 0)}"
                f" mode={d.get('fileMode', 0o666):o}"
            )
        lines += [f"symlink {link} -> {target}" for target, link in self.symlinks]
        if not self.own_mount_ns:
            lines.append(f"chroot {self.rootfs} (no mount namespace of its own)")
        else:
            lines.append(("move+chroot " if self.no_pivot else "pivot_root ") + self.rootfs)
        lines += [f"sysctl {k}={v}" for k, v in self.sysctl.items()]
        lines += [f"mask {p}" for p in self.masked]
        lines += [f"readonly {p}" for p in self.readonly_paths]
        if self.readonly_root:
            lines.append("remount / read-only")
        return lines


def plan_rootfs(
    spec: "dict[str, Any]",
    rootfs: str,
    bundle: str,
    *,
    no_pivot: bool = False,
    is_file: "Any" = None,
) -> "RootfsPlan":
    """Build the plan. ``is_file(path) -> bool`` tells whether a bind source is a file."""
    check_file = is_file or _posix.isfile
    linux = spec.get("linux") or {}
    plan = RootfsPlan()
    plan.rootfs = rootfs
    plan.no_pivot = no_pivot
    plan.own_mount_ns = any(
        ns.get("type") == "mount" and not ns.get("path") for ns in linux.get("namespaces") or []
    )
    if linux.get("rootfsPropagation"):
        _, _, prop, _, _ = mount_flags([linux["rootfsPropagation"]])
        plan.propagation = prop[0] if prop else plan.propagation
    for i, entry in enumerate(spec.get("mounts") or []):
        field = f"mounts[{i}]"
        source = entry.get("source") or ""
        mount = Mount(field, entry, bundle, bool(source) and check_file(_abs(source, bundle)))
        if mount.fstype in _SPECIAL_TYPES and not mount.is_bind:
            plan.cgroup_mounts.append(mount)
        if _clean(mount.dest) == "/dev" and mount.is_bind:
            plan.setup_dev = False
        plan.mounts.append(mount)
    if plan.setup_dev:
        plan.devices = _devices(linux.get("devices") or [])
        plan.symlinks = [*DEV_SYMLINKS, ("pts/ptmx", "/dev/ptmx")]
        if _posix.exists("/proc/kcore"):
            plan.symlinks.append(("/proc/kcore", "/dev/core"))
    plan.sysctl = dict(linux.get("sysctl") or {})
    plan.masked = list(linux.get("maskedPaths") or [])
    plan.readonly_paths = list(linux.get("readonlyPaths") or [])
    plan.readonly_root = bool((spec.get("root") or {}).get("readonly"))
    return plan


def _recursive_attrs(attr_set: int, attr_clr: int) -> tuple[int, int]:
    """mount_setattr(2)'s (attr_set, attr_clr) for the recursive options, as the kernel takes it.

    The access times are one 3-bit field (MOUNT_ATTR__ATIME): the kernel refuses an attr_clr
    that names only part of it. Clearing one mode ("ratime", "rnostrictatime") therefore clears
    the whole field, which leaves the default, relatime, unless another option set a mode.
    """
    if attr_clr & MOUNT_ATTR__ATIME:
        attr_clr |= MOUNT_ATTR__ATIME
    return attr_set, attr_clr


def _devices(configured: "list[dict[str, Any]]") -> "list[dict[str, Any]]":
    """linux.devices plus the defaults the config does not already name."""
    named = {_clean(d["path"]) for d in configured}
    devices = [
        {"path": path, "type": kind, "major": major, "minor": minor, "fileMode": 0o666,
         "uid": 0, "gid": 0}
        for path, kind, major, minor in DEFAULT_DEVICES
        if path not in named
    ]
    return devices + list(configured)


def _abs(source: str, bundle: str) -> str:
    return source if source.startswith("/") else f"{bundle}/{source}"


def _clean(path: str) -> str:
    """``path`` as an absolute, normalised path ("dev/", "/dev" and "//dev" are all "/dev":
    normpath keeps a leading "//", which POSIX leaves to the implementation)."""
    return _posix.normpath("/" + path.lstrip("/"))


# Flags a non-root user namespace inherits as "locked" on a bind mount: a remount must keep them.
LOCKED_FLAGS = MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY
