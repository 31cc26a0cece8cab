"""Just enough ELF to copy a dynamically linked program into an image.

A dynamically linked program names what it needs in two places of its ELF file:

``PT_INTERP``   a program header holding the path of the dynamic loader
                (``/lib64/ld-linux-x86-64.so.2``); the kernel maps it and jumps to it.
``DT_NEEDED``   entries of the ``PT_DYNAMIC`` segment: sonames (``libc.so.6``), offsets into the
                dynamic string table (``DT_STRTAB``, a *virtual address* that ``PT_LOAD``
                segments map back to a file offset). ``DT_RUNPATH``/``DT_RPATH`` add search dirs
                (``$ORIGIN`` = the object's own directory).

The loader looks a soname up, for each object, in: DT_RPATH (only if there is no DT_RUNPATH;
also the RPATHs of the objects that loaded it), DT_RUNPATH, ``/etc/ld.so.cache``, then the
default dirs. ``resolve_libraries`` does the same, recursively, skipping candidates of another
ELF class or machine (a 32-bit ``libc.so.6`` in ``/usr/lib32``).

Standard library only (``struct``); nothing is executed, so it works for any file.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

from corral.errors import UserError

PT_LOAD = 1
PT_DYNAMIC = 2
PT_INTERP = 3
DT_NULL = 0
DT_NEEDED = 1
DT_STRTAB = 5
DT_STRSZ = 10
DT_SONAME = 14
DT_RPATH = 15
DT_RUNPATH = 29

DEFAULT_DIRS = (
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
)
LD_SO_CACHE = "/etc/ld.so.cache"

# ld.so.cache flags (glibc's ldconfig.h): the low byte is the type, the next one the arch.
_FLAG_TYPE_MASK = 0x00FF
_FLAG_ELF_LIBC6 = 0x0003
_FLAG_ARCH_MASK = 0xFF00
_CACHE_ARCH = {62: 0x0300, 183: 0x0A00, 243: 0x0F00, 21: 0x0500, 22: 0x0400}  # x86-64, aarch64...


class ElfError(UserError):
    """A file is not ELF, or its headers are inconsistent."""


@dataclass
class ElfInfo:
    """What ``parse`` reads from one ELF file."""

    path: str
    elf_class: int  # 1 = 32-bit, 2 = 64-bit
    little_endian: bool
    machine: int
    type: int
    interpreter: str | None = None
    needed: list[str] = field(default_factory=list)
    rpath: list[str] = field(default_factory=list)
    runpath: list[str] = field(default_factory=list)
    soname: str | None = None

    @property
    def static(self) -> bool:
        """No interpreter and no DT_NEEDED: runs on its own (busybox-static, Go binaries)."""
        return self.interpreter is None and not self.needed


def is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def parse(path: str) -> ElfInfo:
    """Read the ELF header, program headers and dynamic section of ``path``."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise ElfError(f"{path}: {err.strerror or err}")
    return parse_bytes(data, path)


def parse_bytes(data: bytes, path: str = "<bytes>") -> ElfInfo:
    if len(data) < 52 or data[:4] != b"\x7fELF":
        raise ElfError(f"{path}: not an ELF file")
    elf_class, encoding = data[4], data[5]
    if elf_class not in (1, 2) or encoding not in (1, 2):
        raise ElfError(f"{path}: unknown ELF class {elf_class} or data encoding {encoding}")
    end = "<" if encoding == 1 else ">"
    try:
        if elf_class == 2:
            e_type, e_machine = struct.unpack_from(end + "HH", data, 16)
            (e_phoff,) = struct.unpack_from(end + "Q", data, 32)
            e_phentsize, e_phnum = struct.unpack_from(end + "HH", data, 54)
            ph_fmt, dyn_fmt = end + "IIQQQQQQ", end + "qQ"
        else:
            e_type, e_machine = struct.unpack_from(end + "HH", data, 16)
            (e_phoff,) = struct.unpack_from(end + "I", data, 28)
            e_phentsize, e_phnum = struct.unpack_from(end + "HH", data, 42)
            ph_fmt, dyn_fmt = end + "IIIIIIII", end + "iI"
        info = ElfInfo(path, elf_class, encoding == 1, e_machine, e_type)
        loads: list[tuple[int, int, int]] = []  # (vaddr, filesz, offset)
        dynamic: tuple[int, int] | None = None
        for i in range(e_phnum):
            fields = struct.unpack_from(ph_fmt, data, e_phoff + i * e_phentsize)
            if elf_class == 2:
                p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = fields[:6]
            else:
                p_type, p_offset, p_vaddr, _paddr, p_filesz = fields[:5]
            if p_type == PT_INTERP:
                raw = data[p_offset : p_offset + p_filesz]
                info.interpreter = raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            elif p_type == PT_LOAD:
                loads.append((p_vaddr, p_filesz, p_offset))
            elif p_type == PT_DYNAMIC:
                dynamic = (p_offset, p_filesz)
        if dynamic is not None:
            _read_dynamic(data, info, dynamic, dyn_fmt, loads)
    except struct.error:
        raise ElfError(f"{path}: truncated ELF headers")
    return info


def _read_dynamic(
    data: bytes,
    info: ElfInfo,
    dynamic: tuple[int, int],
    fmt: str,
    loads: list[tuple[int, int, int]],
) -> None:
    offset, size = dynamic
    step = struct.calcsize(fmt)
    entries: list[tuple[int, int]] = []
    for pos in range(offset, offset + size - step + 1, step):
        tag, value = struct.unpack_from(fmt, data, pos)
        if tag == DT_NULL:
            break
        entries.append((tag, value))
    strtab = next((v for t, v in entries if t == DT_STRTAB), None)
    if strtab is None:
        return
    base = _vaddr_to_offset(strtab, loads)
    if base is None:
        raise ElfError(f"{info.path}: DT_STRTAB 0x{strtab:x} is not in a loaded segment")

    def string(at: int) -> str:
        start = base + at
        stop = data.index(b"\0", start)
        return data[start:stop].decode("utf-8", "surrogateescape")

    for tag, value in entries:
        if tag == DT_NEEDED:
            info.needed.append(string(value))
        elif tag == DT_RPATH:
            info.rpath += [p for p in string(value).split(":") if p]
        elif tag == DT_RUNPATH:
            info.runpath += [p for p in string(value).split(":") if p]
        elif tag == DT_SONAME:
            info.soname = string(value)


def _vaddr_to_offset(vaddr: int, loads: list[tuple[int, int, int]]) -> int | None:
    for start, size, offset in loads:
        if start <= vaddr < start + size:
            return vaddr - start + offset
    return None


# -- ld.so.cache -----------------------------------------------------------------------------------

_NEW_MAGIC = b"glibc-ld.so.cache1.1"
_OLD_MAGIC = b"ld.so-1.7.0"


def read_ld_cache(path: str = LD_SO_CACHE) -> list[tuple[str, str, int]]:
    """Entries of glibc's ``ld.so.cache`` as (soname, path, flags); [] if absent or unknown.

    Format (glibc ``dl-cache.h``): optionally the old "ld.so-1.7.0" table, then the new one:
    a 48-byte header (magic+version, nlibs, len_strings, flags, extension offset...) and
    ``nlibs`` 24-byte entries (flags, key, value, osversion, hwcap), whose key and value are
    string offsets from the start of the new header.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return []
    start = 0
    if data.startswith(_OLD_MAGIC):
        (nlibs,) = struct.unpack_from("<I", data, 12)
        start = 16 + nlibs * 12
        start = (start + 7) & ~7  # the new table is aligned
        found = data.find(_NEW_MAGIC, 16)
        if found < 0:
            return []
        start = found
    if not data.startswith(_NEW_MAGIC, start):
        return []
    (nlibs,) = struct.unpack_from("<I", data, start + 20)
    out = []
    for i in range(nlibs):
        flags, key, value = struct.unpack_from("<iII", data, start + 48 + i * 24)
        out.append((_cstr(data, start + key), _cstr(data, start + value), flags))
    return out


def _cstr(data: bytes, at: int) -> str:
    return data[at : data.index(b"\0", at)].decode("utf-8", "surrogateescape")


# -- resolution --------------------------------------------------------------------------------


class Resolver:
    """Find shared libraries as the dynamic loader would, for programs of one ELF kind."""

    def __init__(
        self,
        cache: list[tuple[str, str, int]] | None = None,
        default_dirs: tuple[str, ...] = DEFAULT_DIRS,
    ) -> None:
        self.cache = read_ld_cache() if cache is None else cache
        self.default_dirs = default_dirs
        self._kind: dict[str, tuple[int, int] | None] = {}

    def _matches(self, path: str, want: ElfInfo) -> bool:
        if path not in self._kind:
            try:
                info = parse(path)
                self._kind[path] = (info.elf_class, info.machine)
            except ElfError:
                self._kind[path] = None
        return self._kind[path] == (want.elf_class, want.machine)

    def find(self, soname: str, obj: ElfInfo, loader_rpaths: list[str] | None = None) -> str | None:
        """The path ``soname`` resolves to when ``obj`` needs it, or None."""
        if "/" in soname:
            return soname if os.path.exists(soname) else None
        origin = os.path.dirname(os.path.abspath(obj.path))
        dirs: list[str] = []
        if not obj.runpath:
            dirs += [*obj.rpath, *(loader_rpaths or [])]
        dirs += obj.runpath
        for d in dirs:
            d = d.replace("$ORIGIN", origin).replace("${ORIGIN}", origin)
            candidate = os.path.join(d, soname)
            if os.path.exists(candidate) and self._matches(candidate, obj):
                return candidate
        arch = _CACHE_ARCH.get(obj.machine, 0) if obj.elf_class == 2 else 0
        for name, path, flags in self.cache:
            if name != soname or (flags & _FLAG_TYPE_MASK) != _FLAG_ELF_LIBC6:
                continue
            if (flags & _FLAG_ARCH_MASK) != arch:
                continue
            if os.path.exists(path) and self._matches(path, obj):
                return path
        for d in self.default_dirs:
            candidate = os.path.join(d, soname)
            if os.path.exists(candidate) and self._matches(candidate, obj):
                return candidate
        return None


def resolve_libraries(program: str, resolver: Resolver | None = None) -> list[str]:
    """Every file ``program`` needs to run: its interpreter and its libraries, recursively.

    Paths are as the loader opens them (they may be symlinks; the caller copies the links and
    what they point to). A soname that cannot be found is an error naming it.
    """
    resolver = resolver or Resolver()
    top = parse(program)
    out: list[str] = []
    if top.interpreter:
        if not os.path.exists(top.interpreter):
            raise ElfError(f"{program}: interpreter {top.interpreter} not found")
        out.append(top.interpreter)
    seen: set[str] = set()
    queue: list[tuple[ElfInfo, list[str]]] = [(top, top.rpath if not top.runpath else [])]
    while queue:
        obj, inherited = queue.pop(0)
        for soname in obj.needed:
            path = resolver.find(soname, obj, inherited)
            if path is None:
                raise ElfError(f"{obj.path}: needs {soname}, which was not found")
            real = os.path.realpath(path)
            if real in seen:
                continue
            seen.add(real)
            if path not in out:
                out.append(path)
            child = parse(path)
            queue.append((child, [*inherited, *(child.rpath if not child.runpath else [])]))
    return out
