"""What the ``linux.resources`` tests share (tests/integration/test_resources.py reads v1's
files, test_resources_v2.py v2's): a bundle with resources, create, state, a refusal checked
down to what was left behind, and a disk to throttle."""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path
from typing import Any

from helpers.bundles import Bundle
from helpers.runc import Runc


def cgroup_dirs(cid: str) -> list[str]:
    """Every cgroup directory (v1 hierarchies, the hybrid unified tree, v2) named ``cid``."""
    return glob.glob(f"/sys/fs/cgroup/*/corral/{cid}") + glob.glob(f"/sys/fs/cgroup/corral/{cid}")


def resources_bundle(
    bundle: Bundle, resources: dict[str, Any], args: list[str] | None = None
) -> Bundle:
    def edit(config: dict[str, Any]) -> None:
        config["linux"]["resources"] = resources

    return bundle.set(args=args or ["sleep", "30"], edit=edit)


def create(corral_runc: Runc, bundle: Bundle, cid: str) -> None:
    corral_runc("create", "--bundle", bundle, cid, check=True)


def status(corral_runc: Runc, cid: str) -> str:
    state = json.loads(corral_runc("state", cid, check=True).stdout)
    value: str = state["status"]
    return value


def assert_refused(
    corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str, *fragments: str
) -> str:
    """``create`` fails with one line holding every fragment, and leaves no state or cgroup."""
    done = corral_runc("create", "--bundle", bundle, cid)
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert list(runc_root.iterdir()) == []
    assert cgroup_dirs(cid) == []
    line: str = lines[0]
    return line


def root_disk() -> tuple[int, int]:
    """The (major, minor) of a whole disk of this machine (throttling takes only whole disks)."""
    for name in sorted(os.listdir("/sys/block")):
        if name.startswith(("loop", "ram", "zram")):
            continue
        major, minor = Path(f"/sys/block/{name}/dev").read_text().strip().split(":")
        return int(major), int(minor)
    raise AssertionError("no disk in /sys/block")


def throttles(major: int, minor: int) -> dict[str, Any]:
    """``blockIO`` with all four throttles on one device: read/write bytes 1 MiB/2 MiB per
    second, read/write operations 100/200 per second."""
    dev = {"major": major, "minor": minor}
    return {
        "throttleReadBpsDevice": [{**dev, "rate": 1048576}],
        "throttleWriteBpsDevice": [{**dev, "rate": 2097152}],
        "throttleReadIOPSDevice": [{**dev, "rate": 100}],
        "throttleWriteIOPSDevice": [{**dev, "rate": 200}],
    }
