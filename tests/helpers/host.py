"""What this host's kernel offers, for tests of features that not every host has.

A test of such a feature checks that it works where the host has it, and where it does not,
checks the runtime's one-line error naming the field (preferred) or skips with
:func:`skip_without`, whose reason names the missing file. Every probe lives here, so a new
host-dependent test does not invent its own check.

The probes look at what a *new* cgroup gets: several control files exist only below the root
(``blkio.bfq.weight``, ``cpu.idle``), and some appear only once a kernel module is loaded (BFQ's
files), so :func:`cgroup_files` makes a short-lived ``corral-probe-*`` child cgroup, lists it and
removes it again, on every call (a test may load a module in between).

The probes read the kernel directly and never import corral: they are the oracle the runtime is
checked against, not a copy of its own logic.
"""

from __future__ import annotations

import os
import uuid

import pytest

CGROUP_ROOT = "/sys/fs/cgroup"

#: Why a host may lack a file, for skip reasons and docs (the runtime has its own hints).
WHY_MISSING = {
    "blkio.bfq.weight": "no BFQ I/O scheduler in this kernel",
    "blkio.bfq.weight_device": "no BFQ I/O scheduler in this kernel",
    "blkio.weight": "CFQ left with Linux 5.0",
    "blkio.leaf_weight": "CFQ left with Linux 5.0",
    "memory.memsw.limit_in_bytes": "swap accounting off (swapaccount=0 or no CONFIG_MEMCG_SWAP)",
    "memory.swap.max": "swap accounting off",
    "cpu.idle": "needs Linux 5.15",
    "cpu.cfs_burst_us": "needs Linux 5.14",
    "cpu.rt_period_us": "kernel built without CONFIG_RT_GROUP_SCHED",
    "cpu.rt_runtime_us": "kernel built without CONFIG_RT_GROUP_SCHED",
}


def cgroup_mode() -> str:
    """ "v2" (one unified hierarchy at /sys/fs/cgroup), "v1" (also hybrid), or "" (none)."""
    if os.path.exists(f"{CGROUP_ROOT}/cgroup.controllers"):
        return "v2"
    return "v1" if hierarchy("memory") or hierarchy("pids") else ""


def _mounts() -> list[tuple[str, str, list[str]]]:
    """(mount point, fs type, super options) of every cgroup mount."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            fstype, options = fields[sep + 1], fields[sep + 3]
            if fstype in ("cgroup", "cgroup2"):
                out.append((fields[4], fstype, options.split(",")))
    return out


def hierarchy(controller: str) -> str | None:
    """The mount point of ``controller``'s hierarchy, or None where it is not mounted.

    On v1 the hierarchy whose options name the controller; on v2 the unified mount when its
    root lists the controller in ``cgroup.controllers``.
    """
    for mount, fstype, options in _mounts():
        if fstype == "cgroup" and controller in options:
            return mount
    for mount, fstype, _ in _mounts():
        if fstype == "cgroup2" and mount == CGROUP_ROOT:
            with open(f"{mount}/cgroup.controllers") as f:
                if controller in f.read().split():
                    return mount
    return None


def kernel_controllers() -> set[str]:
    """The controllers this kernel was built with (/proc/cgroups), mounted or not."""
    with open("/proc/cgroups") as f:
        return {line.split()[0] for line in f if not line.startswith("#")}


def has_controller(controller: str) -> bool:
    """Whether ``controller`` is mounted (v1) or available (v2) on this host."""
    return hierarchy(controller) is not None


def cgroup_files(controller: str) -> frozenset[str]:
    """The control files a new cgroup in ``controller``'s hierarchy gets (empty if unmounted)."""
    mount = hierarchy(controller)
    if mount is None:
        return frozenset()
    probe = f"{mount}/corral-probe-{uuid.uuid4().hex[:12]}"
    os.mkdir(probe)
    try:
        return frozenset(os.listdir(probe))
    finally:
        os.rmdir(probe)


def has_cgroup_file(controller: str, name: str) -> bool:
    """Whether a new cgroup in ``controller``'s hierarchy has the file ``name``."""
    return name in cgroup_files(controller)


def missing(controller: str, name: str) -> str:
    """Why ``name`` is missing, for a skip reason: "no blkio.bfq.weight in a new blkio cgroup
    (no BFQ I/O scheduler in this kernel)"."""
    if not has_controller(controller):
        built = "mounted" if controller in kernel_controllers() else "in this kernel"
        return f"no {controller} cgroup controller (not {built}), so no {name}"
    why = WHY_MISSING.get(name, "")
    return f"no {name} in a new {controller} cgroup" + (f" ({why})" if why else "")


def skip_without(controller: str, name: str) -> None:
    """Skip the test, with the reason, unless a new cgroup has ``controller``'s ``name``."""
    if not has_cgroup_file(controller, name):
        pytest.skip(f"host lacks {missing(controller, name)}")


def has_swap_accounting() -> bool:
    """Whether memory limits can include swap (v1 memory.memsw.*, v2 memory.swap.max)."""
    if cgroup_mode() == "v2":
        return has_cgroup_file("memory", "memory.swap.max")
    return has_cgroup_file("memory", "memory.memsw.limit_in_bytes")


def swap_in_use() -> bool:
    """Whether the host has an active swap area (/proc/swaps lists one)."""
    with open("/proc/swaps") as f:
        return len(f.read().strip().splitlines()) > 1


def hard_memory_limit(limit: int) -> dict[str, int]:
    """An OCI ``memory`` section under which a process that keeps allocating is OOM-killed.

    With swap accounting, swap is capped at ``limit`` as well (no swapping at all); without it,
    a plain memory limit is enough only where no swap is on. Otherwise the process would swap
    rather than die, and the test is skipped with that reason.
    """
    if has_swap_accounting():
        return {"limit": limit, "swap": limit}
    if swap_in_use():
        pytest.skip(
            "host lacks swap accounting (no memory.memsw.limit_in_bytes) and has swap on:"
            " a memory limit cannot stop a process from swapping"
        )
    return {"limit": limit}


def container_cgroup(controller: str, cid: str, parent: str = "corral") -> str:
    """The directory of container ``cid``'s cgroup that holds ``controller``'s files, for the
    runtime's default path ``/<parent>/<cid>``: on v1 (and hybrid) inside that controller's
    hierarchy (``/sys/fs/cgroup/memory/corral/<id>``), on v2 the one directory
    (``/sys/fs/cgroup/corral/<id>``), whatever the controller."""
    if cgroup_mode() == "v2":
        return f"{CGROUP_ROOT}/{parent}/{cid}"
    mount = hierarchy(controller) or f"{CGROUP_ROOT}/{controller}"
    return f"{mount}/{parent}/{cid}"


def container_cgroup_file(controller: str, cid: str, v1_name: str, v2_name: str = "") -> str:
    """The path of a control file of ``cid``'s cgroup: ``v1_name`` on v1, ``v2_name`` (the same
    name when empty) on v2, e.g. ``("memory", cid, "memory.limit_in_bytes", "memory.max")``."""
    name = (v2_name or v1_name) if cgroup_mode() == "v2" else v1_name
    return f"{container_cgroup(controller, cid)}/{name}"


def read_container_cgroup(controller: str, cid: str, v1_name: str, v2_name: str = "") -> str:
    """The stripped text of :func:`container_cgroup_file`."""
    with open(container_cgroup_file(controller, cid, v1_name, v2_name)) as f:
        return f.read().strip()


def oom_kill_count(cid: str) -> int:
    """How many processes the kernel's OOM killer killed in ``cid``'s memory cgroup: the
    ``oom_kill`` line of memory.oom_control (v1) or memory.events (v2)."""
    text = read_container_cgroup("memory", cid, "memory.oom_control", "memory.events")
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            return int(value)
    return 0
