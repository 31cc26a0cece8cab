"""bpf(2): load, attach, list and detach programs, and the maps they share with user space.

Two users: cgroup v2 device filters (BPF_PROG_TYPE_CGROUP_DEVICE on a container's cgroup; the
program is built by :mod:`corral.cgroups.devices`), and the engine's socket shortcut for
published ports (:mod:`corral.engine.network.shortcut`: programs on the root cgroup and a
sockhash map). glibc has no wrapper for bpf(2), so this calls the syscall by number with a
``union bpf_attr`` laid out by hand: only the few fields these commands read.

Programs are attached with BPF_F_ALLOW_MULTI, as runc and systemd do: a cgroup can then hold
several, and (for device filters) a device is allowed only if every program allows it.
Replacing a filter attaches the new program first and detaches the old ones after, so there is
no moment without a filter.

:class:`Asm` writes eBPF instructions (with labels) for the programs built here.

ctypes is loaded on first use: importing this module costs nothing.
"""

from __future__ import annotations

import os

from corral.errors import KernelError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# linux/bpf.h: commands
BPF_MAP_CREATE = 0
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_MAP_GET_NEXT_KEY = 4
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_MAP_GET_FD_BY_ID = 14
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_PROG_QUERY = 16
BPF_BTF_LOAD = 18
# program types and attach types
BPF_PROG_TYPE_SOCK_OPS = 13
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_PROG_TYPE_SK_MSG = 16
BPF_PROG_TYPE_CGROUP_SOCK_ADDR = 18
BPF_CGROUP_SOCK_OPS = 3
BPF_CGROUP_DEVICE = 6
BPF_SK_MSG_VERDICT = 7
BPF_CGROUP_INET4_CONNECT = 10
BPF_CGROUP_INET4_GETPEERNAME = 29
# map types
BPF_MAP_TYPE_HASH = 1
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_SOCKHASH = 18
BPF_MAP_TYPE_SK_STORAGE = 24
# flags
BPF_F_ALLOW_MULTI = 2
BPF_ANY = 0
BPF_NOEXIST = 1
BPF_F_NO_PREALLOC = 1

_NR_BPF = {"x86_64": 321, "aarch64": 280}
_ATTR_SIZE = 128  # a prefix of union bpf_attr; the kernel reads the fields it knows
_LICENSE = b"Apache-2.0\0"
_NAME = b"corral_devices"
_OBJ_NAME_LEN = 16  # BPF_OBJ_NAME_LEN, the NUL included

_libc: Any = None


def _bpf(cmd: int, attr: bytearray, op: str, path: str | None = None) -> int:
    """Call bpf(cmd, attr, size); ``attr`` is updated in place with what the kernel returns."""
    import ctypes

    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    number = _NR_BPF.get(os.uname().machine)
    if number is None:
        raise KernelError(op, 38, f"bpf(2) on unsupported architecture {os.uname().machine}")
    buf = (ctypes.c_char * len(attr)).from_buffer(attr)
    fn = _libc.syscall
    fn.restype = ctypes.c_long
    ret = int(fn(ctypes.c_long(number), ctypes.c_int(cmd), buf, ctypes.c_uint(len(attr))))
    if ret < 0:
        err = ctypes.get_errno()
        raise KernelError(op, err, os.strerror(err), path)
    return ret


def _attr(*fields: tuple[int, int, int]) -> bytearray:
    """A zeroed bpf_attr with (offset, size, value) fields set, little-endian."""
    attr = bytearray(_ATTR_SIZE)
    for offset, size, value in fields:
        attr[offset : offset + size] = value.to_bytes(size, "little")
    return attr


def load_device_program(instructions: bytes) -> int:
    """BPF_PROG_LOAD a cgroup device program; returns its fd. A program the verifier rejects
    is loaded once more with the verifier's log on, and the log's tail is in the error."""
    return load_program(BPF_PROG_TYPE_CGROUP_DEVICE, instructions, _NAME.decode())


def load_program(
    prog_type: int, instructions: bytes, name: str, expected_attach_type: int = 0
) -> int:
    """BPF_PROG_LOAD; returns the program's fd. A program the verifier rejects is loaded once
    more with the verifier's log on, and the log's tail is in the error."""
    import ctypes

    code = ctypes.create_string_buffer(instructions, len(instructions))
    license_ = ctypes.create_string_buffer(_LICENSE, len(_LICENSE))
    encoded = name.encode()[: _OBJ_NAME_LEN - 1]

    def load(log: Any) -> int:
        attr = _attr(
            (0, 4, prog_type),
            (4, 4, len(instructions) // 8),
            (8, 8, ctypes.addressof(code)),
            (16, 8, ctypes.addressof(license_)),
            (24, 4, 1 if log is not None else 0),
            (28, 4, len(log) if log is not None else 0),
            (32, 8, ctypes.addressof(log) if log is not None else 0),
            (68, 4, expected_attach_type),
        )
        attr[48 : 48 + len(encoded)] = encoded
        return _bpf(BPF_PROG_LOAD, attr, "bpf(BPF_PROG_LOAD)")

    try:
        return load(None)
    except KernelError as err:
        if err.errno not in (1, 13, 22):  # EPERM, EACCES, EINVAL: the verifier may say why
            raise
    log = ctypes.create_string_buffer(1 << 16)
    try:
        return load(log)
    except KernelError as err:
        text = log.value.decode(errors="replace").strip().splitlines()[-3:]
        raise KernelError(err.op, err.errno, f"{err.strerror}: {' | '.join(text)}") from None


def attach_device_program(cgroup_fd: int, prog_fd: int, path: str | None = None) -> None:
    attach_program(cgroup_fd, prog_fd, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI, path)


def device_program_ids(cgroup_fd: int, path: str | None = None) -> list[int]:
    """The ids of the device programs attached to the cgroup itself (not inherited ones)."""
    return program_ids(cgroup_fd, BPF_CGROUP_DEVICE, path)


def detach_device_program(cgroup_fd: int, prog_id: int, path: str | None = None) -> None:
    """Detach the program with id ``prog_id``; one already gone is not an error."""
    prog_fd = program_fd(prog_id)
    if prog_fd is None:
        return
    try:
        detach_program(cgroup_fd, prog_fd, BPF_CGROUP_DEVICE, path)
    finally:
        os.close(prog_fd)


def replace_device_filter(cgroup_dir: str, instructions: bytes) -> None:
    """Make ``instructions`` the cgroup's only device filter: attach it, then detach the
    programs that were there before."""
    dir_fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        old = device_program_ids(dir_fd, cgroup_dir)
        prog_fd = load_device_program(instructions)
        try:
            attach_device_program(dir_fd, prog_fd, cgroup_dir)
        finally:
            os.close(prog_fd)
        for prog_id in old:
            detach_device_program(dir_fd, prog_id, cgroup_dir)
    finally:
        os.close(dir_fd)


# -- generic programs and maps ----------------------------------------------------------------


def attach_program(
    target_fd: int, prog_fd: int, attach_type: int, flags: int = 0, path: str | None = None
) -> None:
    """BPF_PROG_ATTACH ``prog_fd`` to a cgroup (or, for BPF_SK_MSG_VERDICT, a sockhash map);
    ``path`` names the target in an error."""
    attr = _attr((0, 4, target_fd), (4, 4, prog_fd), (8, 4, attach_type), (12, 4, flags))
    _bpf(BPF_PROG_ATTACH, attr, "bpf(BPF_PROG_ATTACH)", path)


def detach_program(
    target_fd: int, prog_fd: int, attach_type: int, path: str | None = None
) -> None:
    attr = _attr((0, 4, target_fd), (4, 4, prog_fd), (8, 4, attach_type))
    _bpf(BPF_PROG_DETACH, attr, "bpf(BPF_PROG_DETACH)", path)


def program_ids(target_fd: int, attach_type: int, path: str | None = None) -> list[int]:
    """The ids of the programs of ``attach_type`` attached to a cgroup itself."""
    import ctypes

    capacity = 64
    ids = (ctypes.c_uint32 * capacity)()
    attr = _attr(
        (0, 4, target_fd), (4, 4, attach_type), (16, 8, ctypes.addressof(ids)), (24, 4, capacity)
    )
    _bpf(BPF_PROG_QUERY, attr, "bpf(BPF_PROG_QUERY)", path)
    count = int.from_bytes(attr[24:28], "little")
    return list(ids[: min(count, capacity)])


def program_fd(prog_id: int) -> int | None:
    """An fd of the program with this id; None if it is gone."""
    try:
        return _bpf(BPF_PROG_GET_FD_BY_ID, _attr((0, 4, prog_id)), "bpf(BPF_PROG_GET_FD_BY_ID)")
    except KernelError as err:
        if err.errno == 2:  # ENOENT
            return None
        raise


def map_fd(map_id: int) -> int | None:
    """An fd of the map with this id; None if it is gone."""
    try:
        return _bpf(BPF_MAP_GET_FD_BY_ID, _attr((0, 4, map_id)), "bpf(BPF_MAP_GET_FD_BY_ID)")
    except KernelError as err:
        if err.errno == 2:
            return None
        raise


def _info(fd: int, size: int) -> bytes:
    import ctypes

    buf = ctypes.create_string_buffer(size)
    attr = _attr((0, 4, fd), (4, 4, size), (8, 8, ctypes.addressof(buf)))
    _bpf(BPF_OBJ_GET_INFO_BY_FD, attr, "bpf(BPF_OBJ_GET_INFO_BY_FD)")
    return buf.raw


def program_info(prog_fd: int) -> tuple[str, list[int]]:
    """A program's name and the ids of the maps it uses."""
    import ctypes

    capacity = 16
    map_ids = (ctypes.c_uint32 * capacity)()
    info = bytearray(232)  # struct bpf_prog_info
    info[52:56] = capacity.to_bytes(4, "little")  # nr_map_ids
    info[56:64] = ctypes.addressof(map_ids).to_bytes(8, "little")  # map_ids
    buf = ctypes.create_string_buffer(bytes(info), len(info))
    attr = _attr((0, 4, prog_fd), (4, 4, len(buf)), (8, 8, ctypes.addressof(buf)))
    _bpf(BPF_OBJ_GET_INFO_BY_FD, attr, "bpf(BPF_OBJ_GET_INFO_BY_FD)")
    count = int.from_bytes(buf.raw[52:56], "little")
    return _name(buf.raw[64:80]), list(map_ids[: min(count, capacity)])


def map_name(fd: int) -> str:
    return _name(_info(fd, 88)[24:40])  # struct bpf_map_info's name


def _name(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode(errors="replace")


def create_map(
    map_type: int, key_size: int, value_size: int, max_entries: int, name: str, flags: int = 0,
    btf_fd: int = 0, btf_key: int = 0, btf_value: int = 0,
) -> int:  # fmt: skip
    """BPF_MAP_CREATE; returns the map's fd. Some map types (socket storage) need the BTF
    type ids of their key and value: an fd from :func:`load_int_btf`, and its type ids (1 for
    a 4-byte int, 2 for an 8-byte long)."""
    attr = _attr(
        (0, 4, map_type), (4, 4, key_size), (8, 4, value_size), (12, 4, max_entries),
        (16, 4, flags), (48, 4, btf_fd), (52, 4, btf_key), (56, 4, btf_value),
    )  # fmt: skip
    encoded = name.encode()[: _OBJ_NAME_LEN - 1]
    attr[28 : 28 + len(encoded)] = encoded
    return _bpf(BPF_MAP_CREATE, attr, "bpf(BPF_MAP_CREATE)")


def int_btf() -> bytes:
    """The smallest BTF blob for socket storage: type 1 a 32-bit ``int`` (the key a socket
    storage map must have), type 2 a 64-bit ``long`` (for 8-byte values).

    Layout (linux/btf.h): a 24-byte header (magic 0xeB9F, version 1, flags, header length,
    then offset and length of the type section and of the string section), the type section
    (per type, struct btf_type: name offset, info = kind INT << 24, size; then the INT's
    encoding: signed, bit offset 0, bits), the string section ("\\0int\\0long\\0")."""
    int_kind, signed = 1 << 24, 1 << 24  # BTF_KIND_INT; BTF_INT_SIGNED
    words = (1, int_kind, 4, signed | 32, 5, int_kind, 8, signed | 64)
    types = b"".join(n.to_bytes(4, "little") for n in words)
    strings = b"\0int\0long\0"
    header = (
        (0xEB9F).to_bytes(2, "little") + bytes((1, 0)) + (24).to_bytes(4, "little")
        + (0).to_bytes(4, "little") + len(types).to_bytes(4, "little")
        + len(types).to_bytes(4, "little") + len(strings).to_bytes(4, "little")
    )  # fmt: skip
    return header + types + strings


def load_int_btf() -> int:
    """BPF_BTF_LOAD :func:`int_btf`; returns its fd."""
    import ctypes

    blob = int_btf()
    buf = ctypes.create_string_buffer(blob, len(blob))
    attr = _attr((0, 8, ctypes.addressof(buf)), (16, 4, len(blob)))
    return _bpf(BPF_BTF_LOAD, attr, "bpf(BPF_BTF_LOAD)")


def _elem(cmd: int, fd: int, key: bytes, value: Any, flags: int, op: str) -> None:
    import ctypes

    k = ctypes.create_string_buffer(key, len(key))
    attr = _attr(
        (0, 4, fd), (8, 8, ctypes.addressof(k)),
        (16, 8, ctypes.addressof(value) if value is not None else 0), (24, 8, flags),
    )  # fmt: skip
    _bpf(cmd, attr, op)


def map_update(fd: int, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
    import ctypes

    _elem(BPF_MAP_UPDATE_ELEM, fd, key, ctypes.create_string_buffer(value, len(value)), flags,
          "bpf(BPF_MAP_UPDATE_ELEM)")  # fmt: skip


def map_lookup(fd: int, key: bytes, value_size: int) -> bytes | None:
    import ctypes

    value = ctypes.create_string_buffer(value_size)
    try:
        _elem(BPF_MAP_LOOKUP_ELEM, fd, key, value, 0, "bpf(BPF_MAP_LOOKUP_ELEM)")
    except KernelError as err:
        if err.errno == 2:
            return None
        raise
    return value.raw


def map_delete(fd: int, key: bytes) -> bool:
    """Delete ``key``; False if it was not there."""
    try:
        _elem(BPF_MAP_DELETE_ELEM, fd, key, None, 0, "bpf(BPF_MAP_DELETE_ELEM)")
    except KernelError as err:
        if err.errno == 2:
            return False
        raise
    return True


def map_keys(fd: int, key_size: int) -> list[bytes]:
    """Every key of a map (a snapshot: entries may come and go meanwhile)."""
    import ctypes

    keys: list[bytes] = []
    current: Any = None
    following = ctypes.create_string_buffer(key_size)
    while True:
        attr = _attr(
            (0, 4, fd),
            (8, 8, ctypes.addressof(current) if current is not None else 0),
            (16, 8, ctypes.addressof(following)),
        )
        try:
            _bpf(BPF_MAP_GET_NEXT_KEY, attr, "bpf(BPF_MAP_GET_NEXT_KEY)")
        except KernelError as err:
            if err.errno == 2:  # ENOENT: the last key
                return keys
            raise
        keys.append(following.raw)
        current = ctypes.create_string_buffer(following.raw, key_size)


# -- an assembler -----------------------------------------------------------------------------

# Instruction classes, sizes, modes and operations (linux/bpf_common.h, linux/bpf.h).
_LD, _LDX, _ST, _STX, _ALU, _JMP, _ALU64 = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x07
_SIZES = {4: 0x00, 2: 0x08, 1: 0x10, 8: 0x18}
_MEM, _IMM = 0x60, 0x00
_K, _X = 0x00, 0x08
_ALU_OPS = {"+=": 0x00, "-=": 0x10, "|=": 0x40, "&=": 0x50, "<<=": 0x60, ">>=": 0x70, "=": 0xB0}
_JUMPS = {"==": 0x10, ">": 0x20, ">=": 0x30, "!=": 0x50}
_CALL, _EXIT, _END, _TO_BE = 0x80, 0x90, 0xD0, 0x08
PSEUDO_MAP_FD = 1


class Asm:
    """eBPF instructions, written one call per instruction, with named jump targets.

    Registers are numbers: r0 return value, r1-r5 helper arguments (clobbered by calls), r6-r9
    kept across calls, r10 the read-only frame pointer (the stack is below it)::

        a = Asm()
        a.load(2, 1, 0, 4)          # r2 = *(u32 *)(r1 + 0)
        a.jump("!=", 2, 2, "out")   # if r2 != 2 goto out
        a.label("out")
        a.mov(0, 1)                 # r0 = 1
        a.exit()
    """

    def __init__(self) -> None:
        self._code: list[tuple[int, int, int, int | str, int]] = []
        self._labels: dict[str, int] = {}

    def _emit(self, op: int, dst: int = 0, src: int = 0, off: int | str = 0, imm: int = 0) -> None:
        self._code.append((op, dst, src, off, imm))

    def load(self, dst: int, src: int, off: int, size: int) -> None:
        """dst = *(size *)(src + off)"""
        self._emit(_LDX | _MEM | _SIZES[size], dst, src, off)

    def store(self, dst: int, off: int, src: int, size: int) -> None:
        """*(size *)(dst + off) = src (a register)"""
        self._emit(_STX | _MEM | _SIZES[size], dst, src, off)

    def store_imm(self, dst: int, off: int, imm: int, size: int) -> None:
        """*(size *)(dst + off) = imm"""
        self._emit(_ST | _MEM | _SIZES[size], dst, 0, off, imm)

    def alu(self, dst: int, op: str, value: int, reg: bool = False) -> None:
        """dst op= value (a constant, or register ``value`` when ``reg``), 64 bits wide."""
        self._emit(_ALU64 | _ALU_OPS[op] | (_X if reg else _K), dst, value if reg else 0, 0,
                   0 if reg else value)  # fmt: skip

    def mov(self, dst: int, value: int, reg: bool = False) -> None:
        self.alu(dst, "=", value, reg)

    def swap16(self, dst: int) -> None:
        """dst = the low 16 bits of dst, byte-swapped on this little-endian machine (be16)."""
        self._emit(_ALU | _END | _TO_BE, dst, 0, 0, 16)

    def load_map(self, dst: int, fd: int) -> None:
        """dst = the map whose fd is ``fd`` (a two-slot instruction)."""
        self._emit(_LD | _IMM | 0x18, dst, PSEUDO_MAP_FD, 0, fd)
        self._emit(0, 0, 0, 0, 0)

    def load_imm64(self, dst: int, value: int) -> None:
        self._emit(_LD | _IMM | 0x18, dst, 0, 0, value & 0xFFFFFFFF)
        self._emit(0, 0, 0, 0, value >> 32)

    def jump(self, op: str, dst: int, value: int, target: str, reg: bool = False) -> None:
        """if dst op value goto target"""
        self._emit(_JMP | _JUMPS[op] | (_X if reg else _K), dst, value if reg else 0, target,
                   0 if reg else value)  # fmt: skip

    def goto(self, target: str) -> None:
        self._emit(_JMP, 0, 0, target)

    def call(self, helper: int) -> None:
        self._emit(_JMP | _CALL, 0, 0, 0, helper)

    def exit(self) -> None:
        self._emit(_JMP | _EXIT)

    def label(self, name: str) -> None:
        self._labels[name] = len(self._code)

    def assemble(self) -> bytes:
        out = bytearray()
        for pc, (op, dst, src, off, imm) in enumerate(self._code):
            if isinstance(off, str):
                off = self._labels[off] - pc - 1
            out += bytes((op, dst | src << 4))
            out += off.to_bytes(2, "little", signed=True)
            out += (imm if imm < 1 << 31 else imm - (1 << 32)).to_bytes(4, "little", signed=True)
        return bytes(out)
