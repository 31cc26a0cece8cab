"""Device rules for cgroup v2: the v1 rule semantics, compiled to an eBPF program.

cgroup v1 has a ``devices`` controller: ``devices.deny``/``devices.allow`` take rules such as
"c 1:3 rw" and the kernel keeps a default (allow or deny everything) plus a list of exceptions.
cgroup v2 dropped the files. Instead, a small eBPF program of type BPF_PROG_TYPE_CGROUP_DEVICE is
attached to the cgroup; the kernel runs it on every open(2) or mknod(2) of a device node and
the program returns 1 (allow) or 0 (deny). runc and crun compile the OCI rules into such a
program, and so does this module, in two pure steps that the unit tests check on their own:

1. :func:`emulate` replays the rules the way the v1 kernel applies writes to devices.allow and
   devices.deny (``security/device_cgroup.c``), so that one config means the same on v1 and v2;
2. :func:`compile_program` turns the result into instructions: one block per exception that
   returns the exception's verdict when the device matches, then the default verdict.

The bpf(2) calls that load and attach the program live in :mod:`corral.sys.bpf`.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    # (type "b"/"c", major or None for *, minor or None for *, access bits)
    DeviceException = tuple[str, int | None, int | None, int]

# linux/bpf.h: struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }, where
# access_type is (access << 16) | type.
DEV_BLOCK, DEV_CHAR = 1, 2
ACC_MKNOD, ACC_READ, ACC_WRITE = 1, 2, 4
_TYPES = {"b": DEV_BLOCK, "c": DEV_CHAR}
_ACCESS = {"m": ACC_MKNOD, "r": ACC_READ, "w": ACC_WRITE}
_ALL = ACC_MKNOD | ACC_READ | ACC_WRITE


def access_bits(access: str) -> int:
    bits = 0
    for letter in access:
        bits |= _ACCESS[letter]
    return bits


def emulate(
    rules: list[tuple[bool, str, str]], default_allow: bool = False
) -> tuple[bool, list[DeviceException]]:
    """(default_allow, exceptions) after applying ``rules`` in order, as the v1 kernel would.

    ``rules`` come from ``_base.device_rules``: (allow, "a"/"b"/"c", "MAJ:MIN access"). The
    start is deny-all, because that is what the v1 manager (like runc) writes before the rules.
    A type-"a" rule resets everything to allow-all or deny-all. Otherwise a rule that disagrees
    with the default adds an exception (widening one for the very same device), and one that
    agrees narrows the exception for the very same device (dropping it when no access is left).
    """
    exceptions: dict[tuple[str, int | None, int | None], int] = {}  # insertion-ordered
    for allow, kind, rest in rules:
        if kind == "a":
            default_allow, exceptions = allow, {}
            continue
        numbers, _, access = rest.partition(" ")
        major, _, minor = numbers.partition(":")
        key = (kind, None if major == "*" else int(major), None if minor == "*" else int(minor))
        bits = access_bits(access)
        if allow != default_allow:
            exceptions[key] = exceptions.get(key, 0) | bits
        elif key in exceptions:
            exceptions[key] &= ~bits
            if not exceptions[key]:
                del exceptions[key]
    return default_allow, [(*key, bits) for key, bits in exceptions.items()]


# -- eBPF assembly ----------------------------------------------------------------------------
# An instruction is 8 bytes: opcode, dst_reg | src_reg << 4, a signed 16-bit offset (jumps:
# instructions to skip) and a signed 32-bit immediate.
_LDX_W = 0x61  # dst = *(u32 *)(src + off)
_AND_K = 0x57  # dst &= imm (64-bit ALU)
_RSH_K = 0x77  # dst >>= imm
_MOV_K = 0xB7  # dst = imm
_MOV_X = 0xBF  # dst = src
_JEQ_K = 0x15  # if dst == imm: pc += off
_JNE_K = 0x55  # if dst != imm: pc += off
_JSET_K = 0x45  # if dst & imm: pc += off
_EXIT = 0x95  # return r0


def _insn(op: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return (
        bytes((op, dst | src << 4))
        + off.to_bytes(2, "little", signed=True)
        + imm.to_bytes(4, "little", signed=True)
    )


def compile_program(default_allow: bool, exceptions: list[DeviceException]) -> bytes:
    """The program's instructions for the result of :func:`emulate`.

    Registers after the prologue: r2 = device type, r3 = requested access, r4 = major,
    r5 = minor. In an allow-list (default deny) an exception matches when it grants *every*
    requested access; in a deny-list one matches when it covers *any* of it, which is the
    kernel's v1 rule (match_exception vs match_exception_partial).
    """
    code = [
        _insn(_LDX_W, 2, 1, 0),
        _insn(_AND_K, 2, imm=0xFFFF),
        _insn(_LDX_W, 3, 1, 0),
        _insn(_RSH_K, 3, imm=16),
        _insn(_LDX_W, 4, 1, 4),
        _insn(_LDX_W, 5, 1, 8),
    ]
    for kind, major, minor, bits in exceptions:
        # Each check jumps to the end of this block (the next block) when it fails; offsets
        # are patched once the block's length is known.
        checks: list[tuple[int, int, int, int]] = [(_JNE_K, 2, 0, _TYPES[kind])]
        if not default_allow and bits != _ALL:
            checks.append((_JSET_K, 3, 0, _ALL & ~bits))  # asks for more than granted
        elif default_allow and bits != _ALL:
            checks += [(_MOV_X, 1, 3, 0), (_AND_K, 1, 0, bits), (_JEQ_K, 1, 0, 0)]
        if major is not None:
            checks.append((_JNE_K, 4, 0, major))
        if minor is not None:
            checks.append((_JNE_K, 5, 0, minor))
        length = len(checks) + 2
        for i, (op, dst, src, imm) in enumerate(checks):
            jump = op in (_JNE_K, _JEQ_K, _JSET_K)
            code.append(_insn(op, dst, src, length - i - 1 if jump else 0, imm))
        code += [_insn(_MOV_K, 0, imm=0 if default_allow else 1), _insn(_EXIT)]
    code += [_insn(_MOV_K, 0, imm=1 if default_allow else 0), _insn(_EXIT)]
    return b"".join(code)


def run_program(program: bytes, kind: str, major: int, minor: int, access: str) -> bool:
    """Interpret ``program`` for one device access: what the kernel would decide.

    Only the instructions :func:`compile_program` emits are known. For tests and for
    ``--dry-run`` style explanations; the kernel runs the real thing.
    """
    regs = [0] * 11
    ctx = {0: (access_bits(access) << 16) | _TYPES[kind], 4: major, 8: minor}
    pc = 0
    while True:
        op, regs_byte = program[8 * pc], program[8 * pc + 1]
        dst, src = regs_byte & 0xF, regs_byte >> 4
        off = int.from_bytes(program[8 * pc + 2 : 8 * pc + 4], "little", signed=True)
        imm = int.from_bytes(program[8 * pc + 4 : 8 * pc + 8], "little", signed=True)
        pc += 1
        if op == _LDX_W:
            regs[dst] = ctx[off]
        elif op == _AND_K:
            regs[dst] &= imm
        elif op == _RSH_K:
            regs[dst] >>= imm
        elif op == _MOV_K:
            regs[dst] = imm
        elif op == _MOV_X:
            regs[dst] = regs[src]
        elif op in (_JEQ_K, _JNE_K, _JSET_K):
            value = regs[dst]
            taken = {_JEQ_K: value == imm, _JNE_K: value != imm, _JSET_K: bool(value & imm)}
            pc += off if taken[op] else 0
        elif op == _EXIT:
            return regs[0] == 1
        else:
            raise ValueError(f"unknown opcode {op:#x}")
