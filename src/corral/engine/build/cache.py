"""The build cache: a step whose inputs were seen before reuses the layer it made then.

Each step of a stage has a *cache key* that chains everything the step's result depends on::

    key(FROM x)      = sha256("FROM" + the base image's id)         ("scratch" for scratch)
    key(step n)      = sha256(key(step n-1) + the instruction as written + its inputs)
    inputs           ARG: the value it got (--build-arg or default); COPY/ADD: the digest of
                     every source file (path, mode, content; not the mtime, as docker);
                     COPY --from: the source stage's key; RUN, ENV...: nothing more (what
                     they see is fixed by the keys before them)

So a changed COPY source changes that step's key and every key after it, and the steps
before it hit the cache. Only steps that make a layer (RUN, COPY, ADD) are stored; the
others are replayed (they only change the config, which costs nothing).

A row maps a key to the layer the step made (chain id, diff_id, blob). While a row exists
its layer is pinned: the row holds one reference in the store's ``layers.refcount``, so
``rmi`` and ``prune`` of images keep it (``corral builder prune`` drops the rows). Its blob
may still go with the last image that used it: the builder then writes it again from the
unpacked snapshot (the diff is deterministic, and the diff_id is checked).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass

from corral.engine.db import transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS build_cache (
    key        TEXT PRIMARY KEY,
    chain_id   TEXT NOT NULL,
    diff_id    TEXT NOT NULL,
    blob       TEXT NOT NULL,
    media_type TEXT NOT NULL,
    blob_size  INTEGER NOT NULL,
    created    TEXT NOT NULL,
    used       REAL NOT NULL
);
"""


def step_key(parent: str, instruction: str, inputs: object = None) -> str:
    """The cache key of a step: its parent's key, the instruction text and its inputs."""
    data = json.dumps([parent, instruction, inputs], sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(data.encode()).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    key: str
    chain_id: str
    diff_id: str
    blob: str
    media_type: str
    blob_size: int
    created: str


class BuildCache:
    """The ``build_cache`` table of one store's database (made on first use)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.db.executescript(SCHEMA)

    def get(self, key: str) -> CacheEntry | None:
        """The entry for ``key`` if its layer still exists."""
        row = self.db.execute(
            "SELECT c.* FROM build_cache c JOIN layers l USING (chain_id) WHERE c.key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        with transaction(self.db) as db:
            db.execute("UPDATE build_cache SET used = ? WHERE key = ?", (time.time(), key))
        return CacheEntry(
            row["key"], row["chain_id"], row["diff_id"], row["blob"], row["media_type"],
            row["blob_size"], row["created"],
        )  # fmt: skip

    def put(self, entry: CacheEntry) -> None:
        """Record ``entry`` and pin its layer (replacing an entry of the same key)."""
        with transaction(self.db) as db:
            old = db.execute(
                "SELECT chain_id FROM build_cache WHERE key = ?", (entry.key,)
            ).fetchone()
            if old is not None:
                db.execute(
                    "UPDATE layers SET refcount = refcount - 1 WHERE chain_id = ?",
                    (old["chain_id"],),
                )
            db.execute(
                "INSERT OR REPLACE INTO build_cache (key, chain_id, diff_id, blob, media_type,"
                " blob_size, created, used) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.key, entry.chain_id, entry.diff_id, entry.blob, entry.media_type,
                    entry.blob_size, entry.created, time.time(),
                ),
            )  # fmt: skip
            db.execute(
                "UPDATE layers SET refcount = refcount + 1 WHERE chain_id = ?", (entry.chain_id,)
            )

    def entries(self) -> list[CacheEntry]:
        rows = self.db.execute("SELECT * FROM build_cache ORDER BY used").fetchall()
        return [
            CacheEntry(r["key"], r["chain_id"], r["diff_id"], r["blob"], r["media_type"],
                       r["blob_size"], r["created"])
            for r in rows
        ]  # fmt: skip

    def drop_all(self) -> int:
        """Forget every entry and unpin its layer; the number of entries dropped."""
        with transaction(self.db) as db:
            rows = db.execute("SELECT chain_id FROM build_cache").fetchall()
            for row in rows:
                db.execute(
                    "UPDATE layers SET refcount = refcount - 1 WHERE chain_id = ?",
                    (row["chain_id"],),
                )
            db.execute("DELETE FROM build_cache")
        return len(rows)
