"""clone3's argument block, the rule for when an init is born in its cgroup, and the v2
manager's memory ceiling (against a fake cgroupfs): no root needed."""

from __future__ import annotations

import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import corral.cgroups as cgroups
from corral import sys as k
from corral.cgroups.testing import FakeCgroupfs
from corral.cgroups.v2 import V2Manager
from corral.runtime import lifecycle

MiB = 1 << 20


def fields(raw: bytes) -> dict[str, int]:
    return dict(zip(k.CLONE_ARGS_FIELDS, struct.unpack("=11Q", raw), strict=True))


def test_clone_args_is_the_kernels_struct_with_the_cgroup_last() -> None:
    raw = k.clone_args(cgroup=7)
    assert len(raw) == k.CLONE_ARGS_SIZE_VER2 == 88
    assert fields(raw) == {
        "flags": 0x200000000, "pidfd": 0, "child_tid": 0, "parent_tid": 0, "exit_signal": 17,
        "stack": 0, "stack_size": 0, "tls": 0, "set_tid": 0, "set_tid_size": 0, "cgroup": 7,
    }
    assert raw[80:] == struct.pack("<Q", 7)  # offsetof(struct clone_args, cgroup) == 80


def test_clone_args_without_a_cgroup_is_a_plain_fork() -> None:
    assert fields(k.clone_args()) == dict.fromkeys(k.CLONE_ARGS_FIELDS, 0) | {"exit_signal": 17}
    assert fields(k.clone_args(k.CLONE_NEWPID, cgroup=0))["flags"] == (
        k.CLONE_NEWPID | k.CLONE_INTO_CGROUP
    )


def test_single_threaded_counts_the_kernels_threads() -> None:
    code = (
        "import threading, time; from corral import sys as k; one = k.single_threaded();"
        " threading.Thread(target=time.sleep, args=(1,), daemon=True).start();"
        " print(one, k.single_threaded())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.split() == ["True", "False"], done.stderr


def test_a_process_with_threads_is_not_cloned(monkeypatch: pytest.MonkeyPatch) -> None:
    """glibc's fork takes malloc's and stdio's locks around the fork; clone3 does not, so with
    another thread the child could start with a lock held forever: refused before any call."""
    monkeypatch.setattr(k, "single_threaded", lambda: False)
    with pytest.raises(k.KernelError) as err:
        k.fork_into_cgroup(-1)
    assert err.value.errno == 11


@pytest.mark.parametrize(
    ("mode", "ceiling", "born"),
    [
        ("v2", None, True),  # no memory limit anywhere
        ("v2", lifecycle.BORN_IN_CGROUP_MIN_MEMORY, True),
        ("v2", 1 << 40, True),
        ("v2", lifecycle.BORN_IN_CGROUP_MIN_MEMORY - 1, False),  # the memory floor wins
        ("v2", 8 * MiB, False),
        ("v1", None, False),  # one cgroup per hierarchy: CLONE_INTO_CGROUP names one
    ],
)
def test_the_rule(
    monkeypatch: pytest.MonkeyPatch, mode: str, ceiling: int | None, born: bool
) -> None:
    monkeypatch.setattr(lifecycle, "_clone3_missing", False)
    assert lifecycle.born_in_cgroup(mode, ceiling) is born


def test_a_kernel_found_lacking_is_not_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def lacking(fd: int) -> int:
        calls.append(fd)
        raise k.KernelError("clone3", 22, "Invalid argument")

    monkeypatch.setattr(lifecycle, "_clone3_missing", False)
    monkeypatch.setattr(k, "fork_into_cgroup", lacking)
    assert lifecycle.fork_born_joined(5) == -1
    assert calls == [5] and not lifecycle.born_in_cgroup("v2", None)


def test_other_refusals_fall_back_without_being_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def busy(fd: int) -> int:
        raise k.KernelError("clone3", 16, "Device or resource busy")

    monkeypatch.setattr(lifecycle, "_clone3_missing", False)
    monkeypatch.setattr(k, "fork_into_cgroup", busy)
    assert lifecycle.fork_born_joined(5) == -1
    assert lifecycle.born_in_cgroup("v2", None)


@pytest.fixture
def mgr(tmp_path: Path) -> Iterator[V2Manager]:
    with FakeCgroupfs(str(tmp_path), "v2") as fake:
        mgr = cgroups.open_manager("/corral/c1", root=fake.root, mountinfo=fake.mountinfo)
        assert isinstance(mgr, V2Manager)
        mgr.create()
        yield mgr


def test_memory_ceiling_is_the_lowest_limit_on_the_way_up(mgr: V2Manager) -> None:
    parent = Path(mgr.dir).parent
    for d in (mgr.dir, parent, mgr.root):
        Path(d, "memory.max").write_text("max\n")
    assert mgr.memory_ceiling() is None
    Path(parent, "memory.max").write_text(f"{256 * MiB}\n")
    assert mgr.memory_ceiling() == 256 * MiB
    Path(mgr.dir, "memory.high").write_text(f"{32 * MiB}\n")
    assert mgr.memory_ceiling() == 32 * MiB
    Path(mgr.root, "memory.max").write_text(f"{MiB}\n")  # the root's files are not limits
    assert mgr.memory_ceiling() == 32 * MiB
