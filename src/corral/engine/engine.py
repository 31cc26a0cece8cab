"""``Engine``: the one root object of corral's engine.

Everything the ``corral`` CLI (and later the docker API socket, and a Python program) does goes
through one ``Engine``. It owns what all the parts share and hands the parts out as peers::

    Engine(root)
      .layout       every path (engine.layout): nothing else computes one
      .db           the SQLite database (WAL), one connection per process
      .locked()     the storage root's flock, held by every command that changes something
      .images       tags, manifests, import, from-host, rmi (engine.images.store)
      .snapshots    overlay snapshots: a layer's lower dir, a container's upper dir
      .containers   create, start, stop, rm, ps, logs (engine.containers)
      .info() .df() .prune()    what spans the parts

Parts never reach for each other through globals: the containers part asks ``engine.images``
for an image, the image part asks ``engine.containers`` whether an image is in use. The
parts coming next (networks, volumes, builds) become properties here the same way.

Creating an Engine touches nothing on disk; the database opens on first use. A forked child
(the per-container monitor) must not share the parent's SQLite connection: ``close()`` before
the fork, and the child opens its own.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path

from corral._record import datarecord, field
from corral.engine.db import connect
from corral.engine.layout import Layout
from corral.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

    from corral.engine.build.executor import Builds
    from corral.engine.containers.manager import Containers
    from corral.engine.filters import Filters
    from corral.engine.images.store import DiskUsage, ImageStore
    from corral.engine.network import Networks
    from corral.engine.snapshots.overlay import Snapshotter
    from corral.engine.volumes import Volumes


@datarecord(frozen=True)
class Info:
    """``corral info``: where everything lives and how much of it there is."""

    root: str
    database: str
    blobs: str
    snapshots: str
    tmp: str
    containers_dir: str
    runtime_root: str
    snapshotter: str
    architecture: str
    cgroups: str  # "v2", "hybrid" or "v1" (corral.cgroups.detect)
    images: int
    tags: int
    layers: int
    active_snapshots: int
    containers: int
    blob_count: int

    def to_json(self) -> dict[str, str | int]:
        return dict(self.__dict__)


@datarecord
class PruneReport:
    """What ``system prune`` removed: docker's lines, and the bytes it gave back."""

    containers: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    reclaimed: int = 0


class Engine:
    """The engine at one storage root (``--root``, ``$CORRAL_ROOT`` or ``/var/lib/corral``)."""

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        runtime_root: str | os.PathLike[str] | None = None,
    ) -> None:
        self.layout = Layout.at(root, runtime_root)
        self._db: sqlite3.Connection | None = None

    def __repr__(self) -> str:
        return f"Engine({str(self.layout.root)!r})"

    # -- what the parts share ----------------------------------------------------------------

    @property
    def db(self) -> sqlite3.Connection:
        """The database, opened (and created with its schema) on first use."""
        if self._db is None:
            self.layout.create()
            self._db = connect(self.layout.db)
        return self._db

    def close(self) -> None:
        """Close the database connection (it reopens on next use). Call before a fork."""
        if self._db is not None:
            self._db.close()
            self._db = None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the storage root's lock (re-entrant within a process); see Layout.locked."""
        with self.layout.locked():
            yield

    @contextlib.contextmanager
    def spooled(self, stream: BinaryIO, what: str) -> Iterator[Path]:
        """Copy ``stream`` (a pipe: ``corral import -``, ``corral load < x``) into a file under
        ``tmp/`` and yield its path, holding the lock (``tmp/`` is swept by a locked command,
        so the file is ours only while we hold it); the file goes afterwards."""
        import shutil
        import tempfile

        with self.locked():
            fd, name = tempfile.mkstemp(prefix="stdin-", dir=self.layout.tmp)
            try:
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(stream, out, 1 << 20)
                    if out.tell() == 0:
                        raise UsageError(f"{what}: requested load from stdin, but stdin is empty")
                yield Path(name)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name)

    # -- the parts -------------------------------------------------------------------------------

    @cached_property
    def images(self) -> ImageStore:
        from corral.engine.images.store import ImageStore

        return ImageStore(self)

    @property
    def snapshots(self) -> Snapshotter:
        from corral.engine.snapshots.overlay import Snapshotter

        return Snapshotter(self.layout, self.db)

    @cached_property
    def containers(self) -> Containers:
        from corral.engine.containers.manager import Containers

        return Containers(self)

    @cached_property
    def builds(self) -> Builds:
        from corral.engine.build.executor import Builds

        return Builds(self)

    @cached_property
    def networks(self) -> Networks:
        from corral.engine.network import Networks

        return Networks(
            lambda: self.db,
            self.layout.networks,
            self.layout.container_dir,
            self._container_running,
        )

    def _container_running(self, container_id: str) -> bool:
        """Whether the container may still use its network endpoints: running, or being started
        ("created": another command is between setting up its network and starting it)."""
        from corral.errors import NotFoundError

        try:
            containers = self.containers
            return containers.status(containers.record(container_id)).state != "exited"
        except NotFoundError:
            return False

    @cached_property
    def volumes(self) -> Volumes:
        from corral.engine.volumes import Volumes

        return Volumes(self.layout.volumes, lambda: self.db)

    # -- what spans them -------------------------------------------------------------------------

    def info(self) -> Info:
        from corral.cgroups import detect
        from corral.engine.images.store import host_architecture

        def count(sql: str) -> int:
            return int(self.db.execute(sql).fetchone()[0])

        layout = self.layout
        return Info(
            root=str(layout.root),
            database=str(layout.db),
            blobs=str(layout.blobs),
            snapshots=str(layout.snapshots),
            tmp=str(layout.tmp),
            containers_dir=str(layout.containers),
            runtime_root=str(layout.runtime_root),
            snapshotter="overlay",
            architecture=host_architecture(),
            cgroups=detect(),
            images=count("SELECT COUNT(*) FROM images"),
            tags=count("SELECT COUNT(*) FROM tags"),
            layers=count("SELECT COUNT(*) FROM layers"),
            active_snapshots=count("SELECT COUNT(*) FROM snapshots WHERE kind = 'active'"),
            containers=count("SELECT COUNT(*) FROM containers"),
            blob_count=len(self.images.content.digests()),
        )

    def df(self) -> DiskUsage:
        """docker's ``system df``: images (shared layers counted once), containers' upper dirs,
        volumes (a volume no container uses is reclaimable), the build cache."""
        from corral.engine.images.store import DiskUsageRow

        usage = self.images.disk_usage()
        volumes = self.volumes.usage()
        unused = sum(size for _, links, size in volumes if not links)
        rows = [r for r in usage.rows if r.kind != "Local Volumes"]
        active = sum(1 for _, links, _ in volumes if links)
        total = sum(size for _, _, size in volumes)
        rows.insert(2, DiskUsageRow("Local Volumes", len(volumes), active, total, unused))
        entries, cached = self.builds.usage()  # docker counts the whole cache as reclaimable
        rows = [r for r in rows if r.kind != "Build Cache"]
        rows.append(DiskUsageRow("Build Cache", entries, 0, cached, cached))
        usage.rows = rows
        return usage

    def prune(self, all_images: bool = False) -> PruneReport:
        """docker's ``system prune``: stopped containers, then dangling (``all_images``: every
        unused) images, and the layers and blobs nothing references any more."""
        report = self.prune_containers()
        lines, freed = self.images.prune(all_images=all_images)
        report.images = lines
        report.reclaimed += freed
        return report

    def prune_containers(self, filters: Filters | None = None) -> PruneReport:
        """docker's ``container prune``: every container not running (``label=`` filters)."""
        from corral.engine.filters import label_matches

        report = PruneReport()
        containers = self.containers
        for status in containers.list(all_containers=True):
            if status.state == "running":
                continue
            labels: dict[str, str] = getattr(status.record, "labels", None) or {}
            wanted = filters.get("label") if filters else []
            if wanted and not any(label_matches(labels, v) for v in wanted):
                continue
            report.reclaimed += _tree_size(self.layout.container_dir(status.record.id))
            containers.remove(status.record.id)
            report.containers.append(status.record.id)
        return report


def _tree_size(path: os.PathLike[str]) -> int:
    """Bytes in the files under ``path`` (a container's upper dir and logs), not following links."""
    total = 0
    for top, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(top, name)).st_size
    return total
