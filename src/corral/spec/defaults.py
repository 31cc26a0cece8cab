"""The config.json that ``runc spec`` writes, field for field: a starting point for a bundle.

It describes a locked-down container running ``sh``: new PID, network, IPC, UTS and mount
namespaces; three capabilities (CAP_AUDIT_WRITE, CAP_KILL, CAP_NET_BIND_SERVICE); no new
privileges; a read-only rootfs; /proc, /dev, /sys mounted as a Linux system expects; the
/proc and /sys files that would reveal or change the host masked or made read-only; and a
device cgroup that denies every device not created for the container.

``runc spec --rootless`` adjusts it for an unprivileged user: a user namespace that maps the
caller's own UID and GID to root inside; no network namespace (an unprivileged user cannot
give it any connectivity); /sys bind-mounted from the host (sysfs cannot be mounted without
owning the network namespace); no ``gid=5`` on /dev/pts (group 5 is not mapped); and no cgroup
settings (an unprivileged user usually cannot write them).

Key order matches runc's output (Go writes struct fields in declaration order), so
serializing this gives the same file.
"""

from __future__ import annotations

import os

# What runc 1.1 writes as ociVersion (its vendored runtime-spec is 1.0.2-dev).
OCI_VERSION = "1.0.2-dev"

_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


def default_spec(rootless: bool = False, *, cgroup2: bool | None = None) -> dict[str, object]:
    """A fresh copy of ``runc spec`` (``rootless=True``: ``runc spec --rootless``) output.

    The rootless mappings use this process's effective UID and GID, as runc does. On a pure
    cgroup v2 host (``cgroup2``: None asks this host) runc adds a cgroup namespace, after the
    mount namespace; so does this.
    """
    linux = _rootless_linux() if rootless else _linux()
    if cgroup2 if cgroup2 is not None else unified_cgroup_host():
        namespaces = linux["namespaces"]
        assert isinstance(namespaces, list)
        namespaces.insert(namespaces.index({"type": "mount"}) + 1, {"type": "cgroup"})
    spec: dict[str, object] = {
        "ociVersion": OCI_VERSION,
        "process": _process(),
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "runc",
        "mounts": _mounts(rootless),
        "linux": linux,
    }
    return spec


def unified_cgroup_host() -> bool:
    """Is /sys/fs/cgroup the cgroup2 hierarchy itself (not v1, not a hybrid's tmpfs)?"""
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def _process() -> dict[str, object]:
    return {
        "terminal": True,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh"],
        "env": [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "TERM=xterm",
        ],
        "cwd": "/",
        "capabilities": {
            "bounding": list(_CAPS),
            "effective": list(_CAPS),
            "permitted": list(_CAPS),
            "ambient": list(_CAPS),
        },
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": True,
    }


def _mounts(rootless: bool) -> list[dict[str, object]]:
    """/proc, a small /dev tmpfs with its pts, shm and mqueue, and a read-only /sys."""
    devpts = ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]
    if not rootless:
        devpts.append("gid=5")  # the "tty" group; unmapped (so refused) in a rootless userns
    shm = ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]
    cgroup = ["nosuid", "noexec", "nodev", "relatime", "ro"]
    return [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        _mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        _mount("/dev/pts", "devpts", "devpts", devpts),
        _mount("/dev/shm", "tmpfs", "shm", shm),
        _mount("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
        _sys_mount(rootless),
        _mount("/sys/fs/cgroup", "cgroup", "cgroup", cgroup),
    ]


def _mount(destination: str, fstype: str, source: str, options: list[str]) -> dict[str, object]:
    return {"destination": destination, "type": fstype, "source": source, "options": options}


def _sys_mount(rootless: bool) -> dict[str, object]:
    """sysfs needs a network namespace of one's own; rootless has none, so bind the host's."""
    if rootless:
        return _mount("/sys", "none", "/sys", ["rbind", "nosuid", "noexec", "nodev", "ro"])
    return _mount("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", "ro"])


def _linux() -> dict[str, object]:
    return {
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "namespaces": _namespaces(["pid", "network", "ipc", "uts", "mount"]),
        "maskedPaths": _masked_paths(),
        "readonlyPaths": _readonly_paths(),
    }


def _rootless_linux() -> dict[str, object]:
    return {
        "uidMappings": [{"containerID": 0, "hostID": os.geteuid(), "size": 1}],
        "gidMappings": [{"containerID": 0, "hostID": os.getegid(), "size": 1}],
        "namespaces": _namespaces(["pid", "ipc", "uts", "mount", "user"]),
        "maskedPaths": _masked_paths(),
        "readonlyPaths": _readonly_paths(),
    }


def _namespaces(types: list[str]) -> list[dict[str, object]]:
    return [{"type": kind} for kind in types]


def _masked_paths() -> list[str]:
    """Files that leak host information or kernel memory: a container sees them empty."""
    return [
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


def _readonly_paths() -> list[str]:
    """Files that would change the host's kernel if written: a container may only read them."""
    return ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
