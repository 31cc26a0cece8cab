"""What ``corral-runc``'s verbs load at start-up: containerd runs one for every step of a
container, so each must start within 1 ms of the bare interpreter (issue 8).

Each verb runs here as the lean launcher runs it (``python3 -I -S``, this checkout's src first)
under ``-X importtime``, on a real container, and the modules it loaded are checked: no ``os``
(1 ms: corral._posix says why), no ``__future__`` (0.2 ms), no ``_json`` shared library
(0.3 ms: the state is marshal), and nothing of ``create``'s machinery.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from corral.cgroups import detect
from helpers import Bundle, Runc
from helpers.startup import imported, launcher, loaded_by

# Never on the path of state, start, kill, delete or --version.
FORBIDDEN = {
    "os",
    "__future__",
    "_json",
    "corral.runtime.lifecycle",
    "corral.runtime.init",
    "corral.spec",
    "corral.plan",
    "corral.sys",
    "corral.cgroups.systemd",
}


def test_the_verbs_load_no_os_no_json_and_nothing_of_create(
    corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str
) -> None:
    bundle.set(args=["sleep", "30"])
    corral_runc("create", "--bundle", bundle, cid, check=True)
    seen = {}
    seen["--version"], _ = loaded_by("corral-runc", runc_root, "--version")
    seen["state (created)"], out = loaded_by("corral-runc", runc_root, "state", cid)
    assert json.loads(out)["status"] == "created"
    seen["start"], _ = loaded_by("corral-runc", runc_root, "start", cid)
    seen["state (running)"], out = loaded_by("corral-runc", runc_root, "state", cid)
    assert json.loads(out)["status"] == "running"
    seen["kill"], _ = loaded_by("corral-runc", runc_root, "kill", cid, "9")
    deadline = time.monotonic() + 10
    while json.loads(corral_runc("state", cid, check=True).stdout)["status"] != "stopped":
        assert time.monotonic() < deadline, "the container did not stop after SIGKILL"
        time.sleep(0.02)
    seen["delete"], _ = loaded_by("corral-runc", runc_root, "delete", cid)
    assert corral_runc("state", cid).returncode == 1  # deleted
    found = {verb: sorted(modules & FORBIDDEN) for verb, modules in seen.items()}
    assert found == {verb: [] for verb in seen}
    # A stopped container's empty cgroups are removed without loading a cgroup manager.
    managers = {"corral.cgroups._base", "corral.cgroups.v1", "corral.cgroups.v2"}
    assert not seen["delete"] & managers, sorted(seen["delete"] & managers)


# Never on the path of a bare create (no hooks, seccomp, terminal or user namespace): it must
# cost less than runc's (issue 8), and these are the modules it once loaded for nothing.
CREATE_FORBIDDEN = {
    "os",
    "posixpath",
    "__future__",
    "corral.runtime.control",  # start/kill/delete's; a failed create imports it to clean up
}


def test_a_bare_create_loads_no_os_and_nothing_of_the_other_verbs(
    corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str
) -> None:
    bundle.set(args=["sleep", "30"])
    log = runc_root.parent / f"{cid}-importtime.txt"
    with open(log, "w") as err:  # not a pipe: the container's init keeps the create's stdio
        done = subprocess.run(
            [*launcher("corral-runc"), "--root", str(runc_root), "create", "--bundle",
             str(bundle), cid],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, timeout=30,
            check=False,
        )
    lines = log.read_text().splitlines()
    log.unlink()
    modules = imported(lines)
    try:
        assert done.returncode == 0, [line for line in lines if "|" not in line]
        assert sorted(modules & CREATE_FORBIDDEN) == []
        state = json.loads(corral_runc("state", cid, check=True).stdout)
        assert state["status"] == "created"
        if detect() != "v2":  # v1 and hybrid hosts need no part of the v2 manager
            assert "corral.cgroups.v2" not in modules
    finally:
        corral_runc("delete", "--force", cid)
