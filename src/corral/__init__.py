"""corral: Linux containers, written in Python.

The public API is listed in ``__all__`` and loaded lazily: importing ``corral`` costs nothing,
so ``corral-runc`` (which containerd runs several times per container) starts fast. For the
same reason the modules on that path do without ``from __future__ import annotations`` (the
first import of ``__future__`` costs 0.2 ms) and without ``os`` (see corral._posix).
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.engine.engine import Engine
    from corral.errors import (
        CgroupError,
        ContainerInitError,
        CorralError,
        ExistsError,
        HookError,
        KernelError,
        NotFoundError,
        RuntimeFailure,
        SpecError,
        StateError,
        UsageError,
        UserError,
    )
    from corral.runtime.api import Runtime
    from corral.sandbox import Container, Result, create, run

__version__ = "0.1.0"

_LAZY = {
    "CgroupError": "corral.errors",
    "ContainerInitError": "corral.errors",
    "CorralError": "corral.errors",
    "ExistsError": "corral.errors",
    "HookError": "corral.errors",
    "KernelError": "corral.errors",
    "NotFoundError": "corral.errors",
    "RuntimeFailure": "corral.errors",
    "SpecError": "corral.errors",
    "StateError": "corral.errors",
    "UsageError": "corral.errors",
    "UserError": "corral.errors",
    "Runtime": "corral.runtime.api",
    "Engine": "corral.engine.engine",
    "Container": "corral.sandbox",
    "Result": "corral.sandbox",
    "create": "corral.sandbox",
    "run": "corral.sandbox",
}

__all__ = [
    "CgroupError",
    "Container",
    "ContainerInitError",
    "CorralError",
    "Engine",
    "ExistsError",
    "HookError",
    "KernelError",
    "NotFoundError",
    "Result",
    "Runtime",
    "RuntimeFailure",
    "SpecError",
    "StateError",
    "UsageError",
    "UserError",
    "__version__",
    "create",
    "run",
]


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'corral' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
