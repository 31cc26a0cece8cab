"""corral's engine: images, snapshots, containers (and next networks, volumes, builds).

``Engine`` (engine.engine) is the one root object; see its docstring for the parts and
engine.layout for where each keeps its files. Importing this package costs nothing more than
the package itself: ``Engine`` is loaded on first use.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.engine.engine import Engine

__all__ = ["Engine"]


def __getattr__(name: str) -> object:
    if name == "Engine":
        from corral.engine.engine import Engine

        return Engine
    raise AttributeError(f"module 'corral.engine' has no attribute {name!r}")
