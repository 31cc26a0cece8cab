"""Every path the engine uses, computed here and nowhere else.

One storage root, ``/var/lib/corral`` unless told otherwise, survives reboots::

    <root>/
      corral.db               SQLite (WAL): images, tags, manifests, layers, snapshots,
                              containers (and each feature's own tables: leases, volumes...)
      corral.db-wal, -shm     SQLite's write-ahead log
      lock                    flock()ed by every command that changes something
      auth.json               registry credentials (podman's format; $REGISTRY_AUTH_FILE wins)
      blobs/sha256/<hex>      content-addressed blobs: manifests, configs, layer tarballs
      tmp/                    ingest: partial downloads and blobs being written (same
                              filesystem, so a finished blob is rename()d into blobs/)
      snapshots/<n>/fs        a layer unpacked (committed snapshot, read-only overlay lower dir)
                              or a container's upper dir (active snapshot, with <n>/work)
      snapshots/.extract-*    a layer being unpacked; renamed to snapshots/<n> once complete
      containers/<id>/        a container: its record, OCI bundle (config.json, rootfs/), logs
      networks/               network state that is not in the database (engine.network)
      volumes/<name>/_data    named volumes (engine.volumes)
      build/                  the build cache (engine.build)
      views/                  what plain ``ps`` and ``images`` print, precomputed, and the
                              database generation it shows (engine.views)

The OCI runtime's state for the engine's containers does not survive a reboot (nor should
it: after one, no container runs and the engine's next command says so), so it lives on a
tmpfs, one directory per storage root::

    /run/corral-engine/<12 hex digits of sha256(root)>/<container id>/   (corral.runtime.state)

The root is chosen by ``--root``, else ``$CORRAL_ROOT``, else ``/var/lib/corral``; the runtime
state directory by ``--runroot``, else ``$CORRAL_RUNROOT``, else as above.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from corral._record import datarecord
from corral.engine.roots import chosen_root

RUNTIME_PARENT = "/run/corral-engine"
ENV_RUNROOT = "CORRAL_RUNROOT"
EXTRACT_PREFIX = ".extract-"
_HELD: dict[str, int] = {}  # roots whose lock this process holds, and how deeply


def default_root() -> Path:
    """``$CORRAL_ROOT`` if set and non-empty, else ``/var/lib/corral``."""
    return Path(chosen_root())


def runtime_root_for(root: Path) -> Path:
    """Where the runtime state of ``root``'s containers lives by default (on /run's tmpfs)."""
    env = os.environ.get(ENV_RUNROOT)
    if env:
        return Path(env).absolute()
    try:  # the built-in module: hashlib would load OpenSSL (2 ms) for one small digest
        from _sha256 import sha256  # type: ignore[import-not-found]
    except ImportError:  # not built in this Python
        from hashlib import sha256
    key: str = sha256(str(root).encode()).hexdigest()[:12]
    return Path(RUNTIME_PARENT) / key


@datarecord(frozen=True)
class Layout:
    """The paths of one storage root. Creating the object touches nothing; ``create()`` does."""

    root: Path
    runtime_root: Path

    @classmethod
    def at(
        cls,
        root: str | os.PathLike[str] | None = None,
        runtime_root: str | os.PathLike[str] | None = None,
    ) -> Layout:
        where = Path(chosen_root(root))
        state = Path(runtime_root).absolute() if runtime_root else runtime_root_for(where)
        return cls(where, state)

    @property
    def db(self) -> Path:
        return self.root / "corral.db"

    @property
    def lock_path(self) -> Path:
        return self.root / "lock"

    @property
    def auth_file(self) -> Path:
        return self.root / "auth.json"

    @property
    def blobs(self) -> Path:
        return self.root / "blobs" / "sha256"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def snapshots(self) -> Path:
        return self.root / "snapshots"

    def snapshot_dir(self, snapshot_id: int) -> Path:
        return self.snapshots / str(snapshot_id)

    @property
    def containers(self) -> Path:
        return self.root / "containers"

    def container_dir(self, container_id: str) -> Path:
        return self.containers / container_id

    @property
    def networks(self) -> Path:
        return self.root / "networks"

    @property
    def volumes(self) -> Path:
        return self.root / "volumes"

    @property
    def build_cache(self) -> Path:
        return self.root / "build"

    def create(self) -> None:
        """Make the directories (0700: image contents may hold secrets and setuid files)."""
        for path in (self.root, self.blobs.parent, self.blobs, self.tmp, self.snapshots):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's exclusive lock; leftovers of an interrupted command are swept first.

        Only one changing command runs at a time, so anything in ``tmp/`` or any
        ``snapshots/.extract-*`` found while holding the lock belongs to a command that died.
        """
        key = str(self.root)
        if _HELD.get(key, 0):  # re-entered in this process: the lock is ours already
            _HELD[key] += 1
            try:
                yield
            finally:
                _HELD[key] -= 1
            return
        self.create()
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _HELD[key] = 1
            self.sweep_temporary()
            yield
        finally:
            _HELD.pop(key, None)
            os.close(fd)

    def sweep_temporary(self) -> None:
        """Remove partial blobs and half-extracted snapshots (call only under the lock)."""
        for entry in os.scandir(self.tmp):
            remove_tree(Path(entry.path))
        for entry in os.scandir(self.snapshots):
            if entry.name.startswith(EXTRACT_PREFIX):
                remove_tree(Path(entry.path))


def remove_tree(path: Path) -> None:
    """Remove a file or a directory tree, including read-only directories inside it."""
    if path.is_symlink() or not path.is_dir():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return

    import shutil

    def onerror(func: object, name: str, exc: object) -> None:
        # A layer may hold 0500 directories; root is not stopped by modes, but be thorough.
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(name), 0o700)
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            if os.path.isdir(name) and not os.path.islink(name):
                shutil.rmtree(name, ignore_errors=True)
            else:
                os.unlink(name)

    shutil.rmtree(path, onerror=onerror)
