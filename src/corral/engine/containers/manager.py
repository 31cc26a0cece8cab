"""Containers: ``create``, ``start``, ``run``, ``stop``, ``rm``, ``ps``, ``logs``.

A container is an image's layers plus a writable snapshot, an OCI bundle and a record::

    <root>/containers/<id>/
      engine.json     the record: name, image, command, created, --rm
      config.json     the OCI config (corral.engine.containers.spec.build_spec)
      rootfs/         the overlay (snapshot ``<id>`` on the image's top chain id), mounted on
                      start, unmounted when the program exits
      netns           the network namespace (a bind-mounted nsfs file; loopback only)
      container.log   stdout and stderr of a detached container
      state.json      started at, and the (pid, start time) of whoever waits for the init
      exit.json       exit code and time, written by that waiter once everything is torn down
    <root>/runtime/<id>/   the OCI runtime's state (corral.runtime.lifecycle), while it runs

plus a row in the store's ``containers`` table (``rmi`` refuses an image a container uses;
``system df`` counts the containers' upper dirs).

The runtime is driven as a library. A foreground ``run`` waits for the init itself (it is
our child) and forwards signals; a detached one (``-d``, ``start``) forks a small *monitor*
(setsid, double fork) that launches the container with its stdio on ``container.log``, reports
"ok" or the one-line error through a pipe, then waits for the init, records the exit code,
tears down the runtime state, cgroups, mounts and network namespace, and with ``--rm`` removes
the container. ``stop`` signals the init and waits for the waiter to finish.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral.engine.containers import netns, prepare
from corral.engine.containers.spec import RunOptions
from corral.engine.db import transaction
from corral.engine.layout import remove_tree
from corral.errors import (
    ContainerInitError,
    CorralError,
    ExistsError,
    KernelError,
    NotFoundError,
    StateError,
    UsageError,
    UserError,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from corral.engine.engine import Engine
    from corral.engine.volumes import Volumes
    from corral.runtime.api import Runtime
    from corral.runtime.state import StateStore

_ADJECTIVES = (
    "brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry",
    "nifty", "proud", "quirky", "sharp", "tender", "vivid", "witty", "zen",
)  # fmt: skip
_NAMES = (
    "babbage", "curie", "darwin", "euler", "fermat", "gauss", "hopper", "knuth", "lovelace",
    "noether", "pascal", "ritchie", "shannon", "thompson", "turing", "wozniak",
)  # fmt: skip
_POLL = 0.02


@dataclass
class Record:
    """What ``engine.json`` holds about a container."""

    id: str
    name: str
    image: str
    image_id: str
    args: list[str]
    created: float
    auto_remove: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "image": self.image,
            "image_id": self.image_id,
            "args": self.args,
            "created": self.created,
            "auto_remove": self.auto_remove,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        return cls(
            str(data["id"]),
            str(data["name"]),
            str(data["image"]),
            str(data["image_id"]),
            [str(a) for a in data.get("args") or []],
            float(data["created"]),
            bool(data.get("auto_remove")),
        )


@dataclass
class Status:
    """A container's state as ``ps`` shows it."""

    record: Record
    state: str  # created | running | exited
    exit_code: int | None = None
    started: float | None = None
    finished: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Containers:
    """The containers of one storage root (the image store's)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.images = engine.images
        self.root = engine.layout.containers
        self.runtime_root = engine.layout.runtime_root

    # -- paths and records -------------------------------------------------------------------

    def dir(self, container_id: str) -> Path:
        return self.root / container_id

    def runtime(self) -> StateStore:
        from corral.runtime.state import StateStore

        return StateStore(str(self.runtime_root))

    def volumes(self) -> Volumes:
        return self.engine.volumes

    def runtime_api(self) -> Runtime:
        """The OCI runtime the engine drives, as a library (corral.Runtime on our state root)."""
        from corral.runtime.api import Runtime

        return Runtime(str(self.runtime_root))

    def _ids(self) -> list[tuple[str, str]]:
        rows = self.images.db.execute("SELECT id, name FROM containers ORDER BY created DESC")
        return [(str(r["id"]), str(r["name"] or "")) for r in rows]

    def resolve(self, ref: str) -> str:
        """The id of the container ``ref`` names: a name, an id, or a unique id prefix."""
        if not ref:
            raise UsageError("container name: must not be empty")
        ids = self._ids()
        for cid, name in ids:
            if ref in (name, cid):
                return cid
        matches = [cid for cid, _ in ids if cid.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise UserError(f"container {ref!r}: ambiguous id prefix ({len(matches)} match)")
        raise NotFoundError(f"No such container: {ref}")

    def record(self, ref: str) -> Record:
        cid = self.resolve(ref)
        try:
            data = json.loads((self.dir(cid) / "engine.json").read_text())
        except FileNotFoundError:
            raise NotFoundError(f"container {cid[:12]}: its directory is gone") from None
        return Record.from_json(data)

    # -- create ----------------------------------------------------------------------------------

    def create(
        self,
        image_ref: str,
        opts: RunOptions,
        name: str | None = None,
        auto_remove: bool = False,
    ) -> Record:
        """Make the container: writable snapshot, OCI config, record. Nothing runs yet."""
        from corral.engine.images.reference import normalize

        if name is not None and not _valid_name(name):
            raise UsageError(f"--name {name!r}: use letters, digits and _ . - (first alphanumeric)")
        images = self.images
        with images.locked():
            try:
                image = images.get(image_ref)
            except NotFoundError:
                if normalize(image_ref) != "busybox:latest":
                    raise
                image = images.ensure_busybox()
            image_config = images.config(image.id)
            cid = secrets.token_hex(32)
            name = name or self._new_name()
            taken = images.db.execute(
                "SELECT id FROM containers WHERE name = ?", (name,)
            ).fetchone()
            if taken is not None:
                raise ExistsError(
                    f'Conflict. The container name "/{name}" is already in use by container '
                    f'"{taken["id"]}". You have to remove (or rename) that container to be able '
                    "to reuse that name."
                )
            path = self.dir(cid)
            parent = image.layers[-1].chain_id if image.layers else None
            layers = [str(layer.path) for layer in images.snapshots.stack(parent)] if parent else []
            volumes = self.volumes()
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                path.mkdir(mode=0o700)
                (path / "rootfs").mkdir(mode=0o755)
                spec = prepare.config(
                    image_config, layers, opts, container_id=cid, container_dir=path,
                    volumes=volumes,
                )  # fmt: skip
                record = Record(
                    cid, name, image_ref, image.id, list(spec["process"]["args"]), time.time(),
                    auto_remove,
                )  # fmt: skip
                _write_json(path / "config.json", spec)
                _write_json(path / "engine.json", record.to_json())
                images.snapshots.prepare(cid, parent)
                try:
                    self._add_row(cid, image.id, name)
                except sqlite3.IntegrityError:
                    raise ExistsError(f'Conflict. The container name "/{name}" is already in use')
            except BaseException:
                with contextlib.suppress(CorralError):
                    images.snapshots.remove(cid)
                volumes.detach(cid, remove_anonymous=True)
                remove_tree(path)
                raise
        return record

    def _add_row(self, container_id: str, image_id: str, name: str) -> None:
        """The container's row: ``rmi`` and ``system df`` read it (snapshot key = id)."""
        with transaction(self.engine.db) as db:
            db.execute(
                "INSERT INTO containers (id, name, image_id, snapshot_key, created)"
                " VALUES (?, ?, ?, ?, ?)",
                (container_id, name, image_id, container_id, time.time()),
            )

    def _remove_row(self, container_id: str) -> None:
        with transaction(self.engine.db) as db:
            db.execute("DELETE FROM containers WHERE id = ?", (container_id,))

    def _new_name(self) -> str:
        taken = {name for _, name in self._ids()}
        for _ in range(50):
            name = f"{secrets.choice(_ADJECTIVES)}_{secrets.choice(_NAMES)}"
            if name not in taken:
                return name
        return f"corral_{secrets.token_hex(4)}"

    # -- start -----------------------------------------------------------------------------------

    def _prepare(self, record: Record) -> Path:
        """Mount the rootfs and make the network namespace; the bundle's path. On failure
        everything made here is undone."""
        from corral.engine.snapshots.overlay import mount

        path = self.dir(record.id)
        for stale in ("exit.json", "state.json"):
            with contextlib.suppress(FileNotFoundError):
                (path / stale).unlink()
        try:
            mounts = self.images.snapshots.mounts(record.id)
            rootfs = path / "rootfs"
            if not _is_mountpoint(rootfs):
                mount(mounts, rootfs)
            prepare.after_mount(path, str(rootfs))
            netns.remove(str(path / "netns"))
            netns.create(str(path / "netns"))
        except BaseException:
            self._teardown(record.id)
            raise
        return path

    def _run(self, record: Record, started: Callable[[int], None] | None = None) -> int:
        """Run the container through the runtime's one ``run`` (corral.Runtime): its stdio are
        pipes copied to and from ours, signals we get go to it; wait, record, tear down."""
        from corral.runtime.state import process_start_time

        path = self._prepare(record)
        me = os.getpid()

        def on_start(pid: int) -> None:
            _write_json(
                path / "state.json",
                {"started": time.time(), "waiter": [me, process_start_time(me)]},
            )
            if started is not None:
                started(pid)

        try:
            code = self.runtime_api().run(record.id, str(path), keep=True, started=on_start)
        except BaseException:
            self._teardown(record.id)
            raise
        self._finish(record.id, code)
        return code

    def run_foreground(self, record: Record) -> int:
        """Start the container and wait for it here; its exit code (128+N if killed by N)."""
        code = self._run(record)
        if record.auto_remove:
            self.remove(record.id, force=True, volumes=True)
        return code

    def start_detached(self, record: Record) -> None:
        """Start the container under a monitor process; return once it runs (or failed)."""
        status = self.status(record)
        if status.state == "running":
            return
        # SQLite's per-process state must not cross a fork with a connection open: close ours
        # (it reopens on next use), so the monitor's own connection starts from nothing.
        self.engine.close()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the monitor's side
            try:
                os.close(read)
                os.setsid()
                if os.fork() != 0:
                    os._exit(0)
                self._monitor(record, write)
            finally:
                os._exit(1)
        os.close(write)
        with os.fdopen(read, "rb") as f:
            message = f.read().decode(errors="replace")
        os.waitpid(pid, 0)
        if message == "ok":
            return
        if message.startswith("error:"):
            raise ContainerInitError(message[len("error:") :])
        raise ContainerInitError(f"container {record.id[:12]}: the monitor died before starting it")

    def _monitor(self, record: Record, report: int) -> None:  # pragma: no cover - forked
        """The detached container's waiter: launch, report, wait, record, tear down."""
        from corral.engine.engine import Engine

        path = self.dir(record.id)
        log = os.open(
            path / "container.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640
        )
        null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        os.chdir("/")
        # The parent's SQLite connection must not be used across fork: a store of our own.
        mine = Engine(self.engine.layout.root, runtime_root=self.runtime_root).containers

        def started(_pid: int) -> None:
            os.write(report, b"ok")
            os.close(report)

        try:
            mine._run(record, started)
        except BaseException as err:
            text = str(err) if isinstance(err, CorralError) else f"{type(err).__name__}: {err}"
            with contextlib.suppress(OSError):
                os.write(report, ("error:" + text.replace("\n", " ")).encode())
            os._exit(1)
        if record.auto_remove:
            try:
                mine.remove(record.id, force=True, volumes=True)
            except BaseException:  # nobody to tell but the debug log
                _debug_log(path)
        os._exit(0)

    def _finish(self, container_id: str, code: int | None) -> None:
        """The program exited: tear everything down and record the exit code."""
        self._teardown(container_id)
        path = self.dir(container_id)
        if path.is_dir():
            _write_json(path / "exit.json", {"exit_code": code, "finished": time.time()})

    def _teardown(self, container_id: str) -> None:
        """Remove runtime state and cgroups, unmount the rootfs, free the network namespace."""
        from corral.engine.snapshots.overlay import unmount

        with contextlib.suppress(NotFoundError):
            self.runtime_api().delete(container_id, force=True)
        path = self.dir(container_id)
        rootfs = path / "rootfs"
        if _is_mountpoint(rootfs):
            try:
                unmount(rootfs)
            except (OSError, KernelError):
                unmount(rootfs, detach=True)
        netns.remove(str(path / "netns"))
        with contextlib.suppress(OSError):
            self.runtime_root.rmdir()  # only if empty

    def rename(self, ref: str, new_name: str) -> None:
        """docker's ``rename``: the container's name in its row and its record."""
        if not _valid_name(new_name):
            raise UsageError(
                f"rename {new_name!r}: use letters, digits and _ . - (first alphanumeric)"
            )
        with self.engine.locked():
            record = self.record(ref)
            if new_name == record.name:
                raise UsageError("Renaming a container with the same name as its current name")
            try:
                with transaction(self.engine.db) as db:
                    db.execute("UPDATE containers SET name = ? WHERE id = ?", (new_name, record.id))
            except sqlite3.IntegrityError:
                raise ExistsError(
                    f'Conflict. The container name "/{new_name}" is already in use by '
                    f'container "{self.resolve(new_name)}". You have to remove (or rename) that '
                    "container to be able to reuse that name."
                ) from None
            record.name = new_name
            _write_json(self.dir(record.id) / "engine.json", record.to_json())

    # -- status ------------------------------------------------------------------------------------

    def status(self, record: Record) -> Status:
        path = self.dir(record.id)
        done = _read_json(path / "exit.json")
        state = _read_json(path / "state.json")
        started = float(state["started"]) if state else None
        if done is not None:
            code = done.get("exit_code")
            return Status(
                record, "exited", code if isinstance(code, int) else None, started,
                float(done.get("finished") or 0),
            )  # fmt: skip
        if state is None:
            return Status(record, "created")
        if _alive(state.get("waiter")):
            return Status(record, "running", None, started)
        # The waiter died without recording anything (killed): clean up after it.
        self._finish(record.id, None)
        return self.status(record)

    def list(self, all_containers: bool = False) -> list[Status]:
        out = []
        for cid, _ in self._ids():
            try:
                status = self.status(self.record(cid))
            except NotFoundError:
                continue
            if all_containers or status.state == "running":
                out.append(status)
        return out

    def logs(self, ref: str) -> Path:
        return self.dir(self.resolve(ref)) / "container.log"

    def read_logs(self, ref: str, tail: int | None = None, follow: bool = False) -> Iterator[bytes]:
        """``logs``: the container's output, or its last ``tail`` lines; with ``follow`` also
        what it writes until it stops. No such container: NotFoundError before any output."""
        from corral.engine.containers.logs import read_log

        record = self.record(ref)

        def running() -> bool:
            return self.status(record).state == "running"

        return read_log(str(self.logs(record.id)), tail, running if follow else None)

    # -- stop and remove ---------------------------------------------------------------------------

    def stop(self, ref: str, timeout: float | None = None) -> str:
        """Send the stop signal (``--stop-signal``, the image's StopSignal, else SIGTERM), SIGKILL
        everything after ``timeout`` seconds (``--stop-timeout``, else 10); wait for the exit."""
        record = self.record(ref)
        if self.status(record).state != "running":
            return record.id
        signal, default_timeout = prepare.stop_settings(self.dir(record.id))
        if timeout is None:
            timeout = default_timeout
        runtime = self.runtime_api()
        with contextlib.suppress(CorralError):
            runtime.kill(record.id, signal)
        if not self._wait_exited(record, timeout):
            with contextlib.suppress(CorralError):
                runtime.kill(record.id, 9, all_processes=True)
            if not self._wait_exited(record, 10.0):
                raise StateError(f"container {record.id[:12]}: still running after SIGKILL")
        return record.id

    def _wait_exited(self, record: Record, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if self.status(record).state != "running":
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL)

    def remove(self, ref: str, force: bool = False, volumes: bool = False) -> str:
        """``rm``: refused while running unless ``force`` (then SIGKILLed first); ``volumes``
        (``rm -v``, ``run --rm``) also removes the container's anonymous volumes."""
        record = self.record(ref)
        if self.status(record).state == "running":
            if not force:
                raise StateError(
                    f"cannot remove container {record.name!r}: container is running: stop the "
                    "container before removing or force remove"
                )
            self.stop(record.id, timeout=0)
        images = self.images
        with images.locked():
            self._teardown(record.id)
            with contextlib.suppress(NotFoundError):
                images.snapshots.remove(record.id)
            remove_tree(self.dir(record.id))
            self._remove_row(record.id)
            self.engine.volumes.detach(record.id, remove_anonymous=volumes)
            images.snapshots.collect()
        return record.id


# -- helpers ---------------------------------------------------------------------------------------


def _debug_log(path: Path) -> None:
    """With ``CORRAL_DEBUG`` set, a monitor's failure goes to ``containers/monitor.log``."""
    if os.environ.get("CORRAL_DEBUG"):
        import traceback

        with open(path.parent / "monitor.log", "a") as f:
            traceback.print_exc(file=f)


def _valid_name(name: str) -> bool:
    return bool(name) and name[0].isalnum() and all(c.isalnum() or c in "_.-" for c in name)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.rename(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _alive(waiter: Any) -> bool:
    from corral.runtime.state import process_start_time

    if not isinstance(waiter, list) or len(waiter) != 2:
        return False
    pid, start = waiter
    return isinstance(pid, int) and process_start_time(pid) == start


def _is_mountpoint(path: Path) -> bool:
    """Is ``path`` a mount point (per /proc/self/mountinfo, which sees through overlays)?"""
    want = str(path)
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                point = line.split(" ", 5)[4]
                if point.replace("\\040", " ") == want:
                    return True
    except OSError:
        return False
    return False
