"""Layer diffs: an overlay upper directory becomes an OCI layer tar (``build`` and ``commit``).

A container's writes land in its overlay *upper* directory (see ``corral.engine.snapshots``),
and that directory already *is* the diff against the layers below, in overlayfs' notation.
Turning it into a layer is a translation of two markers, the inverse of what
``corral.engine.images.layers`` does when it unpacks one::

    upper dir (overlayfs)                         layer tar (OCI image-spec)
    ------------------------------------------    ------------------------------------
    etc/motd            a file written or copied  etc/motd
                        up: its full content
    tmp/old             character device 0:0      tmp/.wh.old       "old was deleted"
                        (a whiteout)
    usr/share/doc/      xattr trusted.overlay.    usr/share/doc/
                        opaque="y" (rmdir then    usr/share/doc/.wh..wh..opq
                        mkdir: lower entries             "hide everything below"
                        hidden)

Everything else is copied as it is: directories (a directory copied up because something
below it changed carries its own metadata), symlinks, hard links (the second name of an
inode becomes a link entry to the first), devices and fifos, owners, modes, mtimes, and the
file's xattrs (``security.capability`` from a ``setcap``), except overlayfs' own.

overlayfs features that would make an upper directory *not* a plain diff (``redirect_dir``,
``metacopy``: a renamed directory or a metadata-only copy-up that point into the lower
layers) are refused with an error rather than written as a wrong layer: corral mounts without
them.

The tar is deterministic -- entries sorted by path, PAX headers, numeric owners only, whole
second mtimes -- so the same directory always gives the same ``diff_id``: a build cache can
rebuild a layer's blob from its unpacked snapshot and get the digest it recorded.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from corral.engine.images.layers import (
    OPAQUE_XATTR,
    WHITEOUT_OPAQUE,
    WHITEOUT_PREFIX,
)
from corral.errors import UserError

_OVERLAY_XATTRS = ("trusted.overlay.", "user.overlay.")
_REFUSED = ("redirect", "metacopy")


class DiffError(UserError):
    """The upper directory holds something that has no layer form."""


@dataclass(frozen=True)
class DiffStats:
    """What ``write_diff`` wrote: the uncompressed tar's digest (diff_id) and size, entries."""

    diff_id: str
    size: int
    entries: int


class _Counting:
    """A write-only stream that hashes and counts what goes through it to ``out``."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        self.out.write(data)
        return len(data)


class Entry:
    """One entry of the upper directory, named relative to an fd of its parent directory."""

    __slots__ = ("dfd", "name", "rel", "st")

    def __init__(self, dfd: int, name: str, rel: str, st: os.stat_result) -> None:
        self.dfd, self.name, self.rel, self.st = dfd, name, rel, st

    def xattrs(self) -> dict[str, bytes]:
        # /proc/self/fd/<parent>/<name>: the parent we hold, then the name itself, unfollowed
        path = f"/proc/self/fd/{self.dfd}/{self.name}"
        try:
            names = os.listxattr(path, follow_symlinks=False)
        except OSError:
            return {}
        out: dict[str, bytes] = {}
        for name in sorted(names):
            try:
                out[name] = os.getxattr(path, name, follow_symlinks=False)
            except OSError:
                continue
        return out

    def open(self, flags: int) -> int | None:
        """An fd of this very entry (``O_NOFOLLOW``, and the same inode as walked), or None
        if it was replaced meanwhile."""
        try:
            fd = os.open(self.name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.dfd)
        except OSError:
            return None
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (self.st.st_dev, self.st.st_ino):
            os.close(fd)
            return None
        return fd


def walk(top: str) -> Iterator[Entry]:
    """Every entry below ``top``, in tar order (sorted, parents first).

    Walked by fds, never by path: a running container (``commit --pause=false``) may swap a
    directory or file for a symlink at any moment, and a path walk would then follow it out
    to the host's files (CVE-2018-15664's shape). Each directory is opened ``O_NOFOLLOW``
    relative to its parent's fd and must be the inode that was listed; an entry replaced
    between its listing and its use is left out (the container was changing it).
    """
    top_fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        yield from _walk_fd(top_fd, "")
    finally:
        os.close(top_fd)


def _walk_fd(dfd: int, prefix: str) -> Iterator[Entry]:
    for name in sorted(os.listdir(dfd)):
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        entry = Entry(dfd, name, prefix + name, st)
        if not stat.S_ISDIR(st.st_mode):
            yield entry
            continue
        cfd = entry.open(os.O_RDONLY | os.O_DIRECTORY)
        if cfd is None:
            continue
        try:
            yield entry
            yield from _walk_fd(cfd, entry.rel + "/")
        finally:
            os.close(cfd)


def write_diff(upper: str | os.PathLike[str], out: BinaryIO) -> DiffStats:
    """Write the layer tar of the overlay upper directory ``upper`` to ``out``."""
    top = os.fspath(upper)
    counting = _Counting(out)
    entries = 0
    links: dict[tuple[int, int], str] = {}
    with tarfile.open(  # type: ignore[call-overload]
        fileobj=counting, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8",
        errors="surrogateescape",
    ) as tar:  # fmt: skip
        for entry in walk(top):
            rel, st = entry.rel, entry.st
            xattrs = entry.xattrs()
            for name in xattrs:
                if name.startswith(_OVERLAY_XATTRS) and name.rsplit(".", 1)[-1] in _REFUSED:
                    raise DiffError(
                        f"{rel}: overlayfs {name} (redirect_dir/metacopy) has no layer form; "
                        "mount without those features"
                    )
            mode = st.st_mode
            if stat.S_ISCHR(mode) and st.st_rdev == 0:
                parent, _, base = rel.rpartition("/")
                info = tarfile.TarInfo(f"{parent}/{WHITEOUT_PREFIX}{base}" if parent else
                                       f"{WHITEOUT_PREFIX}{base}")  # fmt: skip
                info.mode = 0
                info.mtime = int(st.st_mtime)
                tar.addfile(info)
                entries += 1
                continue
            info = tarfile.TarInfo(rel)
            info.mode = stat.S_IMODE(mode)
            info.uid, info.gid = st.st_uid, st.st_gid
            info.uname = info.gname = ""
            info.mtime = int(st.st_mtime)
            kept = {k: v for k, v in xattrs.items() if not k.startswith(_OVERLAY_XATTRS)}
            if kept:
                info.pax_headers = {
                    f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape")
                    for k, v in kept.items()
                }
            if stat.S_ISDIR(mode):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
                entries += 1
                if xattrs.get(OPAQUE_XATTR) == b"y":
                    opq = tarfile.TarInfo(f"{rel}/{WHITEOUT_OPAQUE}")
                    opq.mode = 0
                    opq.mtime = int(st.st_mtime)
                    tar.addfile(opq)
                    entries += 1
                continue
            if stat.S_ISREG(mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in links:
                    info.type = tarfile.LNKTYPE
                    info.linkname = links[key]
                    tar.addfile(info)
                else:
                    fd = entry.open(os.O_RDONLY | os.O_NONBLOCK)
                    if fd is None:
                        continue  # replaced since it was listed
                    links[key] = rel
                    with open(fd, "rb") as f:
                        info.size = os.fstat(fd).st_size
                        tar.addfile(info, f)
            elif stat.S_ISLNK(mode):
                info.type = tarfile.SYMTYPE
                try:
                    info.linkname = os.readlink(entry.name, dir_fd=entry.dfd)
                except OSError:
                    continue  # replaced since it was listed
                tar.addfile(info)
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
                info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
                tar.addfile(info)
            elif stat.S_ISFIFO(mode):
                info.type = tarfile.FIFOTYPE
                tar.addfile(info)
            else:
                continue  # sockets have no tar form (docker skips them too)
            entries += 1
    return DiffStats(f"sha256:{counting.hash.hexdigest()}", counting.size, entries)
