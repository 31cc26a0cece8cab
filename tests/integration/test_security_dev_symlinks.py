"""A /dev the container brings itself (a bind mount from the image or a shared volume) must not
steer the runtime's own mounts (the shapes of CVE-2025-31133 and CVE-2025-52565).

- maskedPaths binds /dev/null over files of /proc; a /dev/null that is a symlink to a writable
  /proc file would put that file where the masked one was. The runtime binds the node it opened
  and checked (character device 1:3) and refuses anything else.
- With a terminal, the pty's slave is bound over /dev/console; a /dev/console that is a symlink
  would move that bind onto its target. The runtime replaces it with a plain file first.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from helpers import Runc
from helpers.console import ConsoleSocket, read_until

MASKED = "/proc/timer_list"  # a file every kernel here has (/proc/kcore is a build option)


def own_dev(tmp_path: Path, links: dict[str, str]) -> Any:
    """An edit giving the container a /dev of its own: a host directory bound there, holding
    the real null device (a bind of the host's) and the given symlinks."""
    dev = tmp_path / "dev-volume"
    (dev / "pts").mkdir(parents=True)
    (dev / "ptmx").symlink_to("pts/ptmx")
    for name, target in links.items():
        (dev / name).symlink_to(target)

    def edit(config: dict[str, Any]) -> None:
        for mount in config["mounts"]:
            if mount["destination"] == "/dev":
                mount.update(type="bind", source=str(dev), options=["rbind", "rw"])
        config["linux"]["maskedPaths"] = [MASKED]
        config["linux"]["readonlyPaths"] = []

    return edit


def test_a_symlinked_dev_null_is_not_used_to_mask(
    corral_runc: Runc, make_bundle: Any, cid: str, tmp_path: Path
) -> None:
    edit = own_dev(tmp_path, {"null": "/proc/sys/kernel/core_pattern"})
    bundle = make_bundle(["sh", "-c", f"head -c 100 {MASKED}"], edit=edit)
    done = corral_runc("run", "--bundle", bundle, cid)
    with open("/proc/sys/kernel/core_pattern") as f:
        pattern = f.read().strip()
    assert pattern not in done.stdout or not pattern, done.stdout  # never shown as the masked
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.strip() == (
        "/dev/null in the container is not the null device (1:3): refusing to mask with it"
    )
    assert corral_runc("list", "-q").stdout == ""


def test_a_symlinked_dev_console_is_replaced_not_followed(
    corral_runc: Runc, make_bundle: Any, cid: str, tmp_path: Path
) -> None:
    edit = own_dev(tmp_path, {"console": "/etc/victim"})
    bundle = make_bundle(
        ["sh", "-c", "test -L /dev/console && echo LINK; stat -c %F /etc/victim; cat /etc/victim;"
         " sleep 1"],
        terminal=True, edit=edit,
    )
    (bundle.rootfs / "etc" / "victim").write_text("untouched\n")
    os.mknod(tmp_path / "dev-volume" / "null", 0o666 | 0o020000, os.makedev(1, 3))
    console = ConsoleSocket(tmp_path / "console.sock")
    try:
        corral_runc("create", "--console-socket", console.path, "--bundle", bundle, cid,
                    check=True)
        master = console.wait_master()
        corral_runc("start", cid, check=True)
        out = read_until(master, b"untouched", timeout=10).decode(errors="replace")
    finally:  # closes the master too
        console.close()
    assert "LINK" not in out and "regular" in out and "untouched" in out, out
    assert os.path.islink(tmp_path / "dev-volume" / "console") is False  # replaced, as a file
    assert (bundle.rootfs / "etc" / "victim").read_text() == "untouched\n"
