"""A container's files from the host: ``cp`` both ways, ``export``, ``diff`` and ``commit``.

This is a security boundary. Everything inside a container -- its symlinks, its directory
tree, even the shape of a path while it is being copied -- is written by whoever runs in it,
and the engine that reads or writes those files runs as root on the host. Two classic ways to
lose:

- *Resolving a container path with the host's rules.* ``open("<rootfs>/etc/passwd")`` follows
  a symlink ``/etc -> /`` in the image to the host's /. So does any path walk done with plain
  ``os`` calls while the container can rename things under it (a directory swapped for a
  symlink between a check and a use: CVE-2018-15664, docker cp's symlink-exchange race).
- *Running the container's code.* docker cp once chrooted into the container and then let
  glibc load the container's libnss to look up user names (CVE-2019-14271).

So here, no path inside a container is ever resolved by the host's rules:

- The first step of every path goes through ``openat2(RESOLVE_IN_ROOT)`` on an fd of the
  container's root (``corral.sys.open_in_root``): the kernel resolves ``..`` and every symlink
  as if that fd were "/", atomically, so nothing a container does can lead the walk out.
- Below that, the tree is walked by fds: a directory is opened with ``O_NOFOLLOW`` relative to
  its parent's fd, a file's content read from an fd opened with ``O_NOFOLLOW`` and checked by
  ``fstat``; a symlink is archived as a symlink. Entries written into a container are created
  by ``mkdirat``/``openat(O_CREAT|O_EXCL|O_NOFOLLOW)``/``symlinkat`` relative to a parent fd
  that was itself resolved in the root.
- Owners are numbers (tar's uid/gid): no user database is read, on either side.
- A file's capabilities (``security.capability``, the one xattr docker's archives carry)
  travel in the tar, as a PAX ``SCHILY.xattr`` record, and are set when copying into a
  container; never on the host, where they would grant privileges as a setuid bit does.

Which root? A running (or paused) container's is ``/proc/<pid>/root`` of its init: its own
mount namespace, volumes included, as ``docker cp`` sees it. A stopped one's overlay is
mounted on ``<container>/rootfs`` for the copy and unmounted after. ``export`` always reads
the overlay (docker exports the container's filesystem without its volumes or /proc).

Copying *to the host* extracts into the destination directory with that directory as the root:
entries cannot leave it whatever their names or the symlinks they carry, and set-user/group-ID
bits are dropped (the files belong to the caller; docker keeps them, which hands the container
a way to plant a setuid-root program on the host).

``diff`` lists the container's overlay upper directory (corral.engine.snapshots): a whiteout
(a 0:0 character device) is a deletion ``D``, a directory marked opaque is a change ``C`` whose
entries are all added, anything else is ``C`` if the image's layers have that path, else ``A``.
``commit`` turns the same directory into a layer (``ImageStore.add_layer``, shared with build).
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import stat
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Protocol

from corral.errors import KernelError, NotFoundError, StateError, UsageError, UserError

if TYPE_CHECKING:
    from corral.engine.containers.manager import Record
    from corral.engine.containers.userns import Mapping
    from corral.engine.engine import Engine
    from corral.engine.images.store import Image


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


Entry = tuple[tarfile.TarInfo, "Readable | None"]

_SUID = stat.S_ISUID | stat.S_ISGID
_RETRIES = 8  # openat2 RESOLVE_IN_ROOT answers EAGAIN when a rename races a ".." walk


class CopyError(UserError):
    """A copy that docker also refuses (a directory onto a file, no such directory...)."""


# -- resolving in a root ---------------------------------------------------------------------------


def _open_in_root(root: int, path: str, flags: int) -> int:
    """``path`` opened as if ``root`` were "/" (corral.sys.open_in_root), EAGAIN retried."""
    from corral import sys as csys

    for attempt in range(_RETRIES):
        try:
            return csys.open_in_root(root, path, flags)
        except KernelError as err:
            if err.errno == errno.EAGAIN and attempt < _RETRIES - 1:
                continue
            raise OSError(err.errno, err.strerror, path) from None
    raise AssertionError("unreachable")


def _rel(path: str) -> str:
    """A container path as a path below the root ("." for "/"): lexically cleaned, as docker."""
    return posixpath.normpath("/" + path).lstrip("/") or "."


def _split(path: str) -> tuple[str, str]:
    """(parent, name) of a cleaned relative path; the root is (".", ".")."""
    if path == ".":
        return ".", "."
    parent, _, name = path.rpartition("/")
    return parent or ".", name


class _Exact:
    """Read exactly ``size`` bytes of ``f`` (zeros if it shrank): a running container may
    change a file while it is archived, and a tar entry must be as long as its header says."""

    def __init__(self, f: Readable, size: int) -> None:
        self.f = f
        self.left = size

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        n = self.left if n < 0 else min(n, self.left)
        data = self.f.read(n) or b""
        if not data:
            data = b"\0" * n
        self.left -= len(data)
        return data


# -- reading a tree into tar entries ---------------------------------------------------------------


#: The one extended attribute that docker's archives carry: a file's capabilities (``setcap``).
CAPABILITY_XATTR = "security.capability"
_PAX_CAPABILITY = "SCHILY.xattr." + CAPABILITY_XATTR
#: What a user namespace shows for an id it does not map (/proc/sys/kernel/overflowuid).
_OVERFLOW_ID = 65534


def _info(name: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""
    info.mtime = int(st.st_mtime)
    return info


def _dir_info(name: str, st: os.stat_result) -> tarfile.TarInfo:
    info = _info(name or ".", st)
    info.type = tarfile.DIRTYPE
    return info


class _Reader:
    """Tar entries of a tree, read by fds only (see the module docstring)."""

    def __init__(self) -> None:
        self.links: dict[tuple[int, int], str] = {}

    def top(self, root: int, path: str, arcname: str, follow: bool,
            contents: bool = False) -> Iterator[Entry]:  # fmt: skip
        """The entries of ``path`` (resolved in ``root``), named ``arcname`` and below;
        ``contents``: only what the directory holds, named without the directory."""
        flags = os.O_PATH | (0 if follow else os.O_NOFOLLOW)
        fd = _open_in_root(root, path, flags)
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
                try:
                    if not contents:
                        yield _dir_info(arcname, st), None
                    yield from self._children(dfd, "" if contents else arcname)
                finally:
                    os.close(dfd)
            elif stat.S_ISREG(st.st_mode):
                ffd = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
                yield from self._file(ffd, arcname, st)
            elif stat.S_ISLNK(st.st_mode):
                info = _info(arcname, st)
                info.type, info.linkname = tarfile.SYMTYPE, os.readlink("", dir_fd=fd)
                yield info, None
            else:
                yield from self._special(arcname, st)
        finally:
            os.close(fd)

    def _children(self, dfd: int, prefix: str) -> Iterator[Entry]:
        for name in sorted(os.listdir(dfd)):
            arc = f"{prefix}/{name}" if prefix else name
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    cfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                  | os.O_CLOEXEC, dir_fd=dfd)  # fmt: skip
                    try:
                        st = os.fstat(cfd)
                        yield _dir_info(arc, st), None
                        yield from self._children(cfd, arc)
                    finally:
                        os.close(cfd)
                elif stat.S_ISREG(st.st_mode):
                    ffd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                                  | os.O_CLOEXEC, dir_fd=dfd)  # fmt: skip
                    yield from self._file(ffd, arc, os.fstat(ffd))
                elif stat.S_ISLNK(st.st_mode):
                    info = _info(arc, st)
                    info.type, info.linkname = tarfile.SYMTYPE, os.readlink(name, dir_fd=dfd)
                    yield info, None
                else:
                    yield from self._special(arc, st)
            except (FileNotFoundError, NotADirectoryError):
                continue  # removed, or swapped for something else, while we looked (ELOOP: below)
            except OSError as err:
                if err.errno == errno.ELOOP:
                    continue  # swapped for a symlink between lstat and open: not followed
                raise

    def _file(self, fd: int, name: str, st: os.stat_result) -> Iterator[Entry]:
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(st.st_mode):
                return
            info = _info(name, st)
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self.links:
                info.type, info.linkname = tarfile.LNKTYPE, self.links[key]
                yield info, None
                return
            self.links[key] = name
            info.size = st.st_size
            try:
                capability = os.getxattr(fd, CAPABILITY_XATTR)
            except OSError:
                capability = b""
            if capability:
                value = capability.decode("utf-8", "surrogateescape")
                info.pax_headers = {**info.pax_headers, _PAX_CAPABILITY: value}
            yield info, _Exact(f, st.st_size)

    def _special(self, name: str, st: os.stat_result) -> Iterator[Entry]:
        info = _info(name, st)
        mode = st.st_mode
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(mode):
            info.type = tarfile.FIFOTYPE
        else:
            return  # sockets have no tar form
        yield info, None


def tar_entries(source: IO[bytes]) -> Iterator[Entry]:
    """The entries of a tar stream (``cp - CTR:DIR``), each with its content while current."""
    try:
        with tarfile.open(fileobj=source, mode="r|*") as tar:
            for member in tar:
                data = tar.extractfile(member) if member.isreg() else None
                yield member, data
    except tarfile.TarError as err:
        raise UserError(f"the archive on stdin: {err}") from None


def write_tar(entries: Iterable[Entry], out: IO[bytes]) -> int:
    """Write ``entries`` as a tar (PAX, numeric owners) to ``out``; the bytes of content."""
    total = 0
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT,
                      encoding="utf-8", errors="surrogateescape") as tar:  # fmt: skip
        for info, data in entries:
            tar.addfile(info, data)
            total += info.size
    return total


# -- writing tar entries into a root ---------------------------------------------------------------


@dataclass
class _Extract:
    """Create ``entries`` under ``base`` (a directory path resolved in ``root``).

    ``owner``: None keeps the entries' uid/gid, else (uid, gid) for all; ``chown`` False
    leaves the caller as owner (the host side); ``strip_suid`` drops set-ID bits.
    """

    root: int
    base: str
    owner: tuple[int, int] | None
    chown: bool
    strip_suid: bool
    ids: Mapping | None = None  # the container's user namespace: owners are its ids

    def run(self, entries: Iterable[Entry]) -> int:
        dirs: list[tuple[str, tarfile.TarInfo]] = []
        total = 0
        for info, data in entries:
            name = self._name(info.name)
            if name is None:
                continue
            total += info.size
            self._one(name, info, data, dirs)
        for name, info in reversed(dirs):  # modes and times once their content is in
            fd = _open_in_root(self.root, self._path(name), os.O_PATH | os.O_NOFOLLOW)
            try:
                dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
            finally:
                os.close(fd)
            try:
                self._meta(dfd, info)
            finally:
                os.close(dfd)
        return total

    def _path(self, name: str) -> str:
        return name if self.base == "." else f"{self.base}/{name}"

    @staticmethod
    def _name(raw: str) -> str | None:
        name = posixpath.normpath("/" + raw).lstrip("/")
        if raw.split("/")[0] == ".." or "/../" in f"/{raw}/":
            raise UserError(f"archive entry {raw!r}: leads outside the destination")
        return name or None

    def _one(self, name: str, info: tarfile.TarInfo, data: Readable | None,
             dirs: list[tuple[str, tarfile.TarInfo]]) -> None:  # fmt: skip
        parent, base = _split(self._path(name))
        pfd = self._parent(parent)
        try:
            try:
                old: os.stat_result | None = os.stat(base, dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                old = None
            if old is not None:
                if stat.S_ISDIR(old.st_mode) and info.isdir():
                    dirs.append((name, info))
                    return
                if stat.S_ISDIR(old.st_mode):
                    raise CopyError(f'cannot overwrite directory "/{self._path(name)}" with '
                                    f'non-directory "{info.name}"')  # fmt: skip
                if info.isdir():
                    raise CopyError(f'cannot overwrite non-directory "/{self._path(name)}" with '
                                    f'directory "{info.name}"')  # fmt: skip
                os.unlink(base, dir_fd=pfd)
            self._create(pfd, base, name, info, data, dirs)
        finally:
            os.close(pfd)

    def _parent(self, path: str) -> int:
        """An fd on directory ``path`` (in the root), made with its missing parents (0755,
        owned by the owner given, as docker's extraction makes them)."""
        try:
            return _open_in_root(self.root, path, os.O_PATH | os.O_DIRECTORY)
        except FileNotFoundError:
            if path == "." or (self.base != "." and not path.startswith(self.base + "/")):
                raise
        up, base = _split(path)
        pfd = self._parent(up)
        try:
            with contextlib.suppress(FileExistsError):
                os.mkdir(base, 0o755, dir_fd=pfd)
                if self.chown:
                    os.chown(base, *(self.owner or (0, 0)), dir_fd=pfd, follow_symlinks=False)
            return os.open(base, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                           dir_fd=pfd)  # fmt: skip
        finally:
            os.close(pfd)

    def _create(self, pfd: int, base: str, name: str, info: tarfile.TarInfo,
                data: Readable | None, dirs: list[tuple[str, tarfile.TarInfo]],
                ) -> None:  # fmt: skip
        if info.isdir():
            os.mkdir(base, 0o700, dir_fd=pfd)
            dirs.append((name, info))
        elif info.isreg():
            fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600, dir_fd=pfd)  # fmt: skip
            try:
                left = info.size
                while left > 0 and data is not None:
                    chunk = data.read(min(left, 1 << 20))
                    if not chunk:
                        break
                    os.write(fd, chunk)
                    left -= len(chunk)
                self._meta(fd, info)
            finally:
                os.close(fd)
        elif info.issym():
            os.symlink(info.linkname, base, dir_fd=pfd)
            self._link_meta(pfd, base, info)
        elif info.islnk():
            target = self._name(info.linkname)
            if target is None:
                raise UserError(f"archive entry {info.name!r}: a hard link to nothing")
            sparent, sbase = _split(self._path(target))
            sfd = _open_in_root(self.root, sparent, os.O_PATH | os.O_DIRECTORY)
            try:
                os.link(sbase, base, src_dir_fd=sfd, dst_dir_fd=pfd, follow_symlinks=False)
            finally:
                os.close(sfd)
        elif info.ischr() or info.isblk() or info.isfifo():
            kind = stat.S_IFCHR if info.ischr() else stat.S_IFBLK if info.isblk() else stat.S_IFIFO
            device = os.makedev(info.devmajor, info.devminor) if not info.isfifo() else 0
            os.mknod(base, kind | 0o600, device, dir_fd=pfd)
            self._link_meta(pfd, base, info)

    def _mode(self, info: tarfile.TarInfo) -> int:
        mode = info.mode & 0o7777
        return mode & ~_SUID if self.strip_suid else mode

    def _owner(self, info: tarfile.TarInfo) -> tuple[int, int]:
        """The host's uid and gid for the entry: ``owner``'s or its own, as container ids."""
        uid, gid = self.owner if self.owner is not None else (info.uid, info.gid)
        if self.ids is None:
            return uid, gid
        host_uid, host_gid = self.ids.host_uid(uid), self.ids.host_gid(gid)
        if host_uid is None or host_gid is None:
            raise CopyError(f"{info.name}: owner {uid}:{gid} is not mapped in the container's "
                            "user namespace")  # fmt: skip
        return host_uid, host_gid

    def _meta(self, fd: int, info: tarfile.TarInfo) -> None:
        """Owner, capabilities, mode and mtime of an open file or directory (chown first: it
        clears set-ID bits and capabilities). File capabilities, like set-ID bits, are given
        only inside a container (``strip_suid`` False), never on the host."""
        if self.chown:
            os.fchown(fd, *self._owner(info))
        capability = info.pax_headers.get(_PAX_CAPABILITY)
        if capability and not self.strip_suid:
            os.setxattr(fd, CAPABILITY_XATTR, capability.encode("utf-8", "surrogateescape"))
        os.fchmod(fd, self._mode(info))
        os.utime(fd, (info.mtime, info.mtime))

    def _link_meta(self, pfd: int, base: str, info: tarfile.TarInfo) -> None:
        """Owner and mtime of a symlink or a device node, never following it."""
        if self.chown:
            os.chown(base, *self._owner(info), dir_fd=pfd, follow_symlinks=False)
        if not info.issym():
            fd = os.open(base, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
            try:
                os.chmod(f"/proc/self/fd/{fd}", self._mode(info))
            finally:
                os.close(fd)
        os.utime(base, (info.mtime, info.mtime), dir_fd=pfd, follow_symlinks=False)


# -- the container's root --------------------------------------------------------------------------


def _is_mountpoint(path: str) -> bool:
    from pathlib import Path

    from corral.engine.containers.manager import _is_mountpoint

    return _is_mountpoint(Path(path))


@contextlib.contextmanager
def _overlay_root(engine: Engine, record: Record) -> Iterator[int]:
    """An fd on the container's overlay, mounted on ``<container>/rootfs`` if it is not (a
    stopped container), and unmounted after."""
    from corral.engine.containers.prepare import mount_rootfs
    from corral.engine.snapshots.overlay import unmount

    container_dir = engine.containers.dir(record.id)
    rootfs = str(container_dir / "rootfs")
    mounted = False
    with engine.locked():
        if not _is_mountpoint(rootfs):  # as it runs: layers idmapped for a user namespace
            mount_rootfs(container_dir, engine.snapshots.mounts(record.id),
                         container_dir / "rootfs", volumes=False)  # fmt: skip
            mounted = True
        try:
            fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                yield fd
            finally:
                os.close(fd)
        finally:
            if mounted:
                with contextlib.suppress(OSError, KernelError):
                    unmount(rootfs, detach=True)


def _ids_of(engine: Engine, record: Record) -> Mapping | None:
    """The container's user-namespace mapping, if it has one that is not the identity."""
    from corral.engine.containers.userns import mapping_of

    mapping = mapping_of(engine.containers.dir(record.id) / "config.json")
    return None if mapping is None or mapping.identity else mapping


def _seen_inside(entries: Iterable[Entry], ids: Mapping | None) -> Iterator[Entry]:
    """``entries`` read from the container's files, owned as the container sees them: its
    user namespace shows host id H as container id C, and an id it does not map as the
    overflow id 65534, as the kernel does."""
    for info, data in entries:
        if ids is not None:
            uid, gid = ids.container_uid(info.uid), ids.container_gid(info.gid)
            info.uid = _OVERFLOW_ID if uid is None else uid
            info.gid = _OVERFLOW_ID if gid is None else gid
        yield info, data


@contextlib.contextmanager
def _container_root(engine: Engine, record: Record) -> Iterator[int]:
    """An fd on the root as the container sees it: its init's ``/proc/<pid>/root`` while it
    runs (volumes included), else its overlay."""
    containers = engine.containers
    row = containers.reconcile(containers.run_state(record.id))
    if not (row.live and row.pid):
        with _overlay_root(engine, record) as fd:
            yield fd
        return
    try:
        pidfd = os.pidfd_open(row.pid)
    except ProcessLookupError:
        raise StateError(f"container {record.id[:12]}: it stopped while copying") from None
    try:
        fd = os.open(f"/proc/{row.pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            import select

            still = containers.run_state(record.id)
            if select.select([pidfd], [], [], 0)[0] or not still.live or still.pid != row.pid:
                raise StateError(f"container {record.id[:12]}: it stopped while copying")
            yield fd
        finally:
            os.close(fd)
    finally:
        os.close(pidfd)


def _stat_in(root: int, path: str, follow: bool = True) -> os.stat_result | None:
    try:
        fd = _open_in_root(root, path, os.O_PATH | (0 if follow else os.O_NOFOLLOW))
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


# -- cp --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CopyResult:
    """What ``cp`` copied: bytes of file content, and where to (docker's closing line)."""

    size: int
    where: str


def _contents(path: str) -> bool:
    """docker's ``SRC/.``: the directory's contents, not the directory."""
    return path.endswith("/.") or path == "."


def _base(path: str) -> str:
    return posixpath.basename(posixpath.normpath(path)) if path not in ("/", "") else "."


def copy_from(engine: Engine, ref: str, src: str, dest: str, *, follow: bool = False,
              out: IO[bytes] | None = None) -> CopyResult:  # fmt: skip
    """``cp CTR:SRC DEST`` (``DEST`` "-": a tar of SRC to ``out``)."""
    record = engine.containers.record(ref)
    src_rel = _rel(src)
    with _container_root(engine, record) as root:
        st = _stat_in(root, src_rel, follow)
        if st is None:
            raise NotFoundError(f"Could not find the file {src} in container {ref}")
        is_dir = stat.S_ISDIR(st.st_mode)
        if (src.endswith("/") or _contents(src)) and not is_dir:
            raise CopyError(f"{src}: not a directory")
        reader = _Reader()
        if dest == "-":
            assert out is not None
            entries = reader.top(root, src_rel, _base(src), follow)
            size = write_tar(_seen_inside(entries, _ids_of(engine, record)), out)
            return CopyResult(size, "STDOUT")
        host = os.path.abspath(dest)
        target = _host_target(host, dest, is_dir, _contents(src), _base(src))
        dest_dir, arcname, contents = target
        droot = os.open(dest_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            extract = _Extract(droot, ".", None, chown=False, strip_suid=True)
            entries = reader.top(root, src_rel, arcname, follow, contents=contents)
            size = extract.run(entries)
        finally:
            os.close(droot)
    return CopyResult(size, dest)


def _host_target(host: str, dest: str, src_dir: bool, contents: bool,
                 base: str) -> tuple[str, str, bool]:  # fmt: skip
    """docker's rules for where a copy lands: (directory to extract into, top entry's name,
    contents only)."""
    try:
        st: os.stat_result | None = os.stat(host)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        if src_dir and (contents or base == "."):
            return host, "", True
        return host, base, False
    if st is not None:
        if src_dir:
            raise CopyError(f"cannot copy a directory to a file: {dest}")
        return os.path.dirname(host), os.path.basename(host), False
    if dest.endswith("/"):
        raise CopyError(f"no such directory: {dest}")
    parent = os.path.dirname(host)
    if not os.path.isdir(parent):
        raise CopyError(f"invalid output path: directory {parent} does not exist")
    return parent, os.path.basename(host), False


def copy_to(engine: Engine, ref: str, src: str, dest: str, *, follow: bool = False,
            archive: bool = False, source: IO[bytes] | None = None) -> CopyResult:  # fmt: skip
    """``cp SRC CTR:DEST`` (``SRC`` "-": a tar read from ``source``, extracted into DEST,
    which must be a directory). Owners are 0:0, or the source's with ``archive`` (``-a``)."""
    record = engine.containers.record(ref)
    owner = None if archive else (0, 0)
    ids = _ids_of(engine, record)
    reader = _Reader()
    host_root = -1
    entries: Iterator[Entry]
    if src != "-":
        host = os.path.abspath(src)
        try:
            st = os.stat(host) if follow else os.lstat(host)
        except FileNotFoundError:
            raise NotFoundError(f"lstat {src}: no such file or directory") from None
        src_dir = stat.S_ISDIR(st.st_mode)
        if src.endswith("/") and not src_dir:
            raise CopyError(f"{src}: not a directory")
    dest_rel = _rel(dest)
    try:
        with _container_root(engine, record) as root:
            dst = _stat_in(root, dest_rel)
            if src == "-":
                if dst is None:
                    raise NotFoundError(f"Could not find the file {dest} in container {ref}")
                if not stat.S_ISDIR(dst.st_mode):
                    raise CopyError(f'destination "{ref}:{dest}" must be a directory')
                assert source is not None
                extract = _Extract(root, dest_rel, owner, True, False, ids)
                size = extract.run(tar_entries(source))
                return CopyResult(size, f"{ref}:{dest}")
            host_root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            if dst is not None and stat.S_ISDIR(dst.st_mode):
                into = dest_rel
                if src_dir and _contents(src):
                    entries = reader.top(host_root, host, "", follow, contents=True)
                else:
                    entries = reader.top(host_root, host, _base(host), follow)
            elif dst is not None:
                if src_dir:
                    raise CopyError(f"cannot copy a directory to a file: {ref}:{dest}")
                into, name = _split(dest_rel)
                entries = reader.top(host_root, host, name, follow)
            else:
                into, name = _split(dest_rel)
                if dest.endswith("/") or _stat_in(root, into) is None:
                    missing = "/" + into if into != "." else "/"
                    raise NotFoundError(
                        f"Could not find the file {dest if dest.endswith('/') else missing}"
                        f" in container {ref}"
                    )
                entries = reader.top(host_root, host, name, follow)
            size = _Extract(root, into, owner, True, False, ids).run(entries)
            return CopyResult(size, f"{ref}:{dest}")
    finally:
        if host_root >= 0:
            os.close(host_root)


# -- export and diff -------------------------------------------------------------------------------


def export(engine: Engine, ref: str, out: IO[bytes]) -> int:
    """``export``: a tar of the container's whole filesystem (its overlay, not its volumes)."""
    record = engine.containers.record(ref)
    with _overlay_root(engine, record) as root:
        entries = _Reader().top(root, ".", "", False, contents=True)
        return write_tar(_seen_inside(entries, _ids_of(engine, record)), out)


@dataclass(frozen=True)
class Change:
    """One line of ``diff``: kind A (added), C (changed) or D (deleted), and the path."""

    kind: str
    path: str

    def __str__(self) -> str:
        return f"{self.kind} {self.path}"


def _lower_has(layers: Sequence[int], path: str) -> bool:
    """Does the stack of lower layers (fds, top first) show ``path``?"""
    from corral import sys as csys
    from corral.engine.images.layers import OPAQUE_XATTR

    parent, name = _split(path)
    for layer in layers:
        try:
            pfd = csys.openat2(layer, parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC,
                               csys.RESOLVE_BENEATH | csys.RESOLVE_NO_SYMLINKS)  # fmt: skip
        except KernelError:
            continue
        try:
            try:
                st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            except OSError:
                dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=pfd)
                try:
                    if os.getxattr(dfd, OPAQUE_XATTR) == b"y":
                        return False
                except OSError:
                    pass
                finally:
                    os.close(dfd)
                continue
            return not (stat.S_ISCHR(st.st_mode) and st.st_rdev == 0)
        finally:
            os.close(pfd)
    return False


def diff(engine: Engine, ref: str) -> list[Change]:
    """``diff``: what the container changed, from its overlay upper directory."""
    from corral.engine.images.layers import OPAQUE_XATTR

    record = engine.containers.record(ref)
    upper = str(engine.snapshots.upper(record.id))
    image = engine.images
    stack = []
    with contextlib.suppress(NotFoundError):
        layers = image.get(record.image_id).layers
        if layers:
            stack = [str(x.path) for x in engine.snapshots.stack(layers[-1].chain_id)]
    fds = [os.open(p, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) for p in stack]
    out: list[Change] = []

    def walk(dfd: int, prefix: str, opaque: bool) -> None:
        for name in sorted(os.listdir(dfd)):
            path = f"{prefix}/{name}" if prefix else name
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                out.append(Change("D", "/" + path))
                continue
            if not stat.S_ISDIR(st.st_mode):
                kind = "C" if not opaque and _lower_has(fds, path) else "A"
                out.append(Change(kind, "/" + path))
                continue
            try:
                cfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                              dir_fd=dfd)  # fmt: skip
            except OSError:
                continue
            try:
                try:
                    marked = os.getxattr(cfd, OPAQUE_XATTR) == b"y"
                except OSError:
                    marked = False
                existed = not opaque and _lower_has(fds, path)
                out.append(Change("C" if existed else "A", "/" + path))
                walk(cfd, path, opaque or marked)
            finally:
                os.close(cfd)

    try:
        top = os.open(upper, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            walk(top, "", False)
        finally:
            os.close(top)
    finally:
        for fd in fds:
            os.close(fd)
    return _without_mountpoints(out, _mount_destinations(engine, record.id))


def _mount_destinations(engine: Engine, container_id: str) -> set[str]:
    import json

    try:
        spec = json.loads((engine.containers.dir(container_id) / "config.json").read_text())
        mounts = spec.get("mounts") or []
        return {"/" + posixpath.normpath(str(m["destination"])).lstrip("/") for m in mounts}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def _without_mountpoints(changes: list[Change], mountpoints: set[str]) -> list[Change]:
    """docker keeps what the engine makes for its mounts (an empty /etc/hosts to bind over) in
    a hidden init layer; here it is in the upper dir, so leave those out of ``diff``, and a
    directory changed only because of them."""
    hidden = {c.path for c in changes if c.path in mountpoints and c.kind == "A"}
    kept = [c for c in changes if c.path not in hidden]
    paths = [c.path for c in kept]
    return [
        c for c in kept
        if not (c.kind == "C" and any(h.startswith(c.path + "/") for h in hidden)
                and not any(p.startswith(c.path + "/") for p in paths))
    ]  # fmt: skip


# -- commit ----------------------------------------------------------------------------------------

_COMMIT_CHANGES = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "USER", "VOLUME",
                   "WORKDIR")  # fmt: skip


def apply_changes(config: dict[str, Any], changes: Sequence[str]) -> None:
    """``commit -c``: Dockerfile instructions applied to the image config's ``config``."""
    from corral.engine.build.parser import parse
    from corral.engine.build.words import expand, key_values

    if not changes:
        return
    parsed = parse("\n".join(changes), "--change")
    for inst in parsed.instructions:
        kw = inst.keyword
        if kw not in _COMMIT_CHANGES:
            raise UsageError(f"--change {inst.original!r}: {kw} cannot be changed by commit "
                             f"(only {', '.join(_COMMIT_CHANGES)})")  # fmt: skip
        env = dict(item.partition("=")[::2] for item in config.get("Env") or [])
        shell = list(config.get("Shell") or ["/bin/sh", "-c"])
        if kw in ("CMD", "ENTRYPOINT"):
            config["Cmd" if kw == "CMD" else "Entrypoint"] = (
                list(inst.args) if inst.json else [*shell, inst.args[0]]
            )
        elif kw in ("ENV", "LABEL"):
            if inst.args and "=" not in inst.args[0]:  # the old form: ENV NAME the value
                name, _, value = inst.text.partition(" ")
                pairs = [(name, expand(value.strip(), env, "\\"))]
            else:
                pairs = key_values(inst.args, env, "\\", kw)
            if kw == "ENV":
                items = [e for e in config.get("Env") or [] if e.partition("=")[0]
                         not in {k for k, _ in pairs}]  # fmt: skip
                config["Env"] = items + [f"{k}={v}" for k, v in pairs]
            else:
                config["Labels"] = {**(config.get("Labels") or {}), **dict(pairs)}
        elif kw in ("EXPOSE", "VOLUME"):
            field = "ExposedPorts" if kw == "EXPOSE" else "Volumes"
            values = dict(config.get(field) or {})
            for word in inst.args:
                for item in expand(word, env, "\\").split():
                    if kw == "EXPOSE" and "/" not in item:
                        item += "/tcp"
                    values[item] = {}
            config[field] = values
        elif kw == "WORKDIR":
            base = str(config.get("WorkingDir") or "/")
            config["WorkingDir"] = posixpath.normpath(posixpath.join(base, inst.args[0]))
        elif kw == "ONBUILD":
            config["OnBuild"] = [*(config.get("OnBuild") or []), inst.args[0]]
        else:  # USER
            config["User"] = expand(inst.args[0], env, "\\")


def _container_config(image_config: dict[str, Any], spec: dict[str, Any],
                      args: list[str]) -> dict[str, Any]:  # fmt: skip
    """The new image's ``config``: the image's, with the container's command and environment
    (docker commits the container's Config: ``run -e X=1 img cmd`` gives Env X=1, Cmd cmd)."""
    import copy

    config: dict[str, Any] = copy.deepcopy(image_config.get("config") or {})
    entrypoint = list(config.get("Entrypoint") or [])
    if args and args[: len(entrypoint)] == entrypoint:
        rest = args[len(entrypoint):]
        if rest:
            config["Cmd"] = rest
    image_env = {e.partition("=")[0] for e in config.get("Env") or []}
    env = (spec.get("process") or {}).get("env")
    if isinstance(env, list):
        config["Env"] = [e for e in env if e.partition("=")[0] not in ("HOSTNAME", "HOME")
                         or e.partition("=")[0] in image_env]  # fmt: skip
    return config


def commit(engine: Engine, ref: str, tag: str | None, *, message: str = "", author: str = "",
           changes: Sequence[str] = (), pause: bool = True) -> Image:  # fmt: skip
    """``commit``: the container's upper directory as a new layer on its image, with the
    container's config and ``changes``; tagged ``tag``. A running container is paused while
    its upper directory is read (docker's default), so the layer is one moment of it."""
    import json

    from corral.engine.format import rfc3339
    from corral.engine.images.reference import normalize

    containers = engine.containers
    record = containers.record(ref)
    if tag is not None:
        tag = normalize(tag)
    images = engine.images
    try:
        base = images.get(record.image_id)
    except NotFoundError:
        raise NotFoundError(f"container {ref}: its image {record.image_id[:19]} is gone") from None
    image_config = images.config(base.id)
    spec = json.loads((containers.dir(record.id) / "config.json").read_text())
    config = _container_config(image_config, spec, record.args)
    apply_changes(config, changes)
    paused = False
    if pause and containers.status(record).state == "running":
        containers.pause(record.id)
        paused = True
    try:
        created = rfc3339()
        with images.locked():
            parent = base.layers[-1].chain_id if base.layers else None
            upper = engine.snapshots.upper(record.id)
            layer = images.add_layer(upper, parent, what=f"container {record.id[:12]}")
            history = list(image_config.get("history") or [])
            history.append({
                "created": created,
                **({"author": author} if author else {}),
                "created_by": " ".join(record.args),
                **({"comment": message} if message else {}),
            })  # fmt: skip
            new = {
                "created": created,
                **({"author": author} if author else {}),
                "architecture": image_config.get("architecture") or base.architecture,
                "os": image_config.get("os") or "linux",
                "config": config,
                "rootfs": {"type": "layers",
                           "diff_ids": [*(x.diff_id for x in base.layers), layer.diff_id]},
                "history": history,
            }  # fmt: skip
            blobs = [*((x.blob, x.media_type, x.blob_size) for x in base.layers),
                     (layer.blob, layer.media_type, layer.blob_size)]  # fmt: skip
            return images.commit(new, blobs, tag)
    finally:
        if paused:
            with contextlib.suppress(UserError):
                containers.unpause(record.id)


__all__ = [
    "Change",
    "CopyError",
    "CopyResult",
    "apply_changes",
    "commit",
    "copy_from",
    "copy_to",
    "diff",
    "export",
    "tar_entries",
    "write_tar",
]
