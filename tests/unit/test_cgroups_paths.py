"""corral.cgroups: cgroupsPath resolution, host detection, opening and state round trips."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import corral.cgroups as cgroups
from corral.cgroups.testing import FakeCgroupfs
from corral.cgroups.v1 import V1Manager, controllers_of
from corral.cgroups.v2 import V2Manager
from corral.errors import CgroupError, SpecError, UsageError, UserError

# -- resolve_path -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, "/corral/c1"),
        ("", "/corral/c1"),
        ("/kubepods/burstable/pod1/c1", "/kubepods/burstable/pod1/c1"),
        ("//a//b/./c/", "/a/b/c"),
        ("/a/../b", "/b"),
        ("mygroup/c1", "/corral/mygroup/c1"),
        ("x/../y", "/corral/y"),
        ("./z", "/corral/z"),
    ],
)
def test_resolve_path(given: str | None, expected: str) -> None:
    assert cgroups.resolve_path(given, "c1") == expected


@pytest.mark.parametrize(
    "given",
    ["/..", "/../etc", "/a/../../b", "..", "../x", "a/../../x", "a/../.."],
)
def test_resolve_path_refuses_escapes(given: str) -> None:
    with pytest.raises(SpecError) as info:
        cgroups.resolve_path(given, "c1")
    assert info.value.path == "linux.cgroupsPath"
    assert "escapes" in str(info.value)


@pytest.mark.parametrize("given", ["/", "/a/..", "a/..", "."])
def test_resolve_path_refuses_the_root_itself(given: str) -> None:
    with pytest.raises(SpecError, match=r"needs a cgroup of its own"):
        cgroups.resolve_path(given, "c1")


def test_resolve_path_checks_the_container_id_too() -> None:
    with pytest.raises(SpecError, match=r"escapes /corral"):
        cgroups.resolve_path(None, "../../etc")


def test_resolve_path_refuses_nul_and_non_strings() -> None:
    with pytest.raises(SpecError, match=r"NUL"):
        cgroups.resolve_path("/a\0b", "c1")
    with pytest.raises(SpecError, match=r"must be a string"):
        cgroups.resolve_path(42, "c1")  # type: ignore[arg-type]


def test_systemd_form_needs_the_flag() -> None:
    with pytest.raises(SpecError) as info:
        cgroups.resolve_path("system.slice:docker:abc", "abc")
    assert "--systemd-cgroup" in str(info.value)
    assert info.value.path == "linux.cgroupsPath"


def test_systemd_mode_paths() -> None:
    assert cgroups.resolve_path("a.slice:p:n", "c1", systemd=True) == "a.slice:p:n"
    assert cgroups.resolve_path(None, "c1", systemd=True) == "system.slice:corral:c1"
    with pytest.raises(SpecError, match=r"slice:prefix:name"):
        cgroups.resolve_path("/a/b", "c1", systemd=True)


def test_systemd_driver_without_systemd(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        cgroups.open_manager("/corral/c1", systemd=True, systemd_running=str(tmp_path / "no"))
    assert str(info.value) == (
        "systemd cgroup driver requested (--systemd-cgroup) but systemd is not running"
    )
    assert isinstance(info.value, UserError)
    # With systemd running the path must be the driver's slice:prefix:name.
    with pytest.raises(SpecError, match=r"linux\.cgroupsPath.*slice:prefix:name"):
        cgroups.open_manager("/corral/c1", systemd=True, systemd_running=str(tmp_path))


# -- detect ---------------------------------------------------------------------------------

PURE_V2 = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
35 24 0:30 / /sys/fs/cgroup rw shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
"""

HYBRID = """\
25 24 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/unified rw shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:25 / /sys/fs/cgroup/systemd rw shared:11 - cgroup cgroup rw,xattr,name=systemd
30 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw shared:14 - cgroup cgroup rw,cpu,cpuacct
31 25 0:29 / /sys/fs/cgroup/memory rw shared:15 - cgroup cgroup rw,memory
32 25 0:30 / /sys/fs/cgroup/net_cls,net_prio rw shared:16 - cgroup cgroup rw,net_cls,net_prio
33 25 0:31 / /sys/fs/cgroup/cpuset rw shared:17 - cgroup cgroup rw,cpuset,clone_children
"""

PURE_V1 = "\n".join(
    line for line in HYBRID.splitlines() if "unified" not in line and "name=systemd" not in line
)

NONE = "22 27 0:21 / /proc rw,relatime - proc proc rw\n"


@pytest.mark.parametrize(("text", "mode"), [(PURE_V2, "v2"), (HYBRID, "hybrid"), (PURE_V1, "v1")])
def test_detect(tmp_path: Path, text: str, mode: str) -> None:
    (tmp_path / "mountinfo").write_text(text)
    assert cgroups.detect("/sys/fs/cgroup", str(tmp_path / "mountinfo")) == mode
    assert cgroups.detect("/sys/fs/cgroup/", str(tmp_path / "mountinfo")) == mode


def test_detect_without_cgroups(tmp_path: Path) -> None:
    (tmp_path / "mountinfo").write_text(NONE)
    with pytest.raises(CgroupError, match=r"no cgroup filesystem is mounted at /sys/fs/cgroup"):
        cgroups.detect(mountinfo=str(tmp_path / "mountinfo"))


def test_detect_unreadable_mountinfo(tmp_path: Path) -> None:
    with pytest.raises(CgroupError, match=r"reading"):
        cgroups.detect(mountinfo=str(tmp_path / "nope"))


def test_detect_this_host() -> None:
    assert cgroups.detect() in ("v1", "hybrid", "v2")


def test_mount_points_with_escapes(tmp_path: Path) -> None:
    text = "40 31 0:37 / /tmp/my\\040cg rw - cgroup2 cgroup2 rw\n"
    (tmp_path / "mountinfo").write_text(text)
    assert cgroups.detect("/tmp/my cg", str(tmp_path / "mountinfo")) == "v2"


def test_hierarchies_from_hybrid_mountinfo(tmp_path: Path) -> None:
    (tmp_path / "mountinfo").write_text(HYBRID)
    mgr = cgroups.open_manager("/corral/c1", mountinfo=str(tmp_path / "mountinfo"))
    assert isinstance(mgr, V1Manager)
    assert mgr.mode == "hybrid"
    assert mgr.hierarchies == [
        ("/sys/fs/cgroup/cpu,cpuacct", "cpu,cpuacct"),
        ("/sys/fs/cgroup/cpuset", "cpuset"),
        ("/sys/fs/cgroup/memory", "memory"),
        ("/sys/fs/cgroup/net_cls,net_prio", "net_cls,net_prio"),
        ("/sys/fs/cgroup/systemd", "name=systemd"),
    ]
    assert mgr.mount_sources() == [
        ("/sys/fs/cgroup/cpu,cpuacct/corral/c1", "cpu,cpuacct"),
        ("/sys/fs/cgroup/cpuset/corral/c1", "cpuset"),
        ("/sys/fs/cgroup/memory/corral/c1", "memory"),
        ("/sys/fs/cgroup/net_cls,net_prio/corral/c1", "net_cls,net_prio"),
        ("/sys/fs/cgroup/systemd/corral/c1", "systemd"),
        ("/sys/fs/cgroup/unified/corral/c1", "unified"),
    ]
    assert mgr.procs_files()[-1] == "/sys/fs/cgroup/unified/corral/c1/cgroup.procs"
    assert len(mgr.procs_files()) == 6


def test_controllers_of() -> None:
    assert controllers_of("rw,cpu,cpuacct") == "cpu,cpuacct"
    assert controllers_of("rw,xattr,release_agent=/x,name=systemd") == "name=systemd"
    assert controllers_of("rw,cpuset,clone_children,noprefix") == "cpuset"


def test_open_manager_explicit_modes(tmp_path: Path) -> None:
    (tmp_path / "mountinfo").write_text(HYBRID)
    mi = str(tmp_path / "mountinfo")
    v2 = cgroups.open_manager("/corral/c1", mode="v2", root="/x/", mountinfo=mi)
    assert isinstance(v2, V2Manager)
    assert v2.dir == "/x/corral/c1"
    assert v2.mount_sources() == [("/x/corral/c1", "")]
    v1 = cgroups.open_manager("/corral/c1", mode="v1", mountinfo=mi)
    assert isinstance(v1, V1Manager)
    assert v1.unified is None
    with pytest.raises(CgroupError, match=r"unknown cgroup mode"):
        cgroups.open_manager("/corral/c1", mode="v3", mountinfo=mi)
    with pytest.raises(CgroupError, match=r"absolute"):
        cgroups.open_manager("corral/c1", mountinfo=mi)


@pytest.mark.parametrize("mode", ["v1", "hybrid", "v2"])
def test_state_round_trip(tmp_path: Path, mode: str) -> None:
    fake = FakeCgroupfs(str(tmp_path), mode)
    mgr = cgroups.open_manager("/corral/c1", root=fake.root, mountinfo=fake.mountinfo)
    assert mgr.mode == mode
    state = mgr.to_state()
    again = cgroups.from_state(state)
    assert type(again) is type(mgr)
    assert again.to_state() == state
    assert again.procs_files() == mgr.procs_files()
    assert again.mount_sources() == mgr.mount_sources()


def test_state_round_trip_through_json() -> None:
    import json

    mgr = V1Manager("/corral/c1", [("/r/cpu", "cpu"), ("/r/memory", "memory")], "/r/unified")
    again = cgroups.from_state(json.loads(json.dumps(mgr.to_state())))
    assert again.procs_files() == mgr.procs_files()


@pytest.mark.parametrize("state", [{}, {"mode": "v9", "path": "/x"}, {"mode": "v1", "path": "/x"}])
def test_from_state_refuses_garbage(state: dict[str, object]) -> None:
    with pytest.raises(CgroupError, match=r"unreadable cgroup record"):
        cgroups.from_state(state)


def test_import_cost_stays_small() -> None:
    """The package must not pull typing, re, json, enum, dataclasses... onto start-up."""
    code = (
        "import sys, corral, corral.errors; before = set(sys.modules);"
        " import corral.cgroups, corral.cgroups.v1,"
        " corral.cgroups.v2; print(' '.join(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", f"import sys; sys.path.insert(0, 'src'); {code}"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout.split()
    heavy = {"typing", "re", "json", "enum", "dataclasses", "signal", "socket", "pathlib"}
    # os and __future__ too: `delete` loads the managers, and it must start within 1 ms of the
    # bare interpreter (issue 8); their imports cost 1 ms and 0.2 ms.
    heavy |= {"os", "__future__", "errno"}
    assert not heavy & set(out), out
    assert {m for m in out if m.startswith("corral")} == {
        "corral._posix",
        "corral.cgroups",
        "corral.cgroups._base",
        "corral.cgroups.v1",
        "corral.cgroups.v2",
    }
