"""Which modules a command imports, run the way its lean launcher (scripts/install.sh) runs it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from helpers.paths import SRC, VENV_PYTHON

#: What each program's launcher runs once the source tree is first on sys.path.
ENTRY = {
    "corral": "from corral.cli.main import main; sys.exit(main())",
    "corral-runc": "from corral.cli.runc import run; run()",
}


def launcher(program: str) -> list[str]:
    """The command line that runs ``program`` as its launcher does, with ``-X importtime``."""
    code = (
        f"import sys; sys.path.insert(0, {str(SRC)!r}); sys.argv[0] = {program!r}; "
        + ENTRY[program]
    )
    return [str(VENV_PYTHON), "-I", "-S", "-X", "importtime", "-c", code]


def imported(stderr_lines: list[str]) -> set[str]:
    """The modules an ``-X importtime`` report (stderr's lines) names."""
    return {line.rsplit("|", 1)[-1].strip() for line in stderr_lines[1:] if "|" in line}


def loaded_by(program: str, root: Path, *args: str) -> tuple[set[str], str]:
    """Run ``program --root ROOT ARGS`` as its launcher does: (modules imported, its stdout)."""
    done = subprocess.run(
        [*launcher(program), "--root", str(root), *args],
        capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    lines = done.stderr.splitlines()
    other = [line for line in lines if not line.startswith("import time:")]
    assert done.returncode == 0, (args, done.stdout, other)
    return imported(lines), done.stdout
