"""A --console-socket server, as go-runc's NewTempConsoleSocket runs one, and pty reading."""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from pathlib import Path


class ConsoleSocket:
    """The unix socket server go-runc's NewTempConsoleSocket runs: receives the pty master."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen(1)
        self.master: int | None = None
        self.name = b""
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        try:
            self.server.settimeout(20)
            conn, _ = self.server.accept()
            with conn:
                msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
                self.name = msg
                self.master = fds[0] if fds else None
        except BaseException as err:  # handed to the test thread
            self.error = err

    def wait_master(self) -> int:
        self.thread.join(20)
        if self.error is not None:
            raise self.error
        assert self.master is not None, "no file descriptor came over the console socket"
        return self.master

    def close(self) -> None:
        self.server.close()
        if self.master is not None:
            os.close(self.master)


def read_until(fd: int, needle: bytes, timeout: float = 10.0) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf:
        left = deadline - time.monotonic()
        assert left > 0, f"{needle!r} never came; got {buf!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the pty's other side closed
                chunk = b""
            if not chunk:
                break
            buf += chunk
    assert needle in buf, f"{needle!r} never came; got {buf!r}"
    return buf
