"""engine.views' generation: every change to a watched table moves the stamp, a view is used only
at the stamp's generation, and a rolled-back change leaves no view current."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from corral.engine import views
from corral.engine.db import connect, transaction
from corral.engine.monitor import state as runstate


def _db(tmp_path: Path) -> sqlite3.Connection:
    return connect(tmp_path / "corral.db")


def test_a_new_database_has_a_stamp_and_a_view_at_it_is_current(tmp_path: Path) -> None:
    db = _db(tmp_path)
    root = str(tmp_path)
    assert views.read_stamp(root) == 0
    views.store(root, "ps", 0, [("row",)])
    assert views.load(root, "ps") == [("row",)]
    views.store(root, "ps", 1, [("row",)])  # a generation the database never had
    assert views.load(root, "ps") is None
    db.close()


@pytest.mark.parametrize(
    "change",
    [
        "INSERT INTO containers VALUES ('c1', 'db', 'sha256:x', 'c1', 1.0)",
        "UPDATE containers SET name = 'web2' WHERE id = 'c0'",
        "DELETE FROM containers WHERE id = 'c0'",
        "INSERT INTO images VALUES ('sha256:y', 't', 1, 'amd64', 'linux', 'sha256:m', 1.0)",
        "INSERT OR REPLACE INTO tags VALUES ('busybox:latest', 'sha256:x')",
        "DELETE FROM tags",
        "UPDATE container_state SET status = 'exited' WHERE id = 'c0'",
    ],
)
def test_every_change_to_a_watched_table_makes_the_view_stale(tmp_path: Path, change: str) -> None:
    db = _db(tmp_path)
    root = str(tmp_path)
    runstate.ensure(db)  # container_state is made on first use, and watched from then on
    with transaction(db):
        db.execute("INSERT INTO images VALUES ('sha256:x', 't', 1, 'amd64', 'linux', 'm', 1.0)")
        db.execute("INSERT INTO tags VALUES ('busybox:latest', 'sha256:x')")
        db.execute("INSERT INTO containers VALUES ('c0', 'web', 'sha256:x', 'c0', 1.0)")
        db.execute("INSERT INTO container_state (id, status) VALUES ('c0', 'running')")
    generation = db.execute("SELECT n FROM generation").fetchone()[0]
    assert generation == views.read_stamp(root) == 4
    views.store(root, "ps", generation, [("before",)])
    assert views.load(root, "ps") == [("before",)]
    db.execute(change)  # autocommit or in a transaction: the triggers fire either way
    assert views.read_stamp(root) == db.execute("SELECT n FROM generation").fetchone()[0] == 5
    assert views.load(root, "ps") is None
    db.close()


def test_a_rolled_back_change_leaves_no_view_current_until_the_next_commit(tmp_path: Path) -> None:
    db = _db(tmp_path)
    root = str(tmp_path)
    db.execute("INSERT INTO images VALUES ('sha256:x', 't', 1, 'amd64', 'linux', 'm', 1.0)")
    views.store(root, "images", 1, [("old",)])
    assert views.load(root, "images") == [("old",)]
    with pytest.raises(RuntimeError), transaction(db):
        db.execute("INSERT INTO tags VALUES ('a:1', 'sha256:x')")
        db.execute("INSERT INTO tags VALUES ('a:2', 'sha256:x')")
        raise RuntimeError
    assert db.execute("SELECT n FROM generation").fetchone()[0] == 1
    assert views.read_stamp(root) == 3  # ahead of the database: nothing matches it
    assert views.load(root, "images") is None
    with transaction(db):
        db.execute("INSERT INTO tags VALUES ('b:1', 'sha256:x')")
    assert views.read_stamp(root) == 2
    assert views.load(root, "images") is None
    views.store(root, "images", 2, [("new",)])
    assert views.load(root, "images") == [("new",)]
    db.close()


def test_a_connection_without_the_stamp_cannot_change_a_watched_table(tmp_path: Path) -> None:
    """A writer that would not publish its change is refused, so no view can go stale."""
    _db(tmp_path).close()
    raw = sqlite3.connect(tmp_path / "corral.db")
    with pytest.raises(sqlite3.OperationalError, match="corral_publish"):
        raw.execute("INSERT INTO tags VALUES ('a:1', 'sha256:x')")
    raw.close()


def test_a_new_database_never_reads_the_views_of_an_old_one(tmp_path: Path) -> None:
    _db(tmp_path).close()
    root = str(tmp_path)
    views.store(root, "ps", 0, [("old database",)])
    for name in ("corral.db", "corral.db-wal", "corral.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    _db(tmp_path).close()  # generation 0 again
    assert views.read_stamp(root) == 0
    assert views.load(root, "ps") is None


def test_a_damaged_or_foreign_view_is_not_used(tmp_path: Path) -> None:
    _db(tmp_path).close()
    root = str(tmp_path)
    (tmp_path / "views" / "ps").write_bytes(b"\x00garbage")
    assert views.load(root, "ps") is None
    (tmp_path / "views" / "generation").write_bytes(b"not a number")
    assert views.load(root, "ps") is None


def test_status_texts_as_docker_prints_them() -> None:
    now = 1_000_000.0

    def status(state: str, code: int | None, started: float | None, finished: float | None,
               health: str | None = None) -> str:  # fmt: skip
        return views.ps_status(state, code, started, finished, health, now)

    assert status("running", None, now - 300, None) == "Up 5 minutes"
    assert status("running", None, now - 3, None, "healthy") == "Up 3 seconds (healthy)"
    starting = status("running", None, now, None, "starting")
    assert starting == "Up Less than a second (health: starting)"
    assert status("paused", None, now - 60, None) == "Up About a minute (Paused)"
    assert status("exited", 3, None, now - 7200) == "Exited (3) 2 hours ago"
    assert status("restarting", 1, None, now - 2) == "Restarting (1) 2 seconds ago"
    assert status("created", None, None, None) == "Created"


def test_ports_column_as_docker_prints_it(tmp_path: Path) -> None:
    from corral.engine.containers.listing import ports_text

    db = _db(tmp_path)
    db.execute(
        "CREATE TABLE net_ports (proto TEXT, host_ip TEXT, host_port INTEGER, container_id TEXT,"
        " network TEXT, container_ip TEXT, container_port INTEGER)"
    )
    rows = [("tcp", "", 8080, "a", 80), ("tcp", "", 9000, "a", 90), ("tcp", "", 9001, "a", 91),
            ("udp", "127.0.0.1", 53, "a", 53), ("tcp", "", 8081, "b", 80)]  # fmt: skip
    for proto, ip, host_port, cid, port in rows:
        db.execute("INSERT INTO net_ports VALUES (?, ?, ?, ?, 'n', '10.0.0.2', ?)",
                   (proto, ip, host_port, cid, port))  # fmt: skip
    assert ports_text(db) == {
        "a": "0.0.0.0:8080->80/tcp, 0.0.0.0:9000-9001->90-91/tcp, 127.0.0.1:53->53/udp",
        "b": "0.0.0.0:8081->80/tcp",
    }
    db.close()
