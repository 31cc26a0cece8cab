"""``corral run | create --pull missing|always|never`` against the session's local registry:
a missing image is pulled as docker does it (``Unable to find image ... locally``, then the
pull's progress on stderr); an unknown one exits 125 and leaves no image and no container;
``never`` refuses a missing image; ``busybox:latest`` still comes from the host's busybox."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.engine import corral
from helpers.registry import push_image


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "root"
    yield root
    if (root / "corral.db").exists():
        ids = corral(root, "ps", "-aq", check=False).stdout.split()
        if ids:
            corral(root, "rm", "-f", *ids, check=False)


def _layer(marker: str) -> bytes:
    """A layer with a static busybox (sh, cat) and /marker."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        tar.add("/bin/busybox", arcname="bin/busybox")
        for applet in ("sh", "cat"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        data = marker.encode()
        info = tarfile.TarInfo("marker")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_run_pulls_a_missing_image(root: Path, registry: str) -> None:
    ref = f"{registry}/pullmissing/app:{os.getpid()}"
    push_image(registry, "pullmissing/app", str(os.getpid()), [_layer("one\n")])
    done = corral(root, "run", "--rm", "--tls-verify=false", ref, "cat", "/marker")
    assert done.stdout == "one\n"
    lines = done.stderr.splitlines()
    assert lines[0] == f"Unable to find image '{ref}' locally"
    assert "Copying blob" in done.stderr  # the pull's progress, on stderr
    # there now: no pull, no message
    done = corral(root, "run", "--rm", "--tls-verify=false", ref, "cat", "/marker")
    assert (done.stdout, done.stderr) == ("one\n", "")
    # --pull always fetches the tag's new content; never uses what is here
    push_image(registry, "pullmissing/app", str(os.getpid()), [_layer("two\n")])
    done = corral(root, "run", "--rm", "--pull", "never", ref, "cat", "/marker")
    assert done.stdout == "one\n"
    done = corral(root, "run", "--rm", "--pull=always", "--tls-verify=false", ref, "cat",
                  "/marker")  # fmt: skip
    assert done.stdout == "two\n" and "Unable to find image" not in done.stderr
    # create pulls too
    other = f"{registry}/pullmissing/other:{os.getpid()}"
    push_image(registry, "pullmissing/other", str(os.getpid()), [_layer("three\n")])
    done = corral(root, "create", "--tls-verify=false", other)
    assert done.stderr.startswith(f"Unable to find image '{other}' locally")
    assert len(done.stdout.strip()) == 64


def test_unknown_image_exits_125_and_leaves_nothing(root: Path, registry: str) -> None:
    ref = f"{registry}/pullmissing/nosuch:1"
    done = corral(root, "run", "--tls-verify=false", "--name", "x", ref, "true", check=False)
    assert done.returncode == 125
    lines = done.stderr.strip().splitlines()
    assert lines[0] == f"Unable to find image '{ref}' locally"
    assert lines[-1].startswith("Error: ") and "Traceback" not in done.stderr
    assert corral(root, "images", "-q").stdout == ""
    assert corral(root, "ps", "-aq").stdout == ""
    done = corral(root, "create", "--pull", "never", "--name", "x", ref, check=False)
    assert done.returncode == 125
    assert done.stderr.strip() == f"Error: No such image: {ref}"
    done = corral(root, "run", "--pull", "sometimes", "busybox", "true", check=False)
    assert done.returncode == 125 and "invalid pull option: 'sometimes'" in done.stderr
    assert corral(root, "ps", "-aq").stdout == ""


def test_busybox_latest_is_made_from_the_host_when_missing(root: Path) -> None:
    done = corral(root, "run", "--rm", "busybox", "echo", "hi")
    assert (done.stdout, done.stderr) == ("hi\n", "")
    done = corral(root, "run", "--rm", "--pull", "never", "busybox:latest", "true")
    assert done.returncode == 0
