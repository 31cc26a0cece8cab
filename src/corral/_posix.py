"""The few path helpers of ``os`` that the runtime's verbs need, on ``posix`` alone.

``os`` is the C module ``posix`` (already loaded when the interpreter starts) plus a Python
layer; importing that layer costs about 1 ms here, most of it ``os.environ``'s mapping class,
which imports ``_collections_abc`` and builds its ABCs. containerd runs ``corral-runc`` four
times per container and ``state``, ``start``, ``kill`` and ``delete`` need nothing from that
layer but these few helpers, so they call ``posix`` directly and take these from here.

``create`` takes the same road (issue 8: cheaper than runc's): the modules it loads
(corral.runtime.lifecycle, init, rootfs, trampoline, lsm, corral.sys, corral.spec.load and
validate, corral.plan.rootfs) call ``posix`` and these helpers too, so a bare ``create`` imports
neither ``os`` nor ``posixpath`` (which imports ``os``). ``exec`` and the optional parts of
``create`` (hooks, seccomp, terminals, rootless) still import ``os``.

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


def join(first: str, *rest: str) -> str:
    """Like ``os.path.join`` for str: a part that starts with ``/`` restarts the path."""
    path = first
    for part in rest:
        if part.startswith("/") or not path:
            path = part
        elif path.endswith("/"):
            path += part
        else:
            path += "/" + part
    return path


def normpath(path: str) -> str:
    """Like ``os.path.normpath`` for str: lexical, ``.`` and repeated slashes dropped, ``..``
    resolved against what precedes it (kept at the start of a relative path); ``//`` at the
    start is kept, as POSIX allows it a meaning of its own."""
    if not path:
        return "."
    initial = 2 if path.startswith("//") and not path.startswith("///") else int(
        path.startswith("/")
    )
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part != ".." or (not initial and not parts) or (parts and parts[-1] == ".."):
            parts.append(part)
        elif parts:
            parts.pop()
    return "/" * initial + "/".join(parts) or "."


def realpath(path: str) -> str:
    """Like ``os.path.realpath`` for a path that exists: every symlink resolved, by the kernel
    (the path of an ``O_PATH`` fd of it, read back from /proc/self/fd). Without /proc, or for a
    path that does not exist, it falls back to ``os.path.realpath``."""
    try:
        fd = posix.open(path, posix.O_PATH | posix.O_CLOEXEC)
    except (OSError, ValueError):
        fd = -1
    if fd >= 0:
        try:
            real = posix.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            real = ""
        finally:
            posix.close(fd)
        if real.startswith("/") and not real.endswith(" (deleted)"):
            return real
    import posixpath

    return posixpath.realpath(path)


def makedirs(path: str, mode: int = 0o777) -> None:
    """Like ``os.makedirs(path, mode, exist_ok=True)``: missing parents are made with the
    default mode (0o777 less the umask), ``mode`` applies to ``path`` itself."""
    try:
        posix.mkdir(path, mode)
    except FileNotFoundError:
        parent = path.rstrip("/").rpartition("/")[0]
        if not parent or parent == path:
            raise
        makedirs(parent)
        try:
            posix.mkdir(path, mode)
        except FileExistsError:
            if not isdir(path):
                raise
    except FileExistsError:
        if not isdir(path):
            raise


def fsencode(path: "str | bytes") -> bytes:
    """Like ``os.fsencode`` (the file system's encoding is UTF-8 on Linux)."""
    return path if isinstance(path, bytes) else path.encode("utf-8", "surrogateescape")


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
