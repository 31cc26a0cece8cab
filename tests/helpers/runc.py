"""Run ``corral-runc`` as a user (or containerd) does: a separate process, real argv, real exit.

The command is this checkout's ``.venv/bin/corral-runc``. Set ``CORRAL_RUNC`` to run the same
tests against another runtime, e.g. ``CORRAL_RUNC=runc pytest tests/integration``: a test that
fails against runc tests the wrong thing.
"""

from __future__ import annotations

import os
import secrets
import shlex
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from helpers.paths import CORRAL_RUNC_SCRIPT

DEFAULT_TIMEOUT = 30.0


def runc_command() -> list[str]:
    """The runtime's command line, without ``--root``: ``$CORRAL_RUNC`` or this checkout's."""
    override = os.environ.get("CORRAL_RUNC")
    return shlex.split(override) if override else [str(CORRAL_RUNC_SCRIPT)]


def new_cid(prefix: str = "t") -> str:
    """A fresh container id, ``t-<10 hex digits>``; the leak check knows this shape."""
    return f"{prefix}-{secrets.token_hex(5)}"


class RuncError(subprocess.CalledProcessError):
    """``check=True`` and the command failed; ``str()`` shows the command, status and output."""

    def __str__(self) -> str:
        return (
            f"{shlex.join(self.cmd)} exited with status {self.returncode}\n"
            f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
        )


class Runc:
    """Call the runtime CLI with ``--root ROOT`` prepended; returns ``CompletedProcess[str]``.

    Output goes to temporary files rather than pipes, so ``run -d`` / ``create`` return as soon
    as the CLI exits even though the container keeps its copy of stdout and stderr open.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None,
        command: Sequence[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.root = None if root is None else os.fspath(root)
        self.command = list(command) if command is not None else runc_command()
        self.timeout = timeout

    def argv(self, *args: str | os.PathLike[str]) -> list[str]:
        root = ["--root", self.root] if self.root is not None else []
        return [*self.command, *root, *(os.fspath(a) for a in args)]

    def __call__(
        self,
        *args: str | os.PathLike[str],
        input: str | None = None,
        timeout: float | None = None,
        check: bool = False,
        cwd: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
        stdin: int | IO[Any] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``corral-runc --root ROOT *args`` and wait (``timeout`` seconds at most).

        ``input`` is written to its stdin; otherwise stdin is ``stdin`` or /dev/null. A command
        that outlives ``timeout`` is killed and ``subprocess.TimeoutExpired`` is raised.
        """
        argv = self.argv(*args)
        if input is not None and stdin is not None:
            raise ValueError("give input or stdin, not both")
        if input is None and stdin is None:
            stdin = subprocess.DEVNULL
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.run(
                argv,
                input=None if input is None else input.encode(),
                stdin=stdin,
                stdout=out,
                stderr=err,
                cwd=cwd,
                env=env,
                timeout=self.timeout if timeout is None else timeout,
                check=False,
            )
            done = subprocess.CompletedProcess(argv, proc.returncode, _read(out), _read(err))
        if check and done.returncode != 0:
            raise RuncError(done.returncode, argv, done.stdout, done.stderr)
        return done

    def popen(self, *args: str | os.PathLike[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``corral-runc --root ROOT *args`` without waiting (for consoles, signals)."""
        return subprocess.Popen(self.argv(*args), **kwargs)


def _read(f: IO[bytes]) -> str:
    f.seek(0)
    return f.read().decode("utf-8", "replace")


def cleanup_containers(
    root: str | os.PathLike[str],
    command: Sequence[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> list[str]:
    """Force-delete every container left in ``root``; return what could not be deleted.

    Runs ``corral-runc --root ROOT delete --force ID`` for each directory in ``root``. An empty
    list means all is gone; otherwise each entry says which container and why.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    runc = Runc(root, command, timeout)
    problems = []
    for entry in sorted(root.iterdir()):
        if not entry.is_dir() or entry.is_symlink():
            continue
        try:
            done = runc("delete", "--force", entry.name)
        except subprocess.TimeoutExpired:
            problems.append(f"{entry.name}: delete --force did not finish in {timeout:g} s")
            continue
        if done.returncode != 0:
            why = done.stderr.strip() or done.stdout.strip() or "(no output)"
            problems.append(f"{entry.name}: delete --force exited {done.returncode}: {why}")
        elif entry.exists():
            problems.append(f"{entry.name}: delete --force succeeded but {entry} is still there")
    return problems
