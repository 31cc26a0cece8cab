"""bpf(2) for cgroup v2 device filters: load, attach, list and detach cgroup device programs.

cgroup v2 decides which device nodes a container may open or create with an eBPF program of
type BPF_PROG_TYPE_CGROUP_DEVICE attached to its cgroup (the program itself is built by
:mod:`corral.cgroups.devices`). glibc has no wrapper for bpf(2), so this calls the syscall by
number with a ``union bpf_attr`` laid out by hand: only the few fields these commands read.

Programs are attached with BPF_F_ALLOW_MULTI, as runc and systemd do: a cgroup can then hold
several, and a device is allowed only if every program allows it. Replacing a filter attaches
the new program first and detaches the old ones after, so there is no moment without a filter.

ctypes is loaded on first use: importing this module costs nothing.
"""

from __future__ import annotations

import os

from corral.errors import KernelError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# linux/bpf.h
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2

_NR_BPF = {"x86_64": 321, "aarch64": 280}
_ATTR_SIZE = 128  # a prefix of union bpf_attr; the kernel reads the fields it knows
_LICENSE = b"Apache-2.0\0"
_NAME = b"corral_devices"

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
    import ctypes

    code = ctypes.create_string_buffer(instructions, len(instructions))
    license_ = ctypes.create_string_buffer(_LICENSE, len(_LICENSE))

    def load(log: Any) -> int:
        attr = _attr(
            (0, 4, BPF_PROG_TYPE_CGROUP_DEVICE),
            (4, 4, len(instructions) // 8),
            (8, 8, ctypes.addressof(code)),
            (16, 8, ctypes.addressof(license_)),
            (24, 4, 1 if log is not None else 0),
            (28, 4, len(log) if log is not None else 0),
            (32, 8, ctypes.addressof(log) if log is not None else 0),
        )
        attr[48 : 48 + len(_NAME)] = _NAME
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
    attr = _attr(
        (0, 4, cgroup_fd), (4, 4, prog_fd), (8, 4, BPF_CGROUP_DEVICE), (12, 4, BPF_F_ALLOW_MULTI)
    )
    _bpf(BPF_PROG_ATTACH, attr, "bpf(BPF_PROG_ATTACH)", path)


def device_program_ids(cgroup_fd: int, path: str | None = None) -> list[int]:
    """The ids of the device programs attached to the cgroup itself (not inherited ones)."""
    import ctypes

    capacity = 64
    ids = (ctypes.c_uint32 * capacity)()
    attr = _attr(
        (0, 4, cgroup_fd),
        (4, 4, BPF_CGROUP_DEVICE),
        (16, 8, ctypes.addressof(ids)),
        (24, 4, capacity),
    )
    _bpf(BPF_PROG_QUERY, attr, "bpf(BPF_PROG_QUERY)", path)
    count = int.from_bytes(attr[24:28], "little")
    return list(ids[: min(count, capacity)])


def detach_device_program(cgroup_fd: int, prog_id: int, path: str | None = None) -> None:
    """Detach the program with id ``prog_id``; one already gone is not an error."""
    try:
        prog_fd = _bpf(BPF_PROG_GET_FD_BY_ID, _attr((0, 4, prog_id)), "bpf(BPF_PROG_GET_FD_BY_ID)")
    except KernelError as err:
        if err.errno == 2:  # ENOENT
            return
        raise
    try:
        attr = _attr((0, 4, cgroup_fd), (4, 4, prog_fd), (8, 4, BPF_CGROUP_DEVICE))
        _bpf(BPF_PROG_DETACH, attr, "bpf(BPF_PROG_DETACH)", path)
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
