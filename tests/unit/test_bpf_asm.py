"""corral.sys.bpf's assembler and BTF blob, and the shortcut's map keys: pure byte layouts."""

from __future__ import annotations

import struct

from corral.engine.network import shortcut
from corral.sys.bpf import Asm, int_btf


def _insns(code: bytes) -> list[tuple[int, int, int, int, int]]:
    """(op, dst, src, off, imm) of each 8-byte slot."""
    out = []
    for i in range(0, len(code), 8):
        op, regs, off, imm = struct.unpack("<BBhi", code[i : i + 8])
        out.append((op, regs & 0xF, regs >> 4, off, imm))
    return out


def test_instructions_encode_as_the_kernel_reads_them() -> None:
    a = Asm()
    a.mov(6, 1, reg=True)  # BPF_ALU64 | BPF_MOV | BPF_X
    a.load(2, 6, 24, 4)  # BPF_LDX | BPF_MEM | BPF_W
    a.store(10, -8, 2, 8)  # BPF_STX | BPF_MEM | BPF_DW
    a.store_imm(7, 0, 1, 4)  # BPF_ST | BPF_MEM | BPF_W
    a.alu(2, ">>=", 16)  # BPF_ALU64 | BPF_RSH | BPF_K
    a.swap16(2)  # BPF_ALU | BPF_END | BPF_TO_BE, 16
    a.call(71)
    a.mov(0, 1)
    a.exit()
    assert _insns(a.assemble()) == [
        (0xBF, 6, 1, 0, 0),
        (0x61, 2, 6, 24, 0),
        (0x7B, 10, 2, -8, 0),
        (0x62, 7, 0, 0, 1),
        (0x77, 2, 0, 0, 16),
        (0xDC, 2, 0, 0, 16),
        (0x85, 0, 0, 0, 71),
        (0xB7, 0, 0, 0, 1),
        (0x95, 0, 0, 0, 0),
    ]


def test_jumps_land_on_their_labels_and_wide_loads_take_two_slots() -> None:
    a = Asm()
    a.jump("==", 0, 0, "out")  # over the two-slot map load and the goto
    a.load_map(1, 7)
    a.goto("out")
    a.jump("!=", 2, 3, "out", reg=True)
    a.label("out")
    a.load_imm64(2, 0x1_0000_0002)
    a.exit()
    code = _insns(a.assemble())
    assert code[0] == (0x15, 0, 0, 4, 0)  # pc 0 -> 5: off = 5 - 0 - 1
    assert code[1] == (0x18, 1, 1, 0, 7)  # BPF_PSEUDO_MAP_FD in src, the fd in imm
    assert code[2] == (0, 0, 0, 0, 0)
    assert code[3] == (0x05, 0, 0, 1, 0)
    assert code[4] == (0x5D, 2, 3, 0, 0)
    assert code[5] == (0x18, 2, 0, 0, 2) and code[6] == (0, 0, 0, 0, 1)


def test_the_int_btf_blob_has_an_int_and_a_long() -> None:
    blob = int_btf()
    magic, version, flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack(
        "<HBBIIIII", blob[:24]
    )
    assert (magic, version, flags, hdr_len) == (0xEB9F, 1, 0, 24)
    types = blob[24 + type_off : 24 + type_off + type_len]
    strings = blob[24 + str_off : 24 + str_off + str_len]
    assert len(types) == 32 and len(blob) == 24 + type_len + str_len
    for i, (name, size) in enumerate(((b"int", 4), (b"long", 8))):
        name_off, info, got_size, encoding = struct.unpack("<IIII", types[16 * i : 16 * i + 16])
        assert strings[name_off:].split(b"\0")[0] == name
        assert info >> 24 == 1 and got_size == size  # BTF_KIND_INT
        assert encoding == (1 << 24) | (8 * size)  # BTF_INT_SIGNED, offset 0, all its bits


def test_port_keys_are_laid_out_as_connect4_reads_its_context() -> None:
    # user_ip4 and user_port are in network byte order; the port is the low 16 bits of a u32
    assert shortcut.port_key("127.0.0.1", 8080) == bytes([127, 0, 0, 1, 0x1F, 0x90, 0, 0])
    assert shortcut.port_value("10.86.0.2", 80) == bytes([10, 86, 0, 2, 0, 80, 0, 0])


def test_which_host_addresses_are_translated() -> None:
    assert shortcut.translated_addresses("") == ["127.0.0.1"]
    assert shortcut.translated_addresses("0.0.0.0") == ["127.0.0.1"]
    assert shortcut.translated_addresses("127.0.0.1") == ["127.0.0.1"]
    assert shortcut.translated_addresses("192.0.2.7") == ["192.0.2.7"]


def test_the_programs_assemble_and_end_in_exit() -> None:
    for code in (
        shortcut.connect_program(3, 4, 8),
        shortcut.peername_program(3, 8),
        shortcut.sockops_program(3, 5, 6),
        shortcut.skmsg_program(5, 6, 7),
    ):
        assert len(code) % 8 == 0
        assert _insns(code)[-1][0] == 0x95
