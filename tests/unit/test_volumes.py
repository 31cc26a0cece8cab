"""corral.engine.volumes on a tmp dir and an in-memory database: records, use, rm, prune."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from corral.engine.rootpath import existing_in_root as resolve_in_root
from corral.engine.volumes import Volumes, seed
from corral.errors import NotFoundError, StateError, UsageError


@pytest.fixture
def volumes(tmp_path: Path) -> Volumes:
    db = sqlite3.connect(":memory:")
    return Volumes(tmp_path / "volumes", lambda: db)


def test_create_is_idempotent_and_lists(volumes: Volumes, tmp_path: Path) -> None:
    one = volumes.create("data", labels={"k": "v"})
    assert one.path == tmp_path / "volumes" / "data" / "_data" and one.path.is_dir()
    assert volumes.create("data").created == one.created
    anon = volumes.create()
    assert anon.anonymous and len(anon.name) == 64
    assert [v.name for v in volumes.list()] == sorted(["data", anon.name])
    info = one.inspect()
    assert (info["Name"], info["Driver"], info["Labels"]) == ("data", "local", {"k": "v"})


@pytest.mark.parametrize("name", ["a/b", "x", "-lead", "sp ace", ""])
def test_bad_names(volumes: Volumes, name: str) -> None:
    with pytest.raises(UsageError, match="includes invalid characters for a local volume name"):
        volumes.create(name)


def test_in_use_refused_then_rm_v_semantics(volumes: Volumes) -> None:
    named = volumes.create("keep")
    anon = volumes.create()
    volumes.attach("c1", ["keep", anon.name])
    with pytest.raises(StateError, match=r"remove keep: volume is in use - \[c1\]"):
        volumes.remove("keep")
    assert volumes.detach("c1", remove_anonymous=True) == [anon.name]
    assert not os.path.exists(anon.path.parent)
    volumes.remove("keep")
    assert not named.path.exists()
    with pytest.raises(NotFoundError, match="get keep: no such volume"):
        volumes.remove("keep")
    volumes.remove("keep", force=True)


def test_prune(volumes: Volumes) -> None:
    volumes.create("named")
    anon = volumes.create()
    used = volumes.create()
    volumes.attach("c", [used.name])
    (anon.path / "f").write_bytes(b"12345")
    assert volumes.prune() == ([anon.name], 5)
    assert volumes.prune(all_volumes=True) == (["named"], 0)
    assert [v.name for v in volumes.list()] == [used.name]
    assert volumes.usage() == [(used.name, 1, 0)]


def test_seed_copies_the_image_content_once(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "var" / "lib" / "app").mkdir(parents=True)
    (rootfs / "var" / "lib" / "app" / "seed.txt").write_text("from the image")
    os.symlink("/var/lib/app", rootfs / "link")  # absolute: must stay inside rootfs
    data = tmp_path / "data"
    data.mkdir()
    assert seed(data, str(rootfs), "/link")
    assert (data / "seed.txt").read_text() == "from the image"
    (data / "seed.txt").write_text("changed")
    assert not seed(data, str(rootfs), "/var/lib/app")
    assert (data / "seed.txt").read_text() == "changed"
    assert resolve_in_root(str(rootfs), "/link/seed.txt") == str(
        rootfs / "var" / "lib" / "app" / "seed.txt"
    )
    os.symlink("/etc", rootfs / "escape")
    assert resolve_in_root(str(rootfs), "/escape/passwd") is None


def test_image_volumes_become_anonymous_unless_covered(volumes: Volumes, tmp_path: Path) -> None:
    from corral.engine.containers.prepare import _mounts
    from corral.engine.containers.spec import MountOption, RunOptions

    image = {"config": {"Volumes": {"/var/lib/db": {}, "/cache": {}}}}
    opts = RunOptions(mounts=[MountOption("volume", "/cache", "named"),
                              MountOption("tmpfs", "/var/lib/db/tmp", size=1024)])  # fmt: skip
    mounts, seeds = _mounts(image, opts, "c1", volumes)
    by_target = {m["destination"]: m for m in mounts}
    assert [m["destination"] for m in mounts][-1] == "/var/lib/db/tmp"  # parents first
    assert by_target["/cache"]["source"] == str(tmp_path / "volumes" / "named" / "_data")
    anon = next(v for v in volumes.list() if v.anonymous)
    assert by_target["/var/lib/db"]["source"] == str(anon.path)
    assert by_target["/var/lib/db/tmp"]["options"] == ["nosuid", "nodev", "noexec", "size=1024"]
    assert {s["target"] for s in seeds} == {"/cache", "/var/lib/db"}
    assert sorted(volumes.users("named")) == ["c1"]
