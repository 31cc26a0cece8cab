"""The init born in its cgroup (clone3 with CLONE_INTO_CGROUP) on v2, and the fork-then-join
path elsewhere: on v1 and hybrid hosts, under a small memory limit, on a kernel without clone3.

Each test wraps corral.runtime.init.run, the first Python the child runs after it is made, to
record where the child is at that moment (/proc/self/cgroup) and whether it is dumpable, then
creates the container in this process (corral.Runtime), so the wrapper runs in the real child.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import corral
from corral.runtime import lifecycle
from helpers import host
from helpers.bundles import Bundle, BundleFactory

V2 = host.cgroup_mode() == "v2"
MiB = 1 << 20


# Run in a process of its own: the test process has a thread (the reaper of tests/helpers/
# shim.py), and clone3 is refused to a process with threads (see corral.sys.fork_into_cgroup).
DRIVER = """
import json, os, sys, time
from corral import sys as k
from corral.errors import KernelError
from corral.runtime import init, lifecycle
import corral

root, out, mode, result_file, *work = sys.argv[1:]
real = init.run

def run(cfg):
    with open("/proc/self/cgroup") as f:
        where = f.read()
    with open(out, "w") as f:
        f.write(f"dumpable={k.prctl(k.PR_GET_DUMPABLE)}\\n{where}")
    return real(cfg)

def lacking(cgroup_fd):
    tries.append(cgroup_fd)
    raise KernelError("clone3", 38, "Function not implemented")

init.run = run
tries = []
if mode == "lacking":
    k.fork_into_cgroup = lacking
rt = corral.Runtime(root=root)
result = {"creates": []}
for cid, bundle in zip(work[::2], work[1::2]):
    if mode == "timing":
        lifecycle._clone3_missing = cid.endswith("-fork")
    start = time.perf_counter()
    pid = rt.create(cid, bundle)
    took = time.perf_counter() - start
    with open(f"/proc/{pid}/cgroup") as f:
        final = f.read()
    with open(out) as f:
        first = f.read()
    one = {"first": first, "final": final, "seconds": took}
    if mode == "exec":  # and an exec'd process's first step, in the started container
        from corral.runtime import exec as execution
        real_child = execution._child

        def child(*args, **kwargs):
            with open("/proc/self/cgroup") as f:
                where = f.read()
            with open(out + ".exec", "w") as f:
                f.write(f"dumpable={k.prctl(k.PR_GET_DUMPABLE)}" + "\\n" + where)
            return real_child(*args, **kwargs)

        execution._child = child
        rt.start(cid)
        one["exec_status"] = rt.exec(cid, ["true"])
        with open(out + ".exec") as f:
            one["exec_first"] = f.read()
    result["creates"].append(one)
    if mode == "timing":
        rt.delete(cid, force=True)
result["tries"] = len(tries)
result["missing"] = lifecycle._clone3_missing
with open(result_file, "w") as f:
    json.dump(result, f)
"""


def memory_line(text: str) -> str:
    """The line of /proc/<pid>/cgroup that says where the process is charged for memory."""
    lines = [line for line in text.splitlines() if ":" in line]
    if V2:
        return next(line for line in lines if line.startswith("0::"))
    return next(line for line in lines if "memory" in line.split(":")[1].split(","))


def drive(argv: list[str], out: Path) -> None:
    """Run DRIVER; its stdio is not a pipe, which the containers it leaves would hold open."""
    errors = Path(str(out) + ".stderr")
    with open(errors, "w") as stderr:
        done = subprocess.run(
            [sys.executable, "-c", DRIVER, *argv], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=stderr, timeout=300,
        )
    assert done.returncode == 0, errors.read_text()


def create(
    rt: corral.Runtime, root: Path, out: Path, work: list[tuple[str, Bundle]], mode: str = ""
) -> dict[str, Any]:
    """Create the containers ``work`` names in a fresh process (deleted here): each one's
    {"first": the child's record, "final": the init's cgroups after create, "seconds"}, with
    "tries" (clone3 calls that failed) and "missing" (the cache after the last create)."""
    argv = [str(root), str(out), mode or "-", str(out) + ".json"]
    for cid, bundle in work:
        argv += [cid, str(bundle)]
    try:
        drive(argv, out)
        result: dict[str, Any] = json.loads(Path(str(out) + ".json").read_text())
        return result
    finally:
        for cid, _ in work:
            try:
                rt.delete(cid, force=True)
            except corral.NotFoundError:
                pass


@pytest.fixture
def rt(runc_root: Path) -> corral.Runtime:
    return corral.Runtime(root=str(runc_root))


def test_init_is_born_in_its_cgroup_on_v2_and_joins_late_elsewhere(
    rt: corral.Runtime, runc_root: Path, cid: str, bundle: Bundle, tmp_path: Path
) -> None:
    made = create(rt, runc_root, tmp_path / "first", [(cid, bundle)])
    first, final = made["creates"][0]["first"], made["creates"][0]["final"]
    assert first.startswith("dumpable=0\n"), first  # non-dumpable from its first instruction
    assert cid in memory_line(final), final
    if V2:
        assert memory_line(first) == memory_line(final), (first, final)
        assert not made["missing"]
    else:  # v1 or hybrid: forked outside, the memory cgroup joined just before the exec
        assert cid not in memory_line(first), first


def test_an_exec_is_born_in_the_cgroup_on_v2_whatever_its_memory_limit(
    rt: corral.Runtime, runc_root: Path, cid: str, make_bundle: BundleFactory, tmp_path: Path
) -> None:
    """An exec'd process joins at its first step anyway: no memory rule holds clone3 back."""
    small = lifecycle.BORN_IN_CGROUP_MIN_MEMORY - MiB

    def limit(config: dict[str, Any]) -> None:
        config["linux"]["resources"] = {"memory": {"limit": small, "swap": small}}

    bundle = make_bundle(["sleep", "1000"], edit=limit)
    made = create(rt, runc_root, tmp_path / "first", [(cid, bundle)], "exec")
    one = made["creates"][0]
    assert one["exec_status"] == 0
    assert one["exec_first"].startswith("dumpable=0\n"), one
    assert (cid in memory_line(one["exec_first"])) is V2, one


@pytest.mark.skipif(not V2, reason="clone3 into a cgroup is tried on cgroup v2 only")
def test_a_kernel_without_clone3_falls_back_to_the_late_join(
    rt: corral.Runtime, runc_root: Path, cid: str, make_bundle: BundleFactory, tmp_path: Path
) -> None:
    work = [(cid, make_bundle()), (cid + "-2", make_bundle())]
    made = create(rt, runc_root, tmp_path / "first", work, "lacking")
    for (name, _), one in zip(work, made["creates"], strict=True):
        first, final = one["first"], one["final"]
        assert name not in memory_line(first) and name in memory_line(final), (first, final)
    assert made["tries"] == 1 and made["missing"]  # tried once, then remembered


@pytest.mark.skipif(not V2, reason="clone3 into a cgroup is tried on cgroup v2 only")
def test_a_memory_limit_below_the_rule_keeps_the_late_join(
    rt: corral.Runtime, runc_root: Path, cid: str, make_bundle: BundleFactory, tmp_path: Path
) -> None:
    small = lifecycle.BORN_IN_CGROUP_MIN_MEMORY - MiB

    def limit(config: dict[str, Any]) -> None:
        config["linux"]["resources"] = {"memory": {"limit": small, "swap": small}}

    made = create(rt, runc_root, tmp_path / "first", [(cid, make_bundle(edit=limit))])
    first, final = made["creates"][0]["first"], made["creates"][0]["final"]
    assert cid not in memory_line(first) and cid in memory_line(final), (first, final)


@pytest.mark.skipif(not V2, reason="clone3 into a cgroup is tried on cgroup v2 only")
def test_what_the_born_init_is_charged_stays_far_below_the_rule(
    rt: corral.Runtime, runc_root: Path, cid: str, bundle: Bundle, tmp_path: Path
) -> None:
    """The rule's premise, measured: memory.peak of a container whose init was born in it, at
    the end of create (the forked interpreter's pages and the init's kernel objects), is well
    under BORN_IN_CGROUP_MIN_MEMORY. Also prints create's time against the fork-then-join
    path's (-s to see it)."""
    if not host.has_cgroup_file("memory", "memory.peak"):
        pytest.skip(host.missing("memory", "memory.peak"))  # Linux 5.19
    record = tmp_path / "first"
    argv = [str(runc_root), str(record), "-", f"{record}.json", cid, str(bundle)]
    try:
        drive(argv, record)
        peak = int(Path(host.container_cgroup("memory", cid), "memory.peak").read_text())
        current = int(Path(host.container_cgroup("memory", cid), "memory.current").read_text())
    finally:
        rt.delete(cid, force=True)
    print(
        f"\nborn in its cgroup, after create: memory.peak {peak / MiB:.1f} MiB,"
        f" memory.current {current / MiB:.1f} MiB"
    )
    assert peak * 4 <= lifecycle.BORN_IN_CGROUP_MIN_MEMORY, peak
    work = [(f"{cid}-{i}-{'born' if i % 2 == 0 else 'fork'}", bundle) for i in range(10)]
    made = create(rt, runc_root, record, work, "timing")
    times: dict[bool, list[float]] = {True: [], False: []}
    for (name, _), one in zip(work, made["creates"], strict=True):
        born = name.endswith("-born")
        assert (memory_line(one["first"]) == memory_line(one["final"])) is born, one
        times[born].append(one["seconds"])
    born_s, forked_s = statistics.median(times[True]), statistics.median(times[False])
    print(
        f"create: born in the cgroup {born_s * 1e3:.1f} ms, fork then join {forked_s * 1e3:.1f}"
        f" ms, ratio {born_s / forked_s:.2f} (median of 5 each, in one process)"
    )
