"""``corral`` as a user types it: image commands against a tmp ``--root``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from helpers.engine import corral


def one_line_error(done: subprocess.CompletedProcess[str], *fragments: str, code: int = 1) -> None:
    assert done.returncode == code, done
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


def test_busybox_import_tag_list_inspect_rmi(root: Path, tmp_path: Path, bundle_template) -> None:  # type: ignore[no-untyped-def]
    image_id = corral(root, "image", "busybox").stdout.strip()
    assert image_id.startswith("sha256:")
    tarball = tmp_path / "rootfs.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(bundle_template.path / "rootfs", arcname=".")
    corral(root, "image", "import", str(tarball), "mine:v1")
    corral(root, "tag", "mine:v1", "again")
    lines = corral(root, "images").stdout.splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert sorted(line.split()[0] for line in lines[1:]) == ["again", "busybox", "mine"]
    data = json.loads(corral(root, "image", "inspect", "busybox").stdout)
    assert data[0]["Id"] == image_id and data[0]["Config"]["Cmd"] == ["sh"]
    assert (
        corral(root, "image", "inspect", "-f", "{{.Os}}/{{.Architecture}}", "mine:v1").stdout
        == "linux/amd64\n"
    )
    history = corral(root, "history", "mine:v1").stdout.splitlines()
    assert history[0].startswith("IMAGE") and "corral image import rootfs.tar" in history[1]
    df = corral(root, "system", "df").stdout.splitlines()
    assert df[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert df[1].split()[:3] == ["Images", "2", "0"]
    assert "Images space usage:" in corral(root, "system", "df", "-v").stdout
    info = corral(root, "info").stdout
    assert f"Storage root:    {root}" in info and str(root / "corral.db") in info
    assert corral(root, "rmi", "again").stdout == "Untagged: again:latest\n"
    out = corral(root, "rmi", "mine:v1", "busybox").stdout
    assert out.count("Deleted: sha256:") == 4
    assert corral(root, "images", "-q").stdout == ""


def test_from_host_python(root: Path) -> None:
    corral(
        root, "image", "from-host", "py", "/usr/bin/python3.11", "--add", "/usr/lib/python3.11/json"
    )
    data = json.loads(corral(root, "image", "inspect", "py").stdout)[0]
    assert data["Config"]["Cmd"] == ["/usr/bin/python3.11"]
    lower = data["GraphDriver"]["Data"]["LowerDir"]
    assert os.path.isfile(os.path.join(lower, "usr/lib/x86_64-linux-gnu/libc.so.6"))
    assert os.path.islink(os.path.join(lower, "lib64"))
    assert os.path.isfile(os.path.join(lower, "usr/lib/python3.11/json/__init__.py"))


def test_env_root(tmp_path: Path) -> None:
    env = {**os.environ, "CORRAL_ROOT": str(tmp_path / "envroot")}
    done = subprocess.run(
        [sys.executable, "-m", "corral.cli.main", "info", "-f", "json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert json.loads(done.stdout)["root"] == str(tmp_path / "envroot")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["rmi", "nope"], ["No such image: nope"]),
        (["image", "import", "/no/such.tar", "x"], ["/no/such.tar"]),
        (["image", "import", "/etc/hostname", "Bad Name"], ["Bad Name", "invalid repository"]),
        (["image", "import", "/etc/hostname", "x"], ["/etc/hostname", "not a tar"]),
        (["image", "from-host", "x", "/no/prog"], ["/no/prog"]),
        (["image", "from-host", "x", "/bin/ls", "--add", "/no/dir"], ["--add /no/dir"]),
        (["tag", "nope", "x"], ["No such image: nope"]),
        (["bogus"], ["bogus"]),
        (["images", "--bogus"], ["--bogus"]),
        (["images", "a", "b"], ["unrecognized arguments: b"]),
        (["rmi"], ["required: IMAGE"]),
    ],
)
def test_errors_are_one_line(root: Path, args: list[str], fragments: list[str]) -> None:
    code = 125 if "--bogus" in args else 1  # docker's: 125 for a flag it cannot parse
    one_line_error(corral(root, *args, check=False), *fragments, code=code)
    if root.exists():
        assert corral(root, "images", "-q").stdout == ""


def test_help_is_fast_and_lazy() -> None:
    code = (
        "import sys; from corral.cli import main; "
        "print(sorted(m for m in sys.modules if m.startswith('corral.engine')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_docker_spellings_of_a_name_find_one_image(root: Path) -> None:
    """``corral image busybox`` makes ``busybox:latest``; docker's other spellings of that name
    (``docker.io/library/busybox``, by manifest digest) find it in every image command."""
    image_id = corral(root, "image", "busybox").stdout.strip()
    for ref in ("docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox"):
        data = json.loads(corral(root, "inspect", ref).stdout)
        assert data[0]["Id"] == image_id, ref
    listed = corral(root, "images", "docker.io/library/busybox").stdout.splitlines()
    assert [line.split()[:2] for line in listed[1:]] == [["busybox", "latest"]]
    digest = json.loads(corral(root, "inspect", "busybox").stdout)[0]["RepoDigests"]
    if digest:  # as docker: only images that came from (or went to) a registry have one
        by_digest = corral(root, "inspect", "busybox@" + digest[0].split("@")[1]).stdout
        assert json.loads(by_digest)[0]["Id"] == image_id
    corral(root, "tag", "docker.io/library/busybox", "docker.io/me/bb:1")
    rows = [line.split()[:2] for line in corral(root, "images").stdout.splitlines()[1:]]
    assert ["me/bb", "1"] in rows
    assert corral(root, "run", "--rm", "docker.io/library/busybox:latest", "true").returncode == 0


def _pipe(root: Path, data: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    from helpers.engine import CORRAL

    return subprocess.run(
        [CORRAL, "--root", str(root), *args], input=data, capture_output=True, timeout=120
    )


def test_import_and_load_read_stdin(root: Path, tmp_path: Path, bundle_template) -> None:  # type: ignore[no-untyped-def]
    """``corral import - NAME`` and ``corral load`` with no -i take the archive from a pipe."""
    tarball = tmp_path / "rootfs.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(bundle_template.path / "rootfs", arcname=".")
    done = _pipe(root, tarball.read_bytes(), "import", "-", "piped:1")
    assert done.returncode == 0, done.stderr
    assert corral(root, "run", "--rm", "piped:1", "echo", "ok").stdout == "ok\n"
    archive = tmp_path / "saved.tar"
    corral(root, "save", "-o", str(archive), "piped:1")
    corral(root, "rmi", "-f", "piped:1")
    done = _pipe(root, archive.read_bytes(), "load")
    assert done.returncode == 0 and done.stdout == b"Loaded image: piped:1\n", done.stderr
    empty = _pipe(root, b"", "load")
    assert empty.returncode == 1 and b"stdin is empty" in empty.stderr
    assert list((root / "tmp").iterdir()) == []  # the spooled copies are gone


def test_images_filters_and_formats(root: Path) -> None:
    corral(root, "image", "busybox")
    corral(root, "tag", "busybox", "app:1")
    corral(root, "tag", "busybox", "app:2")

    def listed(*args: str) -> list[str]:
        return corral(root, "images", "--format", "{{.Repository}}:{{.Tag}}", *args).stdout.split()

    assert sorted(listed()) == ["app:1", "app:2", "busybox:latest"]
    assert sorted(listed("-f", "reference=app")) == ["app:1", "app:2"]
    assert listed("-f", "reference=app:2") == ["app:2"]
    assert listed("-f", "reference=busy*") == ["busybox:latest"]
    assert listed("-f", "dangling=true") == []
    table = corral(root, "images", "--format", "table {{.Repository}}\\t{{.Tag}}").stdout
    assert table.splitlines()[0].split() == ["REPOSITORY", "TAG"]
    rows = [json.loads(x) for x in corral(root, "images", "--format", "json").stdout.splitlines()]
    assert {r["Tag"] for r in rows} == {"1", "2", "latest"} and rows[0]["ID"] == rows[1]["ID"]
    bad = corral(root, "images", "-f", "shape=round", check=False)
    one_line_error(bad, "invalid filter 'shape'")
