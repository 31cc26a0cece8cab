"""Named and anonymous volumes: directories the engine owns, mounted into containers.

A volume outlives its containers; it is what ``-v NAME:/path`` mounts, what ``-v /path`` (or
the image's ``VOLUME``) makes anonymously, and what ``volume create/ls/inspect/rm/prune``
manage. The layout is docker's ``local`` driver::

    <root>/volumes/<name>/_data      the data, bind-mounted at the container's target

and two tables in the store's database (made on first use)::

    volumes(name, created, anonymous, labels)     one row per volume
    volume_users(container_id, name)              which container mounts which volume

Seeding, as docker does it: the first time a container with a fresh, empty volume starts, what
the image holds at the mount's target is copied into the volume (owners, modes, links kept),
so ``-v data:/var/lib/app`` starts with the image's files and keeps the changes; ``--mount
...,volume-nocopy`` leaves it empty. A volume that already holds something is never touched.

``rm`` of a volume a container still uses is refused (``volume is in use``); ``rm -v`` of a
container (and ``run --rm``) removes its anonymous volumes, never its named ones; ``prune``
removes the anonymous volumes no container uses (``-a``: the named ones as well).
"""

from __future__ import annotations

import builtins
import json
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from corral._record import datarecord, field
from corral.engine.layout import remove_tree
from corral.engine.rootpath import existing_in_root
from corral.errors import CorralError, ExistsError, NotFoundError, StateError, UsageError

SCHEMA = """
CREATE TABLE IF NOT EXISTS volumes (
    name TEXT PRIMARY KEY,
    created REAL NOT NULL,
    anonymous INTEGER NOT NULL DEFAULT 0,
    labels TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS volume_users (
    container_id TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (container_id, name)
);
"""

#: docker's rule for a local volume's name (volume/local/local.go).
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


@datarecord
class Volume:
    name: str
    path: Path  # the mount point: <root>/volumes/<name>/_data
    created: float
    anonymous: bool = False
    labels: dict[str, str] = field(default_factory=dict)

    def inspect(self) -> dict[str, object]:
        """docker's ``volume inspect`` object."""
        from corral.engine.format import rfc3339

        return {
            "CreatedAt": rfc3339(self.created),
            "Driver": "local",
            "Labels": self.labels or None,
            "Mountpoint": str(self.path),
            "Name": self.name,
            "Options": None,
            "Scope": "local",
        }


def check_name(name: str) -> None:
    """UsageError unless ``name`` is a valid volume name (docker's message)."""
    if not NAME_PATTERN.match(name):
        raise UsageError(
            f'create {name}: "{name}" includes invalid characters for a local volume name, '
            'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
            "directory, use absolute path"
        )


class Volumes:
    """The volumes under ``root`` (``<store>/volumes``), recorded in the database ``db()``
    returns (a callable: the engine reopens its connection after a fork)."""

    def __init__(self, root: Path, db: Callable[[], sqlite3.Connection]) -> None:
        self.root = root
        self._db = db
        self._ready: sqlite3.Connection | None = None

    def _schema(self) -> sqlite3.Connection:
        """The connection, with this module's tables made on its first use."""
        db = self._db()
        if db is not self._ready:
            db.executescript(SCHEMA)
            self._ready = db
        return db

    def _volume(self, row: sqlite3.Row | tuple[object, ...]) -> Volume:
        name, created, anonymous, labels = tuple(row)
        return Volume(
            str(name),
            self.root / str(name) / "_data",
            float(str(created)),
            bool(anonymous),
            dict(json.loads(str(labels) or "{}")),
        )

    # -- create, get, list ---------------------------------------------------------------------

    def create(
        self,
        name: str | None = None,
        labels: dict[str, str] | None = None,
        anonymous: bool = False,
    ) -> Volume:
        """Make volume ``name`` (a random 64-hex name when None); an existing one is returned."""
        if name is None:
            name = os.urandom(32).hex()  # as secrets.token_hex, without importing hashlib
            anonymous = True
        check_name(name)
        db = self._schema()
        existing = self.find(name)
        if existing is not None:
            return existing
        path = self.root / name / "_data"
        self.root.mkdir(mode=0o701, parents=True, exist_ok=True)
        try:
            (self.root / name).mkdir(mode=0o701)
            path.mkdir(mode=0o755)
            with db:
                db.execute(
                    "INSERT INTO volumes (name, created, anonymous, labels) VALUES (?, ?, ?, ?)",
                    (name, time.time(), int(anonymous), json.dumps(labels or {})),
                )
        except FileExistsError:
            raise ExistsError(f"volume {name}: its directory exists without a record") from None
        except BaseException:
            remove_tree(self.root / name)
            raise
        return self.get(name)

    def find(self, name: str) -> Volume | None:
        row = (
            self._schema()
            .execute("SELECT name, created, anonymous, labels FROM volumes WHERE name = ?", (name,))
            .fetchone()
        )
        return None if row is None else self._volume(row)

    def get(self, name: str) -> Volume:
        volume = self.find(name)
        if volume is None:
            raise NotFoundError(f"get {name}: no such volume")
        return volume

    def list(self) -> list[Volume]:
        rows = self._schema().execute(
            "SELECT name, created, anonymous, labels FROM volumes ORDER BY name"
        )
        return [self._volume(r) for r in rows.fetchall()]

    def users(self, name: str) -> builtins.list[str]:
        rows = self._schema().execute(
            "SELECT container_id FROM volume_users WHERE name = ? ORDER BY container_id", (name,)
        )
        return [str(r[0]) for r in rows.fetchall()]

    def size(self, name: str) -> int:
        total = 0
        for top, _dirs, files in os.walk(self.root / name / "_data"):
            for entry in files:
                try:
                    total += os.lstat(os.path.join(top, entry)).st_size
                except OSError:
                    pass
        return total

    def usage(self) -> builtins.list[tuple[str, int, int]]:
        """``system df``: (name, containers using it, bytes) of every volume."""
        return [(v.name, len(self.users(v.name)), self.size(v.name)) for v in self.list()]

    # -- containers' use ----------------------------------------------------------------------

    def attach(self, container_id: str, names: Iterable[str]) -> None:
        db = self._schema()
        with db:
            db.executemany(
                "INSERT OR IGNORE INTO volume_users (container_id, name) VALUES (?, ?)",
                [(container_id, n) for n in names],
            )

    def detach(self, container_id: str, remove_anonymous: bool = False) -> builtins.list[str]:
        """Forget ``container_id``'s use of its volumes; with ``remove_anonymous`` (``rm -v``)
        remove its anonymous volumes no other container uses. The names removed."""
        db = self._schema()
        names = [
            str(r[0])
            for r in db.execute(
                "SELECT name FROM volume_users WHERE container_id = ?", (container_id,)
            ).fetchall()
        ]
        with db:
            db.execute("DELETE FROM volume_users WHERE container_id = ?", (container_id,))
        removed: builtins.list[str] = []
        if remove_anonymous:
            for name in names:
                volume = self.find(name)
                if volume is not None and volume.anonymous and not self.users(name):
                    self._delete(name)
                    removed.append(name)
        return removed

    # -- remove --------------------------------------------------------------------------------

    def remove(self, name: str, force: bool = False) -> None:
        """``volume rm``: refused while a container uses it (docker's message)."""
        volume = self.find(name)
        if volume is None:
            if force:
                return
            raise NotFoundError(f"get {name}: no such volume")
        users = self.users(name)
        if users:
            raise StateError(f"remove {name}: volume is in use - [{', '.join(users)}]")
        self._delete(name)

    def _delete(self, name: str) -> None:
        db = self._schema()
        remove_tree(self.root / name)
        with db:
            db.execute("DELETE FROM volumes WHERE name = ?", (name,))

    def prune(self, all_volumes: bool = False) -> tuple[builtins.list[str], int]:
        """Remove unused anonymous volumes (``all_volumes``: named ones too): names, bytes."""
        removed: builtins.list[str] = []
        freed = 0
        for volume in self.list():
            if (volume.anonymous or all_volumes) and not self.users(volume.name):
                freed += self.size(volume.name)
                self._delete(volume.name)
                removed.append(volume.name)
        return removed, freed


# -- seeding a fresh volume from the image ---------------------------------------------------


def seed(volume_data: Path, rootfs: str, target: str) -> bool:
    """Copy the image's content at ``target`` into an empty volume; whether anything was."""
    if any(volume_data.iterdir()):
        return False
    source = existing_in_root(rootfs, target)
    if source is None or not os.path.isdir(source) or os.path.islink(source):
        return False
    import subprocess  # here: run without volumes does not need it

    done = subprocess.run(
        ["cp", "-a", "--", f"{source}/.", f"{volume_data}/"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        raise CorralError(
            f"volume at {target}: copying the image's content failed: "
            f"{message[-1] if message else done.returncode}"
        )
    return True
