"""The one place corral talks to libc.

Every kernel call that the standard library (``os``) does not offer is wrapped here with ctypes:
mount, umount2, pivot_root, unshare, setns, sethostname, setdomainname, prctl, capget/capset,
personality, openat2, pidfd_getfd. A failing call raises ``KernelError(op, errno, strerror,
path)``; nothing else in corral touches ctypes, so the rest reads as plain Python and is
unit-tested without root.

The binding is loaded on first use, not at import (``corral-runc state`` and ``kill`` never need
it), and through corral.sys._ffi rather than ctypes itself: see that module for why.
"""

import posix

from corral import _posix
from corral.errors import KernelError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Namespaces (linux/sched.h). The OCI names map to these in NAMESPACE_FLAGS.
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

NAMESPACE_FLAGS = {
    "pid": CLONE_NEWPID,
    "network": CLONE_NEWNET,
    "mount": CLONE_NEWNS,
    "ipc": CLONE_NEWIPC,
    "uts": CLONE_NEWUTS,
    "user": CLONE_NEWUSER,
    "cgroup": CLONE_NEWCGROUP,
    "time": CLONE_NEWTIME,
}
# The name of each namespace's file under /proc/<pid>/ns/.
NAMESPACE_FILES = {
    "pid": "pid",
    "network": "net",
    "mount": "mnt",
    "ipc": "ipc",
    "uts": "uts",
    "user": "user",
    "cgroup": "cgroup",
    "time": "time",
}

# mount(2) flags (linux/mount.h).
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
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000
MS_LAZYTIME = 0x2000000
MNT_DETACH = 0x2

# prctl(2) options.
PR_SET_PDEATHSIG = 1
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
PR_SET_KEEPCAPS = 8
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

# openat2(2) resolve flags.
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

# System call numbers for calls glibc 2.36 does not wrap, per architecture.
# Read once, at import: after the init sets a LINUX32 personality uname says "i686", but the
# syscall numbers are still those of the native ABI.
_MACHINE = posix.uname().machine
_SYSCALLS = {
    "x86_64": {"pivot_root": 155, "capget": 125, "capset": 126, "openat2": 437, "keyctl": 250},
    "aarch64": {"pivot_root": 41, "capget": 90, "capset": 91, "openat2": 437, "keyctl": 219},
}

_libc: "Any" = None


def _lib() -> "Any":
    """Load libc once, on first use (errno is captured after every call)."""
    global _libc
    if _libc is None:
        from corral.sys._ffi import Library

        _libc = Library(None)
    return _libc


def _check(op: str, ret: int, path: str | None = None) -> int:
    if ret < 0:
        from corral.sys._ffi import get_errno

        err = get_errno()
        raise KernelError(op, err, posix.strerror(err), path)
    return ret


def _syscall(name: str, *args: "Any") -> int:
    from corral.sys._ffi import c_long

    numbers = _SYSCALLS.get(_MACHINE)
    if numbers is None:
        raise KernelError(name, 38, f"unsupported architecture {_MACHINE}")
    return int(_lib().function("syscall", c_long)(c_long(numbers[name]), *args))


def _b(value: str | None) -> bytes | None:
    return None if value is None else _posix.fsencode(value)


def mount(
    source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    """mount(2). ``target`` may be a ``/proc/self/fd/N`` path from an O_PATH fd."""
    _check(
        "mount", _lib().mount(_b(source), _b(target), _b(fstype), flags, _b(data)), target
    )


def umount2(target: str, flags: int = 0) -> None:
    _check("umount", _lib().umount2(_b(target), flags), target)


def pivot_root(new_root: str, put_old: str) -> None:
    _check("pivot_root", _syscall("pivot_root", _b(new_root), _b(put_old)), new_root)


def unshare(flags: int) -> None:
    _check("unshare", _lib().unshare(flags))


def setns(fd: int, nstype: int = 0, path: str | None = None) -> None:
    _check("setns", _lib().setns(fd, nstype), path)


def sethostname(name: str) -> None:
    raw = name.encode()
    _check("sethostname", _lib().sethostname(raw, len(raw)))


def setdomainname(name: str) -> None:
    raw = name.encode()
    _check("setdomainname", _lib().setdomainname(raw, len(raw)))


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    from corral.sys._ffi import c_ulong

    args = (c_ulong(arg2), c_ulong(arg3), c_ulong(arg4), c_ulong(arg5))
    return _check("prctl", _lib().prctl(option, *args))


def personality(persona: int) -> None:
    _check("personality", _lib().personality(persona))


def setrlimit(resource: int, soft: int, hard: int) -> None:
    """prlimit64(2) on ourselves (the ``resource`` module costs 2 ms to import; this does not)."""
    from corral.sys._ffi import byref, c_uint64

    new = (c_uint64 * 2)(_rlim(soft), _rlim(hard))
    _check("setrlimit", _lib().prlimit64(0, resource, byref(new), None))


def _rlim(value: int) -> int:
    return 0xFFFFFFFFFFFFFFFF if value < 0 else value  # RLIM_INFINITY


# Capabilities: capget/capset with _LINUX_CAPABILITY_VERSION_3 (two 32-bit words per set).
_CAP_V3 = 0x20080522


def capget() -> tuple[int, int, int]:
    """Return this thread's (effective, permitted, inheritable) sets as 64-bit masks."""
    from corral.sys._ffi import byref, c_uint32

    header = (c_uint32 * 2)(_CAP_V3, 0)
    data = (c_uint32 * 6)()
    _check("capget", _syscall("capget", byref(header), byref(data)))
    eff = data[0] | data[3] << 32
    prm = data[1] | data[4] << 32
    inh = data[2] | data[5] << 32
    return eff, prm, inh


def capset(effective: int, permitted: int, inheritable: int) -> None:
    from corral.sys._ffi import byref, c_uint32

    lo, hi = 0xFFFFFFFF, 32
    header = (c_uint32 * 2)(_CAP_V3, 0)
    data = (c_uint32 * 6)(
        effective & lo, permitted & lo, inheritable & lo,
        effective >> hi, permitted >> hi, inheritable >> hi,
    )
    _check("capset", _syscall("capset", byref(header), byref(data)))


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2): open ``path`` relative to ``dirfd`` under the given RESOLVE_* rules."""
    from corral.sys._ffi import byref, c_int, c_size_t, c_uint64

    how = (c_uint64 * 3)(flags, mode, resolve)
    ret = _syscall("openat2", c_int(dirfd), _b(path), byref(how), c_size_t(24))
    return _check("open", ret, path)


def open_in_root(root_fd: int, path: str, flags: int = posix.O_PATH) -> int:
    """Open ``path`` as if ``root_fd`` were "/": symlinks and ``..`` can never leave it.

    This is how mount destinations are resolved inside a container's rootfs: a symlink
    ``/etc -> /host-etc`` in the image resolves to ``<rootfs>/host-etc``, never the host's.
    """
    return openat2(
        root_fd, path, flags | posix.O_CLOEXEC, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS
    )


def join_session_keyring() -> None:
    """keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL): a fresh anonymous session keyring, so the
    container cannot see the host's keys. Kernels without keyrings (ENOSYS) or that refuse
    it (EPERM, as in some user namespaces) are left as they are, as runc does."""
    from corral.sys._ffi import c_long

    ret = _syscall("keyctl", c_long(1), None)
    if ret < 0:
        from corral.sys._ffi import get_errno

        if get_errno() not in (38, 1):
            _check("join session keyring", ret)


def fd_path(fd: int) -> str:
    """The magic-link path that names an open fd (usable as a mount source or target)."""
    return f"/proc/self/fd/{fd}"


# mount_setattr(2) (Linux 5.12): change the attributes of a mount, and with AT_RECURSIVE of
# every mount below it, in one call. Not wrapped by glibc 2.36; the number is the same on
# x86_64 and aarch64 (the syscalls added since 5.x share one table).
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
_MOUNT_SETATTR = {"x86_64": 442, "aarch64": 442}


def mount_setattr(
    target: str | int, attr_set: int, attr_clr: int = 0, propagation: int = 0,
    flags: int = AT_RECURSIVE, userns_fd: int = 0,
) -> None:
    """mount_setattr(2) on ``target``: a path, or an fd (O_PATH is fine) naming the mount.

    ``attr_set`` / ``attr_clr`` are MOUNT_ATTR_* bits (corral.spec.tables); an access-time mode
    in ``attr_set`` needs MOUNT_ATTR__ATIME in ``attr_clr``. ``flags`` defaults to AT_RECURSIVE.
    MOUNT_ATTR_IDMAP (on a detached mount from ``open_tree``) takes the user namespace whose
    mappings the mount shows, as ``userns_fd``.
    """
    from corral.sys._ffi import byref, c_int, c_long, c_size_t, c_uint64

    number = _MOUNT_SETATTR.get(_MACHINE)
    if number is None:
        raise KernelError("mount_setattr", 38, f"unsupported architecture {_MACHINE}")
    if isinstance(target, int):
        dirfd, path, flags, name = target, b"", flags | AT_EMPTY_PATH, fd_path(target)
    else:
        dirfd, path, name = AT_FDCWD, _posix.fsencode(target), target
    attr = (c_uint64 * 4)(attr_set, attr_clr, propagation, userns_fd)
    ret = _lib().function("syscall", c_long)(
        c_long(number), c_int(dirfd), path, c_int(flags), byref(attr), c_size_t(32)
    )
    _check("mount_setattr", int(ret), name)


# pidfd_getfd(2) (Linux 5.6): a copy of another process's open file, as if it had been sent
# over a unix socket. Same number on x86_64 and aarch64.
_PIDFD_GETFD = {"x86_64": 438, "aarch64": 438}


def pidfd_getfd(pidfd: int, target_fd: int) -> int:
    """A close-on-exec duplicate of fd ``target_fd`` of the process ``pidfd`` refers to (the
    caller must be allowed to ptrace it). The engine's monitor takes a container's pty master
    from its waiter this way, so the waiter stays the one that keeps it open."""
    from corral.sys._ffi import c_int, c_long, c_uint32

    number = _PIDFD_GETFD.get(_MACHINE)
    if number is None:
        raise KernelError("pidfd_getfd", 38, f"unsupported architecture {_MACHINE}")
    ret = _lib().function("syscall", c_long)(
        c_long(number), c_int(pidfd), c_int(target_fd), c_uint32(0)
    )
    return _check("pidfd_getfd", int(ret))


# open_tree(2) and move_mount(2) (Linux 5.2): a copy of a mount as an fd, detached from every
# mount namespace until it is moved somewhere; the way to make an idmapped mount.
OPEN_TREE_CLONE = 0x1
OPEN_TREE_CLOEXEC = 0o2000000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_IDMAP = 0x100000
_NEW_MOUNT_API = {"open_tree": 428, "move_mount": 429}


def open_tree(path: str, flags: int = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE) -> int:
    """open_tree(2): with OPEN_TREE_CLONE, a detached copy of the mount tree at ``path``."""
    from corral.sys._ffi import c_int, c_long, c_uint32

    ret = _lib().function("syscall", c_long)(
        c_long(_NEW_MOUNT_API["open_tree"]), c_int(AT_FDCWD), _posix.fsencode(path), c_uint32(flags)
    )
    return _check("open_tree", int(ret), path)


def move_mount(fd: int, target: str) -> None:
    """move_mount(2): attach the detached mount ``fd`` (from ``open_tree``) at ``target``."""
    from corral.sys._ffi import c_int, c_long, c_uint32

    ret = _lib().function("syscall", c_long)(
        c_long(_NEW_MOUNT_API["move_mount"]), c_int(fd), b"", c_int(AT_FDCWD),
        _posix.fsencode(target), c_uint32(MOVE_MOUNT_F_EMPTY_PATH),
    )  # fmt: skip
    _check("move_mount", int(ret), target)


# clone3(2) (Linux 5.3) with CLONE_INTO_CGROUP (5.7): a child born in a cgroup v2 directory,
# never having run anywhere else. Same number on x86_64 and aarch64. struct clone_args is
# eleven u64 fields; CLONE_ARGS_SIZE_VER2 (88 bytes) is the first size with ``cgroup``.
CLONE_INTO_CGROUP = 0x200000000
CLONE_ARGS_SIZE_VER2 = 88
_CLONE3 = {"x86_64": 435, "aarch64": 435}
_SIGCHLD = 17
CLONE_ARGS_FIELDS = (
    "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack", "stack_size", "tls",
    "set_tid", "set_tid_size", "cgroup",
)


def clone_args(flags: int = 0, cgroup: int = -1, exit_signal: int = _SIGCHLD) -> bytes:
    """struct clone_args (linux/sched.h) for a fork-like clone3: no new stack (the child runs
    on a copy of ours, as after fork), ``exit_signal`` to the parent when it exits, and with
    ``cgroup`` (an fd of a cgroup v2 directory) the child born in that cgroup."""
    import struct

    if cgroup >= 0:
        flags |= CLONE_INTO_CGROUP
    words = dict.fromkeys(CLONE_ARGS_FIELDS, 0)
    words.update(flags=flags, exit_signal=exit_signal, cgroup=max(cgroup, 0))
    return struct.pack(f"={len(words)}Q", *words.values())


def fork_into_cgroup(cgroup_fd: int) -> int:
    """fork(), but the child is born in the cgroup v2 directory ``cgroup_fd`` (O_PATH is fine):
    0 in the child, its pid in the parent; KernelError("clone3") when the kernel refuses
    (ENOSYS before 5.3, E2BIG or EINVAL before 5.7, EPERM under a filter that forbids it).

    Wrapped the way posix.fork wraps fork(2), so the interpreter stays right in both processes:
    PyOS_BeforeFork (the at-fork "before" hooks; the import lock taken), then
    PyOS_AfterFork_Child or PyOS_AfterFork_Parent. The call holds the GIL throughout, as
    posix.fork does (a GIL released around the system call could be another thread's in the
    child). What glibc's fork adds for itself, clone3 does not: its atfork handlers (malloc's
    and stdio's locks), and the thread id cached in the child's thread block stays the
    parent's. Both matter only to a process with other threads, which ``fork_into_cgroup``
    therefore refuses (EAGAIN before anything is done): the caller forks the usual way then.
    """
    from corral.sys._ffi import c_long, c_size_t

    number = _CLONE3.get(_MACHINE)
    if number is None:
        raise KernelError("clone3", 38, f"unsupported architecture {_MACHINE}")
    if not single_threaded():
        raise KernelError("clone3", 11, "the process has other threads")
    args = clone_args(cgroup=cgroup_fd)
    lib = _lib()
    lib.function("PyOS_BeforeFork", None, hold_gil=True)()
    pid = int(lib.function("syscall", c_long, hold_gil=True)(
        c_long(number), args, c_size_t(len(args))
    ))
    if pid == 0:
        lib.function("PyOS_AfterFork_Child", None, hold_gil=True)()
        return 0
    lib.function("PyOS_AfterFork_Parent", None, hold_gil=True)()
    return _check("clone3", pid)


def single_threaded() -> bool:
    """Whether this process has one thread (the kernel's count: C threads too)."""
    with open("/proc/self/stat", "rb") as f:
        stat = f.read()
    return stat[stat.rindex(b")") + 2 :].split()[17] == b"1"  # field 20: num_threads
