"""corral.spec.defaults: the config.json of ``runc spec`` (and ``--rootless``), key order too."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from corral import _json
from corral.spec.defaults import default_spec
from corral.spec.validate import validate_config

CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
MASKED = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
]
READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def runc_spec_literal(rootless: bool) -> dict[str, Any]:
    """What runc 1.1.5 `spec` printed, copied by hand (so this test needs no runc)."""
    devpts = ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]
    sys_mount = {
        "destination": "/sys",
        "type": "sysfs",
        "source": "sysfs",
        "options": ["nosuid", "noexec", "nodev", "ro"],
    }
    if rootless:
        sys_mount = {
            "destination": "/sys",
            "type": "none",
            "source": "/sys",
            "options": ["rbind", "nosuid", "noexec", "nodev", "ro"],
        }
    else:
        devpts.append("gid=5")
    linux: dict[str, Any] = {
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
        "maskedPaths": MASKED,
        "readonlyPaths": READONLY,
    }
    if rootless:
        linux = {
            "uidMappings": [{"containerID": 0, "hostID": os.geteuid(), "size": 1}],
            "gidMappings": [{"containerID": 0, "hostID": os.getegid(), "size": 1}],
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "user")],
            "maskedPaths": MASKED,
            "readonlyPaths": READONLY,
        }
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm",
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": CAPS,
                "effective": CAPS,
                "permitted": CAPS,
                "ambient": CAPS,
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "runc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": devpts},
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            },
            {
                "destination": "/dev/mqueue",
                "type": "mqueue",
                "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"],
            },
            sys_mount,
            {
                "destination": "/sys/fs/cgroup",
                "type": "cgroup",
                "source": "cgroup",
                "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
            },
        ],
        "linux": linux,
    }


def same_with_order(a: object, b: object) -> bool:
    """Equal, and with keys in the same order (runc's output order is part of the contract)."""
    return _json.dumps(a) == _json.dumps(b)


@pytest.mark.parametrize("rootless", [False, True])
def test_matches_runc_literal(rootless: bool) -> None:
    """The literal is what runc 1.1 writes on a host that is not pure cgroup v2."""
    expected = runc_spec_literal(rootless)
    assert default_spec(rootless, cgroup2=False) == expected
    assert same_with_order(default_spec(rootless, cgroup2=False), expected)


@pytest.mark.parametrize("rootless", [False, True])
def test_matches_real_runc_spec(tmp_path: Path, rootless: bool) -> None:
    # CI installs runc (scripts/install.sh); a missing runc is a failure, not a skip.
    args = ["runc", "spec"] + (["--rootless"] if rootless else [])
    subprocess.run(args, cwd=tmp_path, check=True)
    written = json.loads((tmp_path / "config.json").read_text())
    assert same_with_order(default_spec(rootless), written)


@pytest.mark.parametrize("rootless", [False, True])
def test_default_is_valid(rootless: bool) -> None:
    validate_config(default_spec(rootless))


def test_each_call_is_a_fresh_copy() -> None:
    first = default_spec(cgroup2=False)
    first["process"]["capabilities"]["bounding"].append("CAP_SYS_ADMIN")  # type: ignore[index]
    first["mounts"][1]["options"].append("ro")  # type: ignore[index]
    first["linux"]["maskedPaths"].clear()  # type: ignore[index]
    assert default_spec(cgroup2=False) == runc_spec_literal(False)


def test_capability_sets_are_separate_lists() -> None:
    caps = default_spec()["process"]["capabilities"]  # type: ignore[index]
    caps["bounding"].append("CAP_SYS_ADMIN")
    assert caps["effective"] == CAPS


@pytest.mark.parametrize(
    ("rootless", "expected"),
    [
        (False, ["pid", "network", "ipc", "uts", "mount", "cgroup"]),
        (True, ["pid", "ipc", "uts", "mount", "cgroup", "user"]),
    ],
)
def test_a_cgroup2_host_gets_a_cgroup_namespace_as_from_runc(
    rootless: bool, expected: list[str]
) -> None:
    """runc spec adds a cgroup namespace on a pure cgroup v2 host (after mount; rootless: before
    user); test_matches_real_runc_spec checks it against runc where the host is v2."""
    spec = default_spec(rootless, cgroup2=True)
    assert [ns["type"] for ns in spec["linux"]["namespaces"]] == expected  # type: ignore[index]
    flat = default_spec(rootless, cgroup2=False)
    assert "cgroup" not in [ns["type"] for ns in flat["linux"]["namespaces"]]  # type: ignore[index]
