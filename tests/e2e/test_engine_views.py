"""Plain ``ps`` and ``images`` print from the engine's views (engine.views): the same text as the
full commands, from a view only while it is current, and every change shows at the next call."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from helpers.engine import corral
from helpers.paths import REPO

PLAIN = [["ps"], ["ps", "-a"], ["ps", "-q"], ["ps", "-a", "-q"], ["images"], ["images", "-q"]]


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "root"
    yield root
    if (root / "corral.db").exists():
        ids = corral(root, "ps", "-aq", check=False).stdout.split()
        if ids:
            corral(root, "rm", "-f", *ids, check=False)


def both(root: Path, args: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """What ``args`` print through the plain path (cli.plain, the views) and through the full
    one (argparse, cli.containers / cli.images), in this process, at one frozen instant."""
    from corral.cli.main import build_parser, parse_plain

    line = ["--root", str(root), *args]
    instant = time.time()
    monkeypatch.setattr(time, "time", lambda: instant)
    out = []
    for ns in (parse_plain(line), build_parser().parse_args(line)):
        assert ns is not None
        buffer = io.StringIO()
        with redirect_stdout(buffer):
            assert ns.func(ns) == 0
        out.append(buffer.getvalue())
    monkeypatch.undo()
    return out[0], out[1]


def view_is_current(root: Path, name: str) -> bool:
    from corral.engine import views

    return views.load(str(root), name) is not None


def plain_ps(root: Path, *flags: str) -> str:
    return corral(root, "ps", *flags).stdout


def test_plain_forms_print_what_the_full_commands_print(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corral(root, "create", "--name", "made", "busybox", "true")
    assert corral(root, "run", "--name", "done", "busybox", "sh", "-c", "exit 3",
                  check=False).returncode == 3  # fmt: skip
    corral(root, "run", "-d", "--name", "up", "busybox", "sh", "-c", "sleep 60 # a long command")
    corral(root, "run", "-d", "--name", "held", "busybox", "sleep", "60")
    corral(root, "pause", "held")
    corral(root, "tag", "busybox", "mine:1")
    for args in PLAIN:
        first = both(root, args, monkeypatch)  # a stale view: made by the engine, then kept
        assert first[0] == first[1], args
        assert view_is_current(root, "ps" if args[0] == "ps" else "images")
        second = both(root, args, monkeypatch)  # read from the view
        assert second[0] == second[1] == first[0], args
    table = both(root, ["ps", "-a"], monkeypatch)[0]
    assert "Exited (3)" in table and "Created" in table and "(Paused)" in table
    assert '"sh -c \'sleep 60 # a…"' in table  # quoted and cut to 20 characters, as docker does
    assert "mine" in both(root, ["images"], monkeypatch)[0]
    corral(root, "unpause", "held")


def test_a_current_view_is_read_without_the_database_or_the_engine(root: Path) -> None:
    corral(root, "run", "-d", "--name", "up", "busybox", "sleep", "60")
    for args in (["ps"], ["images"]):
        corral(root, *args)  # makes the view
        code = (
            f"import sys; sys.path.insert(0, {str(REPO / 'src')!r}); "
            "from corral.cli.main import main; main(sys.argv[1:]); "
            "sys.stderr.write(repr(sorted(m for m in sys.modules if 'sqlite' in m "
            "or m.startswith(('corral.engine.engine', 'corral.engine.containers', 'argparse')))))"
        )
        done = subprocess.run(
            [sys.executable, "-I", "-S", "-c", code, "--root", str(root), *args],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stderr == "[]", done.stderr
        assert done.stdout == corral(root, *args).stdout


def test_every_change_shows_at_the_next_plain_command(root: Path) -> None:
    corral(root, "run", "-d", "--name", "web", "busybox", "sleep", "60")
    steps = [
        (["rename", "web", "site"], ["ps"], lambda out: "site" in out and "web" not in out),
        (["stop", "-t", "0", "site"], ["ps"], lambda out: "site" not in out),
        (["start", "site"], ["ps"], lambda out: "site" in out),
        (["kill", "site"], ["ps", "-a"], lambda out: "Exited (137)" in out),
        (["tag", "busybox", "other:2"], ["images"], lambda out: "other" in out),
        (["rmi", "other:2"], ["images"], lambda out: "other" not in out),
        (["rm", "site"], ["ps", "-a"], lambda out: out.count("\n") == 1),
    ]
    for change, shown_by, holds in steps:
        corral(root, *shown_by)  # the view is current before the change
        assert view_is_current(root, shown_by[0])
        corral(root, *change)
        out = corral(root, *shown_by).stdout
        assert holds(out), (change, out)


def test_a_container_that_exits_by_itself_shows_exited(root: Path) -> None:
    corral(root, "run", "-d", "--name", "brief", "busybox", "sh", "-c", "sleep 1; exit 4")
    assert "brief" in plain_ps(root)
    assert view_is_current(root, "ps")
    deadline = time.monotonic() + 15
    while "Exited (4)" not in plain_ps(root, "-a"):  # the monitor records it: a change
        assert time.monotonic() < deadline, plain_ps(root, "-a")
        time.sleep(0.1)


def test_a_dead_waiter_is_noticed_through_a_current_view(root: Path) -> None:
    """What the database cannot know is checked at each use: here the waiter, killed behind the
    engine's back while the view said running."""
    corral(root, "run", "-d", "--name", "tick", "busybox", "sleep", "60")
    assert "Up" in plain_ps(root)
    assert view_is_current(root, "ps")
    init = json.loads(corral(root, "inspect", "tick").stdout)[0]["State"]["Pid"]
    with open(f"/proc/{init}/stat") as f:
        waiter = int(f.read().rpartition(")")[2].split()[1])
    os.kill(waiter, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{waiter}") and Path(f"/proc/{waiter}/stat").read_text().split(
        ")"
    )[-1].split()[0] not in ("Z", "X"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert "tick" not in plain_ps(root)
    assert "Exited (255)" in plain_ps(root, "-a")
