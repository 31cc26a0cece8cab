"""Containers: an image's layers, a writable snapshot, an OCI bundle, run by the runtime library.

- ``spec``     the OCI config from the image's config and the ``run`` flags (pure)
- ``netns``    the container's network namespace as a file (loopback only for now)
- ``logs``     reading the log file as ``logs --tail N -f`` shows it
- ``exit_status`` docker's exit status of a ``run`` that failed: 125, 126 or 127
- ``manager``  ``Containers``: create, start (foreground or under a monitor), stop, rm, ps, logs

Importing the package loads none of them: the names below come on first use, so a module that
needs only ``spec`` (the CLI's run flags) does not pay for the manager's imports (~25 ms).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.engine.containers.manager import Containers, Record, Status
    from corral.engine.containers.spec import RunOptions, build_spec

__all__ = ["Containers", "Record", "RunOptions", "Status", "build_spec"]


def __getattr__(name: str) -> object:
    if name in ("Containers", "Record", "Status"):
        from corral.engine.containers import manager

        return getattr(manager, name)
    if name in ("RunOptions", "build_spec"):
        from corral.engine.containers import spec

        return getattr(spec, name)
    raise AttributeError(f"module 'corral.engine.containers' has no attribute {name!r}")
