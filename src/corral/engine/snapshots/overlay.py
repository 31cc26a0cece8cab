"""The overlay snapshotter: unpacked layers shared read-only, one writable dir per container.

containerd's model, kept as is because it is the clearest one there is:

*committed* snapshots are unpacked layers, keyed by chain ID, immutable once made. Each lives in
``snapshots/<n>/fs`` and holds only what its layer changed (with overlay whiteouts). A layer
used by ten images is unpacked once.

*active* snapshots are writable: a container's root filesystem. ``prepare(key, parent)``
creates ``snapshots/<n>/fs`` (the overlay *upper* dir, where the container's writes land) and
``snapshots/<n>/work`` (overlayfs' scratch dir, same filesystem as upper), and returns the mount
that stacks them on the parent's layers -- **as data**, without mounting::

    Mount(type="overlay", source="overlay", options=(
        "lowerdir=/var/lib/corral/snapshots/7/fs:/var/lib/corral/snapshots/3/fs",  # top first
        "upperdir=/var/lib/corral/snapshots/12/fs",
        "workdir=/var/lib/corral/snapshots/12/work",
    ))

    merged view        /etc/motd (upper)  /bin/sh (layer 0)  /tmpfile (whited out by layer 1)
    upper  12/fs       etc/motd
    lower  7/fs        etc/  tmpfile(c 0:0)           <- chain id of layers 0+1
    lower  3/fs        bin/sh  etc/  tmpfile          <- chain id of layer 0

Returning data lets the caller decide where and in which mount namespace it happens: the OCI
runtime mounts it as the container's root (config.json ``root.path``), a test mounts it on a
tmp dir, a future ``corral export`` might mount it read-only. ``mount(mounts, target)`` is the
kernel side, ``unmount(target)`` undoes it, ``remove(key)`` deletes the active snapshot's
directories (after unmounting).
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from corral._record import datarecord, field
from corral.engine.db import transaction
from corral.engine.images.digest import chain_id as make_chain_id
from corral.engine.layout import EXTRACT_PREFIX, Layout, remove_tree
from corral.errors import ExistsError, NotFoundError, StateError, UserError

TYPE_CHECKING = False
if TYPE_CHECKING:  # images.layers (tarfile, gzip, tempfile) is for unpacking, not for run
    from typing import Any, BinaryIO

    from corral.engine.images.layers import Applied

# The kernel copies mount options into one page; leave room for the rest of the options.
MAX_MOUNT_DATA = 4096 - 1


@datarecord(frozen=True)
class Mount:
    """One mount, as data (containerd's ``mount.Mount``, and the OCI config's ``mounts[]``)."""

    type: str
    source: str
    options: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "source": self.source, "options": list(self.options)}


@datarecord(frozen=True)
class Layer:
    """A committed snapshot: one unpacked layer stacked on its parent chain."""

    chain_id: str
    diff_id: str
    parent: str | None
    snapshot_id: int
    size: int
    path: Path


class Snapshotter:
    """Committed (layers) and active (containers') snapshots under ``<root>/snapshots``.

    All changing methods expect the caller to hold the store lock (``Layout.locked``).
    """

    name = "overlay"

    def __init__(self, layout: Layout, db: sqlite3.Connection) -> None:
        self.layout = layout
        self.db = db

    # -- committed snapshots (layers) ---------------------------------------------------------

    def unpack(
        self,
        blob: BinaryIO,
        parent: str | None,
        expected_diff_id: str | None = None,
        what: str = "layer",
    ) -> tuple[Layer, Applied | None]:
        """Unpack ``blob`` on top of chain ``parent`` unless that layer stack already exists.

        The layer is extracted into ``snapshots/.extract-*`` (inside the store, same filesystem)
        and renamed to ``snapshots/<n>`` only once it is complete and its diff_id is known (and
        matches ``expected_diff_id`` when given): a refused layer leaves nothing.
        If ``expected_diff_id`` is given and that chain exists, nothing is read at all.
        """
        import tempfile

        from corral.engine.images.layers import LayerError, apply_layer

        if parent is not None:
            self.layer(parent)  # must exist
        if expected_diff_id is not None:
            known = self.find_layer(make_chain_id(parent, expected_diff_id))
            if known is not None:
                return known, None
        tmp = Path(tempfile.mkdtemp(prefix=EXTRACT_PREFIX, dir=self.layout.snapshots))
        try:
            fs = tmp / "fs"
            fs.mkdir(mode=0o755)
            applied = apply_layer(blob, str(fs), what)
            if expected_diff_id is not None and applied.diff_id != expected_diff_id:
                raise LayerError(
                    f"{what}: diff_id mismatch: config says {expected_diff_id}, "
                    f"content is {applied.diff_id}"
                )
            chain = make_chain_id(parent, applied.diff_id)
            known = self.find_layer(chain)
            if known is not None:
                return known, applied
            with transaction(self.db) as db:
                cur = db.execute(
                    "INSERT INTO snapshots (key, kind, parent, created)"
                    " VALUES (?, 'committed', ?, ?)",
                    (chain, parent, time.time()),
                )
                snapshot_id = int(cur.lastrowid or 0)
                db.execute(
                    "INSERT INTO layers (chain_id, diff_id, parent, snapshot_id, size, refcount) "
                    "VALUES (?, ?, ?, ?, ?, 0)",
                    (chain, applied.diff_id, parent, snapshot_id, applied.size),
                )
                final = self.layout.snapshot_dir(snapshot_id)
                if final.exists():  # left by a crash between rename and commit
                    remove_tree(final)
                os.rename(tmp, final)
            return self.layer(chain), applied
        finally:
            if tmp.exists():
                remove_tree(tmp)

    def find_layer(self, chain_id: str) -> Layer | None:
        row = self.db.execute(
            "SELECT chain_id, diff_id, parent, snapshot_id, size FROM layers WHERE chain_id = ?",
            (chain_id,),
        ).fetchone()
        if row is None:
            return None
        return Layer(
            row["chain_id"],
            row["diff_id"],
            row["parent"],
            row["snapshot_id"],
            row["size"],
            self.layout.snapshot_dir(row["snapshot_id"]) / "fs",
        )

    def layer(self, chain_id: str) -> Layer:
        found = self.find_layer(chain_id)
        if found is None:
            raise NotFoundError(f"snapshot not found: layer {chain_id}")
        return found

    def stack(self, chain_id: str) -> list[Layer]:
        """The layers of a chain, top first (the order of overlay's ``lowerdir``)."""
        out: list[Layer] = []
        current: str | None = chain_id
        while current is not None:
            found = self.layer(current)
            out.append(found)
            current = found.parent
        return out

    def collect(self) -> list[Layer]:
        """Remove committed snapshots no image and no container needs; return what went.

        A layer stays while an image references it (refcount), while a layer on top of it
        exists, or while an active snapshot (a container) stands on it.
        """
        removed: list[Layer] = []
        while True:
            rows = self.db.execute(
                "SELECT chain_id FROM layers l WHERE refcount <= 0"
                " AND NOT EXISTS (SELECT 1 FROM layers c WHERE c.parent = l.chain_id)"
                " AND NOT EXISTS (SELECT 1 FROM snapshots s WHERE s.kind = 'active'"
                "                 AND s.parent = l.chain_id)"
            ).fetchall()
            if not rows:
                return removed
            for row in rows:
                found = self.layer(row["chain_id"])
                with transaction(self.db) as db:
                    db.execute("DELETE FROM layers WHERE chain_id = ?", (found.chain_id,))
                    db.execute("DELETE FROM snapshots WHERE id = ?", (found.snapshot_id,))
                remove_tree(self.layout.snapshot_dir(found.snapshot_id))
                removed.append(found)

    # -- active snapshots (containers' root filesystems) ---------------------------------------

    def prepare(self, key: str, parent: str | None) -> list[Mount]:
        """Create the writable snapshot ``key`` on top of layer chain ``parent``; return its mounts.

        Nothing is mounted: pass the result to ``mount(mounts, target)`` (or put it in an OCI
        config). With no parent the snapshot is an empty directory, returned as a bind mount.
        """
        if not key or "/" in key:
            raise UserError(f"snapshot key {key!r}: must be non-empty and contain no '/'")
        if parent is not None:
            self.layer(parent)
        with transaction(self.db) as db:
            if db.execute("SELECT 1 FROM snapshots WHERE key = ?", (key,)).fetchone():
                raise ExistsError(f"snapshot {key!r} already exists")
            cur = db.execute(
                "INSERT INTO snapshots (key, kind, parent, created) VALUES (?, 'active', ?, ?)",
                (key, parent, time.time()),
            )
            path = self.layout.snapshot_dir(int(cur.lastrowid or 0))
            if path.exists():
                remove_tree(path)
            path.mkdir(mode=0o700)
            (path / "fs").mkdir(mode=0o755)
            (path / "work").mkdir(mode=0o700)
        return self.mounts(key)

    def _active(self, key: str) -> sqlite3.Row:
        row: sqlite3.Row | None = self.db.execute(
            "SELECT id, key, kind, parent FROM snapshots WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"snapshot not found: {key}")
        if row["kind"] != "active":
            raise StateError(f"snapshot {key} is a committed layer, not an active snapshot")
        return row

    def mounts(self, key: str) -> list[Mount]:
        """The mounts of active snapshot ``key`` (as ``prepare`` returned them)."""
        row = self._active(key)
        path = self.layout.snapshot_dir(row["id"])
        if row["parent"] is None:
            return [Mount("bind", str(path / "fs"), ("rbind", "rw"))]
        lower = ":".join(str(layer.path) for layer in self.stack(row["parent"]))
        options = (f"lowerdir={lower}", f"upperdir={path / 'fs'}", f"workdir={path / 'work'}")
        if len(",".join(options)) > MAX_MOUNT_DATA:
            raise UserError(
                f"snapshot {key}: {len(self.stack(row['parent']))} layers make overlay options "
                f"longer than one page ({MAX_MOUNT_DATA} bytes); use a shorter --root"
            )
        return [Mount("overlay", "overlay", options)]

    def upper(self, key: str) -> Path:
        """The directory where a container's changes land."""
        return self.layout.snapshot_dir(self._active(key)["id"]) / "fs"

    def usage(self, key: str) -> int:
        """Bytes written by the container into its snapshot."""
        from corral.engine.images.layers import tree_size

        return tree_size(str(self.upper(key)))

    def active(self) -> list[tuple[str, str | None, Path]]:
        """Every active snapshot: (key, parent chain id, upper dir)."""
        rows = self.db.execute(
            "SELECT id, key, parent FROM snapshots WHERE kind = 'active' ORDER BY id"
        ).fetchall()
        return [(r["key"], r["parent"], self.layout.snapshot_dir(r["id"]) / "fs") for r in rows]

    def remove(self, key: str) -> None:
        """Delete active snapshot ``key`` and its directories. Unmount it first.

        Removing a committed snapshot goes through ``collect``: layers are shared and are
        removed only when nothing references them.
        """
        row = self._active(key)
        path = self.layout.snapshot_dir(row["id"])
        if _is_mounted_below(path):
            raise StateError(f"snapshot {key} is still mounted (unmount it first)")
        with transaction(self.db) as db:
            db.execute("DELETE FROM snapshots WHERE id = ?", (row["id"],))
            remove_tree(path)


def _is_mounted_below(path: Path) -> bool:
    """True if an overlay in /proc/self/mountinfo uses ``path`` as its upper dir."""
    needle = f"upperdir={path}/fs"
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            return any(needle + "," in line or line.rstrip().endswith(needle) for line in f)
    except OSError:
        return False


# -- the kernel side -----------------------------------------------------------------------------

_FLAG_OPTIONS = {"ro": 1, "nosuid": 2, "nodev": 4, "noexec": 8}


def mount(mounts: list[Mount], target: str | os.PathLike[str]) -> None:
    """Mount ``mounts`` (as returned by ``prepare``) on ``target``, in order."""
    from corral import sys as csys

    where = os.fspath(target)
    for m in mounts:
        flags = 0
        data: list[str] = []
        for option in m.options:
            if option in ("bind", "rbind"):
                flags |= csys.MS_BIND | (csys.MS_REC if option == "rbind" else 0)
            elif option in _FLAG_OPTIONS:
                flags |= _FLAG_OPTIONS[option]
            elif option != "rw":
                data.append(option)
        fstype = None if m.type == "bind" else m.type
        csys.mount(m.source, where, fstype, flags, ",".join(data) or None)


def unmount(target: str | os.PathLike[str], detach: bool = False) -> None:
    """Undo ``mount``; ``detach`` (MNT_DETACH) when something may still be busy inside.

    Not mounted (any more) is done: two teardowns of one container may race (the monitor's
    helper and a command that found the container ended), and the loser gets EINVAL."""
    from corral import sys as csys
    from corral.errors import KernelError

    try:
        csys.umount2(os.fspath(target), csys.MNT_DETACH if detach else 0)
    except KernelError as err:
        if err.errno != 22 or _mounted(os.fspath(target)):  # EINVAL: not a mount point
            raise


def _mounted(path: str) -> bool:
    """Whether ``path`` is a mount point now (per /proc/self/mountinfo)."""
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        return any(line.split()[4] == path for line in f)
