"""What containerd's shim, dockerd and podman saw (issue 8, points 7 to 9), as they call it.

- After ``create`` the init is in the container's cgroups (the spec says so, and the shim
  reads the init's cgroup right then to watch its OOM events and stats).
- ``start`` of a program that exits at once never fails: the init is held by a pidfd before
  anything releases it, so its reaping by whoever inherited it cannot race ``start``.
- ``kill --all ID 9`` of a stopped container exits 0, as runc's does (the shim calls it after
  the init died); a plain ``kill`` of a stopped container is still "container not running".
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from typing import Any

from helpers import Runc


def test_the_init_is_in_its_cgroups_after_create(
    corral_runc: Runc, make_bundle: Any, cid: str
) -> None:
    bundle = make_bundle(["true"])
    with bundle.edit() as config:
        config["linux"]["resources"] = {"memory": {"limit": 64 << 20}, "pids": {"limit": 50}}
    corral_runc("create", "--bundle", bundle, cid, check=True)
    pid = json.loads(corral_runc("state", cid, check=True).stdout)["pid"]
    with open(f"/proc/{pid}/cgroup") as f:
        lines = dict(line.rstrip("\n").split(":", 2)[1:] for line in f)
    if "memory" in lines:  # cgroup v1 (or hybrid): every v1 hierarchy, memory included
        v1 = {controller: path for controller, path in lines.items() if controller}
        assert all(path.endswith(f"/{cid}") for path in v1.values()), lines
    else:  # cgroup v2
        assert lines[""].endswith(f"/{cid}"), lines
    corral_runc("delete", "--force", cid, check=True)


def test_start_never_races_a_program_that_exits_at_once(
    corral_runc: Runc, make_bundle: Any, cid: str
) -> None:
    """1,000 create + start + delete of /bin/true: each start succeeds."""
    bundle = make_bundle(["true"])
    rounds = int(os.environ.get("CORRAL_START_RACE_ROUNDS", "1000"))
    failures = []
    for i in range(rounds):
        name = f"{cid}-{i}"
        corral_runc("create", "--bundle", bundle, name, check=True)
        started = corral_runc("start", name)
        if started.returncode != 0:
            failures.append(started.stderr.strip())
        corral_runc("delete", "--force", name, check=True)
    assert failures == [], f"{len(failures)} of {rounds} starts failed: {failures[:3]}"


def test_kill_all_of_a_stopped_container_exits_0(
    corral_runc: Runc, make_bundle: Any, cid: str
) -> None:
    bundle = make_bundle(["true"])
    corral_runc("run", "-d", "--bundle", bundle, cid, check=True)
    for _ in range(100):
        if json.loads(corral_runc("state", cid, check=True).stdout)["status"] == "stopped":
            break
    killed = corral_runc("kill", "--all", cid, "9")
    assert (killed.returncode, killed.stderr) == (0, "")
    plain = corral_runc("kill", cid, "9")
    assert (plain.returncode, plain.stderr) == (1, "container not running\n")
    corral_runc("delete", cid, check=True)


def test_delete_of_a_stopped_container_kills_what_its_init_left(
    corral_runc: Runc, make_bundle: Any, cid: str
) -> None:
    """Without a pid namespace the init's children outlive it: delete kills them (as runc's
    does) instead of waiting for the cgroup to empty."""
    def no_pid_namespace(config: dict[str, Any]) -> None:
        config["linux"]["namespaces"] = [
            ns for ns in config["linux"]["namespaces"] if ns["type"] != "pid"
        ]

    bundle = make_bundle(["sh", "-c", "sleep 100 & echo $! > /dev/null"], edit=no_pid_namespace)
    corral_runc("run", "-d", "--bundle", bundle, cid, check=True)
    for _ in range(200):
        if json.loads(corral_runc("state", cid, check=True).stdout)["status"] == "stopped":
            break
    procs = next(p for p in (f"/sys/fs/cgroup/pids/corral/{cid}/cgroup.procs",
                             f"/sys/fs/cgroup/corral/{cid}/cgroup.procs") if os.path.exists(p))
    with open(procs) as f:
        (sleep_pid,) = (int(line) for line in f)  # the sleep, still running
    started = time.monotonic()
    corral_runc("delete", cid, check=True, timeout=10)
    assert time.monotonic() - started < 3
    assert not os.path.exists(procs)
    with contextlib.suppress(FileNotFoundError), open(f"/proc/{sleep_pid}/stat") as f:
        assert f.read().split(") ")[1][0] in "ZX"  # dead (a zombie until the reaper runs)
