"""build_spec with run options, users.resolve, read_layered and etc_files: pure, no root."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from corral.engine.containers import etc_files, users
from corral.engine.containers.spec import (
    DOCKER_CAPS,
    Identity,
    Resolved,
    RunOptions,
    Ulimit,
    build_spec,
)
from corral.errors import UsageError

IMAGE: dict[str, Any] = {"config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]}}
PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:App:/home/app:/bin/sh\n"
GROUP = "root:x:0:\napp:x:1001:\nstaff:x:50:app,other\naudio:x:29:\n"


def spec(opts: RunOptions, resolved: Resolved | None = None) -> dict[str, Any]:
    return build_spec(IMAGE, opts, container_id="c" * 64, netns="/n", resolved=resolved)


def test_limits_become_linux_resources() -> None:
    opts = RunOptions(memory=512 << 20, memory_swap=-1, memory_reservation=64 << 20, cpus=1.5,
                      cpu_shares=512, cpuset_cpus="0", pids_limit=10, blkio_weight=300,
                      oom_kill_disable=True)  # fmt: skip
    res = spec(opts)["linux"]["resources"]
    assert res["memory"] == {"limit": 512 << 20, "swap": -1, "reservation": 64 << 20,
                             "disableOOMKiller": True}  # fmt: skip
    assert res["cpu"] == {"period": 100000, "quota": 150000, "shares": 512, "cpus": "0"}
    assert res["pids"] == {"limit": 10} and res["blockIO"] == {"weight": 300}


def test_no_limit_given_sets_none() -> None:
    res = spec(RunOptions())["linux"]["resources"]
    assert set(res) == {"devices"}
    assert "pids" not in spec(RunOptions(pids_limit=-1))["linux"]["resources"]


def test_capabilities_add_drop_and_privileged() -> None:
    caps = spec(RunOptions(cap_add=["CAP_SYS_ADMIN"], cap_drop=["CAP_CHOWN"]))["process"]
    bounding = caps["capabilities"]["bounding"]
    assert "CAP_SYS_ADMIN" in bounding and "CAP_CHOWN" not in bounding
    assert len(bounding) == len(DOCKER_CAPS)
    assert spec(RunOptions(cap_drop=["ALL"]))["process"]["capabilities"]["bounding"] == []
    privileged = spec(RunOptions(privileged=True))
    assert len(privileged["process"]["capabilities"]["bounding"]) > 38
    assert "seccomp" not in privileged["linux"]
    assert privileged["linux"]["maskedPaths"] == [] and privileged["linux"]["readonlyPaths"] == []
    assert privileged["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    sys_mount = next(m for m in privileged["mounts"] if m["destination"] == "/sys")
    assert "ro" not in sys_mount["options"]


def test_identity_read_only_ulimits_shm_init_sysctl() -> None:
    resolved = Resolved(Identity(1000, 1001, (50,), "/home/app"), init_binary="/usr/bin/tini")
    out = spec(
        RunOptions(read_only=True, ulimits=[Ulimit("nofile", 10, 20)], shm_size=1 << 20,
                   init=True, sysctls={"net.ipv4.ip_forward": "1"}, no_new_privileges=True,
                   labels={"a": "b"}),
        resolved,
    )  # fmt: skip
    process = out["process"]
    assert process["user"] == {"uid": 1000, "gid": 1001, "additionalGids": [50]}
    assert "HOME=/home/app" in process["env"] and process["noNewPrivileges"] is True
    assert {"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20} in process["rlimits"]
    assert process["args"] == ["/sbin/docker-init", "--", "sh"]
    assert out["root"]["readonly"] is True
    shm = next(m for m in out["mounts"] if m["destination"] == "/dev/shm")
    assert [o for o in shm["options"] if o.startswith("size=")] == ["size=1048576"]
    init = next(m for m in out["mounts"] if m["destination"] == "/sbin/docker-init")
    assert init["source"] == "/usr/bin/tini" and "ro" in init["options"]
    assert out["linux"]["sysctl"] == {"net.ipv4.ip_forward": "1"}
    assert out["annotations"]["io.corral.label.a"] == "b"


def test_users_resolve_like_docker() -> None:
    assert users.resolve("app", PASSWD, GROUP) == Identity(1000, 1001, (50,), "/home/app")
    assert users.resolve("1000", PASSWD, GROUP) == Identity(1000, 1001, (50,), "/home/app")
    assert users.resolve("app:staff", PASSWD, GROUP) == Identity(1000, 50, (), "/home/app")
    assert users.resolve("4242:7", PASSWD, GROUP) == Identity(4242, 7, (), "/")
    assert users.resolve("", PASSWD, GROUP) == Identity(0, 0, (), "/root")
    assert users.resolve("root", None, None, ["99"]) == Identity(0, 0, (99,), "/")
    assert users.resolve("0", PASSWD, GROUP, ["audio", "99"]).additional_gids == (29, 99)
    with pytest.raises(UsageError, match="unable to find user nosuch: no matching entries in "
                       "passwd file"):  # fmt: skip
        users.resolve("nosuch", PASSWD, GROUP)
    with pytest.raises(UsageError, match="unable to find group nogroup: no matching entries"):
        users.resolve("app:nogroup", PASSWD, GROUP)
    with pytest.raises(UsageError, match="--group-add nope: Unable to find group nope"):
        users.resolve("app", PASSWD, GROUP, ["nope"])


def test_read_layered_sees_the_overlay(tmp_path: Path) -> None:
    top, middle, bottom = (tmp_path / n for n in ("top", "middle", "bottom"))
    for layer in (top, middle, bottom):
        (layer / "etc").mkdir(parents=True)
    (bottom / "etc" / "passwd").write_text("old\n")
    (bottom / "etc" / "group").write_text("g\n")
    (middle / "etc" / "passwd").write_text("new\n")
    (bottom / "etc" / "gone").write_text("x")
    os.mknod(top / "etc" / "gone", 0o600 | 0o020000, 0)  # a whiteout: char device 0:0
    os.symlink("passwd", top / "etc" / "link")
    layers = [str(top), str(middle), str(bottom)]
    assert users.read_layered(layers, "etc/passwd") == "new\n"
    assert users.read_layered(layers, "/etc/group") == "g\n"
    assert users.read_layered(layers, "etc/gone") is None
    assert users.read_layered(layers, "etc/link") == "new\n"
    assert users.read_layered(layers, "etc/none") is None


def test_etc_files(tmp_path: Path) -> None:
    text = etc_files.hosts("box", [("db", "10.0.0.2")])
    assert text.startswith("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    assert text.endswith("127.0.0.1\tbox\n10.0.0.2\tdb\n")
    host = "# x\nsearch example.org\nnameserver 127.0.0.53\nnameserver 192.0.2.1\noptions edns0\n"
    assert etc_files.resolv_conf(host) == (
        "search example.org\noptions edns0\nnameserver 192.0.2.1\n"
    )
    assert etc_files.resolv_conf("nameserver 127.0.0.1\n") == (
        "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
    )
    mounts = etc_files.write(tmp_path, "box")
    assert [m["destination"] for m in mounts] == ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"]
    assert (tmp_path / "hostname").read_text() == "box\n"
