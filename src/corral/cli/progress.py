"""Pull and push progress on stderr, drawn from the engine's events (``distribution.events``).

On a terminal, one bar per blob, redrawn in place (cursor up over the rows, each line cleared)::

    Copying blob 4a6d1c0f0e2b: downloading  [=========>                    ] 1.2MB/3.6MB

at most every 0.1 s while bytes move, at once when a blob changes phase; the other lines
(``Pulling ...``) are printed above the bars. Off a terminal (a log, a pipe), one line per blob
when it is finished, and no escape sequences::

    Copying blob 4a6d1c0f0e2b: done (3.6MB)

The engine calls this from its worker threads, so every event is handled under a lock.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TextIO

from corral.engine.distribution.events import (
    BlobProgress,
    ManifestWritten,
    ProgressEvent,
    Pulling,
    Pushing,
    Resolved,
)
from corral.engine.format import human_size
from corral.engine.images.digest import short_id

BAR_WIDTH = 30
REDRAW_EVERY = 0.1  # seconds, while bytes move


@dataclass
class _Row:
    label: str
    done: int
    total: int
    status: str


class Progress:
    """The ``progress`` callback of ``pull`` and ``push`` for the corral CLI."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self._rows: dict[str, _Row] = {}  # by digest, in the order first seen
        self._lock = threading.Lock()
        self._drawn = 0
        self._last = 0.0

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            if isinstance(event, BlobProgress):
                self._blob(event)
            elif isinstance(event, Resolved):
                self._line(f"Resolved {event.reference} to {event.platform}: {event.digest}")
            elif isinstance(event, Pulling):
                self._line(f"Pulling {event.reference} ({event.digest})")
            elif isinstance(event, Pushing):
                self._line(f"Pushing {event.reference}")
            elif isinstance(event, ManifestWritten):
                self._line(f"Writing manifest to image destination: {event.digest}")

    def _blob(self, event: BlobProgress) -> None:
        row = self._rows.get(event.digest)
        if row is None:
            noun = "config" if event.kind == "config" else "blob"
            row = self._rows[event.digest] = _Row(
                f"Copying {noun} {short_id(event.digest)}", 0, event.total, "waiting"
            )
        if event.phase == "waiting":
            return
        if event.phase == "exists":
            self._set(row, event.total, "exists")
            self._finish(row, "already exists")
        elif event.phase == "mounted":
            self._set(row, event.total, "mounted")
            self._finish(row, f"mounted from {event.source}")
        elif event.phase == "done":
            self._finish(row, "done")
        elif event.phase == "resuming" or event.done <= row.done:  # a transfer (re)starts
            self._set(row, event.done, event.phase)
        else:  # bytes moved: redraw now and then
            row.done, row.status = event.done, event.phase
            now = time.monotonic()
            if self.tty and now - self._last > REDRAW_EVERY:
                self._last = now
                self._draw()

    def _set(self, row: _Row, done: int, status: str) -> None:
        row.done, row.status = done, status
        if self.tty:
            self._draw()

    def _finish(self, row: _Row, status: str) -> None:
        row.status = status
        if self.tty:
            self._draw()
        else:
            size = f" ({human_size(max(row.done, row.total))})" if row.total else ""
            self.out.write(f"{row.label}: {status}{size}\n")
            self.out.flush()

    def _line(self, text: str) -> None:
        if self.tty:
            self._drawn = 0  # printed lines stay above the bars
        self.out.write(text + "\n")
        self.out.flush()

    def _draw(self) -> None:
        out = [f"\x1b[{self._drawn}A"] if self._drawn else []
        for row in self._rows.values():
            done, total = row.done, row.total
            filled = BAR_WIDTH * done // total if total else BAR_WIDTH
            bar = "[" + "=" * filled + (">" if filled < BAR_WIDTH else "")
            bar = (bar + " " * (BAR_WIDTH - filled))[: BAR_WIDTH + 1] + "]"
            amount = f"{human_size(done)}/{human_size(total)}" if total else ""
            out.append(f"\x1b[2K{row.label}: {row.status:<12} {bar} {amount}\n")
        self.out.write("".join(out))
        self.out.flush()
        self._drawn = len(self._rows)
