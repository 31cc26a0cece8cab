"""Foreground stdio without a terminal: three pipes the runtime copies, as runc does.

``corral-runc run`` and ``exec`` in the foreground do not hand the caller's fds 0, 1 and 2 to the
container: it could reopen them through /proc/self/fd/N with other rights (a host file given as
stdin, reopened for writing, was changed). The container gets pipes instead, and the runtime
copies the caller's stdin into the first (closing it at the caller's EOF) and the other two out
to the caller's stdout and stderr, until the process exits; then it takes what the pipes hold
and stops, so a process left behind with the pipes open cannot keep it waiting. Detached
(``-d``, ``create``) the caller's fds pass through, as in runc; with a terminal the pty is used.

No threads: one ``poll`` loop. The caller's fds stay blocking (their file descriptions are
shared with the caller's shell), so an output is written to them only when ``poll`` says it
takes a write, and unless it is a file at most PIPE_BUF bytes at a time (a pipe then takes them
whole): a slow reader of stdout holds up neither stderr nor stdin.
"""

from __future__ import annotations

import os
import select

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from corral.runtime.lifecycle import Created, CreateOptions
    from corral.runtime.state import StateStore

Fds = tuple[int, int, int]


class Pipes:
    """The three pipes: ``inner``, the container's ends (stdin's read end, the write ends of
    stdout and stderr), and ``ours``, the other three.

    All are close-on-exec and numbered ``low`` or more (above stdio and any ``--preserve-fds``
    range), so the child's dup2 onto 0-2 cannot clobber one and its close_stray_fds closes them
    all. Until :meth:`handed_over`, those of our fds 0-2 that are closed hold /dev/null: an fd
    the runtime opens meanwhile (a cgroup.procs file the child keeps) must not get a number the
    child's dup2 then overwrites.
    """

    __slots__ = ("given", "held", "inner", "ours")

    def __init__(self, low: int = 3) -> None:
        self.given = False
        self.held: list[int] = []
        made: list[int] = []
        try:
            for fd in range(3):
                if not _is_open(fd):  # the lowest free number: this one
                    self.held.append(os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC))
            for _ in range(3):
                made.extend(_high(fd, low) for fd in os.pipe())
        except BaseException:
            close(made + self.held)
            raise
        (in_r, in_w, out_r, out_w, err_r, err_w) = made
        self.inner: Fds = (in_r, out_w, err_w)
        self.ours: Fds = (in_w, out_r, err_r)

    def handed_over(self) -> None:
        """The child has its copies (or will never have them): close ours of its ends."""
        if not self.given:
            self.given = True
            close(self.inner + tuple(self.held))

    def close(self) -> None:
        self.handed_over()
        close(self.ours)


def _high(fd: int, low: int) -> int:
    if fd >= low:
        return fd
    import fcntl

    try:
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, low)
    finally:
        os.close(fd)


def give_to_root(fds: Fds, linux: dict[str, Any]) -> None:
    """With a user namespace, make the container's root own its pipe ends (runc does): it may
    then reopen them (``/dev/stdout``) like the fds a non-namespaced root gets. A runtime that
    may not chown (rootless, root mapped to a subordinate ID) leaves them as they are: the
    program still has its fds 0-2, only reopening them is refused."""
    namespaces = linux.get("namespaces") or []
    if not any(ns.get("type") == "user" for ns in namespaces):
        return
    ids = [_host_root(linux.get(f"{kind}Mappings") or []) for kind in ("uid", "gid")]
    if ids[0] < 0 and ids[1] < 0:
        return
    for fd in fds:
        try:
            os.fchown(fd, ids[0], ids[1])
        except OSError:
            return


def _host_root(mappings: list[dict[str, Any]]) -> int:
    for m in mappings:
        if m["containerID"] == 0 and m["size"] > 0:
            return int(m["hostID"])
    return -1


def close(fds: Any) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def copy(ours: Fds, pid: int) -> None:
    """Copy between the caller's stdio and the pipes (``ours``, from :class:`Pipes`) until
    ``pid`` exits, then what stdout's and stderr's pipes hold; close ``ours``. ``pid`` is not
    reaped (the caller waits for it)."""
    in_w, out_r, err_r = ours
    for fd in ours:
        os.set_blocking(fd, False)
    streams = [_Stream(0, in_w, in_w, 1 << 20), _Stream(out_r, 1, out_r), _Stream(err_r, 2, err_r)]
    if not _is_open(0):
        streams[0].finish()
    try:
        pidfd = _high(os.pidfd_open(pid), 3)  # not one of the caller's closed 0-2
    except ProcessLookupError:  # already reaped by someone: there is nothing left to wait for
        pidfd = -1
    try:
        exited = pidfd < 0
        while not exited:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            waiting: dict[int, _Stream] = {}
            for s in streams:
                if s.done:
                    continue
                fd, mask = (s.dst, select.POLLOUT) if s.pending() else (s.src, select.POLLIN)
                poller.register(fd, mask)
                waiting[fd] = s
            for fd, _event in poller.poll():
                if fd == pidfd:
                    exited = True
                elif fd == waiting[fd].dst:
                    waiting[fd].write()
                else:
                    waiting[fd].read()
        streams[0].finish()  # the process is gone: nobody reads its stdin any more
        for s in streams[1:]:
            s.drain()
    finally:
        if pidfd >= 0:
            os.close(pidfd)
        for s in streams:
            s.finish()


class _Stream:
    """One direction: bytes read from ``src`` wait in ``buf`` until ``dst`` takes them."""

    __slots__ = ("buf", "chunk", "done", "dst", "ours", "pos", "src")

    def __init__(self, src: int, dst: int, ours: int, chunk: int = 0) -> None:
        self.src = src
        self.dst = dst
        self.ours = ours  # the pipe end we own, closed when the stream ends
        self.chunk = chunk or _chunk(dst)
        self.buf = b""
        self.pos = 0
        self.done = False

    def pending(self) -> bool:
        return self.pos < len(self.buf)

    def read(self) -> None:
        try:
            data = os.read(self.src, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.finish()  # EOF: stdin's pipe closes, which is the container's EOF
            return
        self.buf, self.pos = data, 0

    def write(self) -> None:
        try:
            self.pos += os.write(self.dst, memoryview(self.buf)[self.pos : self.pos + self.chunk])
        except BlockingIOError:
            return
        except OSError:  # the reader is gone: so are we (the writer then gets EPIPE, as
            self.finish()  # it would writing to the caller's fd itself)

    def drain(self) -> None:
        """The process has exited: pass on what we hold and what the pipe holds (at most its
        size: anything after that is written by processes it left behind), then end."""
        import fcntl

        if self.done:
            return
        try:
            left = fcntl.fcntl(self.src, fcntl.F_GETPIPE_SZ)
            _write_all(self.dst, memoryview(self.buf)[self.pos :])
            while left > 0:
                try:
                    data = os.read(self.src, min(left, 65536))
                except BlockingIOError:
                    break
                if not data:
                    break
                left -= len(data)
                _write_all(self.dst, data)
        except OSError:
            pass
        self.finish()

    def finish(self) -> None:
        if not self.done:
            self.done = True
            self.buf, self.pos = b"", 0
            os.close(self.ours)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:  # the caller's fd is non-blocking: wait until it takes more
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
            poller.poll()


def _chunk(fd: int) -> int:
    """How much one write to the caller's ``fd`` may carry without blocking after POLLOUT."""
    import stat

    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return 1 << 20
    except OSError:
        pass
    return select.PIPE_BUF


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def create_foreground(
    store: StateStore, container_id: str, bundle: str, opts: CreateOptions
) -> tuple[Created, Fds | None]:
    """``lifecycle.create`` for a foreground run: the container's stdio are pipes unless it has
    a terminal. Returns (Created, our ends of the pipes for ``wait_and_forward``, or None)."""
    from corral.runtime import lifecycle

    pipes = Pipes(3 + opts.preserve_fds)
    opts.stdio = pipes.inner
    try:
        created = lifecycle.create(store, container_id, bundle, opts)
    except BaseException:
        pipes.close()
        raise
    finally:
        pipes.handed_over()
        opts.stdio = None
    if created.pty_master is not None:
        close(pipes.ours)
        return created, None
    return created, pipes.ours
