"""Reading a container's log as ``logs [--tail N] [-f] [-t] [--since T] [--until T]`` shows
it (pure file work).

The log is docker's json-file (corral.engine.monitor.logfile writes it): one
``{"log", "stream", "time"}`` object per line, in ``container.log`` and, once rotated,
``container.log.1`` (older), ``.2``... :func:`read_entries` yields them oldest first as
:class:`Entry` (stream, time, bytes); ``--tail N`` reads only the last N lines of the files,
backwards in blocks (:func:`tail_offset`); ``--follow`` goes on reading the live file, starting
over when it is rotated, until the container stops.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import BinaryIO

_BLOCK = 1 << 16
_FOLLOW_POLL = 0.1


def tail_offset(f: BinaryIO, lines: int) -> int:
    """Where the last ``lines`` lines of ``f`` start (0 when it has fewer), reading backwards
    from its end in blocks, so a long log costs only what is shown."""
    end = f.seek(0, os.SEEK_END)
    if lines <= 0:
        return end
    position = end
    seen = 0
    while position > 0:
        start = max(position - _BLOCK, 0)
        f.seek(start)
        block = f.read(position - start)
        index = len(block)
        while (index := block.rfind(b"\n", 0, index)) >= 0:
            if start + index == end - 1:
                continue  # the newline that ends the last line
            seen += 1
            if seen == lines:
                return start + index + 1
        position = start
    return 0


def read_log(
    path: str, tail: int | None = None, follow: Callable[[], bool] | None = None
) -> Iterator[bytes]:
    """The log's bytes: all, or its last ``tail`` lines; with ``follow`` (a "still running?"
    check) also what is written later, until the check says no and the file is read out."""
    try:
        f = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        return
    with f:
        if tail is not None:
            f.seek(tail_offset(f, tail))
        while True:
            while chunk := f.read(_BLOCK):
                yield chunk
            if follow is None:
                return
            if not follow():
                while chunk := f.read(_BLOCK):  # written before the program ended
                    yield chunk
                return
            time.sleep(_FOLLOW_POLL)


class Entry:
    """One log line: ``stream`` (stdout | stderr), ``time`` (RFC 3339, nanoseconds), ``data``."""

    __slots__ = ("data", "stream", "time")

    def __init__(self, stream: str, time_: str, data: bytes) -> None:
        self.stream = stream
        self.time = time_
        self.data = data

    def __repr__(self) -> str:
        return f"Entry({self.stream!r}, {self.time!r}, {self.data!r})"


def parse_line(line: bytes) -> Entry | None:
    import json

    try:
        obj = json.loads(line)
        return Entry(str(obj["stream"]), str(obj["time"]), str(obj["log"]).encode())
    except (ValueError, KeyError, TypeError):
        return None  # a line cut short (the disk filled up) or not ours


def log_files(path: str) -> list[str]:
    """The log's files, oldest first: ``path.N`` ... ``path.1``, ``path``."""
    out = [path]
    index = 1
    while os.path.exists(f"{path}.{index}"):
        out.insert(0, f"{path}.{index}")
        index += 1
    return out


def _lines(path: str, tail: int | None) -> tuple[list[bytes], int]:
    """The lines of one file (its last ``tail``), and the file's size when read."""
    try:
        f = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        return [], 0
    with f:
        end = f.seek(0, os.SEEK_END)
        f.seek(0 if tail is None else tail_offset(f, tail))
        data = f.read(end - f.tell())
    return data.splitlines(), end


def read_entries(
    path: str,
    *,
    tail: int | None = None,
    since: str | None = None,
    until: str | None = None,
    follow: Callable[[], bool] | None = None,
) -> Iterator[Entry]:
    """The log's entries (see the module's docstring); ``since``/``until`` are RFC 3339 times
    in the log's own form (UTC, nanoseconds: :func:`corral.engine.monitor.logfile.timestamp`)."""
    chunks: list[list[bytes]] = []
    left = tail
    size = 0
    files = log_files(path)
    for name in reversed(files):
        lines, end = _lines(name, left)
        if name == path:
            size = end
        chunks.insert(0, lines)
        if left is not None:
            left -= len(lines)
            if left <= 0:
                break

    def wanted(entry: Entry) -> bool:
        return (since is None or entry.time >= since) and (until is None or entry.time < until)

    for lines in chunks:
        for line in lines:
            entry = parse_line(line)
            if entry is not None and wanted(entry):
                yield entry
    if follow is None:
        return
    yield from _follow(path, size, follow, wanted)


def _follow(
    path: str, offset: int, running: Callable[[], bool], wanted: Callable[[Entry], bool]
) -> Iterator[Entry]:
    pending = b""
    inode = _inode(path)
    while True:
        alive = running()
        current = _inode(path)
        if current != inode:  # rotated: the rest of the old file is in path.1
            for line in _rest(f"{path}.1", offset, pending):
                entry = parse_line(line)
                if entry is not None and wanted(entry):
                    yield entry
            inode, offset, pending = current, 0, b""
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            data = b""
        offset += len(data)
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            entry = parse_line(line)
            if entry is not None and wanted(entry):
                yield entry
        if not alive:
            return
        time.sleep(_FOLLOW_POLL)


def _rest(path: str, offset: int, pending: bytes) -> list[bytes]:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return (pending + f.read()).splitlines()
    except FileNotFoundError:
        return []


def _inode(path: str) -> int:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return 0
