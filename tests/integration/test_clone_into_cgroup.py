"""The init born in its cgroup (clone3 with CLONE_INTO_CGROUP) on v2, and the fork-then-join
path elsewhere: on v1 and hybrid hosts, under a small memory limit, on a kernel without clone3.

Each test wraps corral.runtime.init.run, the first Python the child runs after it is made, to
record where the child is at that moment (/proc/self/cgroup) and whether it is dumpable, then
creates the container in this process (corral.Runtime), so the wrapper runs in the real child.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

import corral
from corral import sys as k
from corral.errors import KernelError
from corral.runtime import init, lifecycle
from helpers import host
from helpers.bundles import Bundle, BundleFactory

V2 = host.cgroup_mode() == "v2"
MiB = 1 << 20


def record_first_step(monkeypatch: pytest.MonkeyPatch, out: Path) -> None:
    """Make the child write, before anything else, its cgroups and dumpable flag to ``out``."""
    real = init.run

    def run(cfg: init.InitConfig) -> Any:
        with open("/proc/self/cgroup") as f:
            where = f.read()
        out.write_text(f"dumpable={k.prctl(k.PR_GET_DUMPABLE)}\n{where}")
        return real(cfg)

    monkeypatch.setattr(init, "run", run)


def memory_line(text: str) -> str:
    """The line of /proc/<pid>/cgroup that says where the process is charged for memory."""
    lines = [line for line in text.splitlines() if ":" in line]
    if V2:
        return next(line for line in lines if line.startswith("0::"))
    return next(line for line in lines if "memory" in line.split(":")[1].split(","))


def create(
    rt: corral.Runtime, cid: str, bundle: Bundle, monkeypatch: pytest.MonkeyPatch, out: Path
) -> tuple[str, str]:
    """Create the container: (the child's first record, the init's cgroups after create)."""
    record_first_step(monkeypatch, out)
    pid = rt.create(cid, str(bundle))
    with open(f"/proc/{pid}/cgroup") as f:
        return out.read_text(), f.read()


@pytest.fixture
def rt(runc_root: Path) -> corral.Runtime:
    return corral.Runtime(root=str(runc_root))


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lifecycle, "_clone3_missing", False)


def test_init_is_born_in_its_cgroup_on_v2_and_joins_late_elsewhere(
    rt: corral.Runtime, cid: str, bundle: Bundle, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    first, final = create(rt, cid, bundle, monkeypatch, tmp_path / "first")
    try:
        assert first.startswith("dumpable=0\n"), first  # non-dumpable from its first instruction
        assert cid in memory_line(final), final
        if V2:
            assert memory_line(first) == memory_line(final), (first, final)
            assert not lifecycle._clone3_missing
        else:  # v1 or hybrid: forked outside, the memory cgroup joined just before the exec
            assert cid not in memory_line(first), first
    finally:
        rt.delete(cid, force=True)


@pytest.mark.skipif(not V2, reason="clone3 into a cgroup is tried on cgroup v2 only")
def test_a_kernel_without_clone3_falls_back_to_the_late_join(
    rt: corral.Runtime, cid: str, make_bundle: BundleFactory, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    tries: list[int] = []

    def lacking(cgroup_fd: int) -> int:
        tries.append(cgroup_fd)
        raise KernelError("clone3", 38, "Function not implemented")

    monkeypatch.setattr(k, "fork_into_cgroup", lacking)
    for n, name in enumerate((cid, cid + "-2")):
        first, final = create(rt, name, make_bundle(), monkeypatch, tmp_path / f"first{n}")
        try:
            assert name not in memory_line(first) and name in memory_line(final), (first, final)
        finally:
            rt.delete(name, force=True)
    assert len(tries) == 1 and lifecycle._clone3_missing  # tried once, then remembered


@pytest.mark.skipif(not V2, reason="clone3 into a cgroup is tried on cgroup v2 only")
def test_a_memory_limit_below_the_rule_keeps_the_late_join(
    rt: corral.Runtime, cid: str, make_bundle: BundleFactory, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    small = lifecycle.BORN_IN_CGROUP_MIN_MEMORY - MiB

    def limit(config: dict[str, Any]) -> None:
        config["linux"]["resources"] = {"memory": {"limit": small, "swap": small}}

    first, final = create(rt, cid, make_bundle(edit=limit), monkeypatch, tmp_path / "first")
    try:
        assert cid not in memory_line(first) and cid in memory_line(final), (first, final)
    finally:
        rt.delete(cid, force=True)


@pytest.mark.skipif(not V2, reason="clone3 into a cgroup is tried on cgroup v2 only")
def test_what_the_born_init_is_charged_stays_far_below_the_rule(
    rt: corral.Runtime, cid: str, bundle: Bundle, runc_root: Path
) -> None:
    """The rule's premise, measured: memory.peak of a container whose init was born in it, at
    the end of create (the forked interpreter's pages and the init's kernel objects), is well
    under BORN_IN_CGROUP_MIN_MEMORY. Also prints create's time against the fork-then-join
    path's (-s to see it)."""
    if not host.has_cgroup_file("memory", "memory.peak"):
        pytest.skip(host.missing("memory", "memory.peak"))  # Linux 5.19
    rt.create(cid, str(bundle))
    try:
        peak = int(Path(host.container_cgroup("memory", cid), "memory.peak").read_text())
    finally:
        rt.delete(cid, force=True)
    print(f"\nmemory.peak of a container whose init was born in it: {peak / MiB:.1f} MiB")
    assert peak * 4 <= lifecycle.BORN_IN_CGROUP_MIN_MEMORY, peak
    times: dict[bool, list[float]] = {True: [], False: []}
    for i in range(6):
        born = i % 2 == 0
        lifecycle._clone3_missing = not born
        name = f"{cid}-t{i}"
        start = time.perf_counter()
        rt.create(name, str(bundle))
        times[born].append(time.perf_counter() - start)
        rt.delete(name, force=True)
    lifecycle._clone3_missing = False
    born_s, forked_s = statistics.median(times[True]), statistics.median(times[False])
    print(
        f"create: born in the cgroup {born_s * 1e3:.1f} ms, fork then join {forked_s * 1e3:.1f}"
        f" ms, ratio {born_s / forked_s:.2f} (median of 3 each; pid {os.getpid()})"
    )
