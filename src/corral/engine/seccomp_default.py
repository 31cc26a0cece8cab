"""The engine's default seccomp profile: podman's, which is docker's, as an OCI linux.seccomp.

The profile is read from the file Debian's ``golang-github-containers-common`` installs,
``/usr/share/containers/seccomp.json`` (podman's own default; scripts/install.sh installs the
package), not from a copy shipped with corral: the host's podman, buildah and corral then
apply the same rules, and a security update of the package reaches all three.

That file is in the docker/containers "seccomp.json" dialect, not OCI's: it names one
``archMap`` entry per architecture, and each syscall rule may carry ``includes`` /
``excludes`` conditions (``arches`` in Go's names: amd64, arm64, ...; ``caps``;
``minKernel``). :func:`to_oci` applies them as podman does (containers/common
pkg/seccomp/seccomp_linux.go, ``setupSeccomp``):

- ``architectures``: the running architecture's archMap entry and its sub-architectures;
- a rule is dropped when an excluded arch is ours or an excluded cap is in the container's
  bounding set, or when an included arch is not ours, an included cap is missing from the
  bounding set, or the kernel is older than ``minKernel``;
- ``errnoRet`` is kept; the string ``errno`` (a name, for humans) and ``comment`` are dropped.

So a container with CAP_SYS_ADMIN may call mount, unshare and setns, and one without gets
EPERM for them; calls the profile does not list fail with ENOSYS (defaultErrnoRet 38), which
makes programs fall back to older calls instead of failing hard.
"""

from __future__ import annotations

import os

from corral.errors import CorralError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PROFILE_PATH = "/usr/share/containers/seccomp.json"

# uname -m -> (Go's GOARCH, libseccomp's architecture name).
ARCHES = {
    "x86_64": ("amd64", "SCMP_ARCH_X86_64"),
    "aarch64": ("arm64", "SCMP_ARCH_AARCH64"),
    "s390x": ("s390x", "SCMP_ARCH_S390X"),
    "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE"),
    "riscv64": ("riscv64", "SCMP_ARCH_RISCV64"),
}


def load_profile(path: str = PROFILE_PATH) -> dict[str, Any]:
    """The profile file as JSON data."""
    from corral import _json

    try:
        with open(path, "rb") as f:
            data: dict[str, Any] = _json.loads(f.read())
    except FileNotFoundError:
        raise CorralError(
            f"default seccomp profile {path} is missing: install golang-github-containers-common"
        ) from None
    return data


def default_seccomp(
    bounding: list[str], *, machine: str | None = None, kernel: str | None = None
) -> dict[str, Any]:
    """podman's default profile for a container with the ``bounding`` capability set."""
    return to_oci(load_profile(), bounding, machine=machine, kernel=kernel)


def to_oci(
    profile: dict[str, Any],
    bounding: list[str],
    *,
    machine: str | None = None,
    kernel: str | None = None,
) -> dict[str, Any]:
    """Convert a docker/containers profile to OCI linux.seccomp for this host and these caps."""
    machine = machine or os.uname().machine
    goarch, scmp = ARCHES.get(machine, ("", ""))
    release = _version(kernel or os.uname().release)
    caps = set(bounding)
    out: dict[str, Any] = {"defaultAction": profile["defaultAction"]}
    if profile.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    arches: list[str] = []
    for entry in profile.get("archMap") or []:
        if entry.get("architecture") == scmp:
            arches += [entry["architecture"], *(entry.get("subArchitectures") or [])]
    if arches:
        out["architectures"] = arches
    syscalls = []
    for rule in profile.get("syscalls") or []:
        if not _applies(rule, goarch, caps, release):
            continue
        names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
        oci: dict[str, Any] = {"names": list(names), "action": rule["action"]}
        if rule.get("errnoRet") is not None:
            oci["errnoRet"] = rule["errnoRet"]
        if rule.get("args"):
            oci["args"] = [
                {k: a[k] for k in ("index", "value", "valueTwo", "op") if k in a}
                for a in rule["args"]
            ]
        syscalls.append(oci)
    out["syscalls"] = syscalls
    return out


def _applies(rule: dict[str, Any], goarch: str, caps: set[str], release: tuple[int, int]) -> bool:
    excludes = rule.get("excludes") or {}
    includes = rule.get("includes") or {}
    if goarch in (excludes.get("arches") or []):
        return False
    if caps & set(excludes.get("caps") or []):
        return False
    if excludes.get("minKernel") and release >= _version(excludes["minKernel"]):
        return False
    if includes.get("arches") and goarch not in includes["arches"]:
        return False
    if not set(includes.get("caps") or []) <= caps:
        return False
    return not (includes.get("minKernel") and release < _version(includes["minKernel"]))


def _version(text: str) -> tuple[int, int]:
    """"6.1.0-13-amd64" -> (6, 1)."""
    parts = text.split("-")[0].split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return 0, 0
