"""The containers' run state in the engine's SQLite database (WAL: many commands at once).

One row per container, made by ``create``, changed by whoever sees a change happen::

    container_state
      id            the container
      status        created | running | paused | restarting | exited
      pid           the init's pid (host namespace) while it runs
      waiter        the pid of its parent: the waiter (detached) or the `corral run` process
      waiter_start  that process's start time (/proc/<pid>/stat field 22): pids get reused
      detached      1 under the monitor (logs, restart, health), 0 for a foreground run
      exit_code, oom_killed, error, started_at, finished_at, restart_count
      stopped       1 once the user stopped or killed it: no restart policy applies
      restart_at    when a ``restarting`` container starts again
      health        docker's Health object as JSON (Status, FailingStreak, Log)
      config        the MonitorConfig as JSON

The exit is recorded exactly once: :func:`claim_exit` changes ``running``/``paused`` to
``exited`` only for the waiter it names, so the monitor and a command that both notice a
dead waiter cannot both tear the container down, and a late one cannot touch a newer run.
"""

from __future__ import annotations

import json
import sqlite3

from corral._record import datarecord, field
from corral.engine.monitor.config import MonitorConfig

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from corral.engine.monitor import health as healthmod

_SCHEMA = """
CREATE TABLE IF NOT EXISTS container_state (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    pid INTEGER NOT NULL DEFAULT 0,
    waiter INTEGER NOT NULL DEFAULT 0,
    waiter_start INTEGER NOT NULL DEFAULT 0,
    detached INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER NOT NULL DEFAULT 0,
    oom_killed INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    started_at REAL NOT NULL DEFAULT 0,
    finished_at REAL NOT NULL DEFAULT 0,
    restart_count INTEGER NOT NULL DEFAULT 0,
    stopped INTEGER NOT NULL DEFAULT 0,
    restart_at REAL NOT NULL DEFAULT 0,
    health TEXT,
    config TEXT NOT NULL DEFAULT '{}'
)
"""

LIVE = ("running", "paused")
#: Connections whose table exists, by id; the connection is kept so its id cannot be reused
#: by a later connection (to another database) while it is listed here.
_ready: dict[int, sqlite3.Connection] = {}


@datarecord
class RunState:
    """One row of ``container_state``."""

    id: str
    status: str = "created"
    pid: int = 0
    waiter: int = 0
    waiter_start: int = 0
    detached: bool = False
    exit_code: int = 0
    oom_killed: bool = False
    error: str = ""
    started_at: float = 0.0
    finished_at: float = 0.0
    restart_count: int = 0
    stopped: bool = False
    restart_at: float = 0.0
    health: healthmod.Health | None = None
    config: MonitorConfig = field(default_factory=MonitorConfig)

    @property
    def live(self) -> bool:
        return self.status in LIVE


def ensure(db: sqlite3.Connection) -> None:
    """Create the table on first use (once per connection), watched: ``ps`` shows it."""
    from corral.engine.db import watch

    if _ready.get(id(db)) is not db:
        for statement in (_SCHEMA, *watch("container_state")):
            db.execute(statement)  # one statement each: fine inside a transaction
        _ready[id(db)] = db


def _row(row: sqlite3.Row) -> RunState:
    health = json.loads(row["health"]) if row["health"] else None
    return RunState(
        id=row["id"],
        status=row["status"],
        pid=row["pid"],
        waiter=row["waiter"],
        waiter_start=row["waiter_start"],
        detached=bool(row["detached"]),
        exit_code=row["exit_code"],
        oom_killed=bool(row["oom_killed"]),
        error=row["error"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        restart_count=row["restart_count"],
        stopped=bool(row["stopped"]),
        restart_at=row["restart_at"],
        health=health,
        config=MonitorConfig.from_json(json.loads(row["config"] or "{}")),
    )


def get(db: sqlite3.Connection, container_id: str) -> RunState | None:
    ensure(db)
    row = db.execute("SELECT * FROM container_state WHERE id = ?", (container_id,)).fetchone()
    return None if row is None else _row(row)


def all_states(db: sqlite3.Connection) -> dict[str, RunState]:
    ensure(db)
    return {r["id"]: _row(r) for r in db.execute("SELECT * FROM container_state")}


def watched(db: sqlite3.Connection) -> list[RunState]:
    """The rows the monitor has work for: detached and live, or waiting to restart."""
    ensure(db)
    rows = db.execute(
        "SELECT * FROM container_state WHERE (detached = 1 AND status IN ('running', 'paused'))"
        " OR status = 'restarting'"
    )
    return [_row(r) for r in rows]


def insert(db: sqlite3.Connection, container_id: str, config: MonitorConfig) -> None:
    ensure(db)
    db.execute(
        "INSERT OR REPLACE INTO container_state (id, status, config) VALUES (?, 'created', ?)",
        (container_id, json.dumps(config.to_json())),
    )


def delete(db: sqlite3.Connection, container_id: str) -> None:
    ensure(db)
    db.execute("DELETE FROM container_state WHERE id = ?", (container_id,))


def update(db: sqlite3.Connection, container_id: str, **values: Any) -> None:
    """Set columns of one row (health as a Health dict, booleans as booleans)."""
    ensure(db)
    if "health" in values and values["health"] is not None:
        values["health"] = json.dumps(values["health"])
    columns = ", ".join(f"{name} = ?" for name in values)
    db.execute(
        f"UPDATE container_state SET {columns} WHERE id = ?",
        (*values.values(), container_id),
    )


def mark_running(
    db: sqlite3.Connection,
    container_id: str,
    *,
    pid: int,
    waiter: int,
    waiter_start: int,
    detached: bool,
    started_at: float,
    healthcheck: bool,
) -> None:
    """The container runs now (a start, or a restart by the monitor)."""
    ensure(db)
    db.execute(
        "UPDATE container_state SET status = 'running', pid = ?, waiter = ?, waiter_start = ?,"
        " detached = ?, started_at = ?, finished_at = 0, exit_code = 0, oom_killed = 0,"
        " error = '', stopped = 0, restart_at = 0, health = ? WHERE id = ?",
        (
            pid, waiter, waiter_start, int(detached), started_at,
            json.dumps(_initial_health()) if healthcheck else None, container_id,
        ),
    )  # fmt: skip


def claim_exit(
    db: sqlite3.Connection,
    container_id: str,
    waiter: int,
    *,
    exit_code: int,
    oom_killed: bool,
    finished_at: float,
    error: str = "",
) -> bool:
    """Record the exit of the run whose waiter is ``waiter``; False if it is recorded already
    (someone else claimed it: they tear down)."""
    ensure(db)
    cursor = db.execute(
        "UPDATE container_state SET status = 'exited', exit_code = ?, oom_killed = ?,"
        " finished_at = ?, error = ?, pid = 0"
        " WHERE id = ? AND waiter = ? AND status IN ('running', 'paused')",
        (exit_code, int(oom_killed), finished_at, error, container_id, waiter),
    )
    return cursor.rowcount == 1


def claim_restart(db: sqlite3.Connection, container_id: str) -> bool:
    """Take a ``restarting`` container for its next start (exactly one taker)."""
    ensure(db)
    cursor = db.execute(
        "UPDATE container_state SET status = 'created', restart_count = restart_count + 1"
        " WHERE id = ? AND status = 'restarting' AND stopped = 0",
        (container_id,),
    )
    return cursor.rowcount == 1


def _initial_health() -> healthmod.Health:
    from corral.engine.monitor import health  # TypedDicts: typing, only with a healthcheck

    return health.initial()
