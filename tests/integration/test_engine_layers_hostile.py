"""Hostile layers: each is refused with a clear error, writes nothing outside the store and
leaves no partial image, snapshot, blob or temp file behind.

Each case is imported as a root filesystem tarball into a fresh storage root under tmp_path.
A canary directory beside the store (and one in /tmp, for absolute names) must stay untouched.
"""

from __future__ import annotations

import gzip
import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.engine.engine import Engine
from corral.engine.images import testing as t
from corral.engine.images.content import DigestMismatch
from corral.engine.images.store import ImageStore
from corral.errors import CorralError


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ImageStore]:
    s = Engine(tmp_path / "store" / "root").images
    yield s
    s.close()


@pytest.fixture
def canary(tmp_path: Path) -> Iterator[Path]:
    """A directory outside the store, with a file a hostile layer would like to overwrite."""
    path = tmp_path / "canary"
    path.mkdir()
    (path / "passwd").write_text("original\n")
    yield path


def listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def assert_nothing_left(store: ImageStore, canary: Path) -> None:
    assert store.images() == []
    assert store.db.execute("SELECT COUNT(*) FROM layers").fetchone()[0] == 0
    assert store.db.execute("SELECT COUNT(*) FROM snapshots").fetchone()[0] == 0
    assert os.listdir(store.layout.snapshots) == []
    assert os.listdir(store.layout.tmp) == []
    assert store.content.digests() == []
    assert listing(canary) == ["passwd"]
    assert (canary / "passwd").read_text() == "original\n"


def refuse(store: ImageStore, tmp_path: Path, data: bytes, *fragments: str) -> str:
    path = tmp_path / "evil.tar"
    path.write_bytes(data)
    with pytest.raises(CorralError) as info:
        store.import_rootfs(path, "evil")
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def escape_from_extract_dir(canary: Path) -> str:
    # The layer is unpacked in <root>/snapshots/.extract-*/fs: enough ".." to reach the canary.
    return "../" * 8 + str(canary).lstrip("/") + "/passwd"


def test_dotdot_names(store: ImageStore, tmp_path: Path, canary: Path) -> None:
    refuse(
        store,
        tmp_path,
        t.layer_tar([t.file(escape_from_extract_dir(canary), b"pwned")]),
        "'..'",
        "evil.tar",
    )
    assert_nothing_left(store, canary)
    refuse(store, tmp_path, t.layer_tar([t.file("a/../../x", b"pwned")]), "'..'")
    assert_nothing_left(store, canary)


def test_absolute_names_stay_inside(store: ImageStore, tmp_path: Path, canary: Path) -> None:
    outside = Path("/tmp") / f"corral-canary-{uuid.uuid4().hex}"
    try:
        path = tmp_path / "abs.tar"
        path.write_bytes(
            t.layer_tar([t.file(str(canary / "passwd"), b"x"), t.file(str(outside), b"x")])
        )
        image = store.import_rootfs(path, "abs")  # docker's rule: a leading "/" is dropped
        layer = store.snapshots.layer(image.layers[0].chain_id).path
        assert (layer / str(canary).lstrip("/") / "passwd").read_bytes() == b"x"
        assert not outside.exists()
        assert (canary / "passwd").read_text() == "original\n"
        # ... but an absolute name that climbs out is refused.
        store.remove("abs")
        refuse(
            store, tmp_path, t.layer_tar([t.file("/" + escape_from_extract_dir(canary))]), "'..'"
        )
    finally:
        if outside.exists():
            outside.unlink()
    assert_nothing_left(store, canary)


def test_file_through_symlink(store: ImageStore, tmp_path: Path, canary: Path) -> None:
    refuse(
        store,
        tmp_path,
        t.layer_tar([t.symlink("a", str(canary)), t.file("a/passwd", b"pwned")]),
        "a is a symlink",
        "a/passwd",
    )
    assert_nothing_left(store, canary)
    # Relative symlink climbing out, then a directory entry and a file below it.
    up = "../" * 8 + str(canary).lstrip("/")
    refuse(
        store,
        tmp_path,
        t.layer_tar([t.symlink("b", up), t.directory("b/sub"), t.file("b/sub/f")]),
        "b is a symlink",
    )
    assert_nothing_left(store, canary)
    # A whiteout through a symlink must not mknod outside either.
    refuse(
        store,
        tmp_path,
        t.layer_tar([t.symlink("c", str(canary)), t.whiteout("c/passwd")]),
        "c is a symlink",
    )
    assert_nothing_left(store, canary)


def test_hardlink_outside(store: ImageStore, tmp_path: Path, canary: Path) -> None:
    before = os.stat("/etc/shadow").st_nlink
    refuse(
        store,
        tmp_path,
        t.layer_tar([t.hardlink("shadow", "/etc/shadow")]),
        "etc/shadow",
        "not in this layer",
    )
    refuse(store, tmp_path, t.layer_tar([t.hardlink("x", "../../etc/shadow")]), "'..'")
    refuse(
        store,
        tmp_path,
        t.layer_tar([t.symlink("l", str(canary)), t.hardlink("x", "l/passwd")]),
        "l is a symlink",
    )
    assert os.stat("/etc/shadow").st_nlink == before
    assert os.stat(canary / "passwd").st_nlink == 1
    assert_nothing_left(store, canary)


def test_truncated_gzip(store: ImageStore, tmp_path: Path, canary: Path) -> None:
    data = t.layer_tar([t.file("big", os.urandom(200_000))], "gzip")
    refuse(store, tmp_path, data[: len(data) // 2], "truncated gzip", "evil.tar")
    assert_nothing_left(store, canary)


def test_truncated_zstd(store: ImageStore, tmp_path: Path, canary: Path) -> None:
    data = t.layer_tar([t.file("big", os.urandom(200_000))], "zstd")
    refuse(store, tmp_path, data[: len(data) // 2], "truncated zstd")
    assert_nothing_left(store, canary)


def test_corrupt_gzip(store: ImageStore, tmp_path: Path, canary: Path) -> None:
    data = bytearray(gzip.compress(t.layer_tar([t.file("f", os.urandom(10_000))])))
    data[100:110] = b"\0" * 10
    refuse(store, tmp_path, bytes(data), "evil.tar")
    assert_nothing_left(store, canary)


def test_declared_size_bigger_than_data(store: ImageStore, tmp_path: Path, canary: Path) -> None:
    data = t.layer_tar([t.file("ok", b"fine"), t.file("liar", b"short", size=1_000_000)])
    refuse(store, tmp_path, data, "liar", "declared 1000000 bytes")
    assert_nothing_left(store, canary)


def test_not_a_tarball(store: ImageStore, tmp_path: Path, canary: Path) -> None:
    refuse(store, tmp_path, b"<html>not found</html>\n" * 100, "evil.tar")
    assert_nothing_left(store, canary)


def test_blob_digest_mismatch(store: ImageStore, canary: Path) -> None:
    honest = t.layer_tar([t.file("f", b"x")])
    claimed = "sha256:" + "0" * 64
    with pytest.raises(DigestMismatch, match="digest mismatch"), store.locked():
        store.content.write_bytes(honest, expected=claimed, what="layer sha256:0000")
    assert not store.content.exists(claimed)
    assert_nothing_left(store, canary)


def test_layer_diff_id_mismatch(store: ImageStore, canary: Path) -> None:
    data = t.layer_tar([t.file("f", b"x")], "gzip")
    with pytest.raises(CorralError, match="diff_id mismatch"), store.locked():
        store.snapshots.unpack(io.BytesIO(data), None, expected_diff_id="sha256:" + "1" * 64)
    assert_nothing_left(store, canary)


def test_devices_need_root(
    store: ImageStore, tmp_path: Path, canary: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    refuse(store, tmp_path, t.layer_tar([t.device("dev/sda", "b", 8, 0)]), "device nodes need root")
    assert_nothing_left(store, canary)
