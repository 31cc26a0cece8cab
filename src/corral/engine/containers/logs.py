"""Reading a container's log file as ``logs [--tail N] [-f]`` shows it (pure file work).

The log holds the program's raw output (stdout and stderr together) until the monitor writes
docker's json-file format; a line is what ends with a newline, and an unterminated last line
counts as one.
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
