"""The content store: blobs named by their digest, checked while they are written.

A blob's name is a promise about its bytes, so it is never trusted: a ``BlobWriter`` streams
into a temporary file in ``<root>/tmp`` (the same filesystem as ``blobs/``), hashes every chunk
as it goes, and only when the writer is committed and the digest matches does it ``fsync`` and
``rename`` the file to ``blobs/sha256/<hex>``. A mismatch, a short write or an exception leaves
nothing behind. Readers therefore never see a partial or a wrong blob under a digest's name.

::

    with store.writer(expected="sha256:ab...", size=1234) as w:
        for chunk in download():
            w.write(chunk)
        digest = w.commit()         # raises DigestMismatch, removes the temp file
"""

from __future__ import annotations

import os
from pathlib import Path

from corral.engine.images.digest import DigestError, check_digest, hex_of
from corral.errors import NotFoundError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~2 ms of every engine command's start
    from types import TracebackType
    from typing import BinaryIO, Protocol

    class Readable(Protocol):
        def read(self, size: int = ..., /) -> bytes: ...


CHUNK = 1 << 20


class DigestMismatch(DigestError):
    """Content did not hash to the digest it was announced with."""


class BlobWriter:
    """Write one blob: hash as you go, verify on ``commit()``, rename into place atomically."""

    def __init__(
        self,
        store: ContentStore,
        expected: str | None = None,
        size: int | None = None,
        what: str = "blob",
    ) -> None:
        if expected is not None:
            check_digest(expected, what)
        self.store = store
        self.expected = expected
        self.expected_size = size
        self.what = what
        self.size = 0
        self.digest: str | None = None
        import hashlib  # imported by the writers and readers only: ``corral images`` needs
        import tempfile  # neither (OpenSSL and tempfile's imports: ~4 ms)

        self._hash = hashlib.sha256()
        fd, name = tempfile.mkstemp(prefix="blob-", dir=store.tmp)
        self._path = Path(name)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> int:
        if self._file is None:
            raise ValueError("blob writer is closed")
        self._hash.update(data)
        self.size += len(data)
        if self.expected_size is not None and self.size > self.expected_size:
            self.abort()
            raise DigestMismatch(f"{self.what}: more than the {self.expected_size} bytes announced")
        self._file.write(data)
        return len(data)

    def copy_from(self, source: Readable) -> None:
        """Write everything ``source`` yields."""
        while chunk := source.read(CHUNK):
            self.write(chunk)

    def commit(self) -> str:
        """Check size and digest; if they match, move the blob into the store and return its digest.

        Committing content the store already has is fine (the temporary copy is dropped).
        """
        if self._file is None:
            raise ValueError("blob writer is closed")
        digest = f"sha256:{self._hash.hexdigest()}"
        if self.expected_size is not None and self.size != self.expected_size:
            self.abort()
            raise DigestMismatch(
                f"{self.what}: got {self.size} bytes, expected {self.expected_size}"
            )
        if self.expected is not None and digest != self.expected:
            self.abort()
            raise DigestMismatch(
                f"{self.what}: digest mismatch: expected {self.expected}, got {digest}"
            )
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        final = self.store.path(digest)
        os.chmod(self._path, 0o444)
        os.rename(self._path, final)
        self.digest = digest
        return digest

    def abort(self) -> None:
        """Drop the temporary file (idempotent)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        try:
            self._path.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.digest is None:
            self.abort()


class ContentStore:
    """``blobs/sha256/<hex>`` plus a temp dir on the same filesystem."""

    def __init__(self, blobs: Path, tmp: Path) -> None:
        self.blobs = blobs
        self.tmp = tmp

    def path(self, digest: str) -> Path:
        return self.blobs / hex_of(digest)

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        return self.path(digest).stat().st_size

    def writer(
        self, expected: str | None = None, size: int | None = None, what: str = "blob"
    ) -> BlobWriter:
        return BlobWriter(self, expected, size, what)

    def write_bytes(self, data: bytes, expected: str | None = None, what: str = "blob") -> str:
        with self.writer(expected, len(data) if expected else None, what) as w:
            w.write(data)
            return w.commit()

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFoundError(f"blob not found: {digest}")

    def read_bytes(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def delete(self, digest: str) -> None:
        try:
            self.path(digest).unlink()
        except FileNotFoundError:
            pass

    def digests(self) -> list[str]:
        return [f"sha256:{e.name}" for e in os.scandir(self.blobs) if len(e.name) == 64]

    def verify(self, digest: str) -> bool:
        """Re-hash a stored blob (``corral`` never trusts a name, not even its own)."""
        import hashlib

        h = hashlib.sha256()
        with self.open(digest) as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        return f"sha256:{h.hexdigest()}" == digest
