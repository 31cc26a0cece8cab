"""Images without a registry: copy host programs and exactly the libraries they need.

``corral image from-host py python3`` makes a small image that runs the host's Python: the
program (a bare name is looked up on ``$PATH``), its dynamic loader and shared libraries (found
by ``corral.engine.images.elf`` as the loader would find them), for a Python interpreter its
standard library (asked of the interpreter, without site-packages and tests) and the libraries
its extension modules need, the ``--add`` paths, and a skeleton (``/etc/passwd``, ``/tmp``,
mount points for ``/proc``, ``/sys``, ``/dev``).

Paths are kept as they are on the host, *including the symlinks on the way*: on Debian 12
``/lib64/ld-linux-x86-64.so.2`` is reached through ``/lib64 -> usr/lib64`` and is itself a
symlink to ``/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2``, reached through ``/lib -> usr/lib``.
The image gets the same links and the files they lead to, so every path the program or the
loader has compiled in works inside the container too. Entries are never placed *below* a
symlink (the layer unpacker would refuse that, rightly); ``RootfsBuilder.realize`` resolves
such a path through the links already in the tree first.

``corral image busybox`` makes the classic busybox image: one static ``/bin/busybox`` and a
symlink per applet at the path ``busybox --list-full`` gives (``/bin/sh``, ``/sbin/init``...).
"""

from __future__ import annotations

import io
import os
import re
import stat
import subprocess
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from corral.engine.images import elf
from corral.errors import UserError

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"
MAX_SYMLINKS = 40


@dataclass
class Entry:
    kind: str  # "dir" | "file" | "symlink" | "data"
    mode: int = 0o755
    source: str = ""  # host path of a file
    target: str = ""  # a symlink's target
    data: bytes = b""
    mtime: float = 0.0


class RootfsBuilder:
    """A root filesystem described in memory, written out as one tar layer."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}

    # -- the tree ----------------------------------------------------------------------------------

    def realize(self, path: str) -> str:
        """``path`` (relative to the image root) with symlinks already in the tree resolved."""
        parts = [p for p in path.split("/") if p not in ("", ".")]
        out: list[str] = []
        hops = 0
        while parts:
            comp = parts.pop(0)
            if comp == "..":
                if out:
                    out.pop()
                continue
            current = "/".join([*out, comp])
            entry = self.entries.get(current)
            if entry is not None and entry.kind == "symlink" and parts:
                hops += 1
                if hops > MAX_SYMLINKS:
                    raise UserError(f"{path}: too many levels of symbolic links")
                target = [p for p in entry.target.split("/") if p not in ("", ".")]
                parts = target + parts
                if entry.target.startswith("/"):
                    out = []
                continue
            out.append(comp)
        return "/".join(out)

    def add_dir(self, path: str, mode: int = 0o755, mtime: float = 0.0) -> str:
        """Add directory ``path`` and its parents (as real directories); returns where it went."""
        real = self.realize(path)
        parts = real.split("/") if real else []
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            existing = self.entries.get(sub)
            if existing is None:
                self.entries[sub] = Entry("dir", mode if i == len(parts) else 0o755, mtime=mtime)
            elif existing.kind != "dir":
                raise UserError(f"/{sub} is a {existing.kind} in the image, not a directory")
        return real

    def _put(self, path: str, entry: Entry) -> str:
        real = self.realize(path)
        parent, _, _ = real.rpartition("/")
        if parent:
            self.add_dir(parent)
        existing = self.entries.get(real)
        if existing is not None and existing.kind == "dir" and entry.kind == "dir":
            return real
        self.entries[real] = entry
        return real

    def add_symlink(self, path: str, target: str) -> str:
        return self._put(path, Entry("symlink", 0o777, target=target))

    def add_bytes(self, path: str, data: bytes, mode: int = 0o644) -> str:
        return self._put(path, Entry("data", mode, data=data))

    def add_file(self, path: str, host_path: str, mode: int | None = None) -> str:
        st = os.stat(host_path)
        return self._put(
            path,
            Entry(
                "file",
                stat.S_IMODE(st.st_mode) if mode is None else mode,
                source=host_path,
                mtime=st.st_mtime,
            ),
        )

    def add_host_path(
        self, host_path: str, recursive: bool = False, skip: frozenset[str] = frozenset()
    ) -> None:
        """Copy ``host_path`` to the same path in the image, with the symlinks on the way."""
        path = os.path.abspath(host_path)
        hops = 0
        done = ""  # the resolved prefix, host side == image side
        parts = [p for p in path.split("/") if p]
        while parts:
            comp = parts.pop(0)
            current = f"{done}/{comp}"
            try:
                st = os.lstat(current)
            except OSError as err:
                raise UserError(f"{host_path}: {err.strerror or err} ({current})")
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > MAX_SYMLINKS:
                    raise UserError(f"{host_path}: too many levels of symbolic links")
                target = os.readlink(current)
                self.add_symlink(current, target)
                base = "" if target.startswith("/") else done
                new = os.path.normpath(f"{base}/{target}")
                parts = [p for p in new.split("/") if p] + parts
                done = ""
                continue
            if stat.S_ISDIR(st.st_mode):
                self.add_dir(current, stat.S_IMODE(st.st_mode), st.st_mtime)
                done = current
                if not parts and recursive:
                    self._add_tree(current, skip)
                continue
            if parts:
                raise UserError(f"{host_path}: {current} is not a directory")
            if stat.S_ISREG(st.st_mode):
                self.add_file(current, current)
            else:
                raise UserError(f"{host_path}: not a regular file, directory or symlink")
            done = current

    def _add_tree(self, top: str, skip: frozenset[str] = frozenset()) -> None:
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if d not in skip]
            for name in sorted(dirnames + filenames):
                full = os.path.join(dirpath, name)
                st = os.lstat(full)
                if stat.S_ISLNK(st.st_mode):
                    self.add_symlink(full, os.readlink(full))
                elif stat.S_ISDIR(st.st_mode):
                    self.add_dir(full, stat.S_IMODE(st.st_mode), st.st_mtime)
                elif stat.S_ISREG(st.st_mode):
                    self.add_file(full, full)
            dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]

    def add_skeleton(self) -> None:
        """The few things every container expects: mount points, /tmp, /etc/passwd."""
        for name in ("dev", "proc", "sys", "run", "etc", "var"):
            self.add_dir(name)
        self.add_dir("tmp", 0o1777)
        self.add_dir("root", 0o700)
        if self.realize("etc/passwd") not in self.entries:
            self.add_bytes("etc/passwd", PASSWD.encode())
        if self.realize("etc/group") not in self.entries:
            self.add_bytes("etc/group", GROUP.encode())

    # -- output ------------------------------------------------------------------------------------

    def write_tar(self, out: BinaryIO) -> None:
        """Write the tree as a PAX tar, parents before children, owned by root."""
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(self.entries, key=lambda p: p.split("/")):
                entry = self.entries[path]
                info = tarfile.TarInfo(path)
                info.mode = entry.mode
                info.mtime = int(entry.mtime)
                info.uname = info.gname = "root"
                if entry.kind == "dir":
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                elif entry.kind == "symlink":
                    info.type = tarfile.SYMTYPE
                    info.linkname = entry.target
                    tar.addfile(info)
                elif entry.kind == "data":
                    info.size = len(entry.data)
                    tar.addfile(info, io.BytesIO(entry.data))
                else:
                    with open(entry.source, "rb") as f:
                        info.size = os.fstat(f.fileno()).st_size
                        tar.addfile(info, f)


def busybox_applets(busybox: str) -> list[str]:
    """``busybox --list-full``: applet paths such as ``bin/sh`` and ``usr/bin/awk``."""
    try:
        done = subprocess.run(
            [busybox, "--list-full"], stdin=subprocess.DEVNULL, capture_output=True, check=False
        )
    except OSError as err:
        raise UserError(f"{busybox}: {err.strerror or err}")
    if done.returncode != 0:
        raise UserError(f"{busybox}: --list-full exited with status {done.returncode}")
    return [line.strip() for line in done.stdout.decode().splitlines() if line.strip()]


def from_host(programs: Sequence[str], extra: Sequence[str] = ()) -> RootfsBuilder:
    """A tree with ``programs``, their loaders and libraries, ``extra`` paths and a skeleton."""
    if not programs:
        raise UserError("from-host: name at least one PROGRAM")
    builder = RootfsBuilder()
    resolver = elf.Resolver()
    for name in programs:
        program = find_program(name)
        builder.add_host_path(program)
        if elf.is_elf(program):
            info = elf.parse(program)
            for lib in elf.resolve_libraries(program, resolver):
                builder.add_host_path(lib)
            if info.static and os.path.basename(program) == "busybox":
                _add_applets(builder, program, "/" + builder.realize(program.lstrip("/")))
            for library_dir in python_stdlib(program):
                _add_with_libraries(builder, resolver, library_dir)
    for path in extra:
        if not os.path.lexists(path):
            raise UserError(f"--add {path}: no such file or directory")
        builder.add_host_path(path, recursive=True)
    builder.add_skeleton()
    return builder


def find_program(name: str) -> str:
    """``name`` itself when it has a slash, else its first match on ``$PATH``, preferring an
    ELF executable to a script (a version manager's shim, such as pyenv's, is a shell script
    that would be useless in the image without its own interpreter and tree)."""
    if "/" in name:
        if not os.path.isfile(name):
            raise UserError(f"{name}: no such file")
        return os.path.abspath(name)
    found: list[str] = []
    for directory in (os.environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin").split(":"):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            found.append(os.path.abspath(candidate))
    for candidate in found:
        if elf.is_elf(candidate):
            return candidate
    if found:
        return found[0]
    raise UserError(f"{name}: executable file not found in $PATH")


_PYTHON = re.compile(r"^python[0-9]*(\.[0-9]+)?$")


def python_stdlib(program: str) -> list[str]:
    """A Python interpreter's standard library directories (asked of the interpreter itself),
    so that ``from-host python3`` makes an image whose python3 runs; [] for other programs."""
    if not _PYTHON.match(os.path.basename(os.path.realpath(program))):
        return []
    code = "import sysconfig; p = sysconfig.get_paths(); print(p['stdlib']); print(p['platstdlib'])"
    try:
        done = subprocess.run(
            [program, "-I", "-S", "-c", code],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if done.returncode != 0:
        return []
    dirs: list[str] = []
    for line in done.stdout.decode().splitlines():
        if line and os.path.isdir(line) and line not in dirs:
            dirs.append(line)
    return dirs


#: What of a Python standard library tree the image leaves out: installed packages, tests.
_STDLIB_SKIP = frozenset({"site-packages", "dist-packages", "test", "idlelib", "tkinter"})


def _add_with_libraries(builder: RootfsBuilder, resolver: elf.Resolver, top: str) -> None:
    """``top`` recursively, and the shared libraries its ELF files (extension modules) need."""
    builder.add_host_path(top, recursive=True, skip=_STDLIB_SKIP)
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if d not in _STDLIB_SKIP]
        for name in filenames:
            if ".so" not in name:
                continue
            path = os.path.join(dirpath, name)
            if os.path.isfile(path) and elf.is_elf(path):
                for lib in elf.resolve_libraries(path, resolver):
                    builder.add_host_path(lib)


def busybox_rootfs(busybox: str = "/bin/busybox") -> RootfsBuilder:
    """The classic busybox image: /bin/busybox plus one symlink per applet."""
    if not os.path.isfile(busybox):
        raise UserError(f"{busybox}: no such file (apt-get install busybox-static)")
    info = elf.parse(busybox)
    if not info.static:
        raise UserError(f"{busybox}: not statically linked (apt-get install busybox-static)")
    builder = RootfsBuilder()
    builder.add_file("bin/busybox", busybox, 0o755)
    _add_applets(builder, busybox, "/bin/busybox")
    builder.add_skeleton()
    return builder


def _add_applets(builder: RootfsBuilder, busybox: str, target: str) -> None:
    for applet in busybox_applets(busybox):
        real = builder.realize(applet)
        if real not in builder.entries:
            builder.add_symlink(applet, target)
