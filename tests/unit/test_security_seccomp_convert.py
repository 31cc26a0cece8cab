"""corral.engine.seccomp_default: podman's default profile converted to OCI linux.seccomp."""

from __future__ import annotations

from typing import Any

from corral.engine.containers.spec import DOCKER_CAPS
from corral.engine.seccomp_default import PROFILE_PATH, default_seccomp, load_profile, to_oci
from corral.sys.seccomp import compile_profile

DEFAULT_CAPS = list(DOCKER_CAPS)  # podman's and docker's default capabilities

PROFILE: dict[str, Any] = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 38,
    "archMap": [
        {
            "architecture": "SCMP_ARCH_X86_64",
            "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        },
        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
    ],
    "syscalls": [
        {
            "names": ["read", "write"],
            "action": "SCMP_ACT_ALLOW",
            "args": [],
            "comment": "",
            "includes": {},
            "excludes": {},
        },
        {
            "names": ["mount", "setns"],
            "action": "SCMP_ACT_ALLOW",
            "args": [],
            "includes": {"caps": ["CAP_SYS_ADMIN"]},
            "excludes": {},
        },
        {
            "names": ["mount", "setns"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": 1,
            "errno": "EPERM",
            "args": [],
            "includes": {},
            "excludes": {"caps": ["CAP_SYS_ADMIN"]},
        },
        {
            "names": ["arch_prctl"],
            "action": "SCMP_ACT_ALLOW",
            "args": [],
            "includes": {"arches": ["amd64", "x32"]},
            "excludes": {},
        },
        {
            "names": ["newsyscall"],
            "action": "SCMP_ACT_ALLOW",
            "args": [],
            "includes": {"minKernel": "6.2"},
            "excludes": {},
        },
        {
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],
            "includes": {},
            "excludes": {},
        },
    ],
}


def names(oci: dict[str, Any], action: str = "SCMP_ACT_ALLOW") -> set[str]:
    return {n for rule in oci["syscalls"] if rule["action"] == action for n in rule["names"]}


def test_arch_and_defaults() -> None:
    oci = to_oci(PROFILE, [], machine="x86_64", kernel="6.1.0-13-amd64")
    assert oci["defaultAction"] == "SCMP_ACT_ERRNO" and oci["defaultErrnoRet"] == 38
    assert oci["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    arm = to_oci(PROFILE, [], machine="aarch64", kernel="6.1")
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert "arch_prctl" in names(oci) and "arch_prctl" not in names(arm)


def test_caps_pick_the_rule() -> None:
    without = to_oci(PROFILE, DEFAULT_CAPS, machine="x86_64", kernel="6.1")
    assert "mount" not in names(without)
    denied = [r for r in without["syscalls"] if "mount" in r["names"]]
    assert denied == [{"names": ["mount", "setns"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    admin = to_oci(PROFILE, [*DEFAULT_CAPS, "CAP_SYS_ADMIN"], machine="x86_64", kernel="6.1")
    assert {"mount", "setns"} <= names(admin)
    assert "mount" not in names(admin, "SCMP_ACT_ERRNO")


def test_min_kernel_and_args() -> None:
    old = to_oci(PROFILE, [], machine="x86_64", kernel="6.1.0")
    new = to_oci(PROFILE, [], machine="x86_64", kernel="6.18.44-fc")
    assert "newsyscall" not in names(old) and "newsyscall" in names(new)
    (personality,) = [r for r in old["syscalls"] if r["names"] == ["personality"]]
    assert personality["args"] == [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]


def test_podmans_profile_as_shipped() -> None:
    """The real file (golang-github-containers-common): loads, converts, and libseccomp takes
    it; the rules that depend on capabilities follow the bounding set."""
    raw = load_profile(PROFILE_PATH)
    assert raw["defaultAction"] == "SCMP_ACT_ERRNO"
    plain = default_seccomp(DEFAULT_CAPS, machine="x86_64")
    admin = default_seccomp([*DEFAULT_CAPS, "CAP_SYS_ADMIN"], machine="x86_64")
    compile_profile(plain)
    compile_profile(admin)
    assert {"read", "execve", "clone", "exit_group"} <= names(plain)
    for call in ("sethostname", "bpf", "perf_event_open", "quotactl"):
        assert call not in names(plain) and call in names(admin), call
    for call in ("init_module", "kexec_load", "open_by_handle_at", "clock_settime"):
        assert call in names(plain, "SCMP_ACT_ERRNO") and call not in names(admin), call
    assert "keyctl" not in names(plain, "SCMP_ACT_ERRNO")  # podman allows keyctl (docker does not)
