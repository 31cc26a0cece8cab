"""Foreground terminal: ``corral-runc run`` of a container with ``process.terminal``.

Without ``--console-socket`` and without ``-d`` the runtime itself sits between the user's
terminal and the container's pty, as runc does: our stdin goes to the pty master, the master's
output to our stdout, and our terminal is in raw mode meanwhile so keys pass through untouched.
The pty gets our terminal's size at once and again on every SIGWINCH (a resized window):
setting a pty's size is what makes the kernel send SIGWINCH to the program inside.
"""

from __future__ import annotations

import os
import select

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def proxy(master: int, pid: int) -> None:
    """Copy bytes both ways until the container's init exits."""
    import _signal

    saved = _raw(0)
    copy_size(0, master)
    previous = _signal.signal(_signal.SIGWINCH, lambda _n, _f: copy_size(0, master))
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    poller.register(master, select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    stdin_open = _readable(0)
    if stdin_open:
        poller.register(0, select.POLLIN)
    try:
        while True:
            events = dict(poller.poll())
            if master in events:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the slave side is closed
                    data = b""
                if data:
                    _write_all(1, data)
                elif pidfd not in events:
                    poller.unregister(master)
            if stdin_open and 0 in events:
                data = os.read(0, 65536)
                if data:
                    _write_all(master, data)
                else:
                    poller.unregister(0)
                    stdin_open = False
            if pidfd in events:
                _drain(master)
                return
    finally:
        if previous is not None:
            _signal.signal(_signal.SIGWINCH, previous)
        os.close(pidfd)
        os.close(master)
        if saved is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, saved)


def terminal_size() -> tuple[int, int] | None:
    """(rows, columns) of our terminal (stdin's, else stdout's); None without one. A
    foreground exec with a terminal puts it in ``process.consoleSize``, so the pty has it
    before the program's first instruction (copy_size after the start would race with it)."""
    import fcntl
    import struct
    import termios

    for fd in (0, 1):
        try:
            rows, cols, _, _ = struct.unpack(
                "HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
            )
        except OSError:
            continue
        if rows and cols:
            return rows, cols
    return None


def copy_size(terminal: int, pty: int) -> None:
    """Give ``pty`` the window size of ``terminal`` (nothing if ``terminal`` is not one)."""
    import fcntl
    import termios

    try:
        size = fcntl.ioctl(terminal, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(pty, termios.TIOCSWINSZ, size)
    except OSError:
        pass


def _drain(master: int) -> None:
    os.set_blocking(master, False)
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            return
        if not data:
            return
        _write_all(1, data)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _readable(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def _raw(fd: int) -> list[Any] | None:
    """Put a terminal in raw mode; return the old settings (None if fd is not a terminal)."""
    if not os.isatty(fd):
        return None
    import termios
    import tty

    saved: list[Any] = termios.tcgetattr(fd)
    tty.setraw(fd)
    return saved
