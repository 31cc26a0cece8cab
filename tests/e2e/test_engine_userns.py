"""``corral run --userns`` / ``--uidmap`` (issue 11): the container's root is not the host's.

Read back from both sides: /proc/self/uid_map and owners inside; the owners on the host, the
process's host uid, and a root-only host file bind-mounted in that the container's root cannot
read. ``--userns=auto`` takes its blocks from a test range the test adds to /etc/subuid and
/etc/subgid and removes again.
"""

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

MAP = "0:200000:65536"


def open_path_to(path: Path) -> None:
    """Let other users search down to ``path`` (pytest's /tmp/pytest-of-root is 0700), as a
    store used with --userns needs: the container's root is host uid 200000."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o011)


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "root"
    open_path_to(tmp_path)
    yield root
    if (root / "corral.db").exists():
        ids = corral(root, "ps", "-aq", check=False).stdout.split()
        if ids:
            corral(root, "rm", "-f", *ids, check=False)
        names = corral(root, "volume", "ls", "-q", check=False).stdout.split()
        if names:
            corral(root, "volume", "rm", "-f", *names, check=False)


def run(root: Path, *args: str) -> str:
    return corral(root, "run", "--rm", *args).stdout


def uid_map(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()]


def mounts_under(root: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if str(root) in line]


def test_uidmap_layers_read_as_root_inside_and_mapped_on_the_host(root: Path) -> None:
    corral(root, "run", "-d", "--name", "m", "--uidmap", MAP, "busybox", "sh", "-c",
           "touch /made; sleep 60")  # fmt: skip
    cid = corral(root, "inspect", "-f", "{{.Id}}", "m").stdout.strip()
    pid = corral(root, "inspect", "-f", "{{.State.Pid}}", "m").stdout.strip()
    inside = corral(root, "exec", "m", "sh", "-c",
                    "cat /proc/self/uid_map /proc/self/gid_map; id -u; "
                    "stat -c '%u:%g %n' /bin/busybox /etc/passwd /made").stdout  # fmt: skip
    lines = inside.splitlines()
    assert uid_map("\n".join(lines[:2])) == [["0", "200000", "65536"]] * 2
    assert lines[2] == "0"
    assert lines[3:] == ["0:0 /bin/busybox", "0:0 /etc/passwd", "0:0 /made"]
    # on the host: the process runs as 200000, the image's root-owned files show as 200000
    # (idmapped layers), and what it wrote lands in the upper dir as 200000
    with open(f"/proc/{pid}/status") as f:
        uids = next(line.split()[1:] for line in f if line.startswith("Uid:"))
    assert uids == ["200000"] * 4
    rootfs = root / "containers" / cid / "rootfs"
    assert (rootfs / "bin" / "busybox").stat().st_uid == 200000
    assert (rootfs / "made").stat().st_uid == 200000
    # the shared layer on disk is untouched: a container without a user namespace sees 0
    assert run(root, "busybox", "stat", "-c", "%u", "/bin/busybox") == "0\n"
    corral(root, "rm", "-f", "m")
    assert mounts_under(root) == []


def test_container_root_cannot_read_a_root_only_host_file(root: Path, tmp_path: Path) -> None:
    secret_dir = tmp_path / "secret"
    secret_dir.mkdir()
    secret = secret_dir / "key"
    secret.write_text("host secret\n")
    secret.chmod(0o600)
    os.chown(secret, 0, 0)
    bind = ["-v", f"{secret_dir}:/host"]
    done = corral(root, "run", "--rm", "--uidmap", MAP, *bind, "busybox", "sh", "-c",
                  "stat -c '%u' /host/key; cat /host/key", check=False)  # fmt: skip
    assert done.returncode != 0
    assert done.stdout.splitlines()[0] == "65534"  # the host's root is nobody inside
    assert "Permission denied" in done.stderr
    # the same without a user namespace: the container's root is the host's root
    assert run(root, *bind, "busybox", "cat", "/host/key") == "host secret\n"


def test_volumes_are_idmapped_and_seeded_in_the_containers_ids(root: Path) -> None:
    out = run(root, "--uidmap", MAP, "-v", "data:/data", "-v", "etc:/etc", "busybox", "sh",
              "-c", "touch /data/f; stat -c '%u %n' /data/f /etc/passwd /data")  # fmt: skip
    assert out.splitlines() == ["0 /data/f", "0 /etc/passwd", "0 /data"]
    volumes = root / "volumes"
    # stored in the container's ids (as the layers are), so a container without a user
    # namespace, or with another mapping, sees the same owners
    assert (volumes / "data" / "_data" / "f").stat().st_uid == 0
    assert (volumes / "etc" / "_data" / "passwd").stat().st_uid == 0
    assert run(root, "-v", "data:/data", "busybox", "stat", "-c", "%u", "/data/f") == "0\n"
    other = run(root, "--uidmap", "0:300000:65536", "-v", "data:/data", "busybox", "stat",
                "-c", "%u", "/data/f")  # fmt: skip
    assert other == "0\n"
    assert mounts_under(root) == []


def test_workdir_made_for_the_container_belongs_to_its_root(root: Path) -> None:
    out = run(root, "--uidmap", MAP, "-w", "/new/dir", "busybox", "stat", "-c", "%u", ".")
    assert out == "0\n"


@pytest.fixture
def subids() -> Iterator[tuple[int, int]]:
    """A test range for podman's ``containers`` user in /etc/subuid and /etc/subgid."""
    start, count = 400000, 70000
    line = f"containers:{start}:{count}\n"
    saved = {}
    for path in ("/etc/subuid", "/etc/subgid"):
        p = Path(path)
        saved[path] = p.read_text() if p.exists() else None
        with open(path, "a") as f:
            f.write(line)
    yield start, count
    for path, text in saved.items():
        if text is None:
            os.unlink(path)
        else:
            Path(path).write_text(text)


def test_auto_takes_free_blocks_from_subuid(root: Path, subids: tuple[int, int]) -> None:
    start, _count = subids
    script = "cat /proc/self/uid_map /proc/self/gid_map; sleep 60"
    corral(root, "run", "-d", "--name", "a1", "--userns=auto", "busybox", "sh", "-c", script)
    corral(root, "run", "-d", "--name", "a2", "--userns=auto:size=2000", "busybox", "sh", "-c",
           script)  # fmt: skip
    maps = {}
    for name in ("a1", "a2"):
        lines = uid_map(corral(root, "logs", name).stdout)
        assert len(lines) == 2 and lines[0] == lines[1]
        maps[name] = (int(lines[0][1]), int(lines[0][2]))
        assert lines[0][0] == "0"
    # busybox's /etc/passwd names nobody (65534): the block covers it
    assert maps["a1"] == (start, 65535)
    assert maps["a2"] == (start + 65535, 2000)
    corral(root, "rm", "-f", "a1")
    # a removed container's block is free again, and the lowest free block is taken
    corral(root, "run", "-d", "--name", "a3", "--userns=auto:size=100", "busybox", "sh", "-c",
           script)  # fmt: skip
    assert uid_map(corral(root, "logs", "a3").stdout)[0] == ["0", str(start), "100"]
    too_big = corral(root, "run", "--rm", "--userns=auto:size=65536", "busybox", "true",
                     check=False)  # fmt: skip
    assert too_big.returncode == 125
    assert "no free block of 65536 ids left in /etc/subuid" in too_big.stderr
    corral(root, "rm", "-f", "a2", "a3")


def test_auto_without_a_subuid_range_is_a_clear_error(root: Path) -> None:
    text = Path("/etc/subuid").read_text() if Path("/etc/subuid").exists() else ""
    if any(line.startswith("containers:") for line in text.splitlines()):
        pytest.fail("this host gives 'containers' subordinate ids; the test expects none")
    done = corral(root, "run", "--rm", "--userns=auto", "busybox", "true", check=False)
    assert done.returncode == 125
    assert done.stderr.strip() == (
        "Error: --userns=auto: /etc/subuid gives the user 'containers' no ids (add a line "
        "such as containers:2147483647:2147483648)"
    )
    assert corral(root, "ps", "-aq").stdout == ""


def test_keep_id_as_root_maps_root_to_itself_in_its_own_namespace(
    root: Path, tmp_path: Path
) -> None:
    """keep-id, run by root: the caller's uid 0 is 0 inside, in a user namespace of its own;
    with no subordinate range for root, nothing else is mapped (nobody's files show 65534).
    Its root keeps the host root's access to files: keep-id keeps identity, it is no sandbox."""
    secret = tmp_path / "key"
    secret.write_text("root only\n")
    secret.chmod(0o600)
    out = run(root, "--userns=keep-id", "-v", f"{secret}:/key", "busybox", "sh", "-c",
              "cat /proc/self/uid_map; id -u; readlink /proc/self/ns/user; "
              "stat -c %u /bin/busybox; cat /key")  # fmt: skip
    lines = out.splitlines()
    assert uid_map(lines[0]) == [["0", "0", "1"]]
    assert lines[1] == "0"
    assert lines[2] != os.readlink("/proc/self/ns/user")
    assert lines[3] == "0"
    assert lines[4] == "root only"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--userns=bogus"], "--userns=bogus: unsupported"),
        (["--uidmap", "0:1"], "--uidmap '0:1': expected CONTAINER:HOST:SIZE"),
        (["--uidmap", "0:100000:0"], "the size must be at least 1"),
        (["--uidmap", "0:100000:10", "--uidmap", "5:300000:10"], "container ranges overlap"),
        (["--userns=keep-id", "--uidmap", MAP], "cannot be used together"),
        (["--userns=auto:size=x"], "is not KEY=NUMBER"),
        (["--uidmap", MAP, "-u", "70000"], "does not map uid 70000"),
    ],
)
def test_bad_userns_input_exits_125_leaving_nothing(
    root: Path, flags: list[str], message: str
) -> None:
    done = corral(root, "run", "--rm", *flags, "busybox", "true", check=False)
    assert done.returncode == 125, done.stderr
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert corral(root, "ps", "-aq").stdout == ""
    assert list((root / "containers").glob("*")) == []


def test_a_store_others_cannot_reach_is_a_clear_error(tmp_path: Path) -> None:
    open_path_to(tmp_path)
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    closed.chmod(0o700)
    root = closed / "root"
    done = corral(root, "run", "--rm", "--uidmap", MAP, "busybox", "true", check=False)
    assert done.returncode == 125
    assert f"{closed} is not searchable by other users" in done.stderr
    assert json.loads(corral(root, "info", "-f", "json").stdout)["containers"] == 0


def test_cp_and_export_speak_the_containers_ids(root: Path, tmp_path: Path) -> None:
    """With a user namespace, ``cp`` and ``export`` number owners as the container does: a file
    copied in is its root's (host 200000), ``-a`` keeps the source's ids as the container's,
    and what comes out is numbered as inside; running or stopped."""
    corral(root, "run", "-d", "--name", "u", "--uidmap", MAP, "busybox", "sh", "-c",
           "touch /made; chown 7:8 /made; sleep 60")  # fmt: skip
    src = tmp_path / "f"
    src.write_text("x")
    os.chown(src, 1234, 4321)
    corral(root, "cp", str(src), "u:/copied")
    corral(root, "cp", "-a", str(src), "u:/kept")
    for state in ("running", "stopped"):
        out = subprocess.run([CORRAL, "--root", str(root), "export", "u"], check=True,
                             capture_output=True).stdout  # fmt: skip
        with tarfile.open(fileobj=io.BytesIO(out)) as tar:
            owners = {m.name: (m.uid, m.gid) for m in tar.getmembers()}
        assert owners["bin/busybox"] == (0, 0), state
        assert (owners["made"], owners["copied"], owners["kept"]) == ((7, 8), (0, 0),
                                                                      (1234, 4321)), state
        out = subprocess.run([CORRAL, "--root", str(root), "cp", "u:/made", "-"], check=True,
                             capture_output=True).stdout  # fmt: skip
        with tarfile.open(fileobj=io.BytesIO(out)) as tar:
            made = tar.getmember("made")
        assert (made.uid, made.gid) == (7, 8), state
        if state == "running":
            corral(root, "stop", "-t", "0", "u")
    corral(root, "cp", str(src), "u:/later")  # into the stopped container's idmapped overlay
    corral(root, "start", "u")
    inside = corral(root, "exec", "u", "stat", "-c", "%u:%g %n", "/copied", "/kept", "/made",
                    "/later").stdout  # fmt: skip
    assert inside.splitlines() == ["0:0 /copied", "1234:4321 /kept", "7:8 /made", "0:0 /later"]
    corral(root, "rm", "-f", "u")
    assert mounts_under(root) == []
