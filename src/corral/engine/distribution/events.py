"""Progress of a pull or push, as typed events for the caller to show (or not).

The engine never writes to the terminal: ``pull`` and ``push`` take a ``progress`` callback and
call it with these events; the CLI draws them (``corral.cli.progress``: bars on a terminal, a
line per finished blob otherwise), a future API socket would send them as docker's JSON stream.

A pull or push reports, in this order::

    Resolved            an index was resolved to this platform's manifest (pull only)
    Pulling | Pushing   the image being moved
    BlobProgress x N    every blob first as "waiting" (a pull: all of them, in manifest order,
                        before any transfer; a push: as a worker takes it up); then, per blob:
                          exists | mounted                   nothing to transfer; or
                          resuming? downloading* | uploading*  bytes moving (``done`` grows)
                          done
    ManifestWritten     the manifest is in place: the image is there

Blob events come from the worker threads, several blobs at once: the callback must be
thread-safe, and quick (it runs between reads of the download).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Phase = Literal["waiting", "exists", "mounted", "resuming", "downloading", "uploading", "done"]


@dataclass(frozen=True)
class Resolved:
    reference: str
    platform: str  # "linux/arm64/v8"
    digest: str  # of the platform's manifest


@dataclass(frozen=True)
class Pulling:
    reference: str
    digest: str  # of the manifest


@dataclass(frozen=True)
class Pushing:
    reference: str


@dataclass(frozen=True)
class BlobProgress:
    """Where one blob stands: ``done`` of ``total`` bytes are in place."""

    digest: str
    kind: Literal["config", "layer"]
    phase: Phase
    done: int
    total: int
    source: str = ""  # "mounted": the repository it was mounted from


@dataclass(frozen=True)
class ManifestWritten:
    digest: str


ProgressEvent = Resolved | Pulling | Pushing | BlobProgress | ManifestWritten
ProgressCallback = Callable[[ProgressEvent], None]


def ignore(event: ProgressEvent) -> None:
    """The callback of a caller that does not watch."""
