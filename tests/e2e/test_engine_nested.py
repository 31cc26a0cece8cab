"""Containers in containers (issue 11): ``corral`` runs inside a ``--privileged`` corral
container made by ``image from-host`` (python3, busybox, corral's own source), builds its busybox
image there and runs it with limits, cgroups and overlay working inside.

The inner store must not be on the outer container's overlay (an overlay's upper dir cannot be
on overlayfs): as podman's and docker's in-container setups do, it goes on a volume
(``-v store:/var/lib/corral``). Without one, the inner mount fails, which is checked too."""

from __future__ import annotations

from pathlib import Path

from helpers.engine import corral
from helpers.paths import REPO

SRC = REPO / "src"
INNER = "import sys; from corral.cli.main import main; sys.exit(main(sys.argv[1:]))"


def test_corral_in_a_privileged_corral_container(root: Path) -> None:
    corral(root, "image", "from-host", "nest", "python3", "/bin/busybox",
           "--add", str(SRC / "corral"),
           "--add", "/usr/lib/x86_64-linux-gnu/libseccomp.so.2",
           "--add", "/usr/share/containers/seccomp.json")  # fmt: skip
    # The inner corral runs with no network of its own (the image has no nft): loopback only.
    outer = ["run", "--rm", "--privileged", "-e", f"PYTHONPATH={SRC}", "-e", "CORRAL_NETWORK=none"]
    inner = [
        "python3",
        "-c",
        INNER,
        "run",
        "--rm",
        "-m",
        "64m",
        "--pids-limit",
        "10",
        "busybox",
        "sh",
        "-c",
        "echo inner; cat /sys/fs/cgroup/pids/pids.max; grep ' / ' /proc/mounts",
    ]
    done = corral(root, *outer, "-v", "store:/var/lib/corral", "nest", *inner, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == ["inner", "10"]  # the inner container's cgroup has its limit
    assert lines[2].startswith("overlay / overlay")  # and an overlay root of its own
    # the inner store is on the volume and the inner container is gone
    info = corral(root, "run", "--rm", "-v", "store:/s", "busybox", "ls", "/s/containers").stdout
    assert info == ""
    # without a volume the inner overlay cannot mount on the outer one: a one-line error
    bare = corral(root, *outer, "nest", "python3", "-c", INNER, "run", "--rm", "busybox", "true",
                  check=False)  # fmt: skip
    assert bare.returncode == 125 and "rootfs: Invalid argument" in bare.stderr
    corral(root, "volume", "rm", "store")
