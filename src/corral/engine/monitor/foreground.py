"""A foreground ``corral run``: the command itself is the container's parent and logger.

The container's stdio are three pipes (corral.runtime.stdio.Pipes, as ``corral-runc run``);
one ``poll`` loop copies our stdin into the first (with ``-i``; else the container reads
EOF at once) and the other two to our stdout and stderr *and* to the json-file log, so that
``logs`` shows a foreground run as it shows a detached one. Signals we get go to the
container (lifecycle.forward_signals). When the init exits, what its pipes still hold is
passed on, and its exit code returned.
"""

from __future__ import annotations

import os
import select

from corral.engine.monitor.logfile import LogWriter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from corral.engine.monitor.config import MonitorConfig
    from corral.runtime.state import StateStore


def run_logged(
    store: StateStore,
    container_id: str,
    bundle: str,
    log_path: str,
    config: MonitorConfig,
    interactive: bool,
    started: Callable[[int], None],
) -> int:
    """Create, start and wait for the container; its exit code (128+N if killed by N)."""
    import gc

    from corral.runtime import control, lifecycle
    from corral.runtime.stdio import Pipes

    pipes = Pipes(3)
    opts = lifecycle.CreateOptions()
    opts.detach = False
    opts.stdio = pipes.inner
    gc.freeze()  # the runtime forks the init, which runs Python: see netns.create
    try:
        created = lifecycle.create(store, container_id, bundle, opts)
    except BaseException:
        pipes.close()
        raise
    finally:
        pipes.handed_over()
    pid = created.container.pid
    handlers = lifecycle.forward_signals(pid)
    try:
        try:
            control.start(store, container_id)
            started(pid)
        except BaseException:
            pipes.close()
            control.delete(store, container_id, force=True)
            raise
        writer = LogWriter(log_path, config.log_max_size, config.log_max_file)
        try:
            _copy(pipes.ours, pid, writer, interactive)
        finally:
            writer.close()
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except ChildProcessError:
                return 255
        code = os.waitstatus_to_exitcode(status)
        return 128 - code if code < 0 else code
    finally:
        lifecycle.restore_signals(handlers)


def _copy(ours: tuple[int, int, int], pid: int, writer: LogWriter, interactive: bool) -> None:
    in_w, out_r, err_r = ours
    streams = {out_r: (1, "stdout"), err_r: (2, "stderr")}
    stdin_open = interactive
    if not interactive:
        os.close(in_w)
    pidfd = os.pidfd_open(pid)
    try:
        while True:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            for fd in streams:
                poller.register(fd, select.POLLIN)
            if stdin_open:
                poller.register(0, select.POLLIN)
            exited = False
            for fd, _event in poller.poll():
                if fd == pidfd:
                    exited = True
                elif fd == 0:
                    data = _read(0)
                    if not data or not _write_all(in_w, data):
                        stdin_open = False
                        os.close(in_w)
                elif fd in streams:
                    data = _read(fd)
                    if not data:
                        del streams[fd]
                        os.close(fd)
                        continue
                    target, name = streams[fd]
                    _write_all(target, data)
                    writer.write(name, data)
            if exited:
                break
        for fd, (target, name) in streams.items():  # what the pipes still hold
            os.set_blocking(fd, False)
            while data := _read(fd):
                _write_all(target, data)
                writer.write(name, data)
            os.close(fd)
    finally:
        os.close(pidfd)
        if stdin_open:
            os.close(in_w)


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 1 << 16)
    except (BlockingIOError, OSError):
        return b""


def _write_all(fd: int, data: bytes) -> bool:
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError:  # our reader went away: the output still goes to the log
        return False
    return True
