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


def _xattrs(path: str) -> dict[str, bytes]:
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


def _walk_dir(top: str, rel: str) -> Iterator[tuple[str, str, os.stat_result]]:
    full = os.path.join(top, rel)
    for name in sorted(os.listdir(full)):
        child_rel = f"{rel}/{name}"
        child = os.path.join(full, name)
        st = os.lstat(child)
        yield child_rel, child, st
        if stat.S_ISDIR(st.st_mode):
            yield from _walk_dir(top, child_rel)


def walk(top: str) -> Iterator[tuple[str, str, os.stat_result]]:
    """Every entry below ``top`` as (relative path, full path, lstat), in tar order."""
    for name in sorted(os.listdir(top)):
        child = os.path.join(top, name)
        st = os.lstat(child)
        yield name, child, st
        if stat.S_ISDIR(st.st_mode):
            yield from _walk_dir(top, name)


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
        for rel, full, st in walk(top):
            xattrs = _xattrs(full)
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
                    links[key] = rel
                    with open(full, "rb") as f:
                        info.size = os.fstat(f.fileno()).st_size
                        tar.addfile(info, f)
            elif stat.S_ISLNK(mode):
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(full)
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
