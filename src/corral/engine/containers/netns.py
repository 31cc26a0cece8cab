"""A container's network namespace, made by the engine and kept as a file (as CNI does).

For now every container gets a private namespace with only loopback, up (docker's
``--network none``); bridge networking will plug veths into the same file-backed namespace.
The namespace is made in a forked child (the engine never unshares itself, see DESIGN.md),
which brings ``lo`` up and bind-mounts its ``/proc/self/ns/net`` on ``path``; the runtime then
joins it through ``linux.namespaces[].path``. ``remove`` unmounts the file, which frees the
namespace once no process is left in it.
"""

from __future__ import annotations

import contextlib
import gc
import os

from corral.errors import KernelError

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def loopback_up() -> None:
    """Set ``lo`` up in the calling process's network namespace.

    Through ``_socket``, not ``socket``: this runs in ``create``'s child, on the way to every
    container's start, and ``socket`` (its enums) costs ~3 ms to import there."""
    import _socket
    import fcntl
    import sys

    def ifreq(flags: int) -> bytes:  # struct ifreq: the name, then ifr_flags (a short)
        return b"lo".ljust(16, b"\0") + flags.to_bytes(2, sys.byteorder) + bytes(22)

    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        reply = fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, ifreq(0))
        flags = int.from_bytes(reply[16:18], sys.byteorder)
        fcntl.ioctl(sock.fileno(), _SIOCSIFFLAGS, ifreq(flags | _IFF_UP))
    finally:
        sock.close()


def create(path: str) -> None:
    """A new network namespace with loopback up, bind-mounted on the (new) file ``path``."""
    # _socket for loopback_up, loaded before the fork (the runtime needs it anyway): the child
    # does not dlopen it on the way to the container's start.
    import _socket  # noqa: F401

    from corral import sys as csys

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    os.close(fd)
    read, write = os.pipe()
    # The child's allocations can start a full collection, which writes to every object of
    # ours (copy on write of the whole heap: ~4 ms per child on a container's start); frozen,
    # they are not scanned there (gc.freeze's documented use before fork). Frozen objects are
    # never collected: this process's start-up objects, which live on anyway.
    gc.freeze()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            os.close(read)
            csys.unshare(csys.CLONE_NEWNET)
            loopback_up()
            csys.mount("/proc/self/ns/net", path, None, csys.MS_BIND, None)
        except BaseException as err:  # reported to the parent, one line
            with contextlib.suppress(OSError):
                os.write(write, str(err).encode()[:4000])
            code = 1
        os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        message = f.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if status != 0:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise KernelError("netns", 0, message or f"child status {status:#x}", path)


def remove(path: str) -> None:
    """Unmount and delete the namespace file (nothing to do if it is not there)."""
    from corral import sys as csys

    if not os.path.exists(path):
        return
    with contextlib.suppress(OSError, KernelError):
        csys.umount2(path, csys.MNT_DETACH)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
