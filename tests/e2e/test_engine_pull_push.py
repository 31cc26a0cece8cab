"""``corral pull / push / login / logout`` as a user types them, with real peers.

Peers: docker-registry (the session's, on 127.0.0.1), skopeo and umoci (build and push images
corral then pulls), podman (runs an image corral pushed). Every failure is one line, exit 1.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.engine.images.testing import file, layer_tar
from helpers.registry import Proxy, Registry, push_image, start_registry

REPO = Path(__file__).resolve().parents[2]
CORRAL = str(REPO / ".venv" / "bin" / "corral")


def corral(
    root: Path, *args: str, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    cmd = [CORRAL] if os.path.exists(CORRAL) else [sys.executable, "-m", "corral.cli.main"]
    done = subprocess.run(
        [*cmd, "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=120,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def one_line_error(done: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr
    # progress lines may come first (pull/push without -q); the error is the one last line
    lines = done.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], done.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    """A tiny busybox root filesystem with a marker file."""
    r = tmp_path / "rootfs"
    (r / "bin").mkdir(parents=True)
    shutil.copy2("/bin/busybox", r / "bin" / "busybox")
    for applet in ("sh", "echo", "cat", "ls"):
        os.symlink("busybox", r / "bin" / applet)
    (r / "marker").write_text("hello from the peer\n")
    return r


def lower_dirs(root: Path, ref: str) -> list[Path]:
    out = corral(root, "image", "inspect", "-f", "{{json .GraphDriver}}", ref).stdout
    return [Path(p) for p in json.loads(out)["Data"]["LowerDir"].split(":") if p]


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


# -- peers -> corral ----------------------------------------------------------------------------


def test_umoci_skopeo_push_corral_pull_and_run(
    root: Path, tmp_path: Path, rootfs: Path, registry: str
) -> None:
    layout, bundle = tmp_path / "layout", tmp_path / "umoci-bundle"
    # (umoci 0.4.7's `insert` writes a tar without its end blocks; unpack + repack is sound)
    for argv in (
        ["umoci", "init", "--layout", str(layout)],
        ["umoci", "new", "--image", f"{layout}:t"],
        ["umoci", "unpack", "--image", f"{layout}:t", str(bundle)],
        ["cp", "-a", f"{rootfs}/.", str(bundle / "rootfs")],
        ["umoci", "repack", "--image", f"{layout}:t", str(bundle)],
        ["umoci", "config", "--image", f"{layout}:t", "--config.cmd", "sh"],
    ):
        subprocess.run(argv, check=True, capture_output=True)
    skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:t", f"docker://{registry}/peer/oci:1")
    skopeo(
        "copy", "--dest-tls-verify=false", "--format", "v2s2",
        f"oci:{layout}:t", f"docker://{registry}/peer/v2s2:1",
    )  # fmt: skip
    both = root
    for name in ("oci", "v2s2"):
        ref = f"{registry}/peer/{name}:1"
        root = tmp_path / f"root-{name}"  # the same config: one image per store, one manifest
        corral(both, "pull", "-q", "--tls-verify=false", ref)
        done = corral(root, "pull", "--tls-verify=false", ref)
        assert done.stdout.startswith("sha256:") and "Copying blob" in done.stderr
        digest = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{ref}").stdout)[
            "Digest"
        ]
        desc = json.loads(
            corral(root, "image", "inspect", "-f", "{{json .Descriptor}}", ref).stdout
        )
        assert desc["digest"] == digest
        found = [d / "marker" for d in lower_dirs(root, ref) if (d / "marker").exists()]
        assert found and found[0].read_text() == "hello from the peer\n"
        busybox = [d / "bin/busybox" for d in lower_dirs(root, ref) if (d / "bin/busybox").exists()]
        assert busybox[0].read_bytes() == Path("/bin/busybox").read_bytes()
        run = corral(root, "run", "--rm", ref, "cat", "/marker")
        assert run.stdout == "hello from the peer\n"
    lines = corral(both, "images").stdout.splitlines()[1:]
    assert sorted(line.split()[0] for line in lines) == [
        f"{registry}/peer/oci",
        f"{registry}/peer/v2s2",
    ]


# -- corral -> peers ----------------------------------------------------------------------------


@pytest.fixture
def podman(tmp_path: Path) -> Iterator[list[str]]:
    """podman with its storage in tmp (vfs: no mounts left), runc, cgroupfs, file events."""
    store = tmp_path / "podman-root"
    run = Path(tempfile.mkdtemp(prefix="podrun-", dir="/tmp"))  # podman: at most 50 characters
    argv = [
        "podman", "--root", str(store), "--runroot", str(run), "--storage-driver", "vfs",
        "--cgroup-manager", "cgroupfs", "--events-backend", "file", "--runtime", "runc",
    ]  # fmt: skip
    yield argv
    subprocess.run([*argv, "system", "reset", "-f"], capture_output=True, timeout=120)
    for path in (run, store):
        subprocess.run(["umount", "-R", "-l", str(path)], capture_output=True)
        shutil.rmtree(path, ignore_errors=True)


def test_corral_push_skopeo_inspect_podman_run(
    root: Path, tmp_path: Path, rootfs: Path, registry: str, podman: list[str]
) -> None:
    tarball = tmp_path / "rootfs.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(rootfs, arcname=".")
    image_id = corral(root, "image", "import", str(tarball), "mine:1").stdout.strip()
    ref = f"{registry}/corral/mine:1"
    done = corral(root, "push", "--tls-verify=false", "mine:1", ref)
    digest = done.stdout.strip()
    assert "Copying blob" in done.stderr and "\x1b[" not in done.stderr  # not a tty: lines
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{ref}").stdout)
    layers = json.loads(corral(root, "image", "inspect", "mine:1").stdout)[0]["Layers"]
    assert info["Digest"] == digest
    assert info["Layers"] == [x["blob"] for x in layers]
    raw_config = skopeo("inspect", "--tls-verify=false", "--raw", "--config", f"docker://{ref}")
    assert "sha256:" + hashlib.sha256(raw_config.stdout.encode()).hexdigest() == image_id
    raw = json.loads(skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{ref}").stdout)
    assert raw["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    # docker schema 2 on request
    ref2 = f"{registry}/corral/mine:v2s2"
    corral(root, "push", "--tls-verify=false", "--format", "v2s2", "mine:1", ref2)
    raw = json.loads(skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{ref2}").stdout)
    assert raw["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    # podman pulls and runs it (rlimits at or under this machine's hard limits: runc may not
    # raise them here)
    run = subprocess.run(
        [
            *podman, "run", "--rm", "--tls-verify=false", "--network", "none",
            "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096",
            ref, "echo", "hi",
        ],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert (run.returncode, run.stdout) == (0, "hi\n"), run.stderr


# -- login / logout -----------------------------------------------------------------------------


def test_login_pull_logout(root: Path, auth_registry: Registry) -> None:
    host = auth_registry.host
    corral(root, "image", "busybox")
    one_line_error(
        corral(root, "push", "--tls-verify=false", "busybox", f"{host}/x/bb:1", check=False),
        "authentication required",
        f"corral login {host}",
    )
    bad = corral(
        root, "login", "--tls-verify=false", "-u", "alice", "--password-stdin", host,
        input="nope\n", check=False,
    )  # fmt: skip
    one_line_error(bad, "invalid username or password")
    good = corral(
        root, "login", "--tls-verify=false", "-u", "alice", "--password-stdin", host,
        input="wonderland\n",
    )  # fmt: skip
    assert good.stdout == "Login Succeeded!\n"
    auths = json.loads((root / "auth.json").read_text())["auths"]
    assert list(auths) == [host] and "auth" in auths[host]
    corral(root, "push", "--tls-verify=false", "-q", "busybox", f"{host}/x/bb:1")
    corral(root, "rmi", "busybox")
    corral(root, "pull", "--tls-verify=false", "-q", f"{host}/x/bb:1")
    assert corral(root, "logout", host).stdout == f"Removed login credentials for {host}\n"
    one_line_error(corral(root, "logout", host, check=False), "not logged into")


# -- failures -----------------------------------------------------------------------------------


def test_errors_are_one_line(root: Path, registry: str) -> None:
    one_line_error(
        corral(root, "pull", "--tls-verify=false", f"{registry}/no/such:1", check=False),
        "manifest unknown",
    )
    one_line_error(corral(root, "pull", "UPPER/case", check=False), "invalid repository name")
    one_line_error(
        corral(root, "pull", "--platform", "linux", f"{registry}/x", check=False), "--platform"
    )
    one_line_error(corral(root, "pull", f"{registry}/no/such:1", check=False), "--tls-verify=false")
    one_line_error(corral(root, "push", "nothing:here", f"{registry}/x:1", check=False), "No such")


def test_hostile_blob_one_line_and_nothing_listed(root: Path, tmp_path: Path) -> None:
    reg = start_registry(tmp_path / "reg")
    try:
        layer = layer_tar([file("a", os.urandom(50_000))], compression="gzip")
        pushed = push_image(reg.host, "evil/x", "1", [layer])
        path = reg.blob_path(pushed.layers[0])
        data = bytearray(path.read_bytes())
        data[100] ^= 1
        path.write_bytes(bytes(data))
        done = corral(root, "pull", "--tls-verify=false", f"{reg.host}/evil/x:1", check=False)
        one_line_error(done, "digest mismatch")
        assert corral(root, "images", "-q").stdout == ""
        done = corral(
            root, "pull", "--tls-verify=false", f"{reg.host}/evil/x@{pushed.manifest[:-1]}0",
            check=False,
        )  # fmt: skip
        one_line_error(done)
        assert corral(root, "images", "-q").stdout == ""
    finally:
        reg.stop()


def test_killed_pull_resumes(root: Path, tmp_path: Path) -> None:
    reg = start_registry(tmp_path / "reg")
    proxy = Proxy(reg.host)
    try:
        small = layer_tar([file("small", b"s" * 100)], compression="gzip")
        big = layer_tar([file("big", os.urandom(4 << 20))])
        pushed = push_image(reg.host, "slow/x", "1", [small, big])
        proxy.delay = 0.05  # ~1.3 MB/s
        cmd = [CORRAL, "--root", str(root), "pull", "--tls-verify=false", f"{proxy.host}/slow/x:1"]
        child = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        partial = root / "ingest" / pushed.layers[1].split(":")[1]
        deadline = time.monotonic() + 60
        while not (partial.exists() and partial.stat().st_size > (1 << 20)):
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert corral(root, "images", "-q").stdout == ""
        have = partial.stat().st_size
        proxy.delay = 0
        proxy.requests.clear()
        corral(root, "pull", "--tls-verify=false", f"{proxy.host}/slow/x:1")
        assert proxy.gets(pushed.layers[0]) == []
        assert proxy.gets(pushed.layers[1]) == [f"bytes={have}-"]
        assert corral(root, "images", "-q").stdout.strip()
    finally:
        proxy.stop()
        reg.stop()
