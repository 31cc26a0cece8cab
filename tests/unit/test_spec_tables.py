"""corral.spec.tables: rlimit and capability numbers, and mount options parsed as runc does."""

from __future__ import annotations

import resource

import pytest

import corral.sys
from corral.errors import SpecError
from corral.spec import tables
from corral.spec.tables import (
    CAPABILITIES,
    MOUNT_ATTR__ATIME,
    MOUNT_ATTR_NOATIME,
    MOUNT_ATTR_NODEV,
    MOUNT_ATTR_NOSUID,
    MOUNT_ATTR_RDONLY,
    MOUNT_ATTR_STRICTATIME,
    MS_BIND,
    MS_DIRSYNC,
    MS_MANDLOCK,
    MS_NOATIME,
    MS_NODEV,
    MS_NODIRATIME,
    MS_NOEXEC,
    MS_NOSUID,
    MS_NOSYMFOLLOW,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_RELATIME,
    MS_REMOUNT,
    MS_SHARED,
    MS_SLAVE,
    MS_STRICTATIME,
    MS_SYNCHRONOUS,
    MS_UNBINDABLE,
    RLIMITS,
    cap_mask,
    mount_flags,
    mount_option_names,
)


def test_rlimits_match_the_resource_module() -> None:
    assert len(RLIMITS) == 16
    assert RLIMITS["RLIMIT_CPU"] == 0
    assert RLIMITS["RLIMIT_NOFILE"] == 7
    assert RLIMITS["RLIMIT_RTTIME"] == 15
    for name, number in RLIMITS.items():
        # Python's resource module leaves out RLIMIT_LOCKS (unused by the kernel since 2.4).
        assert getattr(resource, name, number) == number, name


def test_capabilities() -> None:
    assert len(CAPABILITIES) == 41
    assert CAPABILITIES["CAP_CHOWN"] == 0
    assert CAPABILITIES["CAP_SYS_ADMIN"] == 21
    assert CAPABILITIES["CAP_AUDIT_WRITE"] == 29
    assert CAPABILITIES["CAP_CHECKPOINT_RESTORE"] == 40
    assert sorted(CAPABILITIES.values()) == list(range(41))


def test_cap_mask() -> None:
    assert cap_mask([]) == 0
    assert cap_mask(["CAP_CHOWN"]) == 1
    assert cap_mask(["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"]) == (
        1 << 5 | 1 << 10 | 1 << 29
    )
    assert cap_mask(["CAP_CHECKPOINT_RESTORE", "CAP_CHECKPOINT_RESTORE"]) == 1 << 40
    assert cap_mask(list(CAPABILITIES)) == (1 << 41) - 1


def test_cap_mask_unknown() -> None:
    with pytest.raises(SpecError, match="unknown capability 'CAP_FOO'"):
        cap_mask(["CAP_KILL", "CAP_FOO"])


@pytest.mark.parametrize(
    "name",
    [n for n in dir(tables) if n.startswith("MS_")],
)
def test_ms_constants_agree_with_sys(name: str) -> None:
    if hasattr(corral.sys, name):
        assert getattr(tables, name) == getattr(corral.sys, name)


NO_EXTRA = {"attr_set": 0, "attr_clr": 0, "tmpcopyup": False}


@pytest.mark.parametrize(
    ("options", "set_flags", "clear_flags", "propagation", "data"),
    [
        ([], 0, 0, [], ""),
        (["ro"], MS_RDONLY, 0, [], ""),
        (["rw"], 0, MS_RDONLY, [], ""),
        (["ro", "rw"], 0, MS_RDONLY, [], ""),
        (["rw", "ro"], MS_RDONLY, 0, [], ""),
        (["nosuid", "nodev", "noexec"], MS_NOSUID | MS_NODEV | MS_NOEXEC, 0, [], ""),
        (["suid", "dev", "exec"], 0, MS_NOSUID | MS_NODEV | MS_NOEXEC, [], ""),
        (["sync"], MS_SYNCHRONOUS, 0, [], ""),
        (["async"], 0, MS_SYNCHRONOUS, [], ""),
        (["dirsync", "remount", "mand"], MS_DIRSYNC | MS_REMOUNT | MS_MANDLOCK, 0, [], ""),
        (["nomand"], 0, MS_MANDLOCK, [], ""),
        (["noatime", "nodiratime"], MS_NOATIME | MS_NODIRATIME, 0, [], ""),
        (["atime", "diratime"], 0, MS_NOATIME | MS_NODIRATIME, [], ""),
        (["relatime"], MS_RELATIME, 0, [], ""),
        (["norelatime"], 0, MS_RELATIME, [], ""),
        (["strictatime"], MS_STRICTATIME, 0, [], ""),
        (["nostrictatime"], 0, MS_STRICTATIME, [], ""),
        (["nosymfollow"], MS_NOSYMFOLLOW, 0, [], ""),
        (["bind"], MS_BIND, 0, [], ""),
        (["rbind"], MS_BIND | MS_REC, 0, [], ""),
        (["defaults"], 0, 0, [], ""),
        (["private"], 0, 0, [MS_PRIVATE], ""),
        (["rprivate"], 0, 0, [MS_PRIVATE | MS_REC], ""),
        (["shared", "rslave"], 0, 0, [MS_SHARED, MS_SLAVE | MS_REC], ""),
        (["unbindable", "runbindable"], 0, 0, [MS_UNBINDABLE, MS_UNBINDABLE | MS_REC], ""),
        (["rshared"], 0, 0, [MS_SHARED | MS_REC], ""),
        (["mode=755", "size=65536k"], 0, 0, [], "mode=755,size=65536k"),
        (
            ["nosuid", "strictatime", "mode=755", "size=65536k"],
            MS_NOSUID | MS_STRICTATIME,
            0,
            [],
            "mode=755,size=65536k",
        ),
        (
            ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
            MS_NOSUID | MS_NOEXEC,
            0,
            [],
            "newinstance,ptmxmode=0666,mode=0620,gid=5",
        ),
        (
            ["rbind", "rprivate", "ro", "lowerdir=/a:/b"],
            MS_BIND | MS_REC | MS_RDONLY,
            0,
            [MS_PRIVATE | MS_REC],
            "lowerdir=/a:/b",
        ),
    ],
)
def test_mount_flags(
    options: list[str], set_flags: int, clear_flags: int, propagation: list[int], data: str
) -> None:
    assert mount_flags(options) == (set_flags, clear_flags, propagation, data, NO_EXTRA)


def test_mount_flags_tmpcopyup_is_not_fs_data() -> None:
    flags = mount_flags(["nosuid", "tmpcopyup", "mode=755"])
    assert flags == (MS_NOSUID, 0, [], "mode=755", {**NO_EXTRA, "tmpcopyup": True})


@pytest.mark.parametrize(
    ("options", "attr_set", "attr_clr"),
    [
        (["rro"], MOUNT_ATTR_RDONLY, 0),
        (["rrw"], 0, MOUNT_ATTR_RDONLY),
        (["rro", "rrw"], 0, MOUNT_ATTR_RDONLY),
        (["rnosuid", "rnodev"], MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, 0),
        (["rsuid"], 0, MOUNT_ATTR_NOSUID),
        (["rnoatime"], MOUNT_ATTR_NOATIME, MOUNT_ATTR__ATIME),
        (["rrelatime"], 0, MOUNT_ATTR__ATIME),
        (["rnoatime", "rstrictatime"], MOUNT_ATTR_STRICTATIME, MOUNT_ATTR__ATIME),
        (["ratime"], 0, MOUNT_ATTR_NOATIME),
    ],
)
def test_mount_flags_recursive(options: list[str], attr_set: int, attr_clr: int) -> None:
    *_, extra = mount_flags(["rbind", *options])
    assert extra == {"attr_set": attr_set, "attr_clr": attr_clr, "tmpcopyup": False}


def test_option_names_cover_runc_1_1() -> None:
    runc = {
        "acl", "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec",
        "iversion", "lazytime", "loud", "mand", "noacl", "noatime", "nodev", "nodiratime",
        "noexec", "noiversion", "nolazytime", "nomand", "norelatime", "nostrictatime", "nosuid",
        "nosymfollow", "private", "ratime", "rbind", "rdev", "rdiratime", "relatime", "remount",
        "rexec", "rnoatime", "rnodev", "rnodiratime", "rnoexec", "rnorelatime", "rnostrictatime",
        "rnosuid", "rnosymfollow", "ro", "rprivate", "rrelatime", "rro", "rrw", "rshared",
        "rslave", "rstrictatime", "rsuid", "rsymfollow", "runbindable", "rw", "shared", "silent",
        "slave", "strictatime", "suid", "symfollow", "sync", "tmpcopyup", "unbindable",
    }  # fmt: skip
    assert set(mount_option_names()) == runc
    assert mount_option_names() == sorted(runc)
