"""Name -> number tables the kernel wants: rlimits, capabilities, namespaces, mount options.

config.json speaks in names (``"RLIMIT_NOFILE"``, ``"CAP_KILL"``, ``"nosuid"``); the system calls
that apply them (setrlimit, capset, mount) speak in numbers. These tables are the translation,
hard-coded for Linux because the numbers are part of the kernel's stable ABI and the same on every
architecture corral runs on. The validator checks names against them, so by the time the runtime
looks a name up here it is known to exist.

Pure data and arithmetic: no kernel calls, no imports beyond the standard library's cheapest.
"""

from corral.errors import SpecError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.spec.types import MountExtra

# Resource limits, as numbered in <asm-generic/resource.h> (the same on x86_64 and aarch64).
RLIMITS = {
    "RLIMIT_CPU": 0,
    "RLIMIT_FSIZE": 1,
    "RLIMIT_DATA": 2,
    "RLIMIT_STACK": 3,
    "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5,
    "RLIMIT_NPROC": 6,
    "RLIMIT_NOFILE": 7,
    "RLIMIT_MEMLOCK": 8,
    "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10,
    "RLIMIT_SIGPENDING": 11,
    "RLIMIT_MSGQUEUE": 12,
    "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14,
    "RLIMIT_RTTIME": 15,
}

# Capabilities, as numbered in <linux/capability.h>. Each is one bit of a 64-bit set.
_CAP_NAMES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)
CAPABILITIES = {name: number for number, name in enumerate(_CAP_NAMES)}

# The capability sets a process has; config.json may list names for each.
CAPABILITY_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")

# The OCI namespace types, in the order runc's documentation lists them.
NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")

# The six hook points of the OCI lifecycle, in the order they run.
HOOK_KINDS = (
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
)

# mount(2) flags, <linux/mount.h>. corral.sys has the same numbers; spec stays import-free of
# sys (it is the libc seam) so that validation never risks loading ctypes. A unit test checks
# that the two agree.
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_POSIXACL = 0x10000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_I_VERSION = 0x800000
MS_STRICTATIME = 0x1000000
MS_LAZYTIME = 0x2000000

# mount_setattr(2) attributes, used for the recursive "rro", "rnosuid", ... options: unlike
# MS_* flags on a bind remount, these apply to every mount below the target at once.
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR__ATIME = 0x70
MOUNT_ATTR_RELATIME = 0x0
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_NOSYMFOLLOW = 0x200000

# option -> (clears?, MS_* flag). "rw" *clears* MS_RDONLY, "ro" sets it, and so on. The table is
# runc's (libcontainer/specconv), so a config means the same thing under both runtimes.
MOUNT_OPTIONS = {
    "acl": (False, MS_POSIXACL),
    "async": (True, MS_SYNCHRONOUS),
    "atime": (True, MS_NOATIME),
    "bind": (False, MS_BIND),
    "defaults": (False, 0),
    "dev": (True, MS_NODEV),
    "diratime": (True, MS_NODIRATIME),
    "dirsync": (False, MS_DIRSYNC),
    "exec": (True, MS_NOEXEC),
    "iversion": (False, MS_I_VERSION),
    "lazytime": (False, MS_LAZYTIME),
    "loud": (True, MS_SILENT),
    "mand": (False, MS_MANDLOCK),
    "noacl": (True, MS_POSIXACL),
    "noatime": (False, MS_NOATIME),
    "nodev": (False, MS_NODEV),
    "nodiratime": (False, MS_NODIRATIME),
    "noexec": (False, MS_NOEXEC),
    "noiversion": (True, MS_I_VERSION),
    "nolazytime": (True, MS_LAZYTIME),
    "nomand": (True, MS_MANDLOCK),
    "norelatime": (True, MS_RELATIME),
    "nostrictatime": (True, MS_STRICTATIME),
    "nosuid": (False, MS_NOSUID),
    "nosymfollow": (False, MS_NOSYMFOLLOW),
    "rbind": (False, MS_BIND | MS_REC),
    "relatime": (False, MS_RELATIME),
    "remount": (False, MS_REMOUNT),
    "ro": (False, MS_RDONLY),
    "rw": (True, MS_RDONLY),
    "silent": (False, MS_SILENT),
    "strictatime": (False, MS_STRICTATIME),
    "suid": (True, MS_NOSUID),
    "symfollow": (True, MS_NOSYMFOLLOW),
    "sync": (False, MS_SYNCHRONOUS),
}

# Propagation is not a flag of the mount itself but a second mount(2) call made after it
# (mount(NULL, target, NULL, MS_SHARED, NULL)), so these are kept apart, in order.
PROPAGATION = {
    "private": MS_PRIVATE,
    "shared": MS_SHARED,
    "slave": MS_SLAVE,
    "unbindable": MS_UNBINDABLE,
    "rprivate": MS_PRIVATE | MS_REC,
    "rshared": MS_SHARED | MS_REC,
    "rslave": MS_SLAVE | MS_REC,
    "runbindable": MS_UNBINDABLE | MS_REC,
}

# Recursive options: option -> (clears?, MOUNT_ATTR_* attribute) for mount_setattr(2).
RECURSIVE_OPTIONS = {
    "rro": (False, MOUNT_ATTR_RDONLY),
    "rrw": (True, MOUNT_ATTR_RDONLY),
    "rnosuid": (False, MOUNT_ATTR_NOSUID),
    "rsuid": (True, MOUNT_ATTR_NOSUID),
    "rnodev": (False, MOUNT_ATTR_NODEV),
    "rdev": (True, MOUNT_ATTR_NODEV),
    "rnoexec": (False, MOUNT_ATTR_NOEXEC),
    "rexec": (True, MOUNT_ATTR_NOEXEC),
    "rnodiratime": (False, MOUNT_ATTR_NODIRATIME),
    "rdiratime": (True, MOUNT_ATTR_NODIRATIME),
    "rrelatime": (False, MOUNT_ATTR_RELATIME),
    "rnorelatime": (True, MOUNT_ATTR_RELATIME),
    "rnoatime": (False, MOUNT_ATTR_NOATIME),
    "ratime": (True, MOUNT_ATTR_NOATIME),
    "rstrictatime": (False, MOUNT_ATTR_STRICTATIME),
    "rnostrictatime": (True, MOUNT_ATTR_STRICTATIME),
    "rnosymfollow": (False, MOUNT_ATTR_NOSYMFOLLOW),
    "rsymfollow": (True, MOUNT_ATTR_NOSYMFOLLOW),
}

# Options that are instructions to the runtime, not to the kernel. "tmpcopyup" asks that a
# tmpfs mounted over an image directory start with a copy of what the image had there.
EXTENSION_OPTIONS = ("tmpcopyup",)


def cap_mask(names: list[str]) -> int:
    """The 64-bit capability set (bit N = capability N) that ``names`` describe.

    capset(2) takes sets as bit masks; config.json lists names. Unknown names raise SpecError:
    the validator has normally rejected them already, with the field's path.
    """
    mask = 0
    for name in names:
        number = CAPABILITIES.get(name)
        if number is None:
            raise SpecError("", f"unknown capability {name!r}")
        mask |= 1 << number
    return mask


def mount_flags(options: list[str]) -> "tuple[int, int, list[int], str, MountExtra]":
    """Split OCI mount options into what mount(2) and friends take, as runc does.

    Returns ``(set_flags, clear_flags, propagation, data, extra)``:

    - ``set_flags``: MS_* flags to pass to mount(2) (``nosuid`` -> MS_NOSUID, ``ro`` -> MS_RDONLY);
    - ``clear_flags``: MS_* flags an option explicitly turned off (``rw``, ``suid``, ``exec``).
      They matter for a bind remount, where the runtime must not keep a flag the user cleared;
    - ``propagation``: MS_PRIVATE/MS_SHARED/... (| MS_REC) values, in order, one mount(2) call
      each, made after the mount itself;
    - ``data``: everything else, comma-joined: the filesystem's own options (``mode=755``,
      ``size=65536k``), given to mount(2) as its ``data`` argument;
    - ``extra``: ``{"attr_set", "attr_clr"}``: MOUNT_ATTR_* for mount_setattr(2) from the
      recursive ``r*`` options, and ``"tmpcopyup"``: whether that extension was asked for.

    Later options win over earlier ones (``ro,rw`` is read-write), as with mount(8).
    ``defaults`` is accepted and does nothing (runc 1.1 would pass it on as data).
    """
    set_flags = clear_flags = attr_set = attr_clr = 0
    propagation: list[int] = []
    data: list[str] = []
    copyup = False
    for option in options:
        if option in MOUNT_OPTIONS:
            clears, flag = MOUNT_OPTIONS[option]
            set_flags, clear_flags = _toggle(set_flags, clear_flags, flag, clears)
        elif option in PROPAGATION:
            propagation.append(PROPAGATION[option])
        elif option in RECURSIVE_OPTIONS:
            attr_set, attr_clr = _recursive(attr_set, attr_clr, *RECURSIVE_OPTIONS[option])
        elif option in EXTENSION_OPTIONS:
            copyup = True
        else:
            data.append(option)
    extra: MountExtra = {"attr_set": attr_set, "attr_clr": attr_clr, "tmpcopyup": copyup}
    return set_flags, clear_flags, propagation, ",".join(data), extra


def _toggle(set_flags: int, clear_flags: int, flag: int, clears: bool) -> tuple[int, int]:
    """Turn ``flag`` on or off; whichever option came last decides."""
    if clears:
        return set_flags & ~flag, clear_flags | flag
    return set_flags | flag, clear_flags & ~flag


def _recursive(attr_set: int, attr_clr: int, clears: bool, attr: int) -> tuple[int, int]:
    """Add one recursive option to mount_setattr(2)'s ``attr_set``/``attr_clr`` pair.

    The access-time modes are a 3-bit field, not independent flags: mount_setattr(2) needs
    MOUNT_ATTR__ATIME in ``attr_clr`` to replace the field with one of them.
    """
    if clears:
        return attr_set & ~attr, attr_clr | attr
    if attr & MOUNT_ATTR__ATIME == attr:  # an atime mode (relatime is 0, so it matches too)
        return (attr_set & ~MOUNT_ATTR__ATIME) | attr, attr_clr | MOUNT_ATTR__ATIME
    return attr_set | attr, attr_clr & ~attr


def mount_option_names() -> list[str]:
    """Every option word corral understands (the rest is filesystem data), sorted."""
    names = [*MOUNT_OPTIONS, *PROPAGATION, *RECURSIVE_OPTIONS, *EXTENSION_OPTIONS]
    return sorted(names)
