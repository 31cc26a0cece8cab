"""The Containerfile corpus (tests/data/containerfiles): corral builds each file, and where
buildah is installed (Debian's, 1.28) it builds the same file on the same context; the two
images' configs must agree on env, cmd, entrypoint, workdir, user, exposed ports, labels,
volumes and stop signal.

buildah runs with a private ``--root``/``--runroot`` (vfs storage: no mounts to leak) and
``--isolation chroot`` (its default OCI isolation wants runc with settings this hybrid-cgroup
host refuses; chroot needs nothing). Its busybox is corral's, saved and pulled from a
docker-archive, so neither tool pulls anything. buildah stamps ``io.buildah.version`` into
Labels: left out of the comparison.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.engine.build.parser import INSTRUCTIONS, parse
from helpers.engine import corral

CORPUS = Path(__file__).resolve().parents[1] / "data" / "containerfiles"
FILES = sorted(CORPUS.glob("*.Containerfile"))
FIELDS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Labels", "Volumes",
          "StopSignal")  # fmt: skip


def _context(base: Path) -> Path:
    context = base / "context"
    shutil.copytree(CORPUS / "context", context, symlinks=True)
    vendor = base / "vendor"
    (vendor / "lib").mkdir(parents=True)
    (vendor / "lib" / "a.txt").write_text("vendored\n")
    with tarfile.open(context / "vendor.tar.gz", "w:gz") as tar:
        tar.add(vendor, arcname=".")
    return context


def _fields(config: dict[str, Any]) -> dict[str, Any]:
    labels = {k: v for k, v in (config.get("Labels") or {}).items() if k != "io.buildah.version"}
    out = {name: config.get(name) or None for name in FIELDS}
    out["Labels"] = labels or None
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """corral's root with every corpus file built as corpus:<name>, and the context."""
    base = tmp_path_factory.mktemp("corpus")
    root = base / "root"
    context = _context(base)
    corral(root, "image", "busybox")
    for path in FILES:
        corral(root, "build", "-q", "-f", str(path), "-t", f"corpus:{path.stem}", str(context))
    yield root, context


def test_corpus_covers_every_instruction() -> None:
    assert len(FILES) >= 15
    seen: set[str] = set()
    for path in FILES:
        for inst in parse(path.read_text(), path.name).instructions:
            seen.add(inst.keyword)
            if inst.keyword == "ONBUILD":
                seen.add(parse(inst.args[0]).instructions[0].keyword)
    assert seen == set(INSTRUCTIONS)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_corral_builds_it(built: tuple[Path, Path], path: Path) -> None:
    root, _ = built
    config = json.loads(
        corral(root, "image", "inspect", "-f", "{{json .Config}}", f"corpus:{path.stem}").stdout
    )
    assert config.get("Cmd") or config.get("Entrypoint")


@pytest.fixture(scope="module")
def buildah(
    built: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[str]]:
    if shutil.which("buildah") is None:
        pytest.skip("buildah is not installed (scripts/install.sh installs it)")
    root, _ = built
    base = tmp_path_factory.mktemp("buildah")
    argv = [
        "buildah", "--root", str(base / "root"), "--runroot", str(base / "run"),
        "--storage-driver", "vfs",
    ]  # fmt: skip
    archive = base / "busybox.tar"
    corral(root, "save", "-o", str(archive), "busybox")
    subprocess.run([*argv, "pull", f"docker-archive:{archive}"], check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    yield argv
    subprocess.run([*argv, "rmi", "-a", "-f"], capture_output=True, timeout=120)
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_config_agrees_with_buildah(
    built: tuple[Path, Path], buildah: list[str], path: Path
) -> None:
    root, context = built
    tag = f"corpus-{path.stem.lower()}"
    done = subprocess.run(
        [*buildah, "build", "-q", "--isolation", "chroot", "--pull=never", "-f", str(path),
         "-t", tag, str(context)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    theirs = json.loads(
        subprocess.run(
            [*buildah, "inspect", "--type", "image", tag],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
    )["OCIv1"]["config"]
    ours = json.loads(
        corral(root, "image", "inspect", "-f", "{{json .Config}}", f"corpus:{path.stem}").stdout
    )
    assert _fields(ours) == _fields(theirs)
