"""containerd 1.6 (Debian's) and its ctr running containers with the runtime under test.

One private containerd for the module (tests/helpers/clients.py: root, state, sockets and opt
dir in a tmp dir, in a network namespace of its own); every ``ctr run`` names the runtime with
``--runc-binary /usr/local/bin/corral-runc`` (and a private ``--runc-root``), as a ctr user does.
``CORRAL_CLIENT_RUNTIME=runc`` runs the same scenarios on runc: they must all pass there.

ctr lacks some verbs the other clients have, so these scenarios are not here: ``--pids-limit``
(no such flag), ``update`` (no such command in 1.6), restart policies (none; containerd's
restart monitor plugin is driven by labels and polls every 10 s), ``logs`` (the output is read
from the file ``--log-uri file://`` names), and ``stop`` with a timeout (``tasks kill``, then
``tasks kill --signal SIGKILL`` after a wait, as a ctr user does by hand).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import clients, new_cid
from helpers.clients import COUNTER, IGNORE_TERM, TRAP_TERM, Cli, cgroup_file, wait_for

RUNTIME = clients.runtime_under_test()


@pytest.fixture(scope="module")
def ctrd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[clients.Containerd]:
    with clients.containerd(tmp_path_factory.mktemp("containerd")) as daemon:
        yield daemon


@pytest.fixture
def ctr(ctrd: clients.Containerd) -> Iterator[Cli]:
    with ctrd.checked():
        yield ctrd.ctr


@pytest.fixture
def run(ctrd: clients.Containerd) -> list[str]:
    """``run`` and the flags that choose the runtime under test."""
    return ["run", *ctrd.run_flags(RUNTIME)]


@pytest.fixture
def image(ctrd: clients.Containerd) -> str:
    return ctrd.image


def run_detached(ctr: Cli, run: list[str], image: str, log: Path, script: str) -> str:
    cid = new_cid()
    ctr.ok(*run, "--detach", "--log-uri", f"file://{log}", image, cid, "sh", "-c", script)
    return cid


def started(log: Path) -> None:
    wait_for("the container to print 'started'",
             lambda: log.exists() and "started" in log.read_text())


def pid_of(ctrd: clients.Containerd, cid: str) -> int:
    for line in ctrd.ctr.ok("tasks", "ls").splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == cid:
            return int(fields[1])
    raise AssertionError(f"no task {cid}")


def test_run_rm_output_and_exit_code(ctr: Cli, run: list[str], image: str) -> None:
    done = ctr(*run, "--rm", image, new_cid(), "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    assert ctr.ok("containers", "ls", "--quiet") == ""


def test_detached_exec_logs_stop_rm(ctrd: clients.Containerd, ctr: Cli, run: list[str],
                                    image: str, tmp_path: Path) -> None:
    log = tmp_path / "log"
    cid = run_detached(ctr, run, image, log, TRAP_TERM)
    started(log)
    done = ctr("tasks", "exec", *ctrd.exec_flags("e1"), cid,
               "sh", "-c", "echo $((6 * 7)); echo oops >&2; exit 5")
    assert (done.returncode, done.stdout, done.stderr) == (5, "42\n", "oops\n")
    with ctr.pty("tasks", "exec", "--tty", *ctrd.exec_flags("e2"), cid, "sh", "-c",
                 "tty; exit 4") as t:
        assert t.wait() == 4, t.output
        assert b"/dev/pts/" in t.output
    ctr.ok("tasks", "kill", cid)  # SIGTERM
    took = wait_for("the task to stop on SIGTERM", lambda: ctrd.task_status(cid) == "STOPPED",
                    timeout=10)
    assert took < 5
    assert log.read_text() == "started\nbye\n"
    deleted = ctr("tasks", "delete", cid)  # it warns of an exit status other than 0
    assert (deleted.returncode, "exit code" in deleted.stderr) == (0, False), deleted.stderr
    ctr.ok("containers", "delete", cid)
    assert ctr.ok("containers", "ls", "--quiet") == ""


def test_stop_escalates_to_kill_when_term_is_ignored(ctrd: clients.Containerd, ctr: Cli,
                                                     run: list[str], image: str,
                                                     tmp_path: Path) -> None:
    log = tmp_path / "log"
    cid = run_detached(ctr, run, image, log, IGNORE_TERM)
    started(log)
    ctr.ok("tasks", "kill", cid)
    time.sleep(1)
    assert ctrd.task_status(cid) == "RUNNING", "SIGTERM was not ignored"
    ctr.ok("tasks", "kill", "--signal", "SIGKILL", cid)
    wait_for("the task to stop on SIGKILL", lambda: ctrd.task_status(cid) == "STOPPED")
    deleted = ctr("tasks", "delete", cid)
    assert "exit with non-zero exit code 137" in deleted.stderr, deleted.stderr


def test_interactive_tty(ctr: Cli, run: list[str], image: str) -> None:
    with ctr.pty(*run, "--tty", "--rm", image, new_cid(), "sh") as term:
        clients.expect_shell_session(term)


def test_pause_and_resume(ctrd: clients.Containerd, ctr: Cli, run: list[str], image: str,
                          tmp_path: Path) -> None:
    log = tmp_path / "log"
    cid = run_detached(ctr, run, image, log, COUNTER)

    def count() -> int:
        return len(log.read_text().split()) if log.exists() else 0

    wait_for("the counter to count", lambda: count() > 3)
    ctr.ok("tasks", "pause", cid)
    assert ctrd.task_status(cid) == "PAUSED"
    assert cgroup_file(pid_of(ctrd, cid), "freezer", "freezer.state") == "FROZEN"
    stopped_at = count()
    time.sleep(0.5)
    assert count() == stopped_at, "the counter went on while paused"
    ctr.ok("tasks", "resume", cid)
    assert ctrd.task_status(cid) == "RUNNING"
    wait_for("the counter to go on", lambda: count() > stopped_at + 3)


def test_memory_limit_oom_event(ctrd: clients.Containerd, ctr: Cli, run: list[str], image: str,
                                tmp_path: Path) -> None:
    """containerd's shim watches the memory cgroup of the init (read right after ``create``)
    and publishes /tasks/oom; docker turns that event into OOMKilled."""
    events = tmp_path / "events"
    with open(events, "w") as out:
        watcher = subprocess.Popen(ctr.argv("events"), stdout=out, stderr=subprocess.STDOUT)
    try:
        time.sleep(0.2)  # let it subscribe
        cid = new_cid()
        done = ctr(*run, "--rm", "--memory-limit", str(32 << 20), image, cid, "tail", "/dev/zero")
        assert done.returncode == 137, done.stderr
        wait_for("a /tasks/oom event", lambda: any(
            "/tasks/oom" in line and cid in line for line in events.read_text().splitlines()),
            timeout=5)
    finally:
        watcher.terminate()
        watcher.wait()


def test_metrics_read_the_container_cgroups(ctrd: clients.Containerd, ctr: Cli,
                                            run: list[str], image: str, tmp_path: Path) -> None:
    """``ctr tasks metrics`` (what ``docker stats`` shows) reads the cgroups of the init that
    the shim found after ``create``: the container's limit, not the host's."""
    log = tmp_path / "log"
    cid = new_cid()
    ctr.ok(*run, "--detach", "--memory-limit", str(64 << 20), "--log-uri", f"file://{log}",
           image, cid, "sh", "-c", TRAP_TERM)
    started(log)
    text = ctr.ok("tasks", "metrics", cid)
    assert str(64 << 20) in text.split(), text
    assert cgroup_file(pid_of(ctrd, cid), "memory", "memory.limit_in_bytes") == str(64 << 20)
