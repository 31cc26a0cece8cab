"""Writing docker's json-file log: one JSON object per line, size rotation (pure file work).

::

    {"log":"hello\\n","stream":"stdout","time":"2024-05-01T10:00:00.123456789Z"}

Each stream keeps its partial line until its newline comes; a line longer than 16 KiB is
written in 16 KiB pieces without a newline (docker's partial messages), and what is left when
the container exits is written as it is. When the file would pass ``max_size`` it is renamed
``container.log.1`` (the older ones shift up, the oldest of ``max_file`` files goes).
``corral.engine.containers.logs`` reads it back.
"""

from __future__ import annotations

import json
import os
import time

PARTIAL = 16 * 1024


def timestamp(now: float | None = None) -> str:
    """RFC 3339 in UTC with nanoseconds, fixed width (so the strings sort as the times do)."""
    ns = time.time_ns() if now is None else int(now * 1e9)
    seconds, nanos = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


def rotated(path: str, index: int) -> str:
    return path if index == 0 else f"{path}.{index}"


class LogWriter:
    """The json-file log of one container: ``write(stream, data)`` as output arrives."""

    __slots__ = ("fd", "max_file", "max_size", "partial", "path", "size")

    def __init__(self, path: str, max_size: int = 0, max_file: int = 1) -> None:
        self.path = path
        self.max_size = max_size
        self.max_file = max(max_file, 1)
        self.partial: dict[str, bytes] = {"stdout": b"", "stderr": b""}
        self.fd = -1
        self.size = 0
        self._open()

    def _open(self) -> None:
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        self.size = os.fstat(self.fd).st_size

    def write(self, stream: str, data: bytes) -> None:
        """Log ``data`` read from ``stream`` ("stdout" or "stderr"): its whole lines now."""
        buf = self.partial[stream] + data
        lines: list[bytes] = []
        start = 0
        while (end := buf.find(b"\n", start)) >= 0:
            lines.append(buf[start : end + 1])
            start = end + 1
        rest = buf[start:]
        while len(rest) >= PARTIAL:
            lines.append(rest[:PARTIAL])
            rest = rest[PARTIAL:]
        self.partial[stream] = rest
        if lines:
            self._emit(stream, lines)

    def flush(self) -> None:
        """The container is gone: write the unterminated last lines as they are."""
        for stream, rest in self.partial.items():
            if rest:
                self._emit(stream, [rest])
                self.partial[stream] = b""

    def _emit(self, stream: str, lines: list[bytes]) -> None:
        now = timestamp()
        out = b"".join(
            json.dumps(
                {"log": line.decode("utf-8", "replace"), "stream": stream, "time": now},
                ensure_ascii=False,
                separators=(",", ":"),
            ).encode()
            + b"\n"
            for line in lines
        )
        if self.max_size and self.size and self.size + len(out) > self.max_size:
            self._rotate()
        view = memoryview(out)
        while view:
            view = view[os.write(self.fd, view) :]
        self.size += len(out)

    def _rotate(self) -> None:
        os.close(self.fd)
        if self.max_file > 1:
            for index in range(self.max_file - 1, 0, -1):
                try:
                    os.rename(rotated(self.path, index - 1), rotated(self.path, index))
                except FileNotFoundError:
                    pass
        else:
            os.truncate(self.path, 0)
        self._open()

    def close(self) -> None:
        self.flush()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
