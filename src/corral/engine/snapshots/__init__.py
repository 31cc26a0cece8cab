"""Snapshots: unpacked layers (committed) and containers' writable layers (active).

See ``corral.engine.snapshots.overlay`` for the model; this package re-exports it.
"""

from corral.engine.snapshots.overlay import Layer, Mount, Snapshotter, mount, unmount

__all__ = ["Layer", "Mount", "Snapshotter", "mount", "unmount"]
