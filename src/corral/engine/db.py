"""The engine's metadata: one SQLite database in WAL mode at ``<root>/corral.db``.

Blobs and snapshot directories hold the bytes; the database says what they mean::

    images      id (config digest) | created | size | architecture | os | manifest | added
    tags        name ("repo:tag")  -> image id
    manifests   digest -> image id, media type, size
    layers      chain_id -> diff_id, parent chain_id, snapshot id, size, refcount
                (refcount = how many images stand on this layer stack)
    image_layers  image id, index -> chain_id, diff_id, layer blob digest, media type
    snapshots   id (the number of snapshots/<n>) -> key, kind ('committed' | 'active'), parent
    containers  id -> name, image id, snapshot key (filled by the container code; `rmi` checks it)
    generation  n: how many rows of the watched tables have changed (``watch``), so the views
                of plain ``ps`` and ``images`` (engine.views) know whether they are current

WAL lets readers (``corral images``) run while a writer holds the store lock. Every change is
one transaction, and files are renamed into place inside it, so a crash leaves either the old
state or the new one (plus unreferenced files, swept on the next locked command).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    created TEXT NOT NULL,
    size INTEGER NOT NULL,
    architecture TEXT NOT NULL,
    os TEXT NOT NULL,
    manifest TEXT NOT NULL,
    added REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tags (
    name TEXT PRIMARY KEY,
    image_id TEXT NOT NULL REFERENCES images(id)
);
CREATE TABLE IF NOT EXISTS manifests (
    digest TEXT PRIMARY KEY,
    image_id TEXT NOT NULL REFERENCES images(id),
    media_type TEXT NOT NULL,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT UNIQUE NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('committed', 'active')),
    parent TEXT,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS layers (
    chain_id TEXT PRIMARY KEY,
    diff_id TEXT NOT NULL,
    parent TEXT REFERENCES layers(chain_id),
    snapshot_id INTEGER NOT NULL REFERENCES snapshots(id),
    size INTEGER NOT NULL,
    refcount INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS image_layers (
    image_id TEXT NOT NULL REFERENCES images(id),
    idx INTEGER NOT NULL,
    chain_id TEXT NOT NULL REFERENCES layers(chain_id),
    diff_id TEXT NOT NULL,
    blob TEXT NOT NULL,
    media_type TEXT NOT NULL,
    blob_size INTEGER NOT NULL,
    PRIMARY KEY (image_id, idx)
);
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT UNIQUE,
    image_id TEXT NOT NULL,
    snapshot_key TEXT,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS generation (n INTEGER NOT NULL);
INSERT INTO generation (n) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM generation);
"""


def watch(table: str) -> list[str]:
    """The statements that make every change to ``table`` count in the generation, and publish
    the new count (``corral_publish``, which ``connect`` defines: engine.views' stamp) inside
    the transaction that made it. Every table a view shows is watched."""
    bump = "UPDATE generation SET n = n + 1; SELECT corral_publish(n) FROM generation;"
    return [
        f"CREATE TRIGGER IF NOT EXISTS {table}_{event.lower()}d AFTER {event} ON {table} "
        f"BEGIN {bump} END"
        for event in ("INSERT", "UPDATE", "DELETE")
    ]


#: The tables the views of this schema show (engine.monitor.state watches container_state).
_WATCHED = ("images", "tags", "containers")


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the database, in WAL mode with foreign keys on.

    ``isolation_level=None`` puts transactions in our hands: callers use ``with transaction(db)``.
    """
    from corral.engine.views import forget_views, write_stamp

    root = str(Path(path).parent)
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.row_factory = sqlite3.Row
    db.create_function("corral_publish", 1, lambda n: write_stamp(root, n))
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA foreign_keys=ON")
    db.execute("PRAGMA synchronous=NORMAL")
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version < SCHEMA_VERSION:  # a new database: views left by another one are not of it
        forget_views(root)
        triggers = "".join(f"{t};" for table in _WATCHED for t in watch(table))
        db.executescript(
            "BEGIN IMMEDIATE;" + _SCHEMA + triggers
            + "SELECT corral_publish(n) FROM generation;"  # the stamp of a new database
            + f"PRAGMA user_version={SCHEMA_VERSION};COMMIT;"
        )
    return db


class transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` if the block raised."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind: object, value: object, tb: object) -> None:
        self.db.execute("ROLLBACK" if kind is not None else "COMMIT")
