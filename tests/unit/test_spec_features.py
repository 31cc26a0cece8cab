"""corral.spec.features: the ``features`` document, checked against the spec and real runc."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from corral import __version__, _json
from corral.spec.features import features
from corral.spec.tables import CAPABILITIES


def test_top_level_fields() -> None:
    doc = features()
    assert list(doc) == [
        "ociVersionMin",
        "ociVersionMax",
        "hooks",
        "mountOptions",
        "linux",
        "annotations",
    ]
    assert doc["ociVersionMin"] == "1.0.0"
    assert doc["ociVersionMax"] == "1.0.2-dev"
    assert doc["annotations"] == {"org.corral.version": __version__}


def test_linux_fields() -> None:
    linux: Any = features()["linux"]
    assert set(linux) == {
        "namespaces",
        "capabilities",
        "cgroup",
        "seccomp",
        "apparmor",
        "selinux",
        "intelRdt",
        "mountExtensions",
    }
    assert linux["namespaces"] == sorted(
        ["pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"]
    )
    assert linux["capabilities"] == list(CAPABILITIES)
    assert set(linux["cgroup"]) == {"v1", "v2", "systemd", "systemdUser", "rdma"}
    seccomp = linux["seccomp"]
    assert seccomp["enabled"] is True
    assert seccomp["actions"] == [
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_TRAP",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_TRACE",
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_LOG",
        "SCMP_ACT_NOTIFY",
    ]
    assert seccomp["operators"] == [
        "SCMP_CMP_NE",
        "SCMP_CMP_LT",
        "SCMP_CMP_LE",
        "SCMP_CMP_EQ",
        "SCMP_CMP_GE",
        "SCMP_CMP_GT",
        "SCMP_CMP_MASKED_EQ",
    ]
    assert "SCMP_ARCH_X86_64" in seccomp["archs"]
    assert set(seccomp["supportedFlags"]) <= set(seccomp["knownFlags"])
    for module in ("apparmor", "selinux", "intelRdt"):
        assert isinstance(linux[module]["enabled"], bool)


def test_serializes_and_is_a_fresh_copy() -> None:
    doc = features()
    assert json.loads(_json.dumps(doc, indent=4)) == doc
    doc["hooks"].append("x")  # type: ignore[attr-defined]
    doc["linux"]["cgroup"]["v1"] = "x"  # type: ignore[index]
    assert "x" not in features()["hooks"]  # type: ignore[operator]
    assert features()["linux"]["cgroup"]["v1"] is True  # type: ignore[index]


def test_agrees_with_runc_features() -> None:
    # CI installs runc 1.1 (scripts/install.sh), whose `features` is the model for ours.
    out = subprocess.run(["runc", "features"], capture_output=True, text=True, check=True)
    runc = json.loads(out.stdout)
    ours: Any = features()
    assert ours["hooks"] == runc["hooks"]
    assert ours["mountOptions"] == runc["mountOptions"]
    assert ours["linux"]["capabilities"] == runc["linux"]["capabilities"]
    assert set(runc["linux"]["namespaces"]) <= set(ours["linux"]["namespaces"])
    seccomp = runc["linux"]["seccomp"]
    assert set(ours["linux"]["seccomp"]["actions"]) == set(seccomp["actions"])
    assert set(ours["linux"]["seccomp"]["operators"]) == set(seccomp["operators"])
    assert set(seccomp["archs"]) <= set(ours["linux"]["seccomp"]["archs"])
