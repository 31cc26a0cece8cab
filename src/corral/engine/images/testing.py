"""Test helpers shipped with the library: build layer tarballs entry by entry, hostile ones too.

::

    data = layer_tar([
        file("etc/motd", b"hi"),
        directory("usr/share"),
        symlink("a", "/etc"),
        file("a/passwd", b"pwned"),          # through the symlink: apply_layer must refuse
        hardlink("x", "/etc/shadow"),         # outside the layer: refused
        whiteout("tmp/old"), opaque("usr/share"),
    ], compression="gzip")
"""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Sequence


def _info(name: str, kind: bytes, mode: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = mtime
    return info


def file(
    name: str,
    data: bytes = b"",
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    mtime: int = 1_600_000_000,
    xattrs: dict[str, str] | None = None,
    size: int | None = None,
) -> tuple[tarfile.TarInfo, bytes]:
    """A regular file; ``size`` may lie (declare more than ``data`` holds)."""
    info = _info(name, tarfile.REGTYPE, mode, mtime)
    info.uid, info.gid = uid, gid
    info.size = len(data) if size is None else size
    if xattrs:
        info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
    return info, data


def directory(
    name: str, mode: int = 0o755, mtime: int = 1_600_000_000
) -> tuple[tarfile.TarInfo, bytes]:
    return _info(name, tarfile.DIRTYPE, mode, mtime), b""


def symlink(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    info = _info(name, tarfile.SYMTYPE, 0o777, 1_600_000_000)
    info.linkname = target
    return info, b""


def hardlink(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    info = _info(name, tarfile.LNKTYPE, 0o644, 1_600_000_000)
    info.linkname = target
    return info, b""


def device(
    name: str, kind: str = "c", major: int = 1, minor: int = 3
) -> tuple[tarfile.TarInfo, bytes]:
    info = _info(name, tarfile.CHRTYPE if kind == "c" else tarfile.BLKTYPE, 0o666, 1_600_000_000)
    info.devmajor, info.devminor = major, minor
    return info, b""


def fifo(name: str) -> tuple[tarfile.TarInfo, bytes]:
    return _info(name, tarfile.FIFOTYPE, 0o644, 1_600_000_000), b""


def whiteout(path: str) -> tuple[tarfile.TarInfo, bytes]:
    """``dir/.wh.NAME``: NAME is deleted by this layer."""
    head, _, base = path.rpartition("/")
    return file(f"{head}/.wh.{base}" if head else f".wh.{base}")


def opaque(directory_path: str) -> tuple[tarfile.TarInfo, bytes]:
    """``dir/.wh..wh..opq``: the lower layers' contents of dir are hidden."""
    return file(f"{directory_path.rstrip('/')}/.wh..wh..opq")


def layer_tar(entries: Sequence[tuple[tarfile.TarInfo, bytes]], compression: str = "tar") -> bytes:
    """The tar (``compression`` "tar", "gzip" or "zstd") of ``entries``, written raw.

    Entries are written as given, so a lying size produces a truncated archive.
    """
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            if info.isreg():
                if len(data) >= info.size:
                    tar.addfile(info, io.BytesIO(data))
                else:  # lie: header says more than follows; the archive ends here
                    out.write(info.tobuf(tarfile.PAX_FORMAT, tar.encoding, tar.errors))
                    out.write(data)
                    return _compress(out.getvalue(), compression)
            else:
                tar.addfile(info)
    return _compress(out.getvalue(), compression)


def _compress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, mtime=0)
    if compression == "zstd":
        import zstandard

        return bytes(zstandard.ZstdCompressor().compress(data))
    return data
