"""``corral cp | diff | export | commit`` as a user types them, against a tmp ``--root``:
copies both ways into running and stopped containers with docker's rules for where a copy
lands, docker's errors for missing paths (and nothing written), diff's A/C/D lines, export's
tar with numeric owners, and commit with -m, -a and -c."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.engine import CORRAL, corral

LOOP = "while true; do sleep 1; done"


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "root"
    corral(root, "image", "busybox")
    yield root
    ids = corral(root, "ps", "-aq", check=False).stdout.split()
    if ids:
        corral(root, "rm", "-f", *ids, check=False)
    for image in ("snap:1", "snap:2"):
        corral(root, "rmi", image, check=False)


@pytest.fixture(params=["running", "stopped"])
def box(request: pytest.FixtureRequest, root: Path) -> str:
    """A container with /data/{a,sub/b}, running or stopped."""
    corral(root, "run", "-d", "--name", "box", "busybox", "sh", "-c", LOOP)
    corral(root, "exec", "box", "sh", "-c",
           "mkdir -p /data/sub && echo A > /data/a && echo B > /data/sub/b "
           "&& chown 7:8 /data/a && chmod 640 /data/a")  # fmt: skip
    if request.param == "stopped":
        corral(root, "stop", "-t", "0", "box")
    return "box"


def _cp_out(root: Path, source: str) -> bytes:
    """``corral cp SOURCE -``: the tar on stdout."""
    import subprocess

    from helpers.engine import CORRAL

    argv = [CORRAL, "--root", str(root), "cp", source, "-"]
    return subprocess.run(argv, capture_output=True, check=True, stdin=subprocess.DEVNULL).stdout


def _tar_file(root: Path, box: str, path: str) -> str:
    """A file's content in the container, read back with ``cp CTR:PATH -`` (running or not)."""


    raw = _cp_out(root, f"{box}:{path}")
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        member = tar.next()
        assert member is not None and member.isreg(), member
        data = tar.extractfile(member)
        assert data is not None
        return data.read().decode()


def test_cp_from_container(root: Path, box: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    corral(root, "cp", f"{box}:/data/a", str(out / "a-copy"))  # a new file's name
    assert (out / "a-copy").read_text() == "A\n"
    assert oct((out / "a-copy").stat().st_mode & 0o777) == oct(0o640)
    corral(root, "cp", f"{box}:/data", str(out))  # into an existing directory
    assert (out / "data" / "sub" / "b").read_text() == "B\n"
    corral(root, "cp", f"{box}:/data/.", str(out / "flat"))  # new directory: the contents
    assert sorted(os.listdir(out / "flat")) == ["a", "sub"]
    os.mkdir(out / "existing")
    corral(root, "cp", f"{box}:/data/.", str(out / "existing"))  # SRC/. into a directory
    assert sorted(os.listdir(out / "existing")) == ["a", "sub"]
    done = corral(root, "cp", f"{box}:/data", str(out / "a-copy"), check=False)
    assert done.returncode == 1 and "cannot copy a directory" in done.stderr
    # to stdout: a tar with the source's base name and numeric owners


    raw = _cp_out(root, f"{box}:/data")
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert sorted(members) == ["data", "data/a", "data/sub", "data/sub/b"]
    assert (members["data/a"].uid, members["data/a"].gid, members["data/a"].uname) == (7, 8, "")


def test_cp_to_container(root: Path, box: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "deep").mkdir(parents=True)
    (src / "f").write_text("from host\n")
    (src / "deep" / "g").write_text("g\n")
    os.chown(src / "f", 1234, 4321)
    corral(root, "cp", str(src / "f"), f"{box}:/data/")  # into a directory
    corral(root, "cp", str(src / "f"), f"{box}:/data/renamed")  # a new name
    corral(root, "cp", str(src / "f"), f"{box}:/data/a")  # over an existing file
    corral(root, "cp", str(src), f"{box}:/data/tree")  # a directory to a new name
    corral(root, "cp", "-a", str(src / "f"), f"{box}:/data/kept")
    for path in ("/data/f", "/data/renamed", "/data/a", "/data/tree/f", "/data/kept"):
        assert _tar_file(root, box, path) == "from host\n", path
    assert _tar_file(root, box, "/data/tree/deep/g") == "g\n"
    import subprocess

    from helpers.engine import CORRAL

    def owner(path: str) -> tuple[int, int]:
        raw = _cp_out(root, f"{box}:{path}")
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            m = tar.next()
            assert m is not None
            return m.uid, m.gid

    assert owner("/data/f") == (0, 0)  # docker: root's, unless -a
    assert owner("/data/kept") == (1234, 4321)
    # a tar on stdin, extracted into a directory
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("piped/x")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"xyz"))
    subprocess.run([CORRAL, "--root", str(root), "cp", "-", f"{box}:/data"],
                   input=buf.getvalue(), check=True, capture_output=True)  # fmt: skip
    assert _tar_file(root, box, "/data/piped/x") == "xyz"
    if corral(root, "inspect", "-f", "{{.State.Status}}", box).stdout.strip() == "running":
        assert corral(root, "exec", box, "cat", "/data/f").stdout == "from host\n"


def test_cp_missing_paths_docker_errors_nothing_written(root: Path, box: str,
                                                         tmp_path: Path) -> None:  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()
    done = corral(root, "cp", f"{box}:/nope", str(out / "x"), check=False)
    assert done.returncode == 1
    assert done.stderr.strip() == f"Error: Could not find the file /nope in container {box}"
    assert os.listdir(out) == []
    (out / "f").write_text("f")
    done = corral(root, "cp", str(out / "f"), f"{box}:/nope/deeper/x", check=False)
    assert done.returncode == 1
    assert done.stderr.strip() == f"Error: Could not find the file /nope/deeper in container {box}"
    done = corral(root, "cp", str(out / "missing"), f"{box}:/data", check=False)
    assert done.returncode == 1 and "no such file or directory" in done.stderr
    done = corral(root, "cp", f"{box}:/data/a", f"{box}:/data/b", check=False)
    assert done.returncode == 1 and "between containers" in done.stderr
    done = corral(root, "cp", "nosuch:/x", str(out), check=False)
    assert done.returncode == 1 and "No such container: nosuch" in done.stderr
    assert sorted(os.listdir(out)) == ["f"]
    done = corral(root, "cp", f"{box}:/", str(out / "f"), check=False)
    assert done.returncode == 1 and "cannot copy a directory" in done.stderr
    listing = corral(root, "diff", box).stdout
    assert "/nope" not in listing


def test_diff_lists_added_changed_deleted(root: Path) -> None:
    corral(root, "run", "-d", "--name", "d1", "busybox", "sh", "-c", LOOP)
    assert corral(root, "diff", "d1").stdout == ""  # the engine's mountpoints are not changes
    corral(root, "exec", "d1", "sh", "-c",
           "echo new > /tmp/added; echo >> /etc/passwd; rm /bin/ls; "
           "rm -rf /usr && mkdir /usr && echo n > /usr/n")  # fmt: skip
    lines = corral(root, "diff", "d1").stdout.splitlines()
    for line in ("A /tmp/added", "C /etc/passwd", "C /etc", "D /bin/ls", "C /bin", "C /usr",
                 "A /usr/n", "C /tmp"):  # fmt: skip
        assert line in lines, (line, lines)
    assert lines == sorted(lines, key=lambda x: x[2:])
    corral(root, "stop", "-t", "0", "d1")
    assert corral(root, "diff", "d1").stdout.splitlines() == lines  # stopped: the same
    done = corral(root, "diff", "nosuch", check=False)
    assert done.returncode == 1 and "No such container: nosuch" in done.stderr


def test_export_whole_filesystem_numeric_owners(root: Path, tmp_path: Path) -> None:
    corral(root, "run", "-d", "--name", "e1", "busybox", "sh", "-c", LOOP)
    corral(root, "exec", "e1", "sh", "-c", "echo mine > /mine && chown 4242:77 /mine")
    out = tmp_path / "e1.tar"
    for state in ("running", "stopped"):
        corral(root, "export", "-o", str(out), "e1")
        with tarfile.open(out) as tar:
            members = {m.name: m for m in tar.getmembers()}
        assert "bin/busybox" in members and "mine" in members, state
        mine = members["mine"]
        assert (mine.uid, mine.gid, mine.uname, mine.gname) == (4242, 77, "", ""), state
        assert not any(name.startswith(("proc/", "sys/")) and len(name) > 5 for name in members)
        corral(root, "stop", "-t", "0", "e1")
    done = corral(root, "export", "-o", str(tmp_path / "none.tar"), "nosuch", check=False)
    assert done.returncode == 1 and not (tmp_path / "none.tar").exists()
    # to a reader that leaves early (``export e1 | head``): stopped quietly, as by SIGPIPE
    export = subprocess.Popen([CORRAL, "--root", str(root), "export", "e1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert export.stdout is not None and export.stderr is not None
    assert len(export.stdout.read(512)) == 512
    export.stdout.close()
    assert (export.wait(timeout=60), export.stderr.read()) == (141, b"")


def test_commit_makes_an_image_of_the_changes(root: Path) -> None:
    corral(root, "run", "-d", "--name", "c1", "-e", "FROM_RUN=1", "busybox", "sh", "-c", LOOP)
    corral(root, "exec", "c1", "sh", "-c", "echo kept > /kept; rm /bin/ls")
    done = corral(root, "commit", "-m", "my message", "-a", "Jo <jo@example.com>",
                  "-c", "ENV GREETING=hello", "-c", 'CMD ["sh", "-c", "echo $GREETING"]',
                  "-c", "WORKDIR /tmp", "c1", "snap:1")  # fmt: skip
    image_id = done.stdout.strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71
    # the container was paused meanwhile and runs on
    assert corral(root, "inspect", "-f", "{{.State.Status}}", "c1").stdout.strip() == "running"
    run = corral(root, "run", "--rm", "snap:1", "sh", "-c",
                 "cat /kept; pwd; echo $FROM_RUN; test -e /bin/ls || echo gone")  # fmt: skip
    assert run.stdout == "kept\n/tmp\n1\ngone\n"
    assert corral(root, "run", "--rm", "snap:1").stdout == "hello\n"
    info = json.loads(corral(root, "image", "inspect", "snap:1").stdout)[0]
    assert info["Id"] == image_id and info["Author"] == "Jo <jo@example.com>"
    assert info["Comment"] == "my message"
    base = json.loads(corral(root, "image", "inspect", "busybox").stdout)[0]
    assert info["RootFS"]["Layers"][:-1] == base["RootFS"]["Layers"]
    assert len(info["RootFS"]["Layers"]) == len(base["RootFS"]["Layers"]) + 1
    # a stopped container, no tag: a dangling image; a bad change is refused, nothing made
    corral(root, "stop", "-t", "0", "c1")
    before = corral(root, "images", "-q").stdout
    done = corral(root, "commit", "-c", "RUN true", "c1", "snap:2", check=False)
    assert done.returncode == 1 and "RUN cannot be changed by commit" in done.stderr
    assert corral(root, "images", "-q").stdout == before
    assert corral(root, "commit", "c1").stdout.startswith("sha256:")


def test_file_capabilities_travel_into_containers_and_exports_not_onto_the_host(
    root: Path, tmp_path: Path
) -> None:
    """``security.capability`` (what ``setcap cap_net_raw+ep`` writes) is the xattr docker's
    archives carry: kept by ``cp`` into a container and by ``export``; dropped on the host, as
    set-ID bits are."""
    import struct

    capability = struct.pack("<5I", 0x02000001, 1 << 13, 0, 0, 0)  # v2, effective, CAP_NET_RAW
    header = {"SCHILY.xattr.security.capability": capability.decode("utf-8", "surrogateescape")}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("pinger")
        info.size, info.mode, info.pax_headers = 2, 0o755, header
        tar.addfile(info, io.BytesIO(b"#!"))
    corral(root, "create", "--name", "caps", "busybox", "true")
    subprocess.run([CORRAL, "--root", str(root), "cp", "-", "caps:/"], input=buf.getvalue(),
                   check=True, capture_output=True)  # fmt: skip
    exported = subprocess.run([CORRAL, "--root", str(root), "export", "caps"],
                              check=True, capture_output=True).stdout  # fmt: skip
    with tarfile.open(fileobj=io.BytesIO(exported)) as tar:
        pinger = tar.getmember("pinger")
    kept = pinger.pax_headers["SCHILY.xattr.security.capability"]
    assert kept.encode("utf-8", "surrogateescape") == capability
    out = tmp_path / "out"
    out.mkdir()
    corral(root, "cp", "caps:/pinger", str(out))
    assert (out / "pinger").read_bytes() == b"#!"
    with pytest.raises(OSError):
        os.getxattr(out / "pinger", "security.capability")
    corral(root, "rm", "caps")
