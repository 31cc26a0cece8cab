"""Fixtures of the end-to-end tests (tests/conftest.py has the shared ones).

``root``   Path: a fresh engine ``--root`` for ``helpers.engine.corral``; containers a test
           left in it are removed (``rm -f``) afterwards, so one failing test does not leave
           mounts and processes for the leak check to find in the next.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.engine import corral


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "root"
    yield root
    if (root / "corral.db").exists():  # whatever a failed test left running
        ids = corral(root, "ps", "-aq", check=False).stdout.split()
        if ids:
            corral(root, "rm", "-f", *ids, check=False)
