"""Where things are, relative to this checkout (tests never depend on the install location)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
VENV_PYTHON = REPO / ".venv" / "bin" / "python3"
# pip's console script for the runtime CLI, in this checkout's venv (scripts/install.sh makes it).
CORRAL_RUNC_SCRIPT = REPO / ".venv" / "bin" / "corral-runc"
