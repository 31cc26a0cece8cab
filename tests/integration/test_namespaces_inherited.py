"""Namespaces the config does not list are the runtime's; a mount namespace given by path is
joined (config-linux.md, "Namespaces").

Without a mount namespace of its own a container's mounts are made in the caller's namespace
or the joined one; the init chroots into the rootfs instead of pivot_root (which would move the
root of every process there). ``delete`` detaches what ``create`` stacked on the rootfs: runc
leaves its mounts behind in that case, corral leaves nothing.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from helpers import Runc


def mounts_under(path: str, pid: str = "self") -> list[str]:
    with open(f"/proc/{pid}/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == path or p.startswith(path + "/")]


def without_mount_namespace(config: dict[str, Any]) -> None:
    linux = config["linux"]
    linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] != "mount"]
    linux.pop("maskedPaths", None)  # masking needs a mount namespace (runc's rule too)
    linux.pop("readonlyPaths", None)


@pytest.fixture
def holder() -> Iterator[int]:
    """A process in a private mount namespace of its own, to be joined by path."""
    proc = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sleep", "60"],
        stdin=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            if os.readlink(f"/proc/{proc.pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt"):
                break
            subprocess.run(["sleep", "0.02"], check=True)
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_no_mount_namespace_runs_in_the_callers_and_leaves_nothing_mounted(
    corral_runc: Runc, make_bundle: Any, cid: str
) -> None:
    bundle = make_bundle(["sh", "-c", "ls /etc/passwd && grep -c ' / ' /proc/self/mountinfo"],
                         edit=without_mount_namespace)
    rootfs = str(bundle.rootfs)
    assert mounts_under(rootfs) == []
    corral_runc("create", "--bundle", bundle, cid, check=True)
    assert mounts_under(rootfs)  # the container's mounts are in our namespace meanwhile
    corral_runc("start", cid, check=True)
    corral_runc("delete", "--force", cid, check=True)
    assert mounts_under(rootfs) == []


def test_a_mount_namespace_given_by_path_is_joined_and_cleaned(
    corral_runc: Runc, make_bundle: Any, cid: str, holder: int
) -> None:
    def join(config: dict[str, Any]) -> None:
        for ns in config["linux"]["namespaces"]:
            if ns["type"] == "mount":
                ns["path"] = f"/proc/{holder}/ns/mnt"

    bundle = make_bundle(["sh", "-c", "readlink /proc/self/ns/mnt"], edit=join)
    rootfs = str(bundle.rootfs)
    done = corral_runc("run", "--bundle", bundle, cid, check=True)
    assert done.stdout.strip() == os.readlink(f"/proc/{holder}/ns/mnt")
    assert mounts_under(rootfs) == []  # nothing in ours
    assert mounts_under(rootfs, str(holder)) == []  # and nothing left in the joined one


def test_namespaces_not_listed_are_the_runtimes(
    corral_runc: Runc, make_bundle: Any, cid: str
) -> None:
    def only_mount_and_pid(config: dict[str, Any]) -> None:
        linux = config["linux"]
        linux["namespaces"] = [{"type": "mount"}, {"type": "pid"}]
        config.pop("hostname", None)
        linux.pop("sysctl", None)

    bundle = make_bundle(
        ["sh", "-c", "for n in uts ipc net; do readlink /proc/self/ns/$n; done"],
        edit=only_mount_and_pid,
    )
    done = corral_runc("run", "--bundle", bundle, cid, check=True)
    ours = [os.readlink(f"/proc/self/ns/{kind}") for kind in ("uts", "ipc", "net")]
    assert done.stdout.split() == ours
