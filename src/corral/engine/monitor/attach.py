"""Attaching to a running container: the socket the monitor serves, and the client's side.

docker's ``attach``, ``run -it`` and ``start -ai`` connect a terminal to a container that
lives on without them; conmon serves podman's through a unix socket in the container's
directory, and so does corral's monitor (corral.engine.monitor.server)::

    corral attach ── <container>/attach (SOCK_SEQPACKET) ── monitor ── pty master (-t)
       raw mode                                             │          or stdout/stderr pipes
       SIGWINCH -> "w" + winsize                            └── json-file log (always)

Every message is one packet whose first byte says what it is:

- client to monitor: ``0`` + bytes typed (written to the pty; only for ``-i`` containers),
  ``w`` + a ``struct winsize`` (the pty gets that size; the kernel tells the program);
- monitor to client: ``1`` + output (with ``-t`` all output is the pty's, logged as stdout),
  ``2`` + stderr (containers without a terminal).

The monitor reads the container's output whether or not anyone is attached, so ``logs`` has
all of it and a slow client holds nobody back (one that lets 1 MiB pile up is dropped).
When the container's init exits the monitor closes the socket: the client has had all the
output and goes to fetch the exit code.

The client (``Session``) puts our terminal in raw mode while it is attached with stdin (keys
pass through untouched: ctrl-c reaches the program as a byte, and its pty turns it into
SIGINT), passes on the window size at once and on every SIGWINCH, and watches stdin for the
detach keys (ctrl-p ctrl-q unless ``--detach-keys`` says otherwise): those detach it and
leave the container running. A prefix of them followed by another key is passed on, as
docker does. Without a terminal, signals we get are passed to the container (docker's
``--sig-proxy``, on by default; with a terminal docker leaves them alone, and so do we).

The address is ``/proc/self/fd/<dirfd>/attach``, through an fd of the container's directory:
a unix socket's path may not exceed 107 bytes, and a root deep in the filesystem plus a
64-character id can.
"""

from __future__ import annotations

import contextlib
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

SOCKET_NAME = "attach"
STDIN, RESIZE, STDOUT, STDERR = b"0", b"w", b"1", b"2"
#: The monitor's first message to a client it has accepted: from then on the container's
#: output reaches it. ``run -t``/``start -a`` wait for it before starting the container, so
#: a program that prints and exits at once is not over before its client is listed.
HELLO = b"h"
#: The largest message a client sends (a read of stdin plus its kind byte).
MAX_MESSAGE = (1 << 16) + 1
DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"
#: Signals the client handles: passed on (no terminal, --sig-proxy) or ending it (terminal).
_SIGNALS = ("SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGALRM")


def seqpacket() -> Any:
    """A close-on-exec, non-blocking SOCK_SEQPACKET unix socket."""
    import _socket

    kind = _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC | _socket.SOCK_NONBLOCK
    return _socket.socket(_socket.AF_UNIX, kind)


def address(dirfd: int) -> str:
    """The attach socket's address, through an fd of the container's directory."""
    return f"/proc/self/fd/{dirfd}/{SOCKET_NAME}"


def parse_detach_keys(text: str | None) -> bytes:
    """docker's ``--detach-keys``: comma-separated keys, each one character or
    ``ctrl-<a-z @ [ \\ ] ^ _>``; empty or None: ctrl-p,ctrl-q."""
    from corral.errors import UsageError

    spec = text if text else DEFAULT_DETACH_KEYS
    keys = bytearray()
    for key in spec.split(","):
        if len(key) == 1:
            keys.append(ord(key))
        elif key.lower().startswith("ctrl-") and len(key) == 6:
            char = key[5].lower()
            if "a" <= char <= "z":
                keys.append(ord(char) - ord("a") + 1)
            elif char in "@[\\]^_":
                keys.append(ord(char) - ord("@"))
            else:
                raise UsageError(f"--detach-keys {text!r}: unknown key {key!r}")
        else:
            raise UsageError(f"--detach-keys {text!r}: unknown key {key!r} (e.g. ctrl-p,ctrl-q)")
    return bytes(keys)


def connect(directory: str, timeout: float, alive: Callable[[], bool]) -> int:
    """Connect to the container's attach socket (the monitor may still be adopting it:
    retry until ``timeout`` while ``alive()``); the connected socket's fd."""
    import time

    from corral.errors import StateError

    deadline = time.monotonic() + timeout
    dirfd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        while True:
            sock = seqpacket()
            try:
                sock.setblocking(True)
                sock.connect(address(dirfd))
                return int(sock.detach())
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
            if not alive():
                raise StateError("You cannot attach to a stopped container, start it first")
            if time.monotonic() >= deadline:
                raise StateError(f"cannot attach: no monitor serves {directory}/{SOCKET_NAME}")
            time.sleep(0.01)
    finally:
        os.close(dirfd)


def wait_hello(sock: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for the monitor's HELLO on ``sock`` (it accepted us)."""
    import select

    poller = select.poll()
    poller.register(sock, select.POLLIN)
    if not poller.poll(int(timeout * 1000)):
        return False
    try:
        return os.read(sock, 1 << 17)[:1] == HELLO
    except OSError:
        return False


class Session:
    """One attached client: our stdin/stdout/stderr to the container and back."""

    def __init__(
        self,
        sock: int,
        *,
        stdin: bool,
        tty: bool,
        detach_keys: bytes,
        forward: Callable[[int], None] | None,
    ) -> None:
        self.sock = sock
        self.stdin = stdin
        self.tty = tty
        self.keys = detach_keys
        self.matched = b""  # a prefix of the detach keys, held back
        self.forward = forward if not tty else None
        self.terminal = next((fd for fd in (0, 1) if os.isatty(fd)), -1) if tty else -1

    def send_size(self) -> None:
        """Give the container's pty our window's size (nothing without a terminal)."""
        if self.terminal < 0:
            return
        import fcntl
        import termios

        try:
            size = fcntl.ioctl(self.terminal, termios.TIOCGWINSZ, b"\0" * 8)
            os.write(self.sock, RESIZE + size)
        except OSError:
            pass

    def run(self) -> int | None:
        """Copy until the monitor closes the connection (None: the container's output has
        ended, or the monitor is gone) or we detach (0) or a signal ends us (128+N)."""
        import select
        import signal

        raw = self._raw() if self.stdin and self.tty else None
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        got: list[int] = []
        handled = [signal.SIGWINCH, *(getattr(signal, name) for name in _SIGNALS)]
        previous = {sig: signal.signal(sig, lambda n, _f: got.append(n)) for sig in handled}
        old_wakeup = signal.set_wakeup_fd(wake_w)
        stdin_open = self.stdin
        try:
            self.send_size()
            while True:
                poller = select.poll()
                poller.register(self.sock, select.POLLIN)
                poller.register(wake_r, select.POLLIN)
                if stdin_open:
                    poller.register(0, select.POLLIN)
                events = dict(poller.poll())
                if wake_r in events:
                    with contextlib.suppress(BlockingIOError):
                        while os.read(wake_r, 64):
                            pass
                while got:
                    code = self._signal(got.pop(0))
                    if code is not None:
                        return code
                if self.sock in events:
                    try:
                        message = os.read(self.sock, 1 << 17)
                    except OSError:
                        message = b""
                    if not message:
                        return None
                    if message[:1] in (STDOUT, STDERR):
                        _write_all(2 if message[:1] == STDERR else 1, message[1:])
                if stdin_open and 0 in events:
                    data = _read(0)
                    if not data:
                        stdin_open = False  # our stdin ended; the output goes on
                    elif self._typed(data):
                        return 0
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(wake_r)
            os.close(wake_w)
            if raw is not None:
                import termios

                termios.tcsetattr(0, termios.TCSADRAIN, raw)

    def close(self) -> None:
        if self.sock >= 0:
            os.close(self.sock)
            self.sock = -1

    def _signal(self, signum: int) -> int | None:
        import signal

        if signum == signal.SIGWINCH:
            self.send_size()
            return None
        if self.forward is not None:
            self.forward(signum)
            return None
        return 128 + signum  # not passed on: it ends the client (the container runs on)

    def _typed(self, data: bytes) -> bool:
        """Send keys typed to the container, holding back what may be the detach keys;
        True when they have all been typed."""
        out = bytearray()
        for byte in data:
            if self.keys and byte == self.keys[len(self.matched)]:
                self.matched += bytes((byte,))
                if self.matched == self.keys:
                    self.matched = b""
                    if out:
                        self._send(bytes(out))
                    return True
                continue
            out += self.matched
            self.matched = b""
            if self.keys and byte == self.keys[0]:
                self.matched = bytes((byte,))
                continue
            out.append(byte)
        if out:
            self._send(bytes(out))
        return False

    def _send(self, data: bytes) -> None:
        for start in range(0, len(data), MAX_MESSAGE - 1):
            try:
                os.write(self.sock, STDIN + data[start : start + MAX_MESSAGE - 1])
            except OSError:
                return

    @staticmethod
    def _raw() -> list[Any] | None:
        if not os.isatty(0):
            return None
        import termios
        import tty

        saved: list[Any] = termios.tcgetattr(0)
        tty.setraw(0)
        return saved


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 1 << 16)
    except OSError:
        return b""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError:
        pass
