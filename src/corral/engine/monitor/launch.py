"""Starting a detached container under a waiter, and making sure a monitor watches it.

::

    corral run -d  ──fork──> A ──fork──> C: setsid; create + start the container with stdout and
        │                    (exits)        stderr on pipes; report "ok"; exec the waiter
        │                                   (the init stays its child, the pipes' read ends
        │                                   stay open in it)
        ├── reads "ok <waiter> <init>" (or the one-line error) from C
        ├── records the run (corral.engine.monitor.state.mark_running)
        └── ensure_monitor(): SIGUSR1 to the root's monitor, or start one (setsid, stdio on
            /dev/null), which adopts every running container it does not watch yet

A is there so that the waiter is nobody's child but init's (or a subreaper's): a long-lived
caller (a Python program, the monitor itself when it restarts a container) would otherwise
have to reap it. C drops the caller's session and stdio at once, so neither the waiter nor the
container ever holds the caller's terminal.

With a terminal (``-t``) the runtime hands C the pty's master instead of taking pipes: it
becomes the waiter's fd 4 (fd 5 is /dev/null), held there for the container's whole life; the
monitor takes its own copy with pidfd_getfd. An attaching start (``run -it``, ``start -a``)
asks C not to start the container (``start=False``): the caller attaches first, then starts
it (corral.runtime.control.start), so not a byte of its output is missed.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import os
import signal
import sys

from corral.engine.monitor.alive import LOCK_NAME, monitor_alive

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from corral.runtime.state import StateStore

__all__ = ["LOCK_NAME", "PID_NAME", "ensure_monitor", "launch", "monitor_alive", "spawn_monitor"]

#: The monitor of a root writes its pid here (it holds an exclusive flock on LOCK_NAME).
PID_NAME = "monitor.pid"


def launch(
    store: StateStore, container_id: str, bundle: Path, exit_file: Path, *, tty: bool = False,
    start: bool = True, hold: Sequence[int] = (),
) -> tuple[int, int, int]:
    """Create and start ``container_id`` (bundle ready: rootfs mounted, netns made) under a
    new waiter; (waiter pid, waiter start time, init pid). ``tty``: the config asks for a
    terminal; ``start=False``: leave it created (the caller starts it); ``hold``: fds the
    waiter holds for the container's life (its fds 8, 9, ...). Errors come back as
    ContainerInitError with the runtime's one-line message."""
    from corral.errors import ContainerInitError
    from corral.runtime.state import process_start_time

    exit_fd = os.open(exit_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    report_r, report_w = os.pipe()
    gc.freeze()  # C runs the runtime's create, and forks the init: see containers.netns.create
    first = os.fork()
    if first == 0:  # pragma: no cover - A, then C
        try:
            os.close(report_r)
            if os.fork() != 0:
                os._exit(0)
            _child(store, container_id, str(bundle), exit_fd, (out_r, out_w, err_r, err_w),
                   report_w, tty, start, hold)  # fmt: skip
        finally:
            os._exit(1)
    for fd in (exit_fd, out_r, out_w, err_r, err_w, report_w):
        os.close(fd)
    with os.fdopen(report_r, "rb") as f:
        message = f.read().decode(errors="replace")
    os.waitpid(first, 0)
    if message.startswith("ok "):
        waiter, init = (int(x) for x in message.split()[1:3])
        return waiter, process_start_time(waiter) or 0, init
    if message.startswith("error:"):
        raise ContainerInitError(message[len("error:") :])
    raise ContainerInitError(f"container {container_id[:12]}: its waiter died before starting it")


def _child(  # pragma: no cover - runs in the forked C
    store: StateStore,
    container_id: str,
    bundle: str,
    exit_fd: int,
    pipes: tuple[int, int, int, int],
    report: int,
    tty: bool,
    start: bool,
    hold: Sequence[int],
) -> None:
    from corral.engine.monitor.waiter import become_waiter
    from corral.errors import CorralError
    from corral.runtime import control, lifecycle

    out_r, out_w, err_r, err_w = pipes
    try:
        os.setsid()
        null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        for fd in (0, 1, 2):  # not the caller's terminal, even for a moment
            os.dup2(null, fd)
        os.chdir("/")
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        opts = lifecycle.CreateOptions()
        # With a terminal, "not detached" makes create hand us the pty master (and makes us a
        # subreaper, which a waiter may as well be); without, the pipes are the stdio.
        opts.detach = not tty
        opts.stdio = (_high(null), _high(out_w), _high(err_w))
        created = lifecycle.create(store, container_id, bundle, opts)
        if created.pty_master is not None:
            for fd in (out_r, err_r):
                os.close(fd)
            out_r, err_r = created.pty_master, null
        if start:
            control.start(store, container_id)
        os.close(out_w)
        os.close(err_w)
        os.write(report, f"ok {os.getpid()} {created.container.pid}".encode())
    except BaseException as err:
        text = str(err) if isinstance(err, CorralError) else f"{type(err).__name__}: {err}"
        with contextlib.suppress(OSError):
            os.write(report, ("error:" + text.replace("\n", " ")).encode())
        os._exit(1)
    become_waiter(exit_fd, out_r, err_r, hold)


def _high(fd: int) -> int:
    """A close-on-exec copy numbered 10 or more (the runtime dup2s them onto 0-2)."""
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)


# -- the monitor of a root -------------------------------------------------------------------------


def ensure_monitor(root: Path, runtime_root: Path) -> None:
    """Tell the root's monitor to look at the database again, or start one."""
    if monitor_alive(root):
        with contextlib.suppress(OSError, ValueError):
            pid = int((root / PID_NAME).read_text())
            os.kill(pid, signal.SIGUSR1)
            return
    spawn_monitor(root, runtime_root)


def spawn_monitor(root: Path, runtime_root: Path) -> None:
    """Start ``python -m corral.engine.monitor ROOT RUNTIME_ROOT`` in its own session, stdio
    on /dev/null, nobody's child (a monitor already there makes it exit at once)."""
    first = os.fork()
    if first == 0:  # pragma: no cover - the forked side
        try:
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            null = os.open("/dev/null", os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.chdir("/")
            src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
            # Our own import path too: its helpers tear down networks with pyroute2, which
            # lives in site-packages, and -S means no site to find it.
            path = [src, *(p for p in sys.path if p and p != src and os.path.isdir(p))]
            env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                   "PYTHONPATH": os.pathsep.join(path)}  # fmt: skip
            for key in ("CORRAL_DEBUG", "CORRAL_MONITOR_LINGER"):
                if key in os.environ:
                    env[key] = os.environ[key]
            # -S: no site (the monitor itself needs the standard library and corral only).
            argv = [sys.executable, "-S", "-m", "corral.engine.monitor", str(root),
                    str(runtime_root)]  # fmt: skip
            os.execve(sys.executable, argv, env)
        finally:
            os._exit(127)
    os.waitpid(first, 0)
