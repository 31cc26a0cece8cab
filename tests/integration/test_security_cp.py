"""``corral cp`` against a hostile container: no symlink in the container, and no rename
racing the copy, leads a read or a write to the host (CVE-2018-15664's symlink-exchange race,
and the plain symlink to /etc/shadow or to /). Each test plants a host-only secret and shows
that what comes out is the container's file or an error, never the host's."""

from __future__ import annotations

import io
import os
import secrets
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


@pytest.fixture
def secret() -> Iterator[Path]:
    """A host directory /tmp/corral-secret-XXXX holding ``secret`` (the host's data)."""
    where = Path("/tmp") / f"corral-secret-{secrets.token_hex(4)}"
    where.mkdir()
    (where / "secret").write_text("HOST SECRET\n")
    yield where
    for name in os.listdir(where):
        os.unlink(where / name)
    where.rmdir()


def _cp_out(root: Path, source: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([CORRAL, "--root", str(root), "cp", source, "-"],
                          capture_output=True, stdin=subprocess.DEVNULL)  # fmt: skip


@pytest.mark.parametrize("state", ["running", "stopped"])
def test_symlinks_in_the_container_stay_in_the_container(
    root: Path, tmp_path: Path, secret: Path, state: str
) -> None:
    corral(root, "run", "-d", "--name", "evil", "busybox", "sh", "-c", LOOP)
    corral(root, "exec", "evil", "sh", "-c",
           f"ln -s /etc/shadow /shadow; ln -s / /escape; ln -s {secret}/secret /abs; "
           f"mkdir -p {secret} && echo CONTAINER > {secret}/secret")  # fmt: skip
    if state == "stopped":
        corral(root, "stop", "-t", "0", "evil")
    out = tmp_path / "out"
    out.mkdir()
    # the link itself is copied, not what it points at on the host
    corral(root, "cp", "evil:/shadow", str(out / "shadow"))
    assert os.readlink(out / "shadow") == "/etc/shadow"
    # followed (-L, or a link on the way), it resolves in the container
    corral(root, "cp", "-L", "evil:/abs", str(out / "abs"))
    assert (out / "abs").read_text() == "CONTAINER\n"
    corral(root, "cp", f"evil:/escape{secret}/secret", str(out / "via-root-link"))
    assert (out / "via-root-link").read_text() == "CONTAINER\n"
    done = corral(root, "cp", "-L", "evil:/shadow", str(out / "shadow-L"), check=False)
    assert done.returncode == 1 and "Could not find the file /shadow" in done.stderr
    # writes through /escape land in the container's /, not the host's
    (tmp_path / "payload").write_text("PAYLOAD\n")
    corral(root, "cp", str(tmp_path / "payload"), f"evil:/escape{secret}/secret")
    corral(root, "cp", str(tmp_path / "payload"), f"evil:/escape{secret}/")
    assert (secret / "secret").read_text() == "HOST SECRET\n"
    assert sorted(os.listdir(secret)) == ["secret"]
    raw = _cp_out(root, f"evil:{secret}/secret")
    assert raw.returncode == 0
    with tarfile.open(fileobj=io.BytesIO(raw.stdout)) as tar:
        member = tar.next()
        assert member is not None
        data = tar.extractfile(member)
        assert data is not None and data.read() == b"PAYLOAD\n"


def test_a_hostile_tar_cannot_leave_the_destination(
    root: Path, tmp_path: Path, secret: Path
) -> None:
    corral(root, "run", "-d", "--name", "evil", "busybox", "sh", "-c", LOOP)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        link = tarfile.TarInfo("l")
        link.type, link.linkname = tarfile.SYMTYPE, "/"
        tar.addfile(link)
        info = tarfile.TarInfo(f"l{secret}/planted")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    done = subprocess.run([CORRAL, "--root", str(root), "cp", "-", "evil:/tmp"],
                          input=buf.getvalue(), capture_output=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(secret)) == ["secret"]
    assert corral(root, "exec", "evil", "cat", f"{secret}/planted").stdout == "evil"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(f"../../../../../../..{secret}/dotdot")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    done = subprocess.run([CORRAL, "--root", str(root), "cp", "-", "evil:/tmp"],
                          input=buf.getvalue(), capture_output=True, text=False)  # fmt: skip
    assert done.returncode == 1 and b"leads outside the destination" in done.stderr
    assert sorted(os.listdir(secret)) == ["secret"]
    # copying out: a setuid-root program of the container does not stay setuid on the host
    corral(root, "exec", "evil", "sh", "-c", "cp /bin/busybox /suid && chmod 4755 /suid")
    corral(root, "cp", "evil:/suid", str(tmp_path / "suid"))
    assert (tmp_path / "suid").stat().st_mode & 0o7777 == 0o755


def test_swapped_directory_race_never_reaches_the_host(
    root: Path, tmp_path: Path, secret: Path
) -> None:
    """CVE-2018-15664: the container swaps a directory with a symlink to / as fast as it can
    while cp reads and writes below it; every copy sees the container's files or fails."""
    corral(root, "run", "-d", "--name", "evil", "busybox", "sh", "-c",
           f"mkdir -p /w{secret} && echo CONTAINER > /w{secret}/secret && ln -s / /sym && "
           "while true; do mv /w /w.x; mv /sym /w; mv /w /sym; mv /w.x /w; done")  # fmt: skip
    (tmp_path / "payload").write_text("PAYLOAD\n")
    seen: set[bytes] = set()
    for _ in range(40):
        raw = _cp_out(root, f"evil:/w{secret}/secret")
        if raw.returncode == 0:
            with tarfile.open(fileobj=io.BytesIO(raw.stdout)) as tar:
                member = tar.next()
                if member is not None and member.isreg():
                    data = tar.extractfile(member)
                    assert data is not None
                    seen.add(data.read())
        argv = [CORRAL, "--root", str(root), "cp", str(tmp_path / "payload"), f"evil:/w{secret}/"]
        subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL)
        assert (secret / "secret").read_text() == "HOST SECRET\n"
        assert sorted(os.listdir(secret)) == ["secret"]
    assert b"HOST SECRET\n" not in seen
    assert seen, "no copy got through the race at all"
