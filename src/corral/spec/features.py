"""What ``corral-runc features`` prints: the parts of the OCI spec this runtime implements.

A higher-level tool (containerd, podman, a Kubernetes node) reads this document instead of
guessing from a version number: can it ask for a time namespace, a seccomp notify listener,
``rro`` mounts? The format is the runtime-spec's features.md (runc's types/features); fields a
runtime cannot vouch for are left out, and "enabled": false means "known but not done".

Built by a function so every caller gets its own copy to print or edit.
"""

from __future__ import annotations

from corral import __version__
from corral.spec.defaults import OCI_VERSION
from corral.spec.tables import CAPABILITIES, HOOK_KINDS, NAMESPACE_TYPES, mount_option_names

SECCOMP_ACTIONS = (
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
)
SECCOMP_OPERATORS = (
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
)
# The architectures a filter may name (docker's default profile lists x86_64, x86 and x32
# together; the kernel tags every syscall with the ABI it came through).
SECCOMP_ARCHS = (
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_RISCV64",
)
# Flags for seccomp(2) that the spec names, and those corral passes on to the kernel.
SECCOMP_KNOWN_FLAGS = (
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
)
SECCOMP_SUPPORTED_FLAGS = ("SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW")

# What the cgroup managers drive: cgroupfs, and systemd (--systemd-cgroup: a transient scope
# over D-Bus, corral.cgroups.systemd); not a user's systemd (rootless).
CGROUP = {"v1": True, "v2": True, "systemd": True, "systemdUser": False, "rdma": True}


def features() -> dict[str, object]:
    """The features document (runtime-spec features.md) describing corral."""
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": list(HOOK_KINDS),
        "mountOptions": mount_option_names(),
        "linux": _linux(),
        "annotations": {"org.corral.version": __version__},
    }


def _linux() -> dict[str, object]:
    return {
        "namespaces": sorted(NAMESPACE_TYPES),
        "capabilities": list(CAPABILITIES),
        "cgroup": dict(CGROUP),
        "seccomp": {
            "enabled": True,
            "actions": list(SECCOMP_ACTIONS),
            "operators": list(SECCOMP_OPERATORS),
            "archs": list(SECCOMP_ARCHS),
            "knownFlags": list(SECCOMP_KNOWN_FLAGS),
            "supportedFlags": list(SECCOMP_SUPPORTED_FLAGS),
        },
        # Reported off until the runtime applies them: claiming a security module that is
        # then silently skipped would be worse than saying no.
        "apparmor": {"enabled": False},
        "selinux": {"enabled": False},
        "intelRdt": {"enabled": False},
        "mountExtensions": {"idmap": {"enabled": False}},
    }


