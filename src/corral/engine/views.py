"""What plain ``ps`` and ``images`` print, kept precomputed: those commands need no database.

``corral ps`` and ``corral images`` are typed more than any other command, and most of their
time went to starting up: Python's own (6 ms), then loading SQLite (3.5 ms: the library and
the functools/collections modules its binding imports) and the engine's modules (20 ms more),
for a few rows. So their plain forms (``ps``, ``ps -a``, ``ps -q``, ``images``, ``images -q``:
corral.cli.plain) read a *view*: the rows they show, computed by the full engine and kept as
:mod:`marshal` data in ``<root>/views/<name>`` with the database generation they were read at.
Anything else (``--filter``, ``--format``, ``--no-trunc``) takes the full path, which prints
the same fields from the same functions (``ps_fields``, ``image_fields``).

**The generation** tells a view whether it is current. Triggers on every table a view shows
(engine.db, ``watch``) count each changed row in ``generation.n`` and, inside the same write
transaction, write the new count to ``<root>/views/generation`` (the *stamp*, ``write_stamp``).
A view is used only when its generation equals the stamp. That is exact:

- one transaction writes at a time (SQLite's write lock), so stamps are written in commit order,
  each before its commit;
- a view is read from the database in one piece: the generation is read before and after the
  rows, and a view whose generation moved meanwhile is printed but not kept;
- so a view whose generation equals the stamp was read after the last commit and before the
  next one could start to write: it shows the database as it is;
- a transaction that rolls back leaves the stamp ahead of the database, and no view matches it
  until the next change: the commands take the full path, slower but never wrong.

What the database cannot know is checked at each use: that a running container's waiter is
still the same process (pid and start time), and that the root's monitor is alive when a
detached or restarting container needs one. If either fails, the full path runs and reconciles
(it records the exit, starts a monitor). Times stay numbers in a view and are rendered when
printed ("Up 5 minutes").

Lean by design: this module imports marshal, posix and time, and engine.format (not ``os``
nor ``__future__``: see engine.roots).
"""

import marshal
import posix
import time

from corral.engine.format import human_duration, human_size, since, table

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.engine.containers.manager import Status
    from corral.engine.engine import Engine
    from corral.engine.monitor.state import RunState

    #: One container of the ``ps`` view: id, name, image, COMMAND (quoted, cut to 20 characters),
    #: created, status, exit code, started, finished, health, waiter pid, waiter start time,
    #: detached, ports, networks.
    PsRow = tuple[
        str, str, str, str, float, str, "int | None", "float | None", "float | None",
        "str | None", int, int, bool, str, str,
    ]
    #: One line of the ``images`` view: repository, tag, image id, created (Unix time), size.
    ImageRow = tuple[str, str, str, float, int]

DIR = "views"
STAMP = "generation"
#: The containers ``ps`` shows without ``-a``: docker counts paused and restarting as running.
LIVE = ("running", "paused", "restarting")
#: ``ps``'s columns: header -> field, in docker's order.
PS_COLUMNS = {
    "CONTAINER ID": "ID",
    "IMAGE": "Image",
    "COMMAND": "Command",
    "CREATED": "RunningFor",
    "STATUS": "Status",
    "PORTS": "Ports",
    "NAMES": "Names",
}
#: ``images``' columns.
IMAGE_COLUMNS = {
    "REPOSITORY": "Repository",
    "TAG": "Tag",
    "IMAGE ID": "ID",
    "CREATED": "CreatedSince",
    "SIZE": "Size",
}


# -- the stamp -------------------------------------------------------------------------------------


def stamp_path(root: str) -> str:
    return f"{root}/{DIR}/{STAMP}"


def write_stamp(root: str, generation: int) -> None:
    """Publish ``generation`` (the database's, inside the transaction that made it)."""
    path = stamp_path(root)
    flags = posix.O_WRONLY | posix.O_CREAT | posix.O_CLOEXEC
    try:
        fd = posix.open(path, flags, 0o600)
    except FileNotFoundError:
        _make_dir(root)
        fd = posix.open(path, flags, 0o600)
    try:  # fixed width: a shorter number never leaves digits of a longer one behind
        posix.pwrite(fd, b"%020d" % generation, 0)
    finally:
        posix.close(fd)


def _make_dir(root: str) -> None:
    try:
        posix.mkdir(f"{root}/{DIR}", 0o700)
    except FileExistsError:
        pass


def read_stamp(root: str) -> "int | None":
    try:
        with open(stamp_path(root), "rb") as f:
            return int(f.read(20))
    except (OSError, ValueError):
        return None


# -- views on disk -----------------------------------------------------------------------------


def load(root: str, name: str) -> "list[tuple[object, ...]] | None":
    """The view ``name``'s rows if it is current, else None."""
    stamp = read_stamp(root)
    if stamp is None:
        return None
    try:
        with open(f"{root}/{DIR}/{name}", "rb") as f:
            generation, rows = marshal.load(f)
    except (OSError, EOFError, ValueError, TypeError):
        return None
    return rows if generation == stamp else None


def store(root: str, name: str, generation: int, rows: "list[tuple[object, ...]]") -> None:
    """Keep ``rows`` as the view ``name`` of the database at ``generation`` (whole or not at all:
    written aside, then renamed over the old one)."""
    path = f"{root}/{DIR}/{name}"
    tmp = f"{path}.{posix.getpid()}"
    try:
        _make_dir(root)
        with open(tmp, "wb") as f:
            marshal.dump((generation, rows), f)
        posix.replace(tmp, path)
    except OSError:  # a read-only root, a full disk: the next command reads the database
        try:
            posix.unlink(tmp)
        except OSError:
            pass


def forget_views(root: str) -> None:
    """Remove every view (a new database starts at generation 0 again)."""
    for name in ("ps", "images"):
        try:
            posix.unlink(f"{root}/{DIR}/{name}")
        except FileNotFoundError:
            pass


# -- ps ----------------------------------------------------------------------------------------


def ps_status(
    state: str, exit_code: "int | None", started: "float | None", finished: "float | None",
    health: "str | None", now: float,
) -> str:
    """docker's STATUS column: ``Up 5 minutes (healthy)``, ``Exited (3) 2 hours ago``..."""
    if state == "running":
        return f"Up {human_duration(now - (started or now))}{health_suffix(health)}"
    if state == "paused":
        return f"Up {human_duration(now - (started or now))} (Paused)"
    code = "?" if exit_code is None else str(exit_code)
    if state == "restarting":
        return f"Restarting ({code}) {since(finished or now, now)}"
    if state == "exited":
        return f"Exited ({code}) {since(finished or now, now)}"
    return "Created"


def health_suffix(health: "str | None") -> str:
    """What ``ps`` adds to "Up 5 seconds": `` (healthy)``, `` (health: starting)``..."""
    if not health:
        return ""
    return " (health: starting)" if health == "starting" else f" ({health})"


def ps_row(status: "Status", run: "RunState | None", command: str) -> "PsRow":
    """The view's row of one container (``command``: the COMMAND column, already cut)."""
    r = status.record
    return (
        r.id, r.name, r.image, command, r.created, status.state, status.exit_code,
        status.started, status.finished, status.health,
        run.waiter if run else 0, run.waiter_start if run else 0, bool(run and run.detached),
        str(status.extra.get("ports") or ""), str(status.extra.get("networks") or ""),
    )  # fmt: skip


def ps_fields(row: "PsRow", now: float) -> dict[str, str]:
    """docker's default ``ps`` fields of one container (the ``PS_COLUMNS``)."""
    cid, name, image, command, created, state, code, started, finished, health = row[:10]
    return {
        "ID": cid[:12],
        "Image": image,
        "Command": command,
        "RunningFor": since(created, now),
        "Status": ps_status(state, code, started, finished, health, now),
        "Ports": row[13],
        "Names": name,
    }


def containers(root: "str | None", runroot: "str | None" = None) -> "list[PsRow]":
    """Every container, newest first, as the ``ps`` view has them: from the view when it is
    current and still true, else from the engine (which reconciles, then keeps the view)."""
    from corral.engine.roots import chosen_root

    where = chosen_root(root)
    rows: list[PsRow] | None = load(where, "ps")  # type: ignore[assignment]
    if rows is not None and _still_true(where, rows):
        return rows
    return _containers_from_engine(root, runroot)


def _still_true(root: str, rows: "list[PsRow]") -> bool:
    """Whether what the database cannot know still holds: each live container's waiter is the
    same process, and the monitor lives where a detached or restarting one needs it."""
    from corral.runtime.state import process_start_time

    needs_monitor = False
    for row in rows:
        state, waiter, waiter_start, detached = row[5], row[10], row[11], row[12]
        if state in ("running", "paused"):
            if process_start_time(waiter) != waiter_start:
                return False
            needs_monitor = needs_monitor or detached
        elif state == "restarting":
            needs_monitor = True
    if needs_monitor:
        from corral.engine.monitor.alive import monitor_alive

        return monitor_alive(root)
    return True


def _containers_from_engine(root: "str | None", runroot: "str | None") -> "list[PsRow]":
    from corral.engine.containers.listing import command_text, with_ports
    from corral.engine.engine import Engine
    from corral.engine.monitor import state as runstate

    engine = Engine(root, runtime_root=runroot)
    before = generation(engine)
    statuses = with_ports(engine.containers.list(all_containers=True), engine.db)  # reconciles
    runs = runstate.all_states(engine.db)
    rows = [ps_row(s, runs.get(s.record.id), command_text(s.record.args, False)) for s in statuses]
    if before is not None and generation(engine) == before:
        store(str(engine.layout.root), "ps", before, rows)  # type: ignore[arg-type]
    return rows


def ps_text(rows: "list[PsRow]", all_containers: bool, quiet: bool) -> str:
    """Plain ``ps`` (``-a``: stopped ones too; ``-q``: ids only) of the view's rows."""
    shown = [r for r in rows if all_containers or r[5] in LIVE]
    if quiet:
        return "".join(r[0][:12] + "\n" for r in shown)
    now = time.time()
    return table(list(PS_COLUMNS), [list(ps_fields(r, now).values()) for r in shown])


# -- images ------------------------------------------------------------------------------------


def image_fields(row: "ImageRow", now: float) -> dict[str, str]:
    """docker's default ``images`` fields of one line (the ``IMAGE_COLUMNS``)."""
    repo, tag, image_id, created, size = row
    return {
        "Repository": repo,
        "Tag": tag,
        "ID": short_id(image_id),
        "CreatedSince": since(created, now),
        "Size": human_size(size, 3),
    }


def short_id(image_id: str) -> str:
    """docker's 12-digit image id (``sha256:`` dropped)."""
    return image_id.split(":", 1)[-1][:12]


def images(root: "str | None", runroot: "str | None" = None) -> "list[ImageRow]":
    """Every (image, repository, tag) line of ``images``, newest image first: from the view
    when it is current, else from the engine (which then keeps the view)."""
    from corral.engine.roots import chosen_root

    rows: list[ImageRow] | None = load(chosen_root(root), "images")  # type: ignore[assignment]
    if rows is not None:
        return rows
    from corral.engine.engine import Engine
    from corral.engine.filters import Filters
    from corral.engine.format import parse_time
    from corral.engine.images.listing import select

    engine = Engine(root, runtime_root=runroot)
    before = generation(engine)
    rows = [
        (repo, tag, image.id, parse_time(image.created), image.size)
        for image, repo, tag in select(engine.images, Filters({}))
    ]
    if before is not None and generation(engine) == before:
        store(str(engine.layout.root), "images", before, rows)  # type: ignore[arg-type]
    return rows


def images_text(rows: "list[ImageRow]", quiet: bool) -> str:
    """Plain ``images`` (``-q``: each image id once) of the view's rows."""
    if quiet:
        ids = list(dict.fromkeys(short_id(r[2]) for r in rows))
        return "".join(i + "\n" for i in ids)
    now = time.time()
    return table(list(IMAGE_COLUMNS), [list(image_fields(r, now).values()) for r in rows])


def generation(engine: "Engine") -> "int | None":
    """The database's generation (None before its first change)."""
    row = engine.db.execute("SELECT n FROM generation").fetchone()
    return None if row is None else int(row[0])
