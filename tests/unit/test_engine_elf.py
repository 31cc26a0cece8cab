"""ELF parsing and library resolution, on the host's own binaries."""

from __future__ import annotations

import os
import subprocess

import pytest

from corral.engine.images import elf


def test_parse_dynamic_ls() -> None:
    info = elf.parse("/bin/ls")
    assert info.elf_class == 2 and info.little_endian and info.machine == 62
    assert info.interpreter == "/lib64/ld-linux-x86-64.so.2"
    assert "libc.so.6" in info.needed
    assert not info.static


def test_parse_static_busybox() -> None:
    info = elf.parse("/bin/busybox")
    assert info.interpreter is None and info.needed == []
    assert info.static


def test_resolution_matches_ldd() -> None:
    ours = {os.path.realpath(p) for p in elf.resolve_libraries("/bin/ls")}
    out = subprocess.run(["ldd", "/bin/ls"], capture_output=True, text=True, check=True).stdout
    theirs = set()
    for line in out.splitlines():
        parts = line.split()
        path = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
        if path.startswith("/"):
            theirs.add(os.path.realpath(path))
    assert theirs <= ours, theirs - ours


def test_ld_so_cache_is_read() -> None:
    entries = elf.read_ld_cache()
    names = {name for name, _path, _flags in entries}
    assert "libc.so.6" in names


def test_not_elf(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "script"
    path.write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(elf.ElfError, match="not an ELF file"):
        elf.parse(str(path))
    assert not elf.is_elf(str(path))


def test_truncated_elf(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "cut"
    with open("/bin/ls", "rb") as f:
        path.write_bytes(f.read(64))
    with pytest.raises(elf.ElfError, match="truncated"):
        elf.parse(str(path))


def test_missing_library_is_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    resolver = elf.Resolver(cache=[], default_dirs=(str(tmp_path),))
    with pytest.raises(elf.ElfError, match=r"libselinux\.so\.1"):
        elf.resolve_libraries("/bin/ls", resolver)
