"""Helpers for corral's tests: run the CLI as a user does, make bundles, catch leaks.

The fixtures in tests/conftest.py are thin wrappers around these; tests that need more than one
container, root or bundle call the helpers directly::

    from helpers import Bundle, Runc, cleanup_containers, new_cid

``tests/`` is put on sys.path by tests/conftest.py, so ``helpers`` imports as a top-level package.
"""

from __future__ import annotations

from helpers.bundles import Bundle, BundleFactory, BundleTemplate
from helpers.leaks import Snapshot, find_leaks, remove_leaks
from helpers.paths import REPO, SRC, VENV_PYTHON
from helpers.runc import Runc, RuncError, cleanup_containers, new_cid, runc_command

__all__ = [
    "REPO",
    "SRC",
    "VENV_PYTHON",
    "Bundle",
    "BundleFactory",
    "BundleTemplate",
    "Runc",
    "RuncError",
    "Snapshot",
    "cleanup_containers",
    "find_leaks",
    "new_cid",
    "remove_leaks",
    "runc_command",
]
