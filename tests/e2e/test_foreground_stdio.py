"""Foreground stdio (issue 8, point 4): ``run`` and ``exec`` without ``-d`` give the container
pipes the runtime copies, as runc does, never the caller's own fds; ``-d`` passes them through.

Before the fix a container reopened ``/proc/self/fd/0`` for writing and changed the host file
given as stdin. They pass against runc 1.1 too (``CORRAL_RUNC=runc``), except where corral
promises more: runc waits for its pipes to close, so a process the program leaves behind holding
stdout keeps ``runc run``/``exec`` waiting; corral stops once the program has exited and what it
wrote is passed on.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from helpers import Bundle, BundleFactory, Runc, new_cid

# Shows what fd 0 is, then tries to write through it, both ways.
ATTACK = (
    "readlink /proc/self/fd/0; echo pwned > /proc/self/fd/0; echo pwned >> /proc/self/fd/0;"
    " echo done"
)


@pytest.fixture
def host_file(tmp_path: Path) -> Path:
    path = tmp_path / "host-stdin.txt"
    path.write_text("the host's data\n")
    return path


@pytest.fixture
def running(corral_runc: Runc, make_bundle: BundleFactory) -> str:
    """A container to exec into (its own id: a test may also ``run`` one with ``cid``)."""
    container_id = new_cid()
    corral_runc("run", "-d", "--bundle", make_bundle(["sleep", "60"]), container_id, check=True)
    return container_id


def wait_for_text(path: Path, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while not (text := path.read_text()).endswith("\n"):
        assert time.monotonic() < deadline, f"{path} stayed {text!r}"
        time.sleep(0.02)
    return text


# -- the caller's fds do not reach a foreground container --------------------------------------


def test_run_cannot_write_a_host_file_given_as_stdin(
    corral_runc: Runc, bundle: Bundle, cid: str, host_file: Path
) -> None:
    bundle.set(args=["sh", "-c", ATTACK])
    with host_file.open() as stdin:
        done = corral_runc("run", "--bundle", bundle, cid, stdin=stdin)
    assert done.returncode == 0, done.stderr
    assert host_file.read_text() == "the host's data\n"
    assert done.stdout.startswith("pipe:["), done.stdout
    assert done.stdout.endswith("done\n"), done.stdout


def test_exec_cannot_write_a_host_file_given_as_stdin(
    corral_runc: Runc, running: str, host_file: Path
) -> None:
    with host_file.open() as stdin:
        done = corral_runc("exec", running, "sh", "-c", ATTACK, stdin=stdin)
    assert done.returncode == 0, done.stderr
    assert host_file.read_text() == "the host's data\n"
    assert done.stdout.startswith("pipe:["), done.stdout
    assert done.stdout.endswith("done\n"), done.stdout


def test_stdout_and_stderr_are_pipes_too(corral_runc: Runc, bundle: Bundle, cid: str) -> None:
    bundle.set(args=["sh", "-c", "readlink /proc/self/fd/1; readlink /proc/self/fd/2 >&2"])
    done = corral_runc("run", "--bundle", bundle, cid)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("pipe:[") and done.stderr.startswith("pipe:["), done


# -- detached, the caller's fds pass through ----------------------------------------------------


def test_run_detached_passes_the_callers_fds(
    corral_runc: Runc, bundle: Bundle, cid: str, host_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.txt"
    bundle.set(args=["sh", "-c", "readlink /proc/self/fd/0; sleep 60"])
    with host_file.open() as stdin, out.open("w") as stdout:
        subprocess.run(
            corral_runc.argv("run", "-d", "--bundle", bundle, cid),
            stdin=stdin, stdout=stdout, stderr=subprocess.DEVNULL, check=True, timeout=30,
        )
    assert wait_for_text(out).strip().endswith("host-stdin.txt")


def test_exec_detached_passes_the_callers_fds(
    corral_runc: Runc, running: str, host_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.txt"
    with host_file.open() as stdin, out.open("w") as stdout:
        subprocess.run(
            corral_runc.argv("exec", "-d", running, "readlink", "/proc/self/fd/0"),
            stdin=stdin, stdout=stdout, stderr=subprocess.DEVNULL, check=True, timeout=30,
        )
    assert wait_for_text(out).strip().endswith("host-stdin.txt")


# -- the copying ----------------------------------------------------------------------------------


@pytest.mark.parametrize("verb", ["run", "exec"])
def test_stdin_flows_and_ends(
    corral_runc: Runc, make_bundle: BundleFactory, cid: str, host_file: Path, verb: str
) -> None:
    """Input reaches the program and its end is the program's EOF (cat exits)."""
    script = "cat; echo end"
    if verb == "run":
        argv: list[str | Bundle] = ["run", "--bundle", make_bundle(["sh", "-c", script]), cid]
    else:
        corral_runc("run", "-d", "--bundle", make_bundle(["sleep", "60"]), cid, check=True)
        argv = ["exec", cid, "sh", "-c", script]
    done = corral_runc(*argv, input="hello\nworld\n")
    assert (done.returncode, done.stdout) == (0, "hello\nworld\nend\n"), done.stderr
    with host_file.open() as stdin:
        done = corral_runc(*argv, stdin=stdin)
    assert (done.returncode, done.stdout) == (0, "the host's data\nend\n"), done.stderr


def test_streams_stay_apart_and_the_exit_code_comes_back(
    corral_runc: Runc, bundle: Bundle, cid: str, running: str
) -> None:
    script = "echo out; echo err >&2; echo out2; exit 7"
    bundle.set(args=["sh", "-c", script])
    done = corral_runc("run", "--bundle", bundle, cid)
    assert (done.returncode, done.stdout, done.stderr) == (7, "out\nout2\n", "err\n")
    done = corral_runc("exec", running, "sh", "-c", script)
    assert (done.returncode, done.stdout, done.stderr) == (7, "out\nout2\n", "err\n")
    done = corral_runc("exec", running, "sh", "-c", "kill -TERM $$")
    assert done.returncode == 128 + 15


def test_big_output_on_both_streams_and_big_input_arrive_whole(
    corral_runc: Runc, bundle: Bundle, cid: str, running: str
) -> None:
    """About 1.2 MB on stdout and stderr at once, and 1 MB through cat: nothing lost, no
    deadlock between the streams."""
    bundle.set(args=["sh", "-c", "seq 1 170000 >&2 & seq 1 170000; wait"])
    done = corral_runc("run", "--bundle", bundle, cid, timeout=60)
    expected = "".join(f"{i}\n" for i in range(1, 170001))
    assert done.returncode == 0
    assert done.stdout == expected
    assert done.stderr == expected
    data = "".join(f"line {i:07d}\n" for i in range(80000))  # 1 MB
    done = corral_runc("exec", running, "cat", input=data, timeout=60)
    assert (done.returncode, len(done.stdout)) == (0, len(data))
    assert done.stdout == data


def test_a_process_left_holding_stdout_does_not_hang_exec(
    corral_runc: Runc, running: str
) -> None:
    """The exec'd shell exits; its background child keeps the pipes open for 100 s."""
    start = time.monotonic()
    done = corral_runc("exec", running, "sh", "-c", "sleep 100 & echo started", timeout=20)
    assert (done.returncode, done.stdout) == (0, "started\n"), done.stderr
    assert time.monotonic() - start < 10


def test_a_process_left_holding_stdout_does_not_hang_run(
    corral_runc: Runc, bundle: Bundle, cid: str
) -> None:
    """Without a pid namespace the init's exit leaves its child running. (``--keep``: the
    delete that ``run`` does itself is timed apart; ``kill --all`` ends the child here.)"""
    bundle.set(
        args=["sh", "-c", "sleep 100 & echo started"],
        edit=lambda c: c["linux"]["namespaces"].remove({"type": "pid"}),
    )
    start = time.monotonic()
    try:
        done = corral_runc("run", "--keep", "--bundle", bundle, cid, timeout=20)
        took = time.monotonic() - start
    finally:
        corral_runc("kill", "--all", cid, "KILL")
        corral_runc("delete", "--force", cid)
    assert (done.returncode, done.stdout) == (0, "started\n"), done.stderr
    assert took < 10


def test_a_closed_stdin_is_an_empty_one(corral_runc: Runc, bundle: Bundle, cid: str) -> None:
    bundle.set(args=["sh", "-c", "cat; echo end $?"])
    done = subprocess.run(
        corral_runc.argv("run", "--bundle", bundle, cid),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
        preexec_fn=lambda: os.close(0),
    )
    assert (done.returncode, done.stdout) == (0, "end 0\n"), done.stderr


# -- user namespaces ------------------------------------------------------------------------------


def test_the_container_root_owns_its_pipes(
    corral_runc: Runc, bundle: Bundle, cid: str
) -> None:
    """In a user namespace the pipes belong to the container's root, which may then reopen
    them (``/dev/stdout``) as runc's containers can."""
    base = 100000
    for parent in [bundle.rootfs, *bundle.rootfs.parents]:  # let host uid 100000 reach it
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o011)

    def edit(config: dict[str, Any]) -> None:
        linux = config["linux"]
        linux["namespaces"].append({"type": "user"})
        linux["uidMappings"] = [{"containerID": 0, "hostID": base, "size": 65536}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": base, "size": 65536}]

    bundle.set(args=["sh", "-c", "echo via-dev-stdout > /dev/stdout; cat /dev/stdin"], edit=edit)
    done = corral_runc("run", "--bundle", bundle, cid, input="in\n")
    assert (done.returncode, done.stdout) == (0, "via-dev-stdout\nin\n"), done.stderr
