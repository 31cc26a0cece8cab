"""The few path helpers of ``os`` that the runtime's verbs need, on ``posix`` alone.

``os`` is the C module ``posix`` (already loaded when the interpreter starts) plus a Python
layer; importing that layer costs about 1 ms here, most of it ``os.environ``'s mapping class,
which imports ``_collections_abc`` and builds its ABCs. containerd runs ``corral-runc`` four
times per container and ``state``, ``start``, ``kill`` and ``delete`` need nothing from that
layer but these few helpers, so they call ``posix`` directly and take these from here.

``create``, ``run`` and ``exec`` import ``os``: they spend milliseconds building a container,
and readability wins there.

This module is on the runtime's start-up path: it imports ``posix`` and nothing else (not
even ``__future__``: its first import costs 0.2 ms).
"""

import posix

_S_IFMT = 0o170000
_S_IFDIR = 0o040000
_S_IFREG = 0o100000
_S_IFIFO = 0o010000


def exists(path: str) -> bool:
    """Like ``os.path.exists``."""
    try:
        posix.stat(path)
    except (OSError, ValueError):
        return False
    return True


def isdir(path: str) -> bool:
    """Like ``os.path.isdir``."""
    try:
        return posix.stat(path).st_mode & _S_IFMT == _S_IFDIR
    except (OSError, ValueError):
        return False


def isfile(path: str) -> bool:
    """Like ``os.path.isfile``."""
    try:
        return posix.stat(path).st_mode & _S_IFMT == _S_IFREG
    except (OSError, ValueError):
        return False


def is_fifo(mode: int) -> bool:
    """Like ``stat.S_ISFIFO``."""
    return mode & _S_IFMT == _S_IFIFO


def abspath(path: str) -> str:
    """Like ``os.path.abspath``: joined to the working directory, ``.`` and ``..`` resolved
    lexically (no symlinks followed), repeated and trailing slashes dropped."""
    if not path.startswith("/"):
        path = posix.getcwd() + "/" + path
    parts: list[str] = []
    for part in path.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part and part != ".":
            parts.append(part)
    return "/" + "/".join(parts)


def subdirs_bottom_up(top: str) -> list[str]:
    """``top`` and every directory under it (not following symlinks), deepest first: the
    order in which ``rmdir`` can remove them. Empty when ``top`` does not exist."""
    found: list[str] = []
    try:
        entries = posix.scandir(top)
    except (FileNotFoundError, NotADirectoryError):
        return found
    with entries:
        children = [e.path for e in entries if e.is_dir(follow_symlinks=False)]
    for child in children:
        found += subdirs_bottom_up(child)
    found.append(top)
    return found
