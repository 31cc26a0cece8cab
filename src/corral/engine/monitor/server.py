"""The monitor: one process per engine root that watches every detached container.

It is started by the first ``corral run -d`` (corral.engine.monitor.launch.ensure_monitor)
and exits once nothing is left to watch. Its whole life is one ``poll`` loop over:

- for each running container: pidfds of its init and of its waiter, and the stdout/stderr
  pipes it reopened through ``/proc/<waiter>/fd/4`` and ``/5`` (with ``-t``: the pty master,
  copied from the waiter's fd 4 with pidfd_getfd); what they carry goes to the json-file log
  (corral.engine.monitor.logfile) and to the attached clients;
- for each running container, its attach socket ``<container>/attach`` and the clients
  connected to it (corral.engine.monitor.attach: ``attach``, ``run -it``, ``start -a``):
  output goes to them as it comes, their keystrokes and window sizes to the pty;
- a self-pipe woken by SIGUSR1 (a command changed the database: adopt what is new) and by
  SIGCHLD (one of its helpers ended);
- timers: the next healthcheck of each container, the restarts that are due.

When the init exits, the monitor reads the pipes to their end, closes the log (and the lock
on the container's ``exit`` file that tells commands the log is complete), the attach socket
and its clients (once they have had all the output), and releases the waiter (a byte to its
fd 7). When the waiter has exited (its exit record written), it forks a
helper that records the exit and tears the container down (``Containers.finish``), which
also decides on a restart. Healthchecks and restarts are forked helpers too. The helpers
import the runtime; the monitor itself imports only what this module does (the standard
library's os, select, signal, json and fcntl), so its memory stays that of a small
interpreter, shared by all the containers of the root (bench/engine.py measures it against
conmon). Not even sqlite3 (about 2 MB of PSS, a tenth of a container's share at 20): the
monitor reads the database in a forked child that sends the rows back as JSON (``_query``).

A crash of the monitor loses nothing (see corral.engine.monitor.waiter): the next ``corral``
command that finds running containers and no monitor starts one, which adopts them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import signal
import sys
import time

from corral.engine.monitor import attach as proto
from corral.engine.monitor.alive import LOCK_NAME
from corral.engine.monitor.logfile import LogWriter
from corral.errors import CorralError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_READ = 1 << 16
_LOG_LOCK = "exit"
#: A client that lets this much output pile up unread is disconnected (the container is not
#: held back for it, and its output is logged all the same).
_CLIENT_BACKLOG = 1 << 20
#: How long clients of an ended container get to take the last output.
_CLOSE_GRACE = 2.0


class _Client:
    """One attached client: a SOCK_SEQPACKET connection to a container's attach socket."""

    __slots__ = ("deadline", "fd", "pending", "queued", "watch")

    def __init__(self, fd: int, watch: _Watch) -> None:
        self.fd = fd
        self.watch: _Watch | None = watch  # None once the container has ended
        self.pending: list[bytes] = []  # messages not sent yet
        self.queued = 0
        self.deadline = 0.0


class _Watch:
    """One container being watched: its waiter, pipes, log, and healthcheck timer."""

    __slots__ = (
        "cid",
        "clients",
        "fds",
        "init_fd",
        "interval",
        "listener",
        "lock",
        "master",
        "next_probe",
        "pidfd",
        "probe",
        "release",
        "socket_path",
        "stdin",
        "stdin_pending",
        "waiter",
        "writer",
    )  # fmt: skip

    def __init__(self, cid: str, waiter: int) -> None:
        self.cid = cid
        self.waiter = waiter
        self.pidfd = -1  # the waiter's
        self.init_fd = -1  # the init's, until its output is read to the end
        self.release = -1  # the waiter's fd 7
        self.lock = -1
        self.fds: dict[int, str] = {}
        self.writer: LogWriter | None = None
        self.next_probe = 0.0  # 0: no healthcheck
        self.interval = 0.0
        self.probe = 0  # the pid of the running probe helper
        self.master = -1  # -t: our copy of the pty master (also in self.fds while readable)
        self.stdin = False  # -i: clients may type into the pty
        self.stdin_pending = b""  # typed, not yet taken by the pty
        self.listener: Any = None  # the attach socket (a _socket.socket)
        self.socket_path = ""
        self.clients: list[_Client] = []


class Monitor:
    def __init__(self, root: str, runtime_root: str) -> None:
        self.root = root
        self.runtime_root = runtime_root
        self.containers = os.path.join(root, "containers")
        self.db_path = os.path.join(root, "corral.db")
        self.linger = float(os.environ.get("CORRAL_MONITOR_LINGER") or 1.0)
        self.watches: dict[str, _Watch] = {}
        self.by_fd: dict[int, tuple[_Watch, str]] = {}
        self.restarts: dict[str, float] = {}
        self.helpers: dict[int, tuple[str, str]] = {}  # pid -> (kind, container id)
        self.clients: dict[int, _Client] = {}
        self.listeners: dict[int, _Watch] = {}
        self.rescan = True
        self.rescan_at = 0.0  # a container to adopt again shortly

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> int:
        lock = os.open(os.path.join(self.root, LOCK_NAME),
                       os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)  # fmt: skip
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # another monitor has this root
        _write(os.path.join(self.root, "monitor.pid"), str(os.getpid()))
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        for sig in (signal.SIGUSR1, signal.SIGCHLD):
            signal.signal(sig, _flag)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        idle_since = time.monotonic()
        while True:
            self._reap()
            if self.rescan_at and self.rescan_at <= time.time():
                self.rescan, self.rescan_at = True, 0.0
            if self.rescan:
                self.rescan = False
                self._scan()
            now = time.time()
            self._timers(now)
            self._expire_clients()
            busy = bool(self.watches or self.restarts or self.helpers or self.clients)
            if busy:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= self.linger:
                return 0
            masks = {wake_r: select.POLLIN}
            for watch in self.watches.values():
                masks[watch.pidfd] = select.POLLIN
                if watch.init_fd >= 0:
                    masks[watch.init_fd] = select.POLLIN
                for fd in watch.fds:
                    masks[fd] = select.POLLIN
                if watch.stdin_pending and watch.master >= 0:
                    masks[watch.master] = masks.get(watch.master, 0) | select.POLLOUT
            for fd in self.listeners:
                masks[fd] = select.POLLIN
            for client in self.clients.values():
                held = client.watch is not None and bool(client.watch.stdin_pending)
                masks[client.fd] = (0 if held else select.POLLIN) | (
                    select.POLLOUT if client.pending else 0
                )
            poller = select.poll()
            for fd, mask in masks.items():
                poller.register(fd, mask)
            timeout = self._next_timer(now, busy)
            try:
                events = poller.poll(timeout)
            except InterruptedError:
                events = []
            pidfds = {w.pidfd: w for w in self.watches.values()}
            inits = {w.init_fd: w for w in self.watches.values() if w.init_fd >= 0}
            exited: list[_Watch] = []
            for fd, event in events:
                if fd in self.clients:
                    self._client_event(self.clients[fd], event)
                    continue
                if fd in self.listeners:
                    self._accept(self.listeners[fd])
                    continue
                if event & select.POLLOUT:
                    self._feed_stdin(fd)
                if not event & ~select.POLLOUT:
                    continue
                if fd == wake_r:
                    with contextlib.suppress(BlockingIOError):
                        while os.read(wake_r, 256):
                            pass
                    self.rescan = True
                elif fd in pidfds:
                    exited.append(pidfds[fd])
                elif fd in inits:
                    self._drained(inits[fd])
                elif fd in self.by_fd:
                    self._read(fd)
            for watch in exited:
                self._exited(watch)

    def _next_timer(self, now: float, busy: bool) -> int:
        times = [w.next_probe for w in self.watches.values() if w.next_probe and not w.probe]
        times += list(self.restarts.values())
        times += [c.deadline for c in self.clients.values() if c.deadline]
        if self.rescan_at:
            times.append(self.rescan_at)
        if not busy:
            times.append(now + self.linger)
        if not times:
            return -1
        return max(0, int((min(times) - now) * 1000) + 1)

    # -- adopting containers -------------------------------------------------------------------

    def _scan(self) -> None:
        rows = _query(
            self.db_path,
            "SELECT id, status, pid, waiter, waiter_start, restart_at, started_at, config "
            "FROM container_state WHERE (detached = 1 AND status IN ('running', 'paused'))"
            " OR status = 'restarting'",
        )
        if rows is None:
            self.rescan_at = time.time() + 0.5
            return
        self.restarts = {}
        for row in rows:
            cid = row["id"]
            if row["status"] == "restarting":
                self.restarts[cid] = float(row["restart_at"])
                continue
            watch = self.watches.get(cid)
            if watch is not None and watch.waiter == row["waiter"]:
                continue
            if watch is not None:
                self._close(watch)
            self._adopt(cid, row)

    def _adopt(self, cid: str, row: Any) -> None:
        waiter = int(row["waiter"])
        watch = _Watch(cid, waiter)
        directory = os.path.join(self.containers, cid)
        try:
            watch.pidfd = os.pidfd_open(waiter)
        except ProcessLookupError:
            watch.pidfd = -1
        if watch.pidfd < 0 or _start_time(waiter) != row["waiter_start"]:
            if watch.pidfd >= 0:
                os.close(watch.pidfd)
            self._helper("finish", cid, str(waiter))  # the waiter is gone already
            return
        if not _is_waiter(waiter):  # it reported "ok" and is about to exec the waiter:
            os.close(watch.pidfd)  # its fds 4-7 are not the waiter's yet
            self.rescan_at = time.time() + 0.01
            return
        config = json.loads(row["config"] or "{}")
        try:
            watch.init_fd = os.pidfd_open(int(row["pid"]))
        except (ProcessLookupError, ValueError):
            watch.init_fd = -1  # gone already: its output is read at once
        try:
            watch.release = os.open(f"/proc/{waiter}/fd/7", os.O_WRONLY | os.O_CLOEXEC)
            watch.lock = os.open(os.path.join(directory, _LOG_LOCK), os.O_RDONLY | os.O_CLOEXEC)
            fcntl.flock(watch.lock, fcntl.LOCK_EX)
            watch.writer = LogWriter(
                os.path.join(directory, "container.log"),
                int(config.get("log_max_size") or 0),
                int(config.get("log_max_file") or 1),
            )
            if config.get("tty"):
                from corral.sys import pidfd_getfd

                # A pty master cannot be reopened (that makes a new pty): copy the waiter's.
                watch.master = pidfd_getfd(watch.pidfd, 4)
                os.set_blocking(watch.master, False)
                watch.stdin = bool(config.get("open_stdin"))
                watch.fds[watch.master] = "stdout"
                self.by_fd[watch.master] = (watch, "stdout")
            else:
                for number, stream in ((4, "stdout"), (5, "stderr")):
                    fd = os.open(f"/proc/{waiter}/fd/{number}",
                                 os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # fmt: skip
                    watch.fds[fd] = stream
                    self.by_fd[fd] = (watch, stream)
            if watch.init_fd >= 0:
                self._listen(watch, directory)
        except (OSError, CorralError):
            self.watches[cid] = watch  # the waiter's exit finishes it
            return
        if watch.init_fd < 0:
            self._drained(watch)
        health = config.get("healthcheck")
        if isinstance(health, dict):
            watch.interval = float(health.get("interval") or 30.0)
            watch.next_probe = float(row["started_at"]) + watch.interval
        self.watches[cid] = watch

    # -- events --------------------------------------------------------------------------------

    def _read(self, fd: int) -> None:
        watch, stream = self.by_fd[fd]
        try:
            data = os.read(fd, _READ)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            del self.by_fd[fd]
            del watch.fds[fd]
            os.close(fd)
            if fd == watch.master:
                watch.master = -1
            return
        if watch.writer is not None:
            watch.writer.write(stream, data)
        self._broadcast(watch, stream, data)

    def _exited(self, watch: _Watch) -> None:
        """The waiter is gone (its exit record written): let a helper record the exit and
        tear down."""
        self._drained(watch)
        self._close(watch)
        self._helper("finish", watch.cid, str(watch.waiter))

    def _drained(self, watch: _Watch) -> None:
        """The init is gone: take what the pipes hold, close the log, release the waiter."""
        for fd in list(watch.fds):
            while fd in watch.fds:
                try:
                    data = os.read(fd, _READ)
                except BlockingIOError:
                    break
                except OSError:
                    data = b""
                if not data:
                    break
                if watch.writer is not None:
                    watch.writer.write(watch.fds[fd], data)
                self._broadcast(watch, watch.fds[fd], data)
        self._close_log(watch)
        self._stop_attach(watch)
        if watch.release >= 0:
            with contextlib.suppress(OSError):
                os.write(watch.release, b"x")
            os.close(watch.release)
            watch.release = -1
        if watch.init_fd >= 0:
            os.close(watch.init_fd)
            watch.init_fd = -1

    def _close_log(self, watch: _Watch) -> None:
        for fd in list(watch.fds):
            self.by_fd.pop(fd, None)
            if fd != watch.master:
                os.close(fd)
        watch.fds.clear()
        if watch.master >= 0:
            os.close(watch.master)
            watch.master = -1
            watch.stdin_pending = b""
        if watch.writer is not None:
            with contextlib.suppress(OSError):
                watch.writer.close()
            watch.writer = None
        if watch.lock >= 0:
            os.close(watch.lock)
            watch.lock = -1

    def _close(self, watch: _Watch) -> None:
        self._close_log(watch)
        self._stop_attach(watch)
        for fd in (watch.pidfd, watch.init_fd, watch.release):
            if fd >= 0:
                os.close(fd)
        watch.pidfd = watch.init_fd = watch.release = -1
        if self.watches.get(watch.cid) is watch:
            del self.watches[watch.cid]

    # -- attaching ---------------------------------------------------------------------------

    def _listen(self, watch: _Watch, directory: str) -> None:
        """Serve the container's attach socket (bound through /proc/self/fd: a deep root
        makes paths longer than a socket address may be)."""
        watch.socket_path = os.path.join(directory, proto.SOCKET_NAME)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(watch.socket_path)
        listener = proto.seqpacket()
        dirfd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            listener.bind(proto.address(dirfd))
        finally:
            os.close(dirfd)
        listener.listen(8)
        watch.listener = listener
        self.listeners[listener.fileno()] = watch

    def _accept(self, watch: _Watch) -> None:
        if watch.listener is None:
            return
        try:
            fd, _ = watch.listener._accept()
        except OSError:
            return
        os.set_blocking(fd, False)
        client = _Client(fd, watch)
        watch.clients.append(client)
        self.clients[fd] = client
        client.pending.append(proto.HELLO)  # listed: the output reaches it from now on
        client.queued += len(proto.HELLO)
        self._flush(client)

    def _client_event(self, client: _Client, event: int) -> None:
        if event & select.POLLOUT:
            self._flush(client)
        if not event & (select.POLLIN | select.POLLHUP | select.POLLERR):
            return
        try:
            message = os.read(client.fd, proto.MAX_MESSAGE)
        except BlockingIOError:
            return
        except OSError:
            message = b""
        if not message:  # detached (or gone)
            self._drop(client)
            return
        watch = client.watch
        if watch is None or watch.master < 0:
            return
        kind, data = message[:1], message[1:]
        if kind == proto.STDIN and watch.stdin:
            watch.stdin_pending += data
            self._feed_stdin(watch.master)
        elif kind == proto.RESIZE and len(data) == 8:
            import termios

            with contextlib.suppress(OSError):
                fcntl.ioctl(watch.master, termios.TIOCSWINSZ, data)

    def _feed_stdin(self, master: int) -> None:
        """Give the pty what clients typed, as much as it takes now (the rest waits for
        POLLOUT; the clients are not read meanwhile)."""
        entry = self.by_fd.get(master)
        watch = entry[0] if entry else None
        if watch is None or not watch.stdin_pending:
            return
        try:
            written = os.write(master, watch.stdin_pending)
        except BlockingIOError:
            return
        except OSError:
            written = len(watch.stdin_pending)
        watch.stdin_pending = watch.stdin_pending[written:]

    def _broadcast(self, watch: _Watch, stream: str, data: bytes) -> None:
        if not watch.clients:
            return
        message = (proto.STDOUT if stream == "stdout" else proto.STDERR) + data
        for client in list(watch.clients):
            client.pending.append(message)
            client.queued += len(message)
            self._flush(client)
            if client.queued > _CLIENT_BACKLOG:
                self._drop(client)

    def _flush(self, client: _Client) -> None:
        while client.pending:
            message = client.pending[0]
            try:
                os.write(client.fd, message)
            except BlockingIOError:
                return
            except OSError:
                self._drop(client)
                return
            client.pending.pop(0)
            client.queued -= len(message)
        if client.watch is None:  # the container has ended and this one has it all
            self._drop(client)

    def _stop_attach(self, watch: _Watch) -> None:
        """The container's output has ended: no more clients; those attached get what is
        still queued for them (for a while), then their connection closes."""
        if watch.listener is not None:
            self.listeners.pop(watch.listener.fileno(), None)
            watch.listener.close()
            watch.listener = None
            with contextlib.suppress(OSError):
                os.unlink(watch.socket_path)
        for client in watch.clients:
            client.watch = None
            client.deadline = time.time() + _CLOSE_GRACE
            self._flush(client)
        watch.clients = []

    def _drop(self, client: _Client) -> None:
        if self.clients.pop(client.fd, None) is None:
            return
        os.close(client.fd)
        if client.watch is not None and client in client.watch.clients:
            client.watch.clients.remove(client)

    def _expire_clients(self) -> None:
        now = time.time()
        for client in list(self.clients.values()):
            if client.deadline and client.deadline <= now:
                self._drop(client)

    def _timers(self, now: float) -> None:
        for cid, due in list(self.restarts.items()):
            if due <= now:
                del self.restarts[cid]
                self._helper("restart", cid, "")
        for watch in self.watches.values():
            if watch.next_probe and not watch.probe and watch.next_probe <= now:
                watch.probe = self._helper("probe", watch.cid, str(watch.waiter))

    # -- helpers -------------------------------------------------------------------------------

    def _helper(self, kind: str, cid: str, arg: str) -> int:
        """Fork a helper that does ``kind`` (finish, restart, probe) for ``cid`` and exits."""
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the helper
            code = 1
            try:
                signal.set_wakeup_fd(-1)
                for sig in (signal.SIGUSR1, signal.SIGCHLD, signal.SIGTERM):
                    signal.signal(sig, signal.SIG_DFL)
                from corral.engine.monitor import helpers

                code = helpers.run(self.root, self.runtime_root, kind, cid, arg)
            except BaseException:
                if os.environ.get("CORRAL_DEBUG"):
                    import traceback

                    with open(os.path.join(self.root, "monitor.log"), "a") as f:
                        traceback.print_exc(file=f)
            finally:
                os._exit(code)
        self.helpers[pid] = (kind, cid)
        return pid

    def _reap(self) -> None:
        while self.helpers:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.helpers.clear()
                return
            if pid == 0:
                return
            kind, cid = self.helpers.pop(pid, ("", ""))
            if kind == "probe":
                watch = self.watches.get(cid)
                if watch is not None:
                    watch.probe = 0
                    watch.next_probe = time.time() + watch.interval
            else:
                self.rescan = True


def _query(db_path: str, sql: str) -> list[dict[str, Any]] | None:
    """The rows ``sql`` selects from the database, read by a forked child that imports sqlite3
    (so this process never does) and writes them back as JSON; [] while there is no table,
    None if the child failed (a locked, damaged or missing database: try again later)."""
    read, write = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(read)
            import sqlite3

            # mode=rw: never create it (a root removed while we lingered stays removed)
            db = sqlite3.connect(f"file:{db_path}?mode=rw", uri=True, timeout=30,
                                 isolation_level=None)  # fmt: skip
            db.row_factory = sqlite3.Row
            try:
                found = [dict(r) for r in db.execute(sql)]
            except sqlite3.OperationalError:  # no table yet
                found = []
            data = memoryview(json.dumps(found).encode())
            while data:
                data = data[os.write(write, data) :]
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    chunks = []
    try:
        while chunk := os.read(read, 65536):
            chunks.append(chunk)
    finally:
        os.close(read)
        _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        return None
    rows: list[dict[str, Any]] = json.loads(b"".join(chunks) or b"[]")
    return rows


def _flag(_signum: int, _frame: object) -> None:
    """Signals only wake the loop (through the wakeup fd)."""


def _is_waiter(pid: int) -> bool:
    """Whether ``pid`` runs the waiter program (the assembled one, or the Python loop)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        return True  # gone: the pidfd says so
    return cmdline.startswith(b"corral-waiter\0") or b"os.wait4" in cmdline


def _start_time(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rpartition(b")")[2].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


def _write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m corral.engine.monitor ROOT RUNTIME_ROOT", file=sys.stderr)
        return 2
    return Monitor(argv[0], argv[1]).run()
