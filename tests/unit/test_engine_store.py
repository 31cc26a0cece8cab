"""The image store's bookkeeping: tags, rmi rules, prune, and ``system df`` accounting."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.engine.engine import Engine
from corral.engine.images import testing as t
from corral.engine.images.store import ImageStore, normalize
from corral.errors import NotFoundError, StateError, UsageError


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return Engine(tmp_path / "root").images


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    path = tmp_path / "rootfs.tar.gz"
    path.write_bytes(
        t.layer_tar([t.directory("bin"), t.file("bin/hello", b"x" * 1000, mode=0o755)], "gzip")
    )
    return path


def test_normalize() -> None:
    assert normalize("busybox") == "busybox:latest"
    assert normalize("localhost:5000/a/b:v1") == "localhost:5000/a/b:v1"
    for bad in ("UPPER", "a b", "x:bad tag", ""):
        with pytest.raises(UsageError):
            normalize(bad)


def test_import_records_config_manifest_and_layer(store: ImageStore, rootfs: Path) -> None:
    image = store.import_rootfs(rootfs, "hello:1")
    assert image.tags == ["hello:1"] and image.size == 1000
    config = store.config("hello:1")
    assert config["architecture"] == "amd64" and config["os"] == "linux"
    assert config["rootfs"]["diff_ids"] == [image.layers[0].diff_id]
    assert image.layers[0].chain_id == image.layers[0].diff_id
    manifest = store.manifest("hello:1")
    assert manifest["config"]["digest"] == image.id
    assert manifest["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert store.resolve(image.id[7:19]) == image.id
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_same_layer_is_unpacked_once(store: ImageStore, rootfs: Path) -> None:
    a = store.import_rootfs(rootfs, "a")
    b = store.import_rootfs(rootfs, "b")
    assert a.id != b.id  # different configs (created time)
    assert a.layers[0].chain_id == b.layers[0].chain_id
    assert store.db.execute("SELECT COUNT(*), MAX(refcount) FROM layers").fetchone()[:] == (1, 2)


def test_df_counts_shared_layers_once(store: ImageStore, rootfs: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.tar"
    other.write_bytes(t.layer_tar([t.file("data", b"y" * 500)]))
    a = store.import_rootfs(rootfs, "a")
    store.import_rootfs(rootfs, "b")
    store.import_rootfs(other, "c")
    usage = store.disk_usage()
    images = usage.rows[0]
    assert (images.kind, images.total, images.active, images.size, images.reclaimable) == (
        "Images",
        3,
        0,
        1500,
        1500,
    )
    by_id = {row["id"]: row for row in usage.images}
    assert (by_id[a.id]["shared"], by_id[a.id]["unique"]) == (1000, 0)
    _uses(store, "c1" * 32, "a")
    images = store.disk_usage().rows[0]
    assert (images.active, images.reclaimable) == (1, 500)  # b shares a's layer: not reclaimable


def test_rmi_rules(store: ImageStore, rootfs: Path) -> None:
    image = store.import_rootfs(rootfs, "a")
    store.tag("a", "b:2")
    assert store.remove("b:2") == ["Untagged: b:2"]
    store.tag("a", "b:2")
    with pytest.raises(StateError, match="referenced in multiple repositories"):
        store.remove(image.id)
    _uses(store, "c" * 64, "a")
    assert store.remove("a") == ["Untagged: a:latest"]  # one name of two: untagged, used or not
    with pytest.raises(StateError, match="container cccccccccccc is using"):
        store.remove("b:2")  # the last name of an image in use
    store.db.execute("DELETE FROM containers")
    lines = store.remove("b:2")
    assert lines[0] == "Untagged: b:2"
    assert f"Deleted: {image.id}" in lines
    assert store.images() == []
    assert store.content.digests() == []
    assert list(store.layout.snapshots.iterdir()) == []
    with pytest.raises(NotFoundError, match="No such image: a"):
        store.remove("a")


def test_forced_rmi_keeps_layers_under_containers(store: ImageStore, rootfs: Path) -> None:
    image = store.import_rootfs(rootfs, "a")
    chain = image.layers[0].chain_id
    with store.locked():
        store.snapshots.prepare("ctr", chain)
    _uses(store, "c" * 64, "a", snapshot_key="ctr")
    store.remove("a", force=True)
    assert store.images() == []
    assert store.snapshots.find_layer(chain) is not None  # the container still stands on it
    with store.locked():
        store.snapshots.remove("ctr")
        assert [x.chain_id for x in store.snapshots.collect()] == [chain]


def test_prune(store: ImageStore, rootfs: Path) -> None:
    store.import_rootfs(rootfs, "a")
    dangling = store.import_rootfs(rootfs, "a")  # takes the tag; the first becomes dangling
    lines, reclaimed = store.prune()
    assert len(lines) == 1 and lines[0].startswith("deleted: sha256:")
    assert reclaimed == 0  # the layer is shared with the tagged image
    assert [i.id for i in store.images()] == [dangling.id]
    lines, reclaimed = store.prune(all_images=True)
    assert reclaimed == 1000 and store.images() == []


def test_history(store: ImageStore, rootfs: Path) -> None:
    image = store.import_rootfs(rootfs, "a", comment="hi")
    (step,) = store.history("a")
    assert step["id"] == image.id and step["size"] == 1000 and step["comment"] == "hi"
    assert step["created_by"] == "corral image import rootfs.tar.gz"


def _uses(store: ImageStore, container_id: str, image: str, snapshot_key: str = "") -> None:
    """A container row that uses ``image``, as engine.containers writes it."""
    store.db.execute(
        "INSERT INTO containers (id, name, image_id, snapshot_key, created) VALUES (?, ?, ?, ?, 0)",
        (container_id, None, store.resolve(image), snapshot_key or container_id),
    )
