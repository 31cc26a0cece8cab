"""Run the ``corral`` engine CLI as a user does (``$CORRAL`` overrides the command)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers.paths import REPO

CORRAL = os.environ.get("CORRAL") or str(REPO / ".venv" / "bin" / "corral")


def corral(
    root: Path, *args: str, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``corral --root ROOT ARGS``; stdin is /dev/null, or a pipe that holds ``input``."""
    cmd = [CORRAL] if os.path.exists(CORRAL) else [sys.executable, "-m", "corral.cli.main"]
    done = subprocess.run(
        [*cmd, "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=120,
        input=input,
        stdin=subprocess.DEVNULL if input is None else None,
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done
