"""Containers: ``create``, ``start``, ``run``, ``stop``, ``kill``, ``pause``, ``restart``,
``wait``, ``rm``, ``ps``, ``logs``, ``inspect``.

A container is an image's layers plus a writable snapshot, an OCI bundle and a record::

    <root>/containers/<id>/
      engine.json     the record: name, image, command, created, --rm
      config.json     the OCI config (corral.engine.containers.spec.build_spec)
      rootfs/         the overlay (snapshot ``<id>`` on the image's top chain id), mounted on
                      start, unmounted when the program exits
      netns           the network namespace (a bind-mounted nsfs file; loopback only)
      container.log   docker's json-file log (+ .1, .2 rotated), detached and foreground runs
      exit            (pid, wait status) records written by the container's waiter
    <root>/runtime/<id>/   the OCI runtime's state (corral.runtime.lifecycle), while it runs

plus a row in the store's ``containers`` table (``rmi`` refuses an image a container uses;
``system df`` counts the containers' upper dirs) and one in ``container_state`` (the run:
status, pids, exit code, OOM kill, times, restart count, health; corral.engine.monitor.state).

The runtime is driven as a library. A foreground ``run`` is the container's parent: it copies
and logs its output, forwards signals, records the exit. A detached one (``-d``, ``start``)
runs under a waiter and the root's monitor (corral.engine.monitor: logs, exit, OOM, restart
policy, healthchecks). Every command that looks at a running container first checks its
waiter is alive (``reconcile``): a run whose waiter died is recorded as exited and torn down
(mounts, netns, cgroups, runtime state), and detached containers without a monitor get one.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from pathlib import Path

from corral._record import datarecord, field
from corral.engine.db import transaction
from corral.engine.layout import remove_tree
from corral.engine.monitor import state as runstate
from corral.engine.monitor.config import MonitorConfig
from corral.engine.monitor.state import RunState
from corral.errors import (
    CorralError,
    ExistsError,
    KernelError,
    NotFoundError,
    StateError,
    UsageError,
    UserError,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from corral.engine.containers.logs import Entry
    from corral.engine.containers.spec import RunOptions
    from corral.engine.engine import Engine
    from corral.engine.images.store import ImageStore
    from corral.engine.network.model import NetworkRequest
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


@datarecord
class Record:
    """What ``engine.json`` holds about a container."""

    id: str
    name: str
    image: str
    image_id: str
    args: list[str]
    created: float
    auto_remove: bool = False
    #: False for a plain ``--network none`` (no -p, -P, alias): engine.network keeps nothing
    #: for it and is not even imported (a record without the key: True).
    network: bool = True

    def to_json(self) -> dict[str, Any]:
        data = {
            "id": self.id,
            "name": self.name,
            "image": self.image,
            "image_id": self.image_id,
            "args": self.args,
            "created": self.created,
            "auto_remove": self.auto_remove,
        }
        if not self.network:
            data["network"] = False
        return data

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
            bool(data.get("network", True)),
        )


@datarecord
class Status:
    """A container's state as ``ps`` shows it."""

    record: Record
    state: str  # created | running | paused | restarting | exited
    exit_code: int | None = None
    started: float | None = None
    finished: float | None = None
    health: str | None = None  # starting | healthy | unhealthy, while it runs
    restart_count: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Containers:
    """The containers of one storage root (the image store's)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.root = engine.layout.containers
        self.runtime_root = engine.layout.runtime_root

    # -- paths and records -------------------------------------------------------------------

    @property
    def images(self) -> ImageStore:
        return self.engine.images  # made on first use: ``ps`` needs no image store

    def dir(self, container_id: str) -> Path:
        return self.root / container_id

    @property
    def db(self) -> sqlite3.Connection:
        return self.engine.db

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
        rows = self.engine.db.execute("SELECT id, name FROM containers ORDER BY created DESC")
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
        monitor: MonitorConfig | None = None,
    ) -> Record:
        """Make the container: writable snapshot, OCI config, record. Nothing runs yet.
        ``monitor``: restart policy, healthcheck, stop signal and timeout, log rotation."""
        from corral.engine.containers import prepare
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
            run_config = _monitor_config(monitor, image_config)
            cid = os.urandom(32).hex()  # secrets.token_hex's bytes; secrets imports hashlib
            name = name or self._new_name()
            taken = self.engine.db.execute(
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
            req = opts.network
            networked = not _plain_none(req)
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
                    auto_remove, networked,
                )  # fmt: skip
                if networked and not isinstance(req, str):
                    self.engine.networks.create_container(
                        cid, req, image_config, spec, path, self.resolve
                    )
                else:
                    _edit_spec_none(spec, path, cid)
                _write_json(path / "config.json", spec)
                _write_json(path / "engine.json", record.to_json())
                images.snapshots.prepare(cid, parent)
                try:
                    self._add_row(cid, image.id, name)
                except sqlite3.IntegrityError:
                    raise ExistsError(f'Conflict. The container name "/{name}" is already in use')
                with transaction(self.engine.db):
                    runstate.insert(self.engine.db, cid, run_config)
                os.close(os.open(path / "exit", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
            except BaseException:
                if networked:
                    with contextlib.suppress(CorralError):
                        self.engine.networks.forget(cid)
                with contextlib.suppress(CorralError):
                    images.snapshots.remove(cid)
                volumes.detach(cid, remove_anonymous=True)
                remove_tree(path)
                with contextlib.suppress(sqlite3.Error), transaction(self.engine.db):
                    self.engine.db.execute("DELETE FROM containers WHERE id = ?", (cid,))
                    runstate.delete(self.engine.db, cid)
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
            name = f"{_pick(_ADJECTIVES)}_{_pick(_NAMES)}"
            if name not in taken:
                return name
        return f"corral_{os.urandom(4).hex()}"

    # -- start -----------------------------------------------------------------------------------

    def _prepare(self, record: Record) -> Path:
        """Mount the rootfs and make the network namespace; the bundle's path. On failure
        everything made here is undone."""
        from corral.engine.containers import netns, prepare

        path = self.dir(record.id)
        try:
            mounts = self.images.snapshots.mounts(record.id)
            rootfs = path / "rootfs"
            if not _is_mountpoint(rootfs):
                prepare.mount_rootfs(path, mounts, rootfs)
            prepare.after_mount(path, str(rootfs))
            netns.remove(str(path / "netns"))
            netns.create(str(path / "netns"))
            if record.network:
                self.engine.networks.setup(record.id, record.name, str(path / "netns"), path)
        except BaseException:
            self._teardown(record.id)
            raise
        return path

    def run_step(self, container_id: str, spec: dict[str, Any]) -> int:
        """Run ``spec`` in the foreground on the prepared snapshot ``container_id``, a
        container with no record, row or log (a build's RUN step); its exit code. Its rootfs
        stays mounted until ``release`` (the build reads the upper dir after unmounting)."""
        path = self.dir(container_id)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        (path / "rootfs").mkdir(mode=0o755, exist_ok=True)
        _write_json(path / "config.json", spec)
        record = Record(container_id, container_id, "", "", list(spec["process"]["args"]), 0.0)
        bundle = self._prepare(record)
        try:
            return self.runtime_api().run(container_id, str(bundle))
        except BaseException:
            self._teardown(container_id)
            raise

    def release(self, container_id: str) -> None:
        """Undo ``run_step``/``_prepare``: runtime state, rootfs mount, network namespace."""
        self._teardown(container_id)

    def run_state(self, container_id: str) -> RunState:
        row = runstate.get(self.db, container_id)
        return row if row is not None else RunState(container_id)

    def run_foreground(self, record: Record, interactive: bool = False) -> int:
        """Start the container and wait for it here, its output copied to our stdout and
        stderr and logged (json-file) as a detached one's; its exit code (128+N if killed by
        N). This process is its waiter: if it dies, the next command finds the container
        orphaned and removes it."""
        from corral.engine.monitor.foreground import run_logged
        from corral.runtime.state import process_start_time

        row = self.run_state(record.id)
        if row.live:
            raise StateError(f"container {record.name!r} is already running")
        path = self._prepare(record)
        me = os.getpid()

        def started(pid: int) -> None:
            with transaction(self.db):
                runstate.mark_running(
                    self.db, record.id, pid=pid, waiter=me,
                    waiter_start=process_start_time(me) or 0, detached=False,
                    started_at=time.time(), healthcheck=False,
                )  # fmt: skip

        try:
            code = run_logged(
                self.runtime(), record.id, str(path), str(path / "container.log"),
                row.config, interactive, started,
            )  # fmt: skip
        except BaseException:
            self._teardown(record.id)
            raise
        oom = self._oom(record.id)
        with transaction(self.db):
            claimed = runstate.claim_exit(
                self.db, record.id, me, exit_code=code, oom_killed=oom, finished_at=time.time()
            )
        if claimed and record.auto_remove:
            self.remove(record.id, force=True, volumes=True)  # which tears down first
        elif claimed:
            self._teardown(record.id)
        return code

    def start_detached(self, record: Record, hold: bool = False) -> None:
        """Start the container under a waiter and the root's monitor; return once it runs.
        The program's own start errors (not found, cannot be invoked) raise here. ``hold``:
        leave it created, for an attaching caller to start (``start_attached``)."""
        from corral.engine.monitor.launch import ensure_monitor, launch

        row = self.run_state(record.id)
        if row.live:
            return
        path = self._prepare(record)
        lock = path / "exit"
        # SQLite's per-process state must not cross a fork with a connection open: close ours
        # (it reopens on next use).
        self.engine.close()
        try:
            waiter, waiter_start, pid = launch(
                self.runtime(), record.id, path, lock, tty=row.config.tty, start=not hold,
                hold=self.engine.networks.held(record.id) if record.network else (),
            )
        except BaseException:
            self._teardown(record.id)
            raise
        with transaction(self.db):
            runstate.mark_running(
                self.db, record.id, pid=pid, waiter=waiter, waiter_start=waiter_start,
                detached=True, started_at=time.time(),
                healthcheck=row.config.healthcheck is not None,
            )  # fmt: skip
        ensure_monitor(self.engine.layout.root, self.runtime_root)

    # -- attaching --------------------------------------------------------------------------------

    def start_attached(
        self, record: Record, *, stdin: bool, detach_keys: bytes, sig_proxy: bool = True
    ) -> int | None:
        """``run -it`` (without ``-d``), ``start -a [-i]``: start the container under its
        waiter and the monitor, as ``start_detached``, but attached from its first byte of
        output (we connect to its attach socket before it starts). Its exit code, or None
        when the detach keys left it running. A running one is just attached to."""
        if self.run_state(record.id).live:
            return self.attach(record.id, stdin=stdin, detach_keys=detach_keys,
                               sig_proxy=sig_proxy)  # fmt: skip
        self._check_input(self.run_state(record.id).config, stdin)
        self.start_detached(record, hold=True)
        code = self._attached(record, self.run_state(record.id), stdin, detach_keys, sig_proxy,
                              start=True)  # fmt: skip
        if code is not None and record.auto_remove:
            # As docker's run --rm: return once it is gone (the monitor's helper removes it).
            deadline = time.monotonic() + 30
            while self.dir(record.id).exists() and time.monotonic() < deadline:
                time.sleep(_POLL)
        return code

    def attach(
        self, ref: str, *, stdin: bool = True, detach_keys: bytes = b"\x10\x11",
        sig_proxy: bool = True,
    ) -> int | None:
        """docker's ``attach``: our terminal (stdin only if the container was made with
        ``-i``) to a running container; its exit code, or None when detached."""
        record = self.record(ref)
        row = self.reconcile(self.run_state(record.id))
        if not row.live:
            raise StateError("You cannot attach to a stopped container, start it first")
        if row.status == "paused":
            raise StateError("You cannot attach to a paused container, unpause it first")
        if not row.detached:
            raise StateError(f"container {record.name!r}: its output goes to the `corral run` "
                             "that started it in the foreground; it cannot be attached"
                             )  # fmt: skip
        self._check_input(row.config, stdin)
        return self._attached(record, row, stdin, detach_keys, sig_proxy, start=False)

    @staticmethod
    def _check_input(config: MonitorConfig, stdin: bool) -> None:
        if config.tty and config.open_stdin and stdin and not os.isatty(0):
            raise UsageError("the input device is not a TTY")

    def _attached(
        self, record: Record, row: RunState, stdin: bool, detach_keys: bytes, sig_proxy: bool,
        start: bool,
    ) -> int | None:
        """Be the client of the container's attach socket until it ends (its exit code, read
        from the waiter's record) or we detach (None). ``start``: it was launched held; start
        it once we are connected, whatever happens."""
        import select

        from corral.engine.monitor.attach import Session, connect
        from corral.engine.monitor.waiter import exit_code, exit_status

        path = self.dir(record.id)
        # Opened now: with --rm the directory is gone by the time the exit is known.
        exit_fd = os.open(path / "exit", os.O_RDONLY | os.O_CLOEXEC)
        waiter_fd = init_fd = -1
        session = None
        try:
            waiter_fd = os.pidfd_open(row.waiter)
            with contextlib.suppress(ProcessLookupError):
                init_fd = os.pidfd_open(row.pid)

            def ended(pidfd: int, timeout: float = 0.0) -> bool:
                if pidfd < 0:
                    return True
                poller = select.poll()
                poller.register(pidfd, select.POLLIN)
                return bool(poller.poll(int(timeout * 1000)))

            try:
                sock = connect(str(path), 10.0, lambda: not ended(waiter_fd))
                session = Session(
                    sock, stdin=stdin and row.config.open_stdin, tty=row.config.tty,
                    detach_keys=detach_keys,
                    forward=(lambda sig: self.runtime_api().kill(record.id, sig))
                    if sig_proxy else None,
                )  # fmt: skip
                session.send_size()  # before it starts: the program sees it from the start
                if start:  # and only once the monitor lists us (its HELLO), or output is lost
                    from corral.engine.monitor.attach import wait_hello

                    wait_hello(sock, 10.0)
            finally:
                if start:
                    from corral.runtime import control

                    control.start(self.runtime(), record.id)
            while True:
                code = session.run()
                if code is not None:
                    return None if code == 0 else code
                if ended(init_fd) or ended(waiter_fd):
                    break
                # The monitor is gone, not the container: reconnect to the next one.
                session.close()
                self._ensure_monitor_alive()
                session.sock = connect(str(path), 10.0, lambda: not ended(waiter_fd))
            ended(waiter_fd, 30.0)  # it writes the exit record, then waits for the monitor
            status = exit_status(os.pread(exit_fd, 1 << 16, 0), row.pid)
        finally:
            if session is not None:
                session.close()
            for fd in (exit_fd, waiter_fd, init_fd):
                if fd >= 0:
                    os.close(fd)
        if status is None:
            with contextlib.suppress(NotFoundError):
                return self.wait(record.id)
            return 255
        return exit_code(status)

    # -- the end of a run ----------------------------------------------------------------------

    def finish(self, container_id: str, waiter: int, wait_log: float = 2.0) -> None:
        """The waiter ``waiter`` is gone: record how the run ended (exit code, OOM kill, time),
        tear down, and restart (policy) or remove (``--rm``) the container. Done by the
        monitor, or by any command that finds the waiter dead first (one of them wins)."""
        from corral.engine.monitor.config import restart_delay, should_restart
        from corral.engine.monitor.launch import ensure_monitor, monitor_alive
        from corral.engine.monitor.waiter import exit_code, exit_status

        row = runstate.get(self.db, container_id)
        if row is None or row.waiter != waiter or not row.live:
            return
        path = self.dir(container_id)
        if row.detached and monitor_alive(self.engine.layout.root):
            _wait_unlocked(path / "exit", wait_log)  # the monitor is writing the last logs
        status, finished = None, time.time()
        try:
            with open(path / "exit", "rb") as f:
                status = exit_status(f.read(), row.pid)
                if status is not None:
                    finished = os.fstat(f.fileno()).st_mtime
        except FileNotFoundError:
            pass
        code = exit_code(status) if status is not None else 255
        error = "" if status is not None else "the container's waiter died: its exit is unknown"
        with transaction(self.db):
            claimed = runstate.claim_exit(
                self.db, container_id, waiter, exit_code=code, oom_killed=self._oom(container_id),
                finished_at=finished, error=error,
            )  # fmt: skip
        if not claimed:
            return
        self._teardown(container_id)
        if should_restart(row.config, code, row.restart_count, row.stopped):
            with transaction(self.db):
                runstate.update(
                    self.db, container_id, status="restarting",
                    restart_at=time.time() + restart_delay(row.restart_count,
                                                           finished - row.started_at),
                )  # fmt: skip
            ensure_monitor(self.engine.layout.root, self.runtime_root)
            return
        with contextlib.suppress(NotFoundError):
            record = self.record(container_id)
            if record.auto_remove:
                self.remove(container_id, force=True)

    def _oom(self, container_id: str) -> bool:
        """Whether the kernel's OOM killer killed a process of the container (its memory
        cgroup's oom_kill count: v1 memory.oom_control, v2 memory.events)."""
        from corral import cgroups

        try:
            data = self.runtime().load(container_id).data.get("cgroup")
            return isinstance(data, dict) and cgroups.from_state(data).oom_kill_count() > 0
        except (CorralError, OSError, KeyError, ValueError):
            return False

    def restart_now(self, container_id: str) -> None:
        """The monitor's restart of a ``restarting`` container (the policy's next start)."""
        if not runstate.claim_restart(self.db, container_id):
            return
        record = self.record(container_id)
        try:
            self.start_detached(record)
        except CorralError as err:
            with transaction(self.db):
                runstate.update(self.db, container_id, status="exited", exit_code=128,
                                error=str(err), finished_at=time.time())  # fmt: skip

    def _teardown(self, container_id: str) -> None:
        """Remove runtime state and cgroups, unmount the rootfs, free the network namespace."""
        from corral.engine.containers import netns, userns
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
        userns.unmount_volumes(path)
        if _networked(path):
            self.engine.networks.teardown(container_id)
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

    def reconcile(self, row: RunState) -> RunState:
        """Check a live row against the kernel: a dead waiter means the run is over (finish it
        here if the monitor has not); a detached container without a monitor gets one."""
        from corral.runtime.state import process_start_time

        if row.live:
            if process_start_time(row.waiter) != row.waiter_start:
                self.finish(row.id, row.waiter)
                return self.run_state(row.id)
            if row.detached:
                self._ensure_monitor_alive()
        elif row.status == "restarting":
            self._ensure_monitor_alive()
        return row

    def _ensure_monitor_alive(self) -> None:
        from corral.engine.monitor.launch import monitor_alive, spawn_monitor

        root = self.engine.layout.root
        if not monitor_alive(root):
            self.engine.close()
            spawn_monitor(root, self.runtime_root)

    def status(self, record: Record) -> Status:
        row = self.reconcile(self.run_state(record.id))
        return _status(record, row)

    def list(self, all_containers: bool = False) -> list[Status]:
        rows = runstate.all_states(self.db)
        out = []
        for cid, _ in self._ids():
            try:
                record = self.record(cid)
            except NotFoundError:
                continue
            row = rows.get(cid) or RunState(cid)
            if row.live or row.status == "restarting":
                row = self.reconcile(row)
            status = _status(record, row)
            if all_containers or status.state in ("running", "paused", "restarting"):
                out.append(status)
        return out

    def logs(self, ref: str) -> Path:
        return self.dir(self.resolve(ref)) / "container.log"

    def read_logs(
        self,
        ref: str,
        tail: int | None = None,
        follow: bool = False,
        since: str | None = None,
        until: str | None = None,
    ) -> Iterator[Entry]:
        """``logs``: the container's log entries (stream, time, bytes), or its last ``tail``;
        with ``follow`` also what it writes until it stops. No such container: NotFoundError
        before any output."""
        from corral.engine.containers.logs import read_entries

        record = self.record(ref)

        def running() -> bool:
            return self.status(record).state in ("running", "paused", "restarting")

        return read_entries(
            str(self.logs(record.id)), tail=tail, since=since, until=until,
            follow=running if follow else None,
        )  # fmt: skip

    # -- signals, stop, pause ------------------------------------------------------------------

    def _live(self, ref: str) -> tuple[Record, RunState]:
        record = self.record(ref)
        row = self.reconcile(self.run_state(record.id))
        return record, row

    def kill(self, ref: str, signal: str | int = "SIGKILL") -> str:
        """``kill [-s SIG]``: signal the init; refused unless it runs. No restart follows."""
        from corral.spec.signals import parse_signal

        number = signal if isinstance(signal, int) else parse_signal(signal)
        record, row = self._live(ref)
        if not row.live:
            raise StateError(f"cannot kill container {ref}: container {record.id} is not running")
        with transaction(self.db):
            runstate.update(self.db, record.id, stopped=True)
        self.runtime_api().kill(record.id, number)
        return record.id

    def stop(self, ref: str, timeout: float | None = None, signal: str | None = None) -> str:
        """The stop signal (``--stop-signal``, the image's StopSignal, SIGTERM), SIGKILL to
        everything after ``timeout`` seconds (``--stop-timeout``, 10); wait for the exit. A
        stopped container is not restarted by its policy."""
        from corral.spec.signals import parse_signal

        record, row = self._live(ref)
        if row.status == "restarting":
            with transaction(self.db):
                runstate.update(self.db, record.id, status="exited", stopped=True)
            return record.id
        if not row.live:
            return record.id
        with transaction(self.db):
            runstate.update(self.db, record.id, stopped=True)
        runtime = self.runtime_api()
        wait = float(row.config.stop_timeout if timeout is None else timeout)
        number = parse_signal(signal or row.config.stop_signal)
        killing = number == 9  # SIGKILL at once (``rm -f``): to every process, as below
        with contextlib.suppress(CorralError):
            runtime.kill(record.id, number, all_processes=killing)
            if row.status == "paused":
                runtime.resume(record.id)
        if not killing and wait > 0 and self._wait_exit(row, wait):
            return record.id
        if not killing:
            with contextlib.suppress(CorralError):
                runtime.kill(record.id, 9, all_processes=True)
        if not self._wait_exit(row, 10.0):
            raise StateError(f"container {record.id[:12]}: still running after SIGKILL")
        return record.id

    def _wait_exit(self, row: RunState, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the run ``row`` to end and be recorded."""
        import select

        deadline = time.monotonic() + timeout
        if row.detached:
            try:
                pidfd = os.pidfd_open(row.waiter)
            except ProcessLookupError:
                pidfd = -1
            if pidfd >= 0:
                try:
                    poller = select.poll()
                    poller.register(pidfd, select.POLLIN)
                    if not poller.poll(max(0, int(timeout * 1000))):
                        return False
                finally:
                    os.close(pidfd)
            self.finish(row.id, row.waiter)
        while True:
            current = self.reconcile(self.run_state(row.id))
            if current.waiter != row.waiter or not current.live:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL)

    def wait(self, ref: str) -> int:
        """``wait``: block until the container stops; its exit code."""
        record = self.record(ref)
        while True:
            row = self.reconcile(self.run_state(record.id))
            if not row.live:
                return row.exit_code
            if row.detached:
                self._wait_exit(row, 3600.0)
            else:
                time.sleep(_POLL * 5)

    def restart(self, ref: str, timeout: float | None = None) -> str:
        """``restart``: stop (as ``stop``) and start again; the upper layer stays."""
        record = self.record(ref)
        self.stop(record.id, timeout)
        self.start_detached(record)
        return record.id

    def pause(self, ref: str) -> str:
        record, row = self._live(ref)
        if row.status != "running":
            state = "paused" if row.status == "paused" else "not running"
            raise StateError(f"container {record.id} is {state}")
        self.runtime_api().pause(record.id)
        with transaction(self.db):
            runstate.update(self.db, record.id, status="paused")
        return record.id

    def unpause(self, ref: str) -> str:
        record, row = self._live(ref)
        if row.status != "paused":
            raise StateError(f"container {record.id} is not paused")
        self.runtime_api().resume(record.id)
        with transaction(self.db):
            runstate.update(self.db, record.id, status="running")
        return record.id

    def remove(self, ref: str, force: bool = False, volumes: bool = False) -> str:
        """``rm``: refused while running unless ``force`` (then SIGKILLed first); ``volumes``
        (``rm -v``, ``run --rm``) also removes the container's anonymous volumes."""
        record = self.record(ref)
        state = self.status(record).state
        if state in ("running", "paused", "restarting"):
            if not force:
                raise StateError(
                    f"cannot remove container {record.name!r}: container is {state}: stop the "
                    "container before removing or force remove"
                )
            self.stop(record.id, timeout=0, signal="SIGKILL")  # docker's rm -f: no stop signal
        images = self.images
        with images.locked():
            self._teardown(record.id)
            if record.network:
                self.engine.networks.forget(record.id)
            with contextlib.suppress(NotFoundError):
                images.snapshots.remove(record.id)
            remove_tree(self.dir(record.id))
            self._remove_row(record.id)
            with transaction(self.db):
                runstate.delete(self.db, record.id)
            self.engine.volumes.detach(record.id, remove_anonymous=volumes)
            images.snapshots.collect()
        return record.id

    # -- inspect ---------------------------------------------------------------------------------

    def inspect(self, ref: str) -> dict[str, Any]:
        """docker's ``container inspect`` object."""
        from corral.engine.containers.inspect import container_json

        record = self.record(ref)
        row = self.reconcile(self.run_state(record.id))
        config = _read_json(self.dir(record.id) / "config.json") or {}
        settings, mode = self._network_settings(record, row.live)
        return container_json(record, row, config, str(self.dir(record.id)), settings, mode)

    def _network_settings(self, record: Record, live: bool) -> tuple[dict[str, Any], str]:
        """inspect's NetworkSettings and the --network mode (engine.network.settings)."""
        from corral.engine.network import settings

        sandbox = str(self.dir(record.id) / "netns") if live else ""
        if not record.network:
            return settings.json_of(record.id, [], [], [], [], sandbox, "none"), "none"
        from corral.engine.network.model import parse_expose

        exposed: list[tuple[int, str]] = []
        with contextlib.suppress(CorralError, OSError, ValueError):  # the image may be gone
            image_config = self.images.config(record.image_id).get("config") or {}
            for key in image_config.get("ExposedPorts") or {}:
                exposed += parse_expose(str(key))
        networks = self.engine.networks
        return (settings.network_settings(networks, record.id, exposed, sandbox),
                networks.mode(record.id))  # fmt: skip


def _status(record: Record, row: RunState) -> Status:
    health = row.health["Status"] if row.health and row.live else None
    code = row.exit_code if row.status in ("exited", "restarting") else None
    started = row.started_at or None
    finished = row.finished_at or None
    return Status(record, row.status, code, started, finished, health=health,
                  restart_count=row.restart_count)  # fmt: skip


def _wait_unlocked(path: Path, timeout: float) -> None:
    """Wait (up to ``timeout``) until nobody holds an exclusive flock on ``path``."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return
                time.sleep(0.01)
    finally:
        os.close(fd)


# -- helpers ---------------------------------------------------------------------------------------


def _monitor_config(given: MonitorConfig | None, image_config: dict[str, Any]) -> MonitorConfig:
    """The flags' MonitorConfig, with the image's StopSignal and Healthcheck where the flags
    say nothing."""
    from corral.engine.monitor.config import healthcheck_from

    config = given or MonitorConfig()
    cfg = image_config.get("config") or {}
    config.stop_signal = config.stop_signal or str(cfg.get("StopSignal") or "SIGTERM")
    if config.healthcheck is None and not config.no_healthcheck:
        config.healthcheck = healthcheck_from(cfg.get("Healthcheck"))
    return config


def _pick(words: tuple[str, ...]) -> str:
    """A random word (os.urandom, as secrets.choice, without importing secrets and hashlib)."""
    return words[int.from_bytes(os.urandom(4), "little") % len(words)]


def _plain_none(req: NetworkRequest | str | None) -> bool:
    """``--network none`` without -p, -P or --network-alias (which engine.network refuses
    for it, so those go there): a container the network code has nothing to keep for.
    ``req``: RunOptions.network (spec.NO_NETWORK, the CLI's for that case, is a str)."""
    if isinstance(req, str):
        return True
    return (
        req is not None and req.mode == "none" and not req.publish and not req.publish_all
        and not req.aliases
    )  # fmt: skip


def _edit_spec_none(spec: dict[str, Any], container_dir: Path, container_id: str) -> None:
    """What ``Networks.edit_spec`` does for ``none``: join the container's own namespace file
    and bind-mount the generated /etc files (unless etc_files made them)."""
    from corral.engine.network import files

    linux = spec.setdefault("linux", {})
    spaces = [ns for ns in linux.get("namespaces", []) if ns.get("type") != "network"]
    spaces.append({"type": "network", "path": str(container_dir / "netns")})
    linux["namespaces"] = spaces
    mounts = spec.setdefault("mounts", [])
    if "/etc/hosts" not in {m.get("destination") for m in mounts}:
        files.write_initial(container_dir, str(spec.get("hostname") or container_id[:12]))
        mounts.extend(files.spec_mounts(container_dir))


def _networked(container_dir: Path) -> bool:
    """Whether the container's record says engine.network keeps anything for it (True when
    the record is missing or unreadable: ask the network code)."""
    data = _read_json(container_dir / "engine.json")
    return data is None or bool(data.get("network", True))


def _valid_name(name: str) -> bool:
    return bool(name) and name[0].isalnum() and all(c.isalnum() or c in "_.-" for c in name)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    # Compact: json's C encoder (indent= takes the Python one, ~0.6 ms for a config.json).
    tmp.write_text(json.dumps(data, separators=(",", ":")))
    os.rename(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


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
