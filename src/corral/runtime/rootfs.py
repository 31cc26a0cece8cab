"""Carry out a RootfsPlan inside the container's new mount namespace (runs in the init).

Two rules make this safe against hostile images:

- every destination is opened with openat2(RESOLVE_IN_ROOT) relative to the rootfs, so a
  symlink in the image (``/etc -> /host-etc``, ``../../..``) resolves inside the rootfs;
- the mount is made on ``/proc/self/fd/N`` of that opened destination, so swapping a symlink in
  after the check cannot redirect it (the fd pins the directory we checked).
"""

import posix
import stat

from corral import _posix
from corral import sys as k
from corral.errors import ContainerInitError, KernelError, SpecError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from corral.plan.rootfs import Mount, RootfsPlan

# statvfs f_flag bits that have an MS_* twin of the same value (ST_RDONLY == MS_RDONLY ...).
_ST_TO_MS = 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x40 | 0x400 | 0x800 | 0x1000


def prepare_root(plan: "RootfsPlan") -> None:
    """Steps 1 and 2: stop propagation to the host, make the rootfs a mount point.

    As runc does, the mount holding the rootfs is made private if it is shared (pivot_root
    refuses a shared parent, and the bind would propagate to the host); rootfsPropagation is
    applied to the container's "/" after pivot_root (enter_root). Before that, "/" is made a
    slave (recursively) unless the config asks for shared: a private or unbindable "/" here
    would cut a rootfs that should end up a slave from its master, or refuse the bind.

    Without a mount namespace of its own the container's mounts are made where the config
    says (the caller's namespace, or one joined by path): nothing there but the rootfs changes.
    """
    if not plan.own_mount_ns:
        k.mount(plan.rootfs, plan.rootfs, "bind", k.MS_BIND | k.MS_REC)
        return
    first = plan.propagation
    if not first & k.MS_SHARED:
        first = k.MS_SLAVE | k.MS_REC
    k.mount(None, "/", None, first)
    parent = _shared_parent_mount(plan.rootfs)
    if parent is not None:
        k.mount(None, parent, None, k.MS_PRIVATE)
    k.mount(plan.rootfs, plan.rootfs, "bind", k.MS_BIND | k.MS_REC)


def mounts_at(path: str) -> int:
    """How many mounts are stacked on ``path`` in our mount namespace (/proc/self/mountinfo)."""
    count = 0
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split(" ", 5)[4]
            if "\\" in point:
                point = point.encode().decode("unicode_escape")
            count += point == path
    return count


def detach_above(path: str, keep: int) -> None:
    """Lazily unmount what is stacked on ``path`` above its first ``keep`` mounts (with all
    the mounts below each): what a container without its own mount namespace left behind."""
    while mounts_at(path) > keep:
        k.umount2(path, k.MNT_DETACH)


def _shared_parent_mount(path: str) -> str | None:
    """The mount point holding ``path``, if that mount is shared (mountinfo's "shared:N")."""
    best, shared = "", False
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split(" - ")[0].split()
            point = fields[4].encode().decode("unicode_escape") if "\\" in fields[4] else fields[4]
            inside = point == "/" or path == point or path.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best):
                best, shared = point, any(o.startswith("shared:") for o in fields[6:])
    return best if shared else None


def mount_all(plan: "RootfsPlan", root_fd: int, cgroup_sources: list[tuple[str, str]]) -> None:
    """Step 3: config.mounts, in order."""
    for m in plan.mounts:
        if m.fstype in ("cgroup", "cgroup2") and not m.is_bind:
            mount_cgroup(m, root_fd, cgroup_sources)
        else:
            mount_one(m, root_fd)


def mount_one(m: "Mount", root_fd: int) -> None:
    fd = ensure_in_root(root_fd, m.dest, is_file=m.is_file, field=f"{m.field}.destination")
    target = k.fd_path(fd)
    try:
        if m.is_bind:
            k.mount(m.source, target, None, m.flags & (k.MS_BIND | k.MS_REC))
            if m.remount_flags:
                # Re-open: the bind put a new mount on top of the directory fd points into.
                remount(m.dest, root_fd, m.remount_flags | k.MS_BIND)
        else:
            source = m.source or m.fstype
            k.mount(source, target, m.fstype, m.flags, m.data or None)
            if m.copyup:
                # fd still names the image's directory, now hidden under the new tmpfs.
                copy_up(fd, root_fd, m.dest)
            if m.remount_flags:
                remount(m.dest, root_fd, m.remount_flags)
        if m.attr_set or m.attr_clr:
            top = k.open_in_root(root_fd, m.dest)  # the new mount, not the directory under it
            try:
                k.mount_setattr(top, m.attr_set, m.attr_clr)
            finally:
                posix.close(top)
        for flag in m.propagation:
            mount_at(root_fd, m.dest, None, None, flag)
    except KernelError as err:
        raise KernelError(err.op, err.errno, err.strerror, f"{m.dest} ({m.field})") from None
    finally:
        posix.close(fd)


def copy_up(under_fd: int, root_fd: int, dest: str) -> None:
    """tmpcopyup: copy the image's directory (``under_fd``, now covered by the tmpfs mounted at
    ``dest``) into that tmpfs, keeping modes, owners, times and symlinks, and give the tmpfs's
    root the directory's mode and owner.

    runc mounts the tmpfs on a directory in the host's /tmp, copies, then MS_MOVEs it over the
    destination. Copying from an fd opened before the mount needs no directory on the host and
    no second mount, which with a shared rootfsPropagation would show on the host's /tmp. Every
    lookup is relative to a directory fd with O_NOFOLLOW, so no symlink in the image is ever
    followed: the copy cannot read or write outside the two trees.
    """
    src = posix.open(k.fd_path(under_fd), posix.O_RDONLY | posix.O_DIRECTORY | posix.O_CLOEXEC)
    top = k.open_in_root(root_fd, dest, posix.O_RDONLY | posix.O_DIRECTORY)
    try:
        _copy_tree(src, top)
        st = posix.fstat(src)
        posix.fchown(top, st.st_uid, st.st_gid)
        posix.fchmod(top, stat.S_IMODE(st.st_mode))
    finally:
        posix.close(src)
        posix.close(top)


_DIR_OPEN = posix.O_RDONLY | posix.O_DIRECTORY | posix.O_NOFOLLOW | posix.O_CLOEXEC


def _copy_tree(src: int, dst: int) -> None:
    """Copy the entries of directory ``src`` into directory ``dst`` (both fds), recursively."""
    with posix.scandir(src) as entries:
        names = [e.name for e in entries]
    for name in names:
        st = posix.stat(name, dir_fd=src, follow_symlinks=False)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            posix.mkdir(name, 0o700, dir_fd=dst)
            s_fd = posix.open(name, _DIR_OPEN, dir_fd=src)
            d_fd = posix.open(name, _DIR_OPEN, dir_fd=dst)
            try:
                _copy_tree(s_fd, d_fd)
            finally:
                posix.close(s_fd)
                posix.close(d_fd)
        elif stat.S_ISLNK(mode):
            posix.symlink(posix.readlink(name, dir_fd=src), name, dir_fd=dst)
        elif stat.S_ISREG(mode):
            _copy_file(src, dst, name, st.st_size)
        else:  # devices, fifos, sockets
            posix.mknod(name, mode, st.st_rdev, dir_fd=dst)
        posix.chown(name, st.st_uid, st.st_gid, dir_fd=dst, follow_symlinks=False)
        if not stat.S_ISLNK(mode):
            posix.chmod(name, stat.S_IMODE(mode), dir_fd=dst)
        posix.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst, follow_symlinks=False)


def _copy_file(src: int, dst: int, name: str, size: int) -> None:
    s_fd = posix.open(name, posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_CLOEXEC, dir_fd=src)
    try:
        flags = posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL | posix.O_NOFOLLOW | posix.O_CLOEXEC
        d_fd = posix.open(name, flags, 0o600, dir_fd=dst)
        try:
            offset = 0
            while offset < size:
                sent = posix.sendfile(d_fd, s_fd, offset, size - offset)
                if sent == 0:
                    break
                offset += sent
        finally:
            posix.close(d_fd)
    finally:
        posix.close(s_fd)


def mount_cgroup(m: "Mount", root_fd: int, sources: list[tuple[str, str]]) -> None:
    """A ``cgroup`` mount shows the container its own cgroups, never the host's tree.

    cgroup v2: the container's cgroup directory is bind-mounted at the destination.
    cgroup v1: a tmpfs at the destination with one bind mount per hierarchy
    (cpu, memory, pids, ...), each showing the container's directory in that hierarchy.
    """
    readonly = m.flags & k.MS_RDONLY
    flags = m.flags & ~k.MS_RDONLY
    fd = ensure_in_root(root_fd, m.dest, field=f"{m.field}.destination")
    posix.close(fd)
    if len(sources) == 1 and sources[0][1] == "":
        _bind(sources[0][0], root_fd, m.dest, readonly)
        return
    mount_at(root_fd, m.dest, "tmpfs", "tmpfs", flags, "mode=755")
    for host_dir, name in sources:
        _bind(host_dir, root_fd, f"{m.dest}/{name}", readonly)
    if readonly:
        remount(m.dest, root_fd, flags | k.MS_RDONLY)


def _bind(source: str, root_fd: int, dest: str, readonly: int) -> None:
    fd = ensure_in_root(root_fd, dest)
    try:
        k.mount(source, k.fd_path(fd), None, k.MS_BIND | k.MS_REC)
    finally:
        posix.close(fd)
    if readonly:
        remount(dest, root_fd, k.MS_BIND | k.MS_RDONLY | k.MS_NOSUID | k.MS_NODEV | k.MS_NOEXEC)


def remount(dest: str, root_fd: int, flags: int) -> None:
    """Remount the mount at ``dest`` with ``flags``, keeping the flags it is locked with."""
    fd = k.open_in_root(root_fd, dest)
    try:
        locked = k.MS_NOSUID | k.MS_NODEV | k.MS_NOEXEC
        kept = posix.statvfs(k.fd_path(fd)).f_flag & _ST_TO_MS & locked
        k.mount(None, k.fd_path(fd), None, k.MS_REMOUNT | flags | kept)
    finally:
        posix.close(fd)


def mount_at(
    root_fd: int, dest: str, source: str | None, fstype: str | None, flags: int,
    data: str | None = None,
) -> None:
    """mount(2) on whatever is at ``dest`` now (a fresh lookup sees mounts made since)."""
    fd = k.open_in_root(root_fd, dest)
    try:
        k.mount(source, k.fd_path(fd), fstype, flags, data)
    finally:
        posix.close(fd)


def ensure_in_root(
    root_fd: int, path: str, *, is_file: bool = False, field: str = "", _links: int = 0
) -> int:
    """Open (creating if needed) ``path`` inside the rootfs; return an O_PATH fd to it.

    Each missing component is created with mkdirat relative to its parent's fd, and every
    lookup goes through RESOLVE_IN_ROOT, so nothing is ever created outside the rootfs. A
    dangling symlink is followed as the kernel would inside the rootfs: its target is created
    there (as runc does), never on the host.
    """
    rel = path.strip("/")
    try:
        return k.open_in_root(root_fd, rel or ".")
    except KernelError as err:
        if err.errno != 2:  # ENOENT
            raise KernelError(err.op, err.errno, err.strerror, f"{path} ({field})") from None
    parent, _, name = rel.rpartition("/")
    parent_fd = ensure_in_root(root_fd, parent, field=field)
    try:
        if not stat.S_ISDIR(posix.stat(k.fd_path(parent_fd)).st_mode):
            raise SpecError(field, f"cannot create {path}: a parent is not a directory")
        if is_file:
            posix.close(posix.open(name, posix.O_CREAT | posix.O_WRONLY | posix.O_CLOEXEC, 0o644,
                             dir_fd=_dir_fd(parent_fd)))
        else:
            posix.mkdir(name, 0o755, dir_fd=_dir_fd(parent_fd))
    except FileExistsError:
        target = _dangling_target(root_fd, parent_fd, name)
        if target is not None:
            if _links >= 40:  # ELOOP, as the kernel counts
                raise SpecError(field, f"cannot create {path}: too many levels of symlinks")
            posix.close(parent_fd)
            parent_fd = -1
            return ensure_in_root(root_fd, target, is_file=is_file, field=field, _links=_links + 1)
    finally:
        if parent_fd >= 0:
            posix.close(parent_fd)
    return k.open_in_root(root_fd, rel)


def _dangling_target(root_fd: int, parent_fd: int, name: str) -> str | None:
    """If ``name`` in the parent is a symlink, where it points, as a path inside the rootfs.

    A relative target is taken from the parent's real place in the rootfs (what the kernel
    resolved), not from the path we were given, which may have passed through other links.
    """
    try:
        target = posix.readlink(name, dir_fd=_dir_fd(parent_fd))
    except OSError:
        return None  # not a symlink: a file or directory that appeared meanwhile
    if target.startswith("/"):
        return target
    root = posix.readlink(k.fd_path(root_fd))
    where = posix.readlink(k.fd_path(parent_fd))
    inside = where[len(root):] if where.startswith(root) else "/"
    return _posix.normpath(_posix.join("/", inside.lstrip("/"), target))


def _dir_fd(path_fd: int) -> int:
    """mkdirat/openat reject O_PATH fds on some kernels; a real directory fd always works.

    The magic link is resolved by the kernel to the very directory we opened, so this stays
    inside the rootfs.
    """
    fd = posix.open(k.fd_path(path_fd), posix.O_RDONLY | posix.O_DIRECTORY | posix.O_CLOEXEC)
    _DIR_FDS.append(fd)
    return fd


_DIR_FDS: list[int] = []


def close_dir_fds() -> None:
    while _DIR_FDS:
        posix.close(_DIR_FDS.pop())


def create_devices(plan: "RootfsPlan", root_fd: int, in_userns: bool) -> None:
    """Step 4: device nodes and the /dev symlinks.

    In a user namespace mknod is not allowed; as runc does, the host's node is bind-mounted
    onto an empty file instead.
    """
    for d in plan.devices:
        _make_device(d, root_fd, in_userns)
    for target, link in plan.symlinks:
        parent, _, name = link.strip("/").rpartition("/")
        pfd = ensure_in_root(root_fd, parent)
        try:
            dfd = _dir_fd(pfd)
            try:
                posix.unlink(name, dir_fd=dfd)
            except FileNotFoundError:
                pass
            except IsADirectoryError:
                continue
            posix.symlink(target, name, dir_fd=dfd)
        finally:
            posix.close(pfd)
    close_dir_fds()


_DEV_TYPES = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}


def _make_device(d: "dict[str, Any]", root_fd: int, in_userns: bool) -> None:
    path = d["path"]
    parent, _, name = path.strip("/").rpartition("/")
    pfd = ensure_in_root(root_fd, parent)
    try:
        dfd = _dir_fd(pfd)
        try:
            posix.unlink(name, dir_fd=dfd)
        except FileNotFoundError:
            pass
        if in_userns:
            flags = posix.O_CREAT | posix.O_WRONLY | posix.O_CLOEXEC
            posix.close(posix.open(name, flags, 0o644, dir_fd=dfd))
            fd = k.open_in_root(root_fd, path)
            try:
                k.mount(path, k.fd_path(fd), None, k.MS_BIND)
            finally:
                posix.close(fd)
            return
        mode = (d.get("fileMode") or 0o666) & 0o7777
        kind = _DEV_TYPES[d["type"]]
        dev = posix.makedev(d.get("major", 0), d.get("minor", 0)) if kind != stat.S_IFIFO else 0
        posix.mknod(name, kind | mode, dev, dir_fd=dfd)
        posix.chmod(name, mode, dir_fd=dfd)  # mknod's mode is filtered by the umask
        posix.chown(name, d.get("uid") or 0, d.get("gid") or 0, dir_fd=dfd)
    finally:
        posix.close(pfd)


def enter_root(plan: "RootfsPlan") -> None:
    """Step 6: make the rootfs "/" and drop every path back to the host's root.

    pivot_root(".", ".") stacks the old root under the new one at "/"; unmounting it (after
    making it a slave so the unmount does not propagate to the host) leaves only the rootfs.
    With --no-pivot (for rootfs on ramfs, where pivot_root is not allowed) the rootfs is moved
    over "/" and chroot'ed into: weaker, as a process with CAP_SYS_CHROOT can climb out.
    """
    posix.chdir(plan.rootfs)
    if not plan.own_mount_ns:
        posix.chroot(".")  # a shared mount namespace: moving or pivoting would hit everyone in it
        posix.chdir("/")
        return
    if plan.no_pivot:
        k.mount(plan.rootfs, "/", None, k.MS_MOVE)
        posix.chroot(".")
    else:
        old_root = posix.open("/", posix.O_DIRECTORY | posix.O_RDONLY | posix.O_CLOEXEC)
        k.pivot_root(".", ".")
        posix.fchdir(old_root)
        k.mount(None, ".", None, k.MS_SLAVE | k.MS_REC)
        k.umount2(".", k.MNT_DETACH)
        posix.close(old_root)
    posix.chdir("/")
    k.mount(None, "/", None, plan.propagation)  # rootfsPropagation, on the container's "/"


def finish(plan: "RootfsPlan") -> None:
    """Step 7, inside the new root: sysctls, masked and read-only paths, read-only root."""
    for key, value in plan.sysctl.items():
        path = "/proc/sys/" + key.replace(".", "/")
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as err:
            raise KernelError("write sysctl", err.errno or 0, err.strerror or "", key) from None
    for path in plan.masked:
        mask(path)
    for path in plan.readonly_paths:
        readonly(path)
    if plan.readonly_root:
        flags = posix.statvfs("/").f_flag & _ST_TO_MS
        k.mount(None, "/", None, k.MS_REMOUNT | k.MS_BIND | k.MS_RDONLY | flags)


def mask(path: str) -> None:
    """Hide a path: /dev/null over a file, an empty read-only tmpfs over a directory."""
    try:
        is_dir = stat.S_ISDIR(posix.stat(path).st_mode)
    except FileNotFoundError:
        return
    if is_dir:
        k.mount("tmpfs", path, "tmpfs", k.MS_RDONLY)
        return
    null = open_null_device()
    try:
        k.mount(k.fd_path(null), path, None, k.MS_BIND)
    finally:
        posix.close(null)


def open_null_device() -> int:
    """An O_PATH fd on the container's /dev/null, which must be the null device itself.

    Masking binds it over files of /proc. An image (or a /dev shared with another container)
    could make /dev/null a symlink to, say, /proc/sys/kernel/core_pattern; a bind of the path
    would then put that writable file over the masked one (CVE-2025-31133's shape). The fd
    names the node we checked, and the bind goes through it.
    """
    try:
        fd = posix.open("/dev/null", posix.O_PATH | posix.O_NOFOLLOW | posix.O_CLOEXEC)
    except OSError as err:
        raise ContainerInitError(f"/dev/null in the container: {err.strerror}") from None
    st = posix.fstat(fd)
    if not stat.S_ISCHR(st.st_mode) or st.st_rdev != posix.makedev(1, 3):
        posix.close(fd)
        raise ContainerInitError(
            "/dev/null in the container is not the null device (1:3): refusing to mask with it"
        )
    return fd


def readonly(path: str) -> None:
    try:
        k.mount(path, path, None, k.MS_BIND | k.MS_REC)
    except KernelError as err:
        if err.errno == 2:
            return
        raise
    flags = posix.statvfs(path).f_flag & _ST_TO_MS
    k.mount(None, path, None, k.MS_BIND | k.MS_REMOUNT | k.MS_RDONLY | k.MS_REC | flags)
