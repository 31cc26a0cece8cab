"""What the caller's process must never hand the container (issue 8, points 2 and 3).

- No ``process.capabilities`` means no capabilities, as in runc: the field is optional, and
  leaving it out must not give the container the runtime's full set (which let
  open_by_handle_at read the host's /etc/shadow).
- The caller's open fds never reach the container (CVE-2024-21626's shape): with ``exec 7</``
  in the caller, a cwd of ``/proc/self/fd/7`` would start the container in the host's "/". The
  runtime closes everything but stdio and what it passes on purpose (--preserve-fds) before
  any code of the container's runs, and refuses a cwd that does not resolve inside the rootfs.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import Runc
from helpers.engine import corral

NO_CAPS = "0000000000000000"


def caps_of(status: str) -> dict[str, str]:
    return {
        line.split(":")[0]: line.split()[1] for line in status.splitlines()
        if line.startswith("Cap")
    }


def drop_capabilities(config: dict[str, Any]) -> None:
    config["process"].pop("capabilities", None)


def test_no_capabilities_field_means_none(corral_runc: Runc, make_bundle: Any, cid: str) -> None:
    bundle = make_bundle(["cat", "/proc/self/status"], edit=drop_capabilities)
    done = corral_runc("run", "--bundle", bundle, cid, check=True)
    caps = caps_of(done.stdout)
    assert caps == dict.fromkeys(("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"), NO_CAPS)


def test_exec_process_without_capabilities_gets_none(
    corral_runc: Runc, make_bundle: Any, cid: str, tmp_path: Path
) -> None:
    bundle = make_bundle(["sleep", "30"])
    corral_runc("run", "-d", "--bundle", bundle, cid, check=True)
    process = tmp_path / "process.json"
    process.write_text(json.dumps({
        "args": ["cat", "/proc/self/status"], "cwd": "/", "user": {"uid": 0, "gid": 0},
        "env": ["PATH=/bin"],
    }))
    done = corral_runc("exec", "--process", process, cid, check=True)
    assert caps_of(done.stdout)["CapEff"] == NO_CAPS
    assert caps_of(done.stdout)["CapBnd"] == NO_CAPS


@pytest.fixture
def host_root_fd() -> Iterator[int]:
    """The host's "/" open in the test process, as after ``exec 7</`` in a shell."""
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield fd
    finally:
        os.close(fd)


def run_passing(fd: int, argv: list[str]) -> tuple[int, str, str]:
    """Run ``argv`` with ``fd`` inherited; output through files (a container may hold them)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        done = subprocess.run(
            argv, pass_fds=(fd,), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            timeout=30, check=False,
        )
        out.seek(0)
        err.seek(0)
        return done.returncode, out.read().decode(), err.read().decode()


def test_a_cwd_through_a_callers_fd_is_refused(
    corral_runc: Runc, make_bundle: Any, cid: str, host_root_fd: int
) -> None:
    bundle = make_bundle(["sh", "-c", "pwd; ls"], cwd=f"/proc/self/fd/{host_root_fd}")
    code, out, err = run_passing(host_root_fd, corral_runc.argv("run", "--bundle", bundle, cid))
    assert code == 1, out + err
    assert err.count("\n") == 1 and "process.cwd" in err, err
    assert "bin" not in out  # never listed the host's "/"
    assert corral_runc("list", "-q").stdout == ""  # nothing left


def test_the_callers_fds_do_not_reach_the_container(
    corral_runc: Runc, make_bundle: Any, cid: str, host_root_fd: int
) -> None:
    bundle = make_bundle(["sleep", "30"])
    code, _, err = run_passing(host_root_fd, corral_runc.argv("run", "-d", "--bundle", bundle, cid))
    assert code == 0, err
    pid = json.loads(corral_runc("state", cid, check=True).stdout)["pid"]
    assert sorted(os.listdir(f"/proc/{pid}/fd")) == ["0", "1", "2"]
    cwd = f"/proc/self/fd/{host_root_fd}"
    code, out, err = run_passing(host_root_fd, corral_runc.argv("exec", "--cwd", cwd, cid, "ls"))
    assert code == 1 and "process.cwd" in err and "bin" not in out, out + err
    code, out, err = run_passing(host_root_fd, corral_runc.argv("exec", cid, "ls", "/proc/self/fd"))
    assert out.split() == ["0", "1", "2", "3"], out + err  # 3: ls's own directory


def test_engine_run_workdir_through_a_callers_fd(tmp_path: Path, host_root_fd: int) -> None:
    from helpers.engine import CORRAL

    root = tmp_path / "root"
    corral(root, "images")  # the store exists before the attempt
    code, out, err = run_passing(host_root_fd, [
        CORRAL, "--root", str(root), "run", "--rm", "-w", f"/proc/self/fd/{host_root_fd}",
        "busybox", "ls",
    ])
    assert code != 0 and "bin" not in out.split(), out + err
    assert corral(root, "ps", "-aq").stdout == ""


def test_dac_capabilities_reach_the_program(corral_runc: Runc, make_bundle: Any, cid: str) -> None:
    """The init leaves CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH out of its effective set just
    for the exec of the (execute-only) launcher: the program still gets them when configured."""
    def with_dac(config: dict[str, Any]) -> None:
        caps = config["process"]["capabilities"]
        for key in ("bounding", "effective", "permitted"):
            caps[key] = [*caps[key], "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH"]

    bundle = make_bundle(["sleep", "30"], edit=with_dac)
    corral_runc("run", "-d", "--bundle", bundle, cid, check=True)
    status = corral_runc("exec", cid, "cat", "/proc/1/status", check=True).stdout
    assert int(caps_of(status)["CapEff"], 16) & 0b110 == 0b110
    mine = corral_runc("exec", cid, "cat", "/proc/self/status", check=True).stdout
    assert int(caps_of(mine)["CapEff"], 16) & 0b110 == 0b110
