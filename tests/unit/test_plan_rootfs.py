"""corral.plan.rootfs: how each config.mounts entry is decided (pure: no kernel calls)."""

from __future__ import annotations

from typing import Any

import pytest

from corral.errors import SpecError
from corral.plan.rootfs import Mount, plan_rootfs
from corral.spec import tables as t


def _mount(options: list[str], fstype: str = "tmpfs", source: str = "tmpfs") -> Mount:
    entry: dict[str, Any] = {"destination": "/x", "type": fstype, "source": source,
                             "options": options}
    return Mount("mounts[0]", entry, "/bundle", source_is_file=False)


def test_plain_tmpfs_has_no_extras() -> None:
    m = _mount(["nosuid", "mode=755"])
    assert (m.copyup, m.attr_set, m.attr_clr, m.remount_flags) == (False, 0, 0, 0)
    assert m.flags == t.MS_NOSUID and m.data == "mode=755"


def test_tmpcopyup_on_tmpfs() -> None:
    m = _mount(["tmpcopyup", "nosuid"])
    assert m.copyup and m.flags == t.MS_NOSUID and m.remount_flags == 0
    assert "tmpcopyup" not in m.data
    assert "tmpcopyup" in m.describe()


def test_tmpcopyup_read_only_tmpfs_is_mounted_rw_then_remounted() -> None:
    m = _mount(["tmpcopyup", "ro", "nodev"])
    assert m.flags == t.MS_NODEV  # writable for the copy
    assert m.remount_flags == t.MS_RDONLY | t.MS_NODEV


@pytest.mark.parametrize("fstype", ["bind", "proc", "sysfs"])
def test_tmpcopyup_only_means_something_for_tmpfs(fstype: str) -> None:
    m = _mount(["tmpcopyup", "rbind"] if fstype == "bind" else ["tmpcopyup"], fstype, "/src")
    assert not m.copyup


@pytest.mark.parametrize(
    ("options", "attr_set", "attr_clr"),
    [
        (["rro"], t.MOUNT_ATTR_RDONLY, 0),
        (["rrw"], 0, t.MOUNT_ATTR_RDONLY),
        (["rro", "rrw"], 0, t.MOUNT_ATTR_RDONLY),
        (["rnosuid", "rnodev", "rnoexec"],
         t.MOUNT_ATTR_NOSUID | t.MOUNT_ATTR_NODEV | t.MOUNT_ATTR_NOEXEC, 0),
        (["rsuid", "rdev", "rexec"], 0,
         t.MOUNT_ATTR_NOSUID | t.MOUNT_ATTR_NODEV | t.MOUNT_ATTR_NOEXEC),
        (["rnosymfollow"], t.MOUNT_ATTR_NOSYMFOLLOW, 0),
        (["rsymfollow"], 0, t.MOUNT_ATTR_NOSYMFOLLOW),
        (["rnodiratime"], t.MOUNT_ATTR_NODIRATIME, 0),
        (["rdiratime"], 0, t.MOUNT_ATTR_NODIRATIME),
        # access times are one field: setting a mode clears the whole field first
        (["rnoatime"], t.MOUNT_ATTR_NOATIME, t.MOUNT_ATTR__ATIME),
        (["rstrictatime"], t.MOUNT_ATTR_STRICTATIME, t.MOUNT_ATTR__ATIME),
        (["rrelatime"], t.MOUNT_ATTR_RELATIME, t.MOUNT_ATTR__ATIME),
        (["rnoatime", "rstrictatime"], t.MOUNT_ATTR_STRICTATIME, t.MOUNT_ATTR__ATIME),
        # clearing one mode clears the field (the kernel refuses part of it): relatime
        (["ratime"], 0, t.MOUNT_ATTR__ATIME),
        (["rnostrictatime"], 0, t.MOUNT_ATTR__ATIME),
        (["rnoatime", "ratime"], 0, t.MOUNT_ATTR__ATIME),
    ],
)
def test_recursive_options(options: list[str], attr_set: int, attr_clr: int) -> None:
    m = _mount(["rbind", *options], "bind", "/src")
    assert (m.attr_set, m.attr_clr) == (attr_set, attr_clr)
    assert m.flags == t.MS_BIND | t.MS_REC and m.remount_flags == 0  # no MS_* flag from them
    assert "recursive" in m.describe()


def test_recursive_and_plain_read_only_together() -> None:
    m = _mount(["rbind", "ro", "rro"], "bind", "/src")
    assert m.remount_flags == t.MS_RDONLY and m.attr_set == t.MOUNT_ATTR_RDONLY


def test_bind_without_source() -> None:
    with pytest.raises(SpecError, match=r"mounts\[0\]"):
        _mount(["rbind"], "bind", "")


def test_plan_keeps_mount_extras_in_order() -> None:
    spec: dict[str, Any] = {
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/etc", "type": "tmpfs", "source": "tmpfs",
             "options": ["tmpcopyup"]},
            {"destination": "/data", "type": "bind", "source": "data",
             "options": ["rbind", "rro"]},
        ],
    }
    plan = plan_rootfs(spec, "/b/rootfs", "/b", is_file=lambda _p: False)
    assert [m.dest for m in plan.mounts] == ["/proc", "/etc", "/data"]
    assert [m.copyup for m in plan.mounts] == [False, True, False]
    assert plan.mounts[2].source == "/b/data" and plan.mounts[2].attr_set == t.MOUNT_ATTR_RDONLY
    lines = plan.describe()
    assert any("tmpcopyup" in line and "/etc" in line for line in lines)
    assert any("setattr" in line and "/data" in line for line in lines)


def test_a_bind_mounted_dev_is_left_as_it_is() -> None:
    """A /dev bound from elsewhere (a volume, the host's) gets no device nodes or links: they
    would be made in that directory. ("/dev" was normalised to "//dev" and never matched.)"""
    spec = {"mounts": [{"destination": "/dev", "type": "bind", "source": "/srv/dev",
                        "options": ["rbind"]}], "linux": {}}
    plan = plan_rootfs(spec, "/rootfs", "/bundle", is_file=lambda _: False)
    assert plan.setup_dev is False and plan.devices == [] and plan.symlinks == []


def test_configured_devices_replace_the_defaults_of_the_same_path() -> None:
    spec = {"mounts": [], "linux": {"devices": [
        {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600},
    ]}}
    plan = plan_rootfs(spec, "/rootfs", "/bundle", is_file=lambda _: False)
    assert [d["path"] for d in plan.devices].count("/dev/null") == 1
