"""``corral logs`` with docker's flags: --tail N / --tail=N / -n N before or after the name
(issue 10: ``logs --tail 2 NAME`` took ``2`` for the container), -f until the program ends."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_engine_run import NOTHING, leftovers

from helpers.engine import corral


def wait_for_output(root: Path, name: str, text: str) -> None:
    deadline = time.monotonic() + 10
    while text not in corral(root, "logs", name).stdout:
        assert time.monotonic() < deadline, corral(root, "logs", name)
        time.sleep(0.05)


@pytest.mark.parametrize(
    "args",
    [
        ["--tail", "2", "lg"],
        ["--tail=2", "lg"],
        ["-n", "2", "lg"],
        ["-n2", "lg"],
        ["lg", "--tail", "2"],
    ],
)
def test_logs_tail(root: Path, args: list[str]) -> None:
    script = "for i in 1 2 3 4 5; do echo l$i; done"
    corral(root, "run", "-d", "--name", "lg", "busybox", "sh", "-c", script)
    wait_for_output(root, "lg", "l5")
    done = corral(root, "logs", *args, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, "l4\nl5\n", "")
    assert corral(root, "logs", "--tail", "0", "lg").stdout == ""
    assert corral(root, "logs", "--tail", "all", "lg").stdout == "l1\nl2\nl3\nl4\nl5\n"
    corral(root, "rm", "-f", "lg")
    assert leftovers(root) == NOTHING


def test_logs_follow_ends_with_the_container(root: Path) -> None:
    corral(
        root, "run", "-d", "--name", "lg", "busybox", "sh", "-c", "echo a; echo b; sleep 1; echo c"
    )
    wait_for_output(root, "lg", "b")
    started = time.monotonic()
    done = corral(root, "logs", "-f", "--tail", "1", "lg")
    assert done.stdout == "b\nc\n"
    assert time.monotonic() - started < 5
    corral(root, "rm", "lg")


def test_logs_bad_flags_are_one_line(root: Path) -> None:
    corral(root, "create", "--name", "lg", "busybox", "true")
    for args, fragment in [
        (["--tail", "x", "lg"], "--tail 'x'"),
        (["--since", "yesterday", "lg"], "--since 'yesterday'"),
        (["--until", "10x", "lg"], "--until '10x'"),
        (["--tail", "2", "ghost"], "No such container: ghost"),
    ]:
        done = corral(root, "logs", *args, check=False)
        assert done.returncode == 1, (args, done)
        assert done.stdout == "" and done.stderr.strip().splitlines() == [
            f"Error: {done.stderr.strip()[7:]}"
        ]
        assert fragment in done.stderr, (args, done.stderr)
    corral(root, "rm", "lg")
