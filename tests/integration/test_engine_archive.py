"""``corral load`` / ``corral save`` against the tools that write and read the same formats:
umoci (OCI layout), skopeo (docker-archive, oci-archive) and podman (load); hostile archives."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.engine import corral


def tool(*args: str | Path) -> str:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{args}: {done.stderr}"
    return done.stdout


def one_line_error(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def assert_empty(root: Path) -> None:
    """Nothing listed, no blob, no layer left by a refused load."""
    assert corral(root, "images", "-q").stdout == ""
    blobs = root / "blobs" / "sha256"
    assert not blobs.exists() or not any(blobs.iterdir())
    snapshots = root / "snapshots"
    assert not snapshots.exists() or not any(snapshots.iterdir())


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture
def rootfs_tar(tmp_path: Path) -> Path:
    """A tiny root filesystem: static busybox as /bin/busybox and /bin/sh."""
    tree = tmp_path / "rootfs"
    (tree / "bin").mkdir(parents=True)
    shutil.copy2("/bin/busybox", tree / "bin" / "busybox")
    for applet in ("sh", "echo", "cat"):
        (tree / "bin" / applet).symlink_to("busybox")
    (tree / "etc").mkdir()
    (tree / "etc" / "motd").write_text("hello from umoci\n")
    out = tmp_path / "rootfs.tar"
    with tarfile.open(out, "w") as tar:
        tar.add(tree, arcname=".")
    return out


@pytest.fixture
def umoci_layout(tmp_path: Path, rootfs_tar: Path) -> Path:
    """An OCI layout made by umoci: init, new, a layer from the rootfs tar, a Cmd and Env."""
    layout = tmp_path / "layout"
    tool("umoci", "init", "--layout", layout)
    tool("umoci", "new", "--image", f"{layout}:v1")
    tool("umoci", "raw", "add-layer", "--image", f"{layout}:v1", rootfs_tar)
    tool(
        "umoci", "config", "--image", f"{layout}:v1",
        "--config.cmd", "cat", "--config.cmd", "/etc/motd",
        "--config.env", "GREETING=hi", "--config.workingdir", "/etc",
    )  # fmt: skip
    return layout


def test_load_umoci_layout_and_run(root: Path, umoci_layout: Path) -> None:
    assert corral(root, "load", "-i", str(umoci_layout)).stdout == "Loaded image: layout:v1\n"
    assert corral(root, "image", "load", f"oci:{umoci_layout}:v1").stdout == (
        "Loaded image: layout:v1\n"
    )
    data = json.loads(corral(root, "image", "inspect", "layout:v1").stdout)[0]
    assert data["Config"]["Cmd"] == ["cat", "/etc/motd"]
    manifest = json.loads((umoci_layout / "index.json").read_text())["manifests"][0]
    assert data["Descriptor"]["digest"] == manifest["digest"]  # kept byte for byte
    done = corral(root, "run", "--rm", "layout:v1")
    assert done.stdout == "hello from umoci\n"
    done = corral(root, "run", "--rm", "layout:v1", "sh", "-c", "echo $GREETING; pwd")
    assert done.stdout == "hi\n/etc\n"
    one_line_error(corral(root, "image", "load", f"oci:{umoci_layout}:nope", check=False), "nope")


def test_load_skopeo_docker_archive(root: Path, umoci_layout: Path, tmp_path: Path) -> None:
    archive = tmp_path / "d.tar"
    tool("skopeo", "copy", "-q", f"oci:{umoci_layout}:v1", f"docker-archive:{archive}:skop/img:t1")
    assert corral(root, "load", "-i", str(archive)).stdout == "Loaded image: skop/img:t1\n"
    assert corral(root, "run", "--rm", "skop/img:t1").stdout == "hello from umoci\n"
    # the same image as the layout's (same config, so the same id)
    corral(root, "load", "-i", str(umoci_layout))
    ids = corral(root, "images", "-q").stdout.split()
    assert len(ids) == 1


def test_save_read_by_skopeo_and_podman(root: Path, umoci_layout: Path, tmp_path: Path) -> None:
    corral(root, "load", "-i", str(umoci_layout))
    image = json.loads(corral(root, "image", "inspect", "layout:v1").stdout)[0]
    docker = tmp_path / "s.tar"
    oci = tmp_path / "s.oci.tar"
    corral(root, "save", "-o", str(docker), "layout:v1")
    corral(root, "save", "--format", "oci-archive", "-o", str(oci), "layout:v1")
    for ref in (f"docker-archive:{docker}", f"oci-archive:{oci}"):
        seen = json.loads(tool("skopeo", "inspect", "--config", ref))
        assert seen["rootfs"]["diff_ids"] == image["RootFS"]["Layers"], ref
        assert seen["config"]["Cmd"] == ["cat", "/etc/motd"], ref
        raw = json.loads(tool("skopeo", "inspect", "--raw", ref))
        assert raw["config"]["digest"] == image["Id"], ref
    # and read back by corral into a fresh root: the same image id
    other = tmp_path / "other"
    corral(other, "load", "-i", str(oci))
    assert corral(other, "images", "-q", "--no-trunc").stdout.strip() == image["Id"]
    # podman, with its own storage in tmp (vfs: nothing mounted)
    run_root = tempfile.mkdtemp(prefix="crp-", dir="/tmp")  # podman: runroot <= 50 characters
    storage = ["--root", str(tmp_path / "podman"), "--runroot", run_root,
               "--storage-driver", "vfs"]  # fmt: skip
    try:
        for archive in (docker, oci):
            out = tool("podman", *storage, "load", "-i", archive)
            assert "layout:v1" in out, out
            listed = tool("podman", *storage, "images", "--format", "{{.ID}}", "--no-trunc")
            assert image["Id"] in listed
            tool("podman", *storage, "rmi", "-af")
    finally:
        subprocess.run(["podman", *storage, "system", "reset", "-f"], capture_output=True)
        shutil.rmtree(tmp_path / "podman", ignore_errors=True)
        shutil.rmtree(run_root, ignore_errors=True)


def _tar(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)


def _layout_files(layout: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(layout)): p.read_bytes() for p in sorted(layout.rglob("*")) if p.is_file()
    }


@pytest.fixture
def layout_files(umoci_layout: Path) -> Iterator[dict[str, bytes]]:
    yield _layout_files(umoci_layout)


def _layer_name(files: dict[str, bytes]) -> str:
    index = json.loads(files["index.json"])
    manifest = json.loads(files["blobs/sha256/" + index["manifests"][0]["digest"][7:]])
    return "blobs/sha256/" + str(manifest["layers"][0]["digest"][7:])


def test_hostile_digest_mismatch(
    root: Path, tmp_path: Path, layout_files: dict[str, bytes]
) -> None:
    name = _layer_name(layout_files)
    layout_files[name] = layout_files[name][:-1] + bytes([layout_files[name][-1] ^ 1])
    archive = tmp_path / "bad.tar"
    _tar(archive, layout_files)
    one_line_error(corral(root, "load", "-i", str(archive), check=False), "digest mismatch")
    assert_empty(root)


def test_hostile_dotdot_in_outer_tar(
    root: Path, tmp_path: Path, layout_files: dict[str, bytes]
) -> None:
    layout_files["../escape"] = b"x"
    archive = tmp_path / "bad.tar"
    _tar(archive, layout_files)
    one_line_error(corral(root, "load", "-i", str(archive), check=False), "'..'")
    assert not (tmp_path / "escape").exists()
    assert_empty(root)


def test_hostile_symlink_out_of_archive(
    root: Path, tmp_path: Path, layout_files: dict[str, bytes]
) -> None:
    name = _layer_name(layout_files)
    del layout_files[name]
    archive = tmp_path / "bad.tar"
    _tar(archive, layout_files, {name: "../../../../etc/passwd"})
    one_line_error(corral(root, "load", "-i", str(archive), check=False), "outside the archive")
    assert_empty(root)


def test_hostile_missing_blob(root: Path, tmp_path: Path, layout_files: dict[str, bytes]) -> None:
    del layout_files[_layer_name(layout_files)]
    archive = tmp_path / "bad.tar"
    _tar(archive, layout_files)
    one_line_error(corral(root, "load", "-i", str(archive), check=False), "missing")
    assert_empty(root)


def test_hostile_docker_archive_diff_id(root: Path, tmp_path: Path, rootfs_tar: Path) -> None:
    """A docker-archive whose layer is not the one its config's diff_ids name."""
    layer = rootfs_tar.read_bytes()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "0" * 64]},
        }
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": ["bad:1"], "Layers": ["x/layer.tar"]}]
    archive = tmp_path / "bad.tar"
    _tar(
        archive,
        {config_name: config, "x/layer.tar": layer, "manifest.json": json.dumps(manifest).encode()},
    )
    one_line_error(corral(root, "load", "-i", str(archive), check=False), "diff_id mismatch")
    assert_empty(root)
    # a config whose name is not its digest
    _tar(
        archive,
        {"a" * 64 + ".json": config, "x/layer.tar": layer,
         "manifest.json": json.dumps([{**manifest[0], "Config": "a" * 64 + ".json"}]).encode()},
    )  # fmt: skip
    one_line_error(corral(root, "load", "-i", str(archive), check=False), "digest mismatch")
    assert_empty(root)


def test_not_an_archive(root: Path, tmp_path: Path) -> None:
    one_line_error(corral(root, "load", "-i", "/etc/hostname", check=False), "/etc/hostname")
    one_line_error(corral(root, "load", "-i", str(tmp_path / "none"), check=False), "no such")
    empty = tmp_path / "empty.tar"
    _tar(empty, {"hello": b"x"})
    one_line_error(corral(root, "load", "-i", str(empty), check=False), "not a docker-archive")
    one_line_error(corral(root, "save", "-o", str(tmp_path / "x.tar"), "nope", check=False), "nope")
    assert not (tmp_path / "x.tar").exists()
