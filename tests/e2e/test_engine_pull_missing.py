"""``corral run | create --pull missing|always|never`` against the session's local registry:
a missing image is pulled as docker does it (``Unable to find image ... locally``, then the
pull's progress on stderr); an unknown one exits 125 and leaves no image and no container;
``never`` refuses a missing image; ``busybox:latest`` still comes from the host's busybox."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from helpers.engine import corral
from helpers.registry import push_image


@pytest.fixture(autouse=True)
def pull_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's default policy, missing: the suite's conftest sets CORRAL_PULL=never so that
    no other test reaches for Docker Hub; these tests only name the local registry."""
    monkeypatch.setenv("CORRAL_PULL", "missing")


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


def test_build_pulls_a_missing_base_and_pull_fetches_again(root: Path, registry: str,
                                                           tmp_path: Path) -> None:  # fmt: skip
    """``corral build``: a FROM image missing from the store is pulled (docker's rule);
    ``--pull`` fetches it again even when present."""
    ref = f"{registry}/pullmissing/base:{os.getpid()}"
    push_image(registry, "pullmissing/base", str(os.getpid()), [_layer("one\n")])
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Containerfile").write_text(f"FROM {ref}\nRUN cat /marker > /seen\n")

    def build(*flags: str) -> str:
        corral(root, "build", "--tls-verify=false", *flags, "-t", "built", str(context))
        return corral(root, "run", "--rm", "built", "cat", "/seen").stdout

    assert build() == "one\n"  # pulled: it was not in the store
    push_image(registry, "pullmissing/base", str(os.getpid()), [_layer("two\n")])
    assert build() == "one\n"  # present: used as it is
    assert build("--pull") == "two\n"  # --pull: the tag's new content
