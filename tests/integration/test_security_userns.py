"""User namespaces: the container's root is an unprivileged host ID (issue 4).

The rootfs is chowned to the mapped range, as an image unpacked for a user namespace is; inside,
its files belong to root and devices still work. Bad mappings fail ``create`` with one line
naming the field, and leave nothing behind. Passes against runc 1.1 (``CORRAL_RUNC=runc``)
except where runc's message differs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

AGAINST_RUNC = os.path.basename(os.environ.get("CORRAL_RUNC", "").split(" ")[0]) == "runc"
BASE = 100000


def userns_edit(uids: list[dict[str, int]] | None = None) -> Any:
    def edit(config: dict[str, Any]) -> None:
        linux = config["linux"]
        linux["namespaces"].append({"type": "user"})
        linux["uidMappings"] = uids or [{"containerID": 0, "hostID": BASE, "size": 65536}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": BASE, "size": 65536}]

    return edit


def open_path_to(path: Path) -> None:
    """Let other users (the namespace's root is host uid 100000) traverse down to ``path``, as
    runc also needs: pytest's /tmp/pytest-of-root is 0700."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o011)


def chown_rootfs(rootfs: Path) -> None:
    open_path_to(rootfs.parent)
    busybox = rootfs / "bin" / "busybox"  # a hard link to the session's template: copy it first
    shutil.copy2(busybox, rootfs / "bin" / ".bb")
    os.replace(rootfs / "bin" / ".bb", busybox)
    subprocess.run(["chown", "-R", "-h", f"{BASE}:{BASE}", str(rootfs)], check=True)


def test_files_and_devices_belong_to_the_container_root(
    corral_runc: Any, bundle: Any, cid: str
) -> None:
    chown_rootfs(bundle.rootfs)
    script = (
        "ls -lnd / /bin /bin/busybox /etc; id -u; id -g;"
        " echo hi > /dev/null && echo null=ok; head -c 4 /dev/zero | wc -c;"
        " cat /proc/self/uid_map; ls -ln /dev/null"
    )
    bundle.set(args=["sh", "-c", script], edit=userns_edit())
    done = corral_runc("run", "--bundle", bundle, cid)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for line in lines[:4]:  # ls -lnd: mode, links, uid, gid, ...
        fields = line.split()
        assert fields[2:4] == ["0", "0"], line
    assert lines[4:6] == ["0", "0"]
    assert "null=ok" in lines
    assert "4" in lines
    assert lines[8].split() == ["0", str(BASE), "65536"]
    # /dev/null is the host's device (bind-mounted in a user namespace): its owner is the
    # host's root, which the namespace does not map (the overflow ID, 65534).
    assert lines[9].split()[2] in ("65534", "0"), lines[9]


def test_host_root_is_nobody_inside(corral_runc: Any, bundle: Any, cid: str) -> None:
    """A file the host's root owns cannot be written by the container's root."""
    chown_rootfs(bundle.rootfs)
    secret = bundle.rootfs / "etc" / "host-owned"
    secret.write_text("host\n")
    os.chown(secret, 0, 0)
    secret.chmod(0o644)
    bundle.set(
        args=["sh", "-c", "ls -ln /etc/host-owned; echo x >> /etc/host-owned; echo rc=$?"],
        edit=userns_edit(),
    )
    with bundle.edit() as config:
        config["root"]["readonly"] = False
    done = corral_runc("run", "--bundle", bundle, cid)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[2:4] == ["65534", "65534"]
    assert "rc=1" in done.stdout
    assert secret.read_text() == "host\n"


BAD = [
    (
        [
            {"containerID": 0, "hostID": BASE, "size": 1000},
            {"containerID": 10, "hostID": 0, "size": 5},
        ],
        "linux.uidMappings[1]: container IDs 10-14 overlap",
    ),
    (
        [
            {"containerID": 0, "hostID": BASE, "size": 10},
            {"containerID": 10, "hostID": BASE + 5, "size": 5},
        ],
        "linux.uidMappings[1]: host IDs",
    ),
    (
        [{"containerID": 0, "hostID": 4294967290, "size": 100}],
        "linux.uidMappings[0]: hostID 4294967290 + size 100 runs past",
    ),
    (
        [{"containerID": 1, "hostID": BASE, "size": 100}],
        "linux.uidMappings: must map container ID 0",
    ),
]


@pytest.mark.parametrize(
    ("uids", "message"), BAD, ids=["overlap", "host-overlap", "past", "no-root"]
)
def test_bad_mappings_fail_create_with_one_line(
    corral_runc: Any, bundle: Any, cid: str, runc_root: Path, uids: Any, message: str
) -> None:
    bundle.set(args=["true"], edit=userns_edit(uids))
    done = corral_runc("create", "--bundle", bundle, cid)
    assert done.returncode != 0
    if not AGAINST_RUNC:
        assert len(done.stderr.splitlines()) == 1, done.stderr
        assert message in done.stderr
    assert corral_runc("state", cid).returncode != 0
    assert os.listdir(runc_root) == []
