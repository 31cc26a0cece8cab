"""Images become container root filesystems: real overlay mounts in a tmp storage root."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from corral.engine.engine import Engine
from corral.engine.images import testing as t
from corral.engine.images.store import ImageStore
from corral.engine.snapshots import Mount, mount, unmount


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ImageStore]:
    s = Engine(tmp_path / "root").images
    yield s
    s.close()


@pytest.fixture
def busybox_tarball(bundle_template, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    """A rootfs tarball made here, from the session's busybox bundle."""
    path = tmp_path / "busybox.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(bundle_template.path / "rootfs", arcname=".")
    return path


@contextmanager
def mounted(store: ImageStore, key: str, parent: str | None, where: Path) -> Iterator[Path]:
    with store.locked():
        mounts = store.snapshots.prepare(key, parent)
    where.mkdir()
    mount(mounts, where)
    try:
        yield where
    finally:
        unmount(where)
        with store.locked():
            store.snapshots.remove(key)


def test_import_then_run_from_overlay(
    store: ImageStore, busybox_tarball: Path, tmp_path: Path
) -> None:
    image = store.import_rootfs(busybox_tarball, "bb")
    chain = image.layers[-1].chain_id
    with store.locked():
        mounts = store.snapshots.prepare("c1", chain)
    # Mounts are data: nothing is mounted yet.
    assert mounts == [Mount("overlay", "overlay", mounts[0].options)]
    layer_dir = store.snapshots.layer(chain).path
    assert mounts[0].options[0] == f"lowerdir={layer_dir}"
    assert mounts[0].options[1].startswith("upperdir=") and mounts[0].options[2].startswith(
        "workdir="
    )
    target = tmp_path / "mnt"
    target.mkdir()
    mount(mounts, target)
    try:
        assert (target / "bin/busybox").is_file()
        done = subprocess.run(
            ["chroot", str(target), "/bin/sh", "-c", "echo hi > /tmp/f; cat /tmp/f"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert (done.returncode, done.stdout) == (0, "hi\n"), done.stderr
    finally:
        unmount(target)
    assert (store.snapshots.upper("c1") / "tmp/f").read_text() == "hi\n"
    assert not (layer_dir / "tmp/f").exists()  # the layer is untouched
    with store.locked():
        store.snapshots.remove("c1")


def test_two_containers_share_one_lower(
    store: ImageStore, busybox_tarball: Path, tmp_path: Path
) -> None:
    chain = store.import_rootfs(busybox_tarball, "bb").layers[-1].chain_id
    lower = store.snapshots.layer(chain).path
    with (
        mounted(store, "a", chain, tmp_path / "a") as a,
        mounted(store, "b", chain, tmp_path / "b") as b,
    ):
        ino = os.stat(lower / "bin/busybox").st_ino
        assert os.stat(a / "bin/busybox").st_ino == ino == os.stat(b / "bin/busybox").st_ino
        (a / "only-a").write_text("a")
        assert not (b / "only-a").exists()
        assert store.snapshots.upper("a") != store.snapshots.upper("b")
        assert (store.snapshots.upper("a") / "only-a").exists()
        assert store.disk_usage().rows[0].total == 1
    assert store.db.execute("SELECT COUNT(*) FROM layers").fetchone()[0] == 1


def test_whiteouts_and_opaque_dirs_hide_lower_files(store: ImageStore, tmp_path: Path) -> None:
    base = t.layer_tar(
        [
            t.directory("etc"),
            t.file("etc/passwd", b"root"),
            t.file("etc/motd", b"hi"),
            t.directory("usr/share/doc"),
            t.file("usr/share/doc/a"),
            t.file("usr/share/doc/b"),
        ],
        "gzip",
    )
    top = t.layer_tar(
        [
            t.whiteout("etc/passwd"),
            t.opaque("usr/share/doc"),
            t.file("usr/share/doc/new", b"n"),
        ],
        "zstd",
    )
    with store.locked():
        l0, _ = store.snapshots.unpack(io.BytesIO(base), None)
        l1, _ = store.snapshots.unpack(io.BytesIO(top), l0.chain_id)
    assert [x.chain_id for x in store.snapshots.stack(l1.chain_id)] == [l1.chain_id, l0.chain_id]
    with mounted(store, "w", l1.chain_id, tmp_path / "m") as m:
        assert sorted(os.listdir(m / "etc")) == ["motd"]
        assert not (m / "etc/passwd").exists()
        assert sorted(os.listdir(m / "usr/share/doc")) == ["new"]
        # Deleting a lower file in the container makes a whiteout in its upper dir, not the layer.
        os.unlink(m / "etc/motd")
        assert (l0.path / "etc/motd").exists()


def test_prepare_without_parent_is_a_bind_mount(store: ImageStore, tmp_path: Path) -> None:
    with store.locked():
        mounts = store.snapshots.prepare("empty", None)
    assert mounts[0].type == "bind"
    with store.locked():
        store.snapshots.remove("empty")
