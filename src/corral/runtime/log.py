"""The runtime's log: ``--log FILE`` and ``--log-format text|json``, as runc writes them.

containerd reads the log file after a failed call and shows the last ``"level":"error"`` line
to its user, so every error is written there as one JSON object per line::

    {"level":"error","msg":"container with id exists: web","time":"2026-11-23T11:02:03Z"}

Without ``--log``, errors go to stderr as the bare message and warnings as text lines.
"""

import posix
import sys
import time

_path: str | None = None
_format = "text"
_debug = False


def configure(path: str | None, fmt: str = "text", debug: bool = False) -> None:
    global _path, _format, _debug
    _path, _format, _debug = path, fmt, debug


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _line(level: str, msg: str) -> str:
    from corral import _json

    if _format == "json":
        return _json.dumps({"level": level, "msg": msg, "time": _now()}) + "\n"
    return f'time="{_now()}" level={level} msg={_json.dumps(msg)}\n'


def _write(level: str, msg: str) -> bool:
    """Append to the log file; False when there is none (or it cannot be written)."""
    if not _path:
        return False
    try:
        flags = posix.O_WRONLY | posix.O_APPEND | posix.O_CREAT | posix.O_CLOEXEC
        fd = posix.open(_path, flags, 0o644)
    except OSError:
        return False
    try:
        posix.write(fd, _line(level, msg).encode())
    finally:
        posix.close(fd)
    return True


def error(msg: str) -> None:
    """An error: always the bare one-line message on stderr, and the log file if there is one."""
    _write("error", msg)
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def warning(msg: str) -> None:
    if not _write("warning", msg):
        sys.stderr.write(_line("warning", msg))


def debug(msg: str) -> None:
    if _debug and not _write("debug", msg):
        sys.stderr.write(_line("debug", msg))
