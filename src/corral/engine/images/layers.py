"""Layers: how a tarball becomes a directory that overlayfs can stack.

A container image's filesystem is a *layer cake*. Each layer is a tar archive of the files that
changed relative to the layers below it: added and modified files are plain tar entries, and
deletions are recorded as *whiteouts*, because a tar cannot say "this file is gone"::

    layer 2   etc/motd (new text)    .wh.tmpfile     usr/share/doc/.wh..wh..opq
    layer 1   etc/motd  tmpfile  usr/share/doc/{a,b,c}
    layer 0   bin/  etc/  lib/ ...

    OCI whiteout            means                              becomes, in an overlay lower dir
    ----------------------  ---------------------------------  ---------------------------------
    dir/.wh.NAME            NAME was deleted in this layer     a character device 0:0 at dir/NAME
    dir/.wh..wh..opq        dir was replaced: hide all of the  xattr trusted.overlay.opaque="y"
                            lower layers' entries in dir       on dir

overlayfs uses exactly those two markers on its lower directories, so once a layer is unpacked
with its whiteouts translated, the kernel merges the stack (see ``corral.engine.snapshots``).

Layers come as plain tar or compressed with gzip or zstd; the media type says which, but the
first bytes are what counts (``detect``): ``1f 8b`` gzip, ``28 b5 2f fd`` zstd, ``fd 37 7a 58
5a 00`` xz (accepted for imported root filesystems), otherwise tar.

**A layer is hostile input.** It comes from a registry or a file someone handed you, and it is
unpacked as root. ``apply_layer`` therefore guarantees that nothing is ever written outside the
target directory:

- names are split into components; a ``..`` component is an error, a leading ``/`` is dropped
  (``/etc/passwd`` means ``etc/passwd`` in the layer, as docker does);
- every parent directory is opened one component at a time with ``O_NOFOLLOW|O_DIRECTORY``
  relative to the previous one, and every file is created with the ``*at`` calls relative to
  that fd: a parent that is a symlink (``a -> /etc`` then ``a/passwd``) fails with ELOOP and is
  refused, so no path is ever resolved by the kernel through something the layer made;
- a hard link's target goes through the same check and must already exist in this layer
  (``etc/shadow`` in the layer, never the host's ``/etc/shadow``);
- device nodes are made only by root; overlay xattrs (``trusted.overlay.*``) from the tar are
  dropped so a layer cannot forge redirects or metacopy files;
- every file must contain as many bytes as its header declares, and a truncated tar, gzip or
  zstd stream is an error, not a short file.

The caller unpacks into a fresh directory inside the store and renames it into place only after
``apply_layer`` returned, so a refused layer leaves nothing behind.
"""

from __future__ import annotations

import base64
import errno
import gzip
import hashlib
import io
import lzma
import os
import stat
import tarfile
import zlib
from dataclasses import dataclass
from typing import Any, BinaryIO

from corral.errors import KernelError, UserError

CHUNK = 1 << 20

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_DROPPED_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")

_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"BZh", "bzip2"),
)


class LayerError(UserError):
    """A layer is malformed, truncated or tries to write outside its directory."""


def detect(head: bytes) -> str:
    """The compression of a stream from its first bytes: gzip, zstd, xz, bzip2 or tar."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return "tar"


# -- decompression -------------------------------------------------------------------------------


class DecompressingReader(io.RawIOBase):
    """A readable stream of ``source`` decompressed, that fails loudly on truncation.

    ``gzip``, ``lzma`` and ``bz2`` raise EOFError on a stream that stops early; zstandard's
    stream reader does not, so zstd goes through a decompression object whose ``eof`` is checked
    at the end. Input is fed in small chunks, which bounds how much one call may inflate (a
    "zip bomb" layer is still limited by the disk, not by memory).
    """

    def __init__(self, source: BinaryIO, kind: str, what: str) -> None:
        self.kind = kind
        self.what = what
        self._source = source
        self._inner: Any = None
        self._zstd: Any = None
        self._buffer = b""
        self._done = False
        if kind == "gzip":
            self._inner = gzip.GzipFile(fileobj=source, mode="rb")
        elif kind == "xz":
            self._inner = lzma.LZMAFile(source, "rb")  # noqa: SIM115  (a stream, closed by GC)
        elif kind == "bzip2":
            import bz2

            self._inner = bz2.BZ2File(source, "rb")
        elif kind == "zstd":
            self._zstd_module = _zstandard()
            self._zstd = self._zstd_module.ZstdDecompressor().decompressobj()
            self._zstd_fed = False
        elif kind != "tar":
            raise LayerError(f"{what}: unsupported compression {kind}")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int | None = -1) -> bytes:
        want = CHUNK if size is None or size < 0 else size
        try:
            if self.kind == "tar":
                return bytes(self._source.read(want))
            if self._inner is not None:
                return bytes(self._inner.read(want))
            return self._read_zstd(want)
        except EOFError:
            raise LayerError(f"{self.what}: truncated {self.kind} stream (unexpected end of data)")
        except (zlib.error, lzma.LZMAError, gzip.BadGzipFile) as err:
            raise LayerError(f"{self.what}: corrupt {self.kind} stream: {err}")
        except OSError as err:
            if err.errno is None:  # bz2 and friends raise bare OSError for bad data
                raise LayerError(f"{self.what}: corrupt {self.kind} stream: {err}")
            raise

    def _read_zstd(self, want: int) -> bytes:
        zstd = self._zstd_module
        while len(self._buffer) < want and not self._done:
            chunk = self._source.read(8192)
            if not chunk:
                if not self._zstd_fed or not self._zstd.eof:
                    raise EOFError
                self._done = True
                break
            while chunk:
                if self._zstd.eof:  # a new frame follows the previous one
                    self._zstd = zstd.ZstdDecompressor().decompressobj()
                try:
                    self._buffer += self._zstd.decompress(chunk)
                except zstd.ZstdError as err:
                    raise LayerError(f"{self.what}: corrupt zstd stream: {err}")
                self._zstd_fed = True
                chunk = self._zstd.unused_data if self._zstd.eof else b""
        out, self._buffer = self._buffer[:want], self._buffer[want:]
        return out


def _zstandard() -> Any:
    """Import zstandard, also when started by the lean ``python -IS`` launcher (no site)."""
    try:
        import zstandard
    except ImportError:
        import site

        site.main()  # adds the venv's site-packages that -S left out
        try:
            import zstandard
        except ImportError:
            raise LayerError("zstd layers need the zstandard package (pip install zstandard)")
    return zstandard


def open_uncompressed(source: BinaryIO, what: str) -> DecompressingReader:
    """Wrap a seekable ``source`` so that reading it yields the tar, whatever the compression."""
    head = source.read(8)
    source.seek(0)
    return DecompressingReader(source, detect(head), what)


class HashingReader(io.RawIOBase):
    """Pass-through reader that hashes and counts what is read (the diff_id of a layer)."""

    def __init__(self, source: Any) -> None:
        self._source = source
        self.hash = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int | None = -1) -> bytes:
        data = bytes(self._source.read(CHUNK if size is None or size < 0 else size))
        self.hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    @property
    def digest(self) -> str:
        return f"sha256:{self.hash.hexdigest()}"


# -- extraction ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Applied:
    """What ``apply_layer`` found: the uncompressed digest and size, and the unpacked size."""

    diff_id: str
    tar_size: int
    size: int
    compression: str
    entries: int


def split_name(name: str, what: str) -> list[str]:
    """``name`` as path components: leading ``/`` and ``.`` dropped, ``..`` refused."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise LayerError(f"{what}: entry {name!r} has a '..' component (it would escape the layer)")
    return parts


def apply_layer(source: BinaryIO, target: str, what: str = "layer") -> Applied:
    """Unpack the (possibly compressed) layer ``source`` into the empty directory ``target``.

    Whiteouts become overlay whiteouts; see the module docstring for the safety rules. Returns
    the layer's diff_id (digest of the uncompressed tar), computed while unpacking.
    """
    stream = open_uncompressed(source, what)
    hashing = HashingReader(stream)
    root_fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        extractor = _Extractor(root_fd, what)
        try:
            tar = tarfile.open(  # noqa: SIM115  (iterated below; nothing to close)
                fileobj=hashing, mode="r|", encoding="utf-8", errors="surrogateescape"
            )
        except tarfile.TarError as err:
            raise LayerError(f"{what}: not a tar archive ({err})")
        try:
            for member in tar:
                extractor.apply(member, tar)
        except tarfile.TarError as err:
            raise LayerError(f"{what}: malformed tar after {extractor.entries} entries: {err}")
        hashing.drain()
        extractor.finish()
    finally:
        os.close(root_fd)
    return Applied(hashing.digest, hashing.size, extractor.size, stream.kind, extractor.entries)


class _Extractor:
    """Applies tar members below ``root_fd``; see the module docstring for the rules."""

    def __init__(self, root_fd: int, what: str) -> None:
        self.root_fd = root_fd
        self.what = what
        self.is_root = os.geteuid() == 0
        self.entries = 0
        self.size = 0
        self._inodes: set[int] = set()
        self._dir_times: list[tuple[list[str], int]] = []
        self._cache: tuple[tuple[str, ...], int] | None = None

    # parents

    def _open_dir(self, parts: list[str], create: bool, name: str) -> int:
        """Open the directory ``parts`` below the root, one component at a time, no symlinks.

        With ``create``, missing directories are made (0755, as docker does). Returns a new fd.
        """
        key = tuple(parts)
        if self._cache is not None and self._cache[0] == key:
            return os.dup(self._cache[1])
        fd = os.dup(self.root_fd)
        try:
            for i, comp in enumerate(parts):
                if create:
                    try:
                        os.mkdir(comp, 0o755, dir_fd=fd)
                    except FileExistsError:
                        pass
                try:
                    nfd = os.open(
                        comp,
                        os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                        dir_fd=fd,
                    )
                except OSError as err:
                    where = "/".join(parts[: i + 1])
                    if err.errno == errno.ENOTDIR and _is_symlink(comp, fd):
                        err.errno = errno.ELOOP  # O_DIRECTORY is checked before O_NOFOLLOW
                    if err.errno == errno.ELOOP:
                        raise LayerError(
                            f"{self.what}: entry {name!r}: {where} is a symlink; refusing to "
                            "write through it"
                        )
                    if err.errno == errno.ENOTDIR:
                        raise LayerError(f"{self.what}: entry {name!r}: {where} is not a directory")
                    if err.errno == errno.ENOENT:
                        raise LayerError(f"{self.what}: entry {name!r}: {where} does not exist")
                    raise KernelError.from_oserror("open", err, where)
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        self._set_cache(key, fd)
        return fd

    def _set_cache(self, key: tuple[str, ...] | None, fd: int) -> None:
        if self._cache is not None:
            os.close(self._cache[1])
            self._cache = None
        if key is not None:
            self._cache = (key, os.dup(fd))

    # entries

    def apply(self, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        self.entries += 1
        name = member.name
        parts = split_name(name, self.what)
        if not parts:  # "./": the layer's root directory itself
            if member.isdir():
                self._meta(self.root_fd, None, member, is_dir=True)
                self._dir_times.append(([], int(member.mtime)))
            return
        *parents, base = parts
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(parents, base, name)
            return
        pfd = self._open_dir(parents, True, name)
        try:
            self._entry(pfd, parents, base, member, tar)
        except OSError as err:
            raise KernelError.from_oserror(f"unpack {self.what}", err, name)
        finally:
            os.close(pfd)

    def _whiteout(self, parents: list[str], base: str, name: str) -> None:
        pfd = self._open_dir(parents, True, name)
        try:
            if base == WHITEOUT_OPAQUE:
                os.setxattr(pfd, OPAQUE_XATTR, b"y")
                return
            if base.startswith(WHITEOUT_META_PREFIX):
                return  # aufs bookkeeping (.wh..wh.plnk and such): nothing for overlay
            hidden = base[len(WHITEOUT_PREFIX) :]
            if hidden in ("", ".", ".."):
                raise LayerError(f"{self.what}: entry {name!r}: invalid whiteout")
            self._remove_existing(pfd, parents, hidden)
            os.mknod(hidden, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=pfd)
        except OSError as err:
            raise KernelError.from_oserror(f"whiteout in {self.what}", err, name)
        finally:
            os.close(pfd)

    def _remove_existing(
        self, pfd: int, parents: list[str], base: str, keep_dir: bool = False
    ) -> bool:
        """Remove ``base`` if present (a later entry replaces it). True if a dir stays."""
        try:
            st = os.lstat(base, dir_fd=pfd)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            import shutil

            self._set_cache(None, -1)  # the cached parent may be inside what goes
            shutil.rmtree(base, dir_fd=pfd)
        else:
            os.unlink(base, dir_fd=pfd)
        return False

    def _entry(
        self, pfd: int, parents: list[str], base: str, member: tarfile.TarInfo, tar: tarfile.TarFile
    ) -> None:
        name = member.name
        kept_dir = self._remove_existing(pfd, parents, base, keep_dir=member.isdir())
        if member.isreg():
            fd = os.open(
                base,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=pfd,
            )
            try:
                self._copy(member, tar, fd)
                st = os.fstat(fd)
                if st.st_ino not in self._inodes:
                    self._inodes.add(st.st_ino)
                    self.size += member.size
                self._meta(fd, None, member)
                os.utime(fd, ns=(int(member.mtime) * 10**9, int(member.mtime) * 10**9))
            finally:
                os.close(fd)
        elif member.isdir():
            if not kept_dir:
                os.mkdir(base, 0o700, dir_fd=pfd)
            fd = os.open(
                base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd
            )
            try:
                self._meta(fd, None, member, is_dir=True)
            finally:
                os.close(fd)
            self._dir_times.append(([*parents, base], int(member.mtime)))
        elif member.issym():
            os.symlink(member.linkname, base, dir_fd=pfd)
            os.chown(base, member.uid, member.gid, dir_fd=pfd, follow_symlinks=False)
            os.utime(base, ns=(int(member.mtime) * 10**9,) * 2, dir_fd=pfd, follow_symlinks=False)
        elif member.islnk():
            self._hardlink(pfd, base, member)
        elif member.ischr() or member.isblk() or member.isfifo():
            if member.isfifo():
                os.mkfifo(base, 0o600, dir_fd=pfd)
            else:
                if not self.is_root:
                    raise LayerError(f"{self.what}: entry {name!r}: device nodes need root")
                kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
                os.mknod(
                    base, kind | 0o600, os.makedev(member.devmajor, member.devminor), dir_fd=pfd
                )
            fd = os.open(base, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
            try:
                self._meta(fd, (pfd, base), member)
                os.utime(
                    base, ns=(int(member.mtime) * 10**9,) * 2, dir_fd=pfd, follow_symlinks=False
                )
            finally:
                os.close(fd)
        else:
            raise LayerError(
                f"{self.what}: entry {name!r}: unsupported tar entry type {member.type!r}"
            )

    def _hardlink(self, pfd: int, base: str, member: tarfile.TarInfo) -> None:
        link = split_name(member.linkname, f"{self.what}: hard link {member.name!r}")
        if not link:
            raise LayerError(f"{self.what}: entry {member.name!r}: hard link to the layer's root")
        *tparents, tbase = link
        try:
            tfd = self._open_dir(tparents, False, member.name)
        except LayerError as err:
            raise LayerError(
                f"{self.what}: hard link {member.name!r} -> {member.linkname!r}: the target is "
                f"not in this layer ({str(err).rsplit(': ', 1)[-1]}); a hard link must point to "
                "a file in the same layer"
            )
        try:
            try:
                st = os.lstat(tbase, dir_fd=tfd)
            except FileNotFoundError:
                raise LayerError(
                    f"{self.what}: hard link {member.name!r} -> {member.linkname!r}: the target is "
                    "not in this layer (a hard link must point to a file in the same layer)"
                )
            if stat.S_ISDIR(st.st_mode):
                raise LayerError(
                    f"{self.what}: hard link {member.name!r} -> {member.linkname!r}: "
                    "target is a directory"
                )
            os.link(tbase, base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(tfd)

    def _copy(self, member: tarfile.TarInfo, tar: tarfile.TarFile, fd: int) -> None:
        src = tar.extractfile(member)
        if src is None:
            raise LayerError(f"{self.what}: entry {member.name!r}: no data")
        left = member.size
        while left > 0:
            try:
                chunk = src.read(min(CHUNK, left))
            except tarfile.ReadError as err:
                raise LayerError(
                    f"{self.what}: entry {member.name!r}: declared {member.size} bytes, data ends "
                    f"after {member.size - left} ({err}): truncated layer"
                )
            if not chunk:
                raise LayerError(
                    f"{self.what}: entry {member.name!r}: declared {member.size} bytes, data ends "
                    f"after {member.size - left}: truncated layer"
                )
            view = memoryview(chunk)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            left -= len(chunk)

    def _meta(
        self, fd: int, at: tuple[int, str] | None, member: tarfile.TarInfo, is_dir: bool = False
    ) -> None:
        """Owner (numeric), then mode (chown clears setuid, so it goes second), then xattrs."""
        if at is None:
            os.fchown(fd, member.uid, member.gid)
            os.fchmod(fd, member.mode & 0o7777)
            target: int | str = fd
        else:  # an O_PATH fd of a device or fifo: opening it for real could block or act
            pfd, base = at
            os.chown(base, member.uid, member.gid, dir_fd=pfd, follow_symlinks=False)
            os.chmod(base, member.mode & 0o7777, dir_fd=pfd)
            target = f"/proc/self/fd/{fd}"
        for key, value in _xattrs(member).items():
            if key.startswith(_DROPPED_XATTR_PREFIXES):
                continue
            try:
                os.setxattr(target, key, value)
            except OSError as err:
                if err.errno not in (errno.ENOTSUP, errno.EPERM):
                    raise

    def finish(self) -> None:
        """Directories' mtimes last (writing into a directory changes its mtime), deepest first."""
        self._set_cache(None, -1)
        for parts, mtime in sorted(self._dir_times, key=lambda item: -len(item[0])):
            try:
                fd = self._open_dir(parts, False, "/".join(parts) or ".")
            except LayerError:
                continue  # replaced by a later entry
            try:
                os.utime(fd, ns=(mtime * 10**9, mtime * 10**9))
            finally:
                os.close(fd)
        self._set_cache(None, -1)


def _is_symlink(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


def _xattrs(member: tarfile.TarInfo) -> dict[str, bytes]:
    """PAX ``SCHILY.xattr.NAME`` (GNU tar, docker) and ``LIBARCHIVE.xattr.NAME`` (bsdtar)."""
    out: dict[str, bytes] = {}
    for key, value in member.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            out[key[len("SCHILY.xattr.") :]] = value.encode("utf-8", "surrogateescape")
        elif key.startswith("LIBARCHIVE.xattr."):
            from urllib.parse import unquote

            name = unquote(key[len("LIBARCHIVE.xattr.") :])
            out.setdefault(name, base64.b64decode(value + "=" * (-len(value) % 4)))
    return out


def tree_size(path: str, seen: set[tuple[int, int]] | None = None) -> int:
    """Bytes of the regular files under ``path`` (hard links once), as ``du --apparent``."""
    seen = set() if seen is None else seen
    total = 0
    stack = [path]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                stack.append(entry.path)
            elif stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total
