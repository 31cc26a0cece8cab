"""Layer unpacking: compression detection, whiteout translation, metadata, name checks.

These unpack into a tmp dir (as root, as CI runs: whiteouts are 0:0 device nodes). The hostile
layers and the mounted results are in tests/integration/test_engine_layers_hostile.py.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest

from corral.engine.images import testing as t
from corral.engine.images.layers import (
    OPAQUE_XATTR,
    LayerError,
    apply_layer,
    detect,
    split_name,
)


def unpack(tmp_path: Path, data: bytes) -> tuple[Path, str]:
    target = tmp_path / "fs"
    target.mkdir()
    applied = apply_layer(io.BytesIO(data), str(target), "test layer")
    return target, applied.diff_id


def test_detect_by_magic() -> None:
    plain = t.layer_tar([t.file("a", b"x")])
    assert detect(plain) == "tar"
    assert detect(t.layer_tar([t.file("a")], "gzip")) == "gzip"
    assert detect(t.layer_tar([t.file("a")], "zstd")) == "zstd"
    assert detect(b"\xfd7zXZ\x00rest") == "xz"


@pytest.mark.parametrize("compression", ["tar", "gzip", "zstd"])
def test_diff_id_is_digest_of_uncompressed_tar(tmp_path: Path, compression: str) -> None:
    import hashlib

    entries = [t.directory("etc"), t.file("etc/motd", b"hello\n")]
    plain = t.layer_tar(entries)
    target, diff_id = unpack(tmp_path, t.layer_tar(entries, compression))
    assert diff_id == "sha256:" + hashlib.sha256(plain).hexdigest()
    assert (target / "etc/motd").read_bytes() == b"hello\n"


def test_whiteout_becomes_overlay_whiteout(tmp_path: Path) -> None:
    target, _ = unpack(tmp_path, t.layer_tar([t.directory("etc"), t.whiteout("etc/passwd")]))
    st = os.lstat(target / "etc/passwd")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert (st.st_uid, st.st_gid) == (0, 0)
    assert not (target / "etc/.wh.passwd").exists()


def test_opaque_marker_becomes_xattr(tmp_path: Path) -> None:
    target, _ = unpack(
        tmp_path,
        t.layer_tar(
            [t.directory("usr/share"), t.opaque("usr/share"), t.file("usr/share/new", b"n")]
        ),
    )
    assert os.getxattr(target / "usr/share", OPAQUE_XATTR) == b"y"
    assert sorted(os.listdir(target / "usr/share")) == ["new"]


def test_metadata_is_kept(tmp_path: Path) -> None:
    target, _ = unpack(
        tmp_path,
        t.layer_tar(
            [
                t.directory("bin", mode=0o711, mtime=1_000_000),
                t.file("bin/su", b"#!", mode=0o4755, uid=0, gid=0),
                t.file(
                    "home/u/f",
                    b"data",
                    mode=0o640,
                    uid=1000,
                    gid=1001,
                    mtime=1_234_567,
                    xattrs={"user.note": "hi"},
                ),
                t.symlink("bin/sh", "busybox"),
                t.hardlink("bin/su2", "bin/su"),
                t.fifo("run/fifo"),
                t.device("dev/null", "c", 1, 3),
            ]
        ),
    )
    su = os.stat(target / "bin/su")
    assert stat.S_IMODE(su.st_mode) == 0o4755
    f = os.stat(target / "home/u/f")
    assert (stat.S_IMODE(f.st_mode), f.st_uid, f.st_gid, int(f.st_mtime)) == (
        0o640,
        1000,
        1001,
        1_234_567,
    )
    assert os.getxattr(target / "home/u/f", "user.note") == b"hi"
    assert os.readlink(target / "bin/sh") == "busybox"
    assert os.stat(target / "bin/su2").st_ino == su.st_ino
    assert stat.S_ISFIFO(os.lstat(target / "run/fifo").st_mode)
    dev = os.lstat(target / "dev/null")
    assert stat.S_ISCHR(dev.st_mode) and dev.st_rdev == os.makedev(1, 3)
    # Directories get their mtime after their contents were written.
    assert int(os.stat(target / "bin").st_mtime) == 1_000_000
    assert stat.S_IMODE(os.stat(target / "bin").st_mode) == 0o711


def test_later_entry_replaces_earlier(tmp_path: Path) -> None:
    target, _ = unpack(
        tmp_path,
        t.layer_tar(
            [
                t.file("a", b"one"),
                t.file("a", b"two"),
                t.directory("d"),
                t.file("d/x"),
                t.file("d", b"f"),
            ]
        ),
    )
    assert (target / "a").read_bytes() == b"two"
    assert (target / "d").read_bytes() == b"f"


def test_leading_slash_is_stripped(tmp_path: Path) -> None:
    target, _ = unpack(tmp_path, t.layer_tar([t.file("/etc/hostname", b"h")]))
    assert (target / "etc/hostname").read_bytes() == b"h"


def test_split_name() -> None:
    assert split_name("./a//b/./c", "x") == ["a", "b", "c"]
    assert split_name("/", "x") == []
    for bad in ("../x", "a/../../x", "a/.."):
        with pytest.raises(LayerError, match=r"'\.\.'"):
            split_name(bad, "x")


def test_not_a_tar(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match="test layer"):
        unpack(tmp_path, b"this is not a tar archive at all" * 40)
