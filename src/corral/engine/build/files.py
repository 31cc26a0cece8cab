"""COPY and ADD: finding the sources, hashing them, copying them into the image's root.

Sources come from the build context (minus what ``.dockerignore`` excludes) or from another
stage's root filesystem (``--from``). Each source is a path or a glob (``*.py``, ``src/?/a``:
Go's filepath.Match per component) relative to that root; ``..`` cannot leave it. Docker's
rules for where things land::

    COPY a.txt /dst        /dst is the file (unless /dst is a directory already)
    COPY a.txt /dst/       /dst/a.txt            (several sources: DEST must end with /)
    COPY dir /dst          the *contents* of dir go into /dst
    COPY a.txt rel         relative to WORKDIR

Files keep their mode and mtime; the owner is 0:0 from the context (the host's owner means
nothing in the image), the original one from another stage, or ``--chown`` (numeric, or names
looked up in the image's /etc/passwd and /etc/group). ``--chmod`` sets the mode.

The destination is the image's root filesystem mounted on the host, which is untrusted: a
symlink ``/app -> /etc`` in the image must lead to the image's /etc, never the host's. So the
destination is resolved component by component *inside* that root (``resolve_in_root``)
before anything is written, and files are opened with O_NOFOLLOW.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import posixpath
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from corral.engine.build.ignore import Ignore
from corral.engine.rootpath import resolve_in_root
from corral.errors import UserError

_GLOB = re.compile(r"[*?\[]")


class CopyError(UserError):
    """A COPY/ADD source is missing or the destination cannot take it."""


@dataclass(frozen=True)
class Item:
    """One thing to copy: host path, its path in the image (absolute), and its lstat."""

    source: str
    dest: str
    st: os.stat_result


# -- inside the image's root ---------------------------------------------------------------------


def mkdirs_in_root(root: str, path: str, uid: int = 0, gid: int = 0) -> str:
    """``mkdir -p`` of image path ``path`` inside ``root``; the host path of the directory."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    current = "/"
    for comp in parts:
        nxt = posixpath.join(current, comp)
        real = resolve_in_root(root, nxt)
        try:
            st = os.lstat(real)
        except FileNotFoundError:
            os.mkdir(real, 0o755)
            os.chown(real, uid, gid)
            st = os.lstat(real)
        if not stat.S_ISDIR(st.st_mode):
            raise CopyError(f"{nxt} is not a directory in the image")
        current = nxt
    return resolve_in_root(root, path)


def _lookup(root: str, file: str, name: str) -> int | None:
    try:
        with open(resolve_in_root(root, file), encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.strip().split(":")
                if len(fields) >= 3 and fields[0] == name:
                    return int(fields[2])
    except (OSError, ValueError):
        return None
    return None


def parse_chown(value: str, root: str, what: str) -> tuple[int, int]:
    """``--chown=USER[:GROUP]`` -> (uid, gid): numbers, or names from the image's files."""
    user, _, group = value.partition(":")

    def one(text: str, file: str, kind: str) -> int:
        if text.isdigit():
            return int(text)
        found = _lookup(root, file, text)
        if found is None:
            raise CopyError(f"{what}: no {kind} {text!r} in the image's {file}")
        return found

    uid = one(user, "/etc/passwd", "user")
    gid = one(group, "/etc/group", "group") if group else uid
    if not group and not user.isdigit():
        gid = _primary_gid(root, user) or 0
    return uid, gid


def _primary_gid(root: str, user: str) -> int | None:
    try:
        with open(resolve_in_root(root, "/etc/passwd"), encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.strip().split(":")
                if len(fields) >= 4 and fields[0] == user:
                    return int(fields[3])
    except (OSError, ValueError):
        return None
    return None


# -- sources -------------------------------------------------------------------------------------


class Source:
    """A root to copy from: the context (with its ignore rules) or a stage's filesystem."""

    def __init__(self, root: str, ignore: Ignore | None = None, what: str = "context") -> None:
        self.root = root
        self.ignore = ignore or Ignore([])
        self.what = what

    def _excluded(self, rel: str) -> bool:
        return self.ignore.excluded(rel)

    def matches(self, pattern: str) -> list[str]:
        """Root-relative paths that ``pattern`` names (a glob may name several; none: error)."""
        cleaned = posixpath.normpath("/" + pattern).lstrip("/")
        if cleaned in ("", "."):
            return [""]
        if not _GLOB.search(cleaned):
            full = os.path.join(self.root, cleaned)
            if not os.path.lexists(full) or self._excluded(cleaned):
                raise CopyError(f"{pattern}: no such file or directory in the {self.what}")
            return [cleaned]
        found: list[str] = []
        self._glob("", cleaned.split("/"), found)
        found = [f for f in found if not self._excluded(f)]
        if not found:
            raise CopyError(f"{pattern}: no source files match in the {self.what}")
        return sorted(found)

    def _glob(self, rel: str, parts: list[str], out: list[str]) -> None:
        head, rest = parts[0], parts[1:]
        base = os.path.join(self.root, rel) if rel else self.root
        try:
            names = sorted(os.listdir(base))
        except (NotADirectoryError, FileNotFoundError):
            return
        for name in names:
            if not fnmatch.fnmatchcase(name, head):
                continue
            child = f"{rel}/{name}" if rel else name
            if rest:
                if os.path.isdir(os.path.join(self.root, child)):
                    self._glob(child, rest, out)
            else:
                out.append(child)

    def items(self, rel: str, dest: str, dest_is_dir: bool) -> list[Item]:
        """What copying ``rel`` (a match) to image path ``dest`` means, entry by entry."""
        full = os.path.join(self.root, rel) if rel else self.root
        if rel and os.path.islink(full):
            full = resolve_in_root(self.root, rel)  # the source itself is followed
        st = os.stat(full) if os.path.exists(full) else os.lstat(full)
        if not stat.S_ISDIR(st.st_mode):
            name = posixpath.basename(rel)
            target = posixpath.join(dest, name) if dest_is_dir else dest
            return [Item(full, target, st)]
        out = [Item(full, dest, st)]
        for dirpath, dirnames, filenames in os.walk(full):
            dirnames.sort()
            sub = os.path.relpath(dirpath, full)
            sub = "" if sub == "." else sub
            keep = []
            for name in dirnames:
                crel = posixpath.join(rel, sub, name) if rel or sub else name
                child = os.path.join(dirpath, name)
                if self._excluded(crel) and not self.ignore.may_hold_included(crel):
                    continue
                keep.append(name)
                cst = os.lstat(child)
                if not self._excluded(crel):
                    out.append(Item(child, posixpath.join(dest, sub, name), cst))
            dirnames[:] = [d for d in keep if not os.path.islink(os.path.join(dirpath, d))]
            for name in sorted(filenames):
                crel = posixpath.join(rel, sub, name) if rel or sub else name
                if self._excluded(crel):
                    continue
                child = os.path.join(dirpath, name)
                out.append(Item(child, posixpath.join(dest, sub, name), os.lstat(child)))
        return out


def digest_items(items: list[Item], keep_owner: bool) -> list[list[object]]:
    """What the cache key of a COPY depends on: each item's place, kind, mode and content."""
    out: list[list[object]] = []
    for item in items:
        st = item.st
        entry: list[object] = [item.dest, stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode)]
        if stat.S_ISREG(st.st_mode):
            h = hashlib.sha256()
            with open(item.source, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            entry.append(h.hexdigest())
        elif stat.S_ISLNK(st.st_mode):
            entry.append(os.readlink(item.source))
        if keep_owner:
            entry += [st.st_uid, st.st_gid]
        out.append(entry)
    return out


# -- writing --------------------------------------------------------------------------------------


def copy_items(
    root: str,
    items: list[Item],
    owner: tuple[int, int] | None,
    mode: int | None = None,
) -> None:
    """Copy ``items`` into the image mounted at ``root``.

    ``owner`` None keeps each source's owner (COPY --from), else sets it. Parents that do not
    exist are made 0755 root:root.
    """
    for item in items:
        st = item.st
        uid, gid = owner if owner is not None else (st.st_uid, st.st_gid)
        parent = posixpath.dirname(item.dest.rstrip("/")) or "/"
        mkdirs_in_root(root, parent)
        target = resolve_in_root(root, item.dest, follow_last=False)
        kind = stat.S_IFMT(st.st_mode)
        perm = mode if mode is not None else stat.S_IMODE(st.st_mode)
        if kind == stat.S_IFDIR:
            real = resolve_in_root(root, item.dest)
            if not os.path.lexists(real):
                os.mkdir(real, 0o755)
            elif not os.path.isdir(real) or os.path.islink(real):
                raise CopyError(f"{item.dest}: exists in the image and is not a directory")
            os.chown(real, uid, gid)
            os.chmod(real, perm)
            os.utime(real, ns=(st.st_atime_ns, st.st_mtime_ns))
            continue
        if os.path.lexists(target):
            if os.path.isdir(target) and not os.path.islink(target):
                raise CopyError(f"{item.dest}: is a directory in the image; end DEST with /")
            os.unlink(target)
        if kind == stat.S_IFLNK:
            os.symlink(os.readlink(item.source), target)
            os.chown(target, uid, gid, follow_symlinks=False)
            continue
        if kind != stat.S_IFREG:
            continue  # devices, fifos, sockets from a context are not copied (docker's rule)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)  # fmt: skip
        try:
            with open(item.source, "rb") as src, os.fdopen(fd, "wb", closefd=False) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.fchown(fd, uid, gid)
            os.fchmod(fd, perm)
            os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(fd)


def fix_dir_times(root: str, items: list[Item]) -> None:
    """Directories' mtimes again, after files were written into them."""
    for item in reversed(items):
        if stat.S_ISDIR(item.st.st_mode):
            real = resolve_in_root(root, item.dest)
            os.utime(real, ns=(item.st.st_atime_ns, item.st.st_mtime_ns))


def is_archive(path: str) -> bool:
    """Whether ADD unpacks ``path``: a tar, plain or compressed (gzip, zstd, xz, bzip2)."""
    import tarfile

    from corral.engine.images.layers import detect, open_uncompressed

    with open(path, "rb") as f:
        head = f.read(8)
        if detect(head) == "tar":
            return tarfile.is_tarfile(path)
        f.seek(0)
        try:
            stream = open_uncompressed(f, path)
            block = stream.read(512)
        except UserError:
            return False
    return len(block) == 512 and block[257:262] == b"ustar"


def context_root(path: Path) -> str:
    return str(path.resolve())
