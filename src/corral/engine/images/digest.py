"""Digests and chain IDs: the names of everything in an image.

An OCI image is a small tree of JSON documents and tarballs, each named by the SHA-256 of its
bytes (a *digest*, written ``sha256:<64 hex>``)::

    manifest  ──config──▶  config (JSON: architecture, os, env, cmd, rootfs.diff_ids, history)
       │
       └──layers[]──▶  layer blobs (tar, tar+gzip or tar+zstd), each named by the digest of
                       its *compressed* bytes

Two more names matter once layers are unpacked:

``diff_id``   the digest of a layer's *uncompressed* tar. The config lists them in
              ``rootfs.diff_ids``, so the image ID (the config's digest) pins the exact file
              contents no matter how the layers were compressed for transport.
``chain_id``  names a *stack* of layers, because a layer only means something on top of the
              layers below it (a whiteout deletes a file of a lower layer)::

                  chainID(L0) = diffID(L0)
                  chainID(Ln) = sha256(chainID(Ln-1) + " " + diffID(Ln))

              Two images that start with the same layers share the same chain IDs for that
              prefix, so each unpacked snapshot is keyed by its chain ID and made only once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from corral.errors import UserError

ALGORITHM = "sha256"
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class DigestError(UserError):
    """A string is not a valid ``sha256:<hex>`` digest, or content did not match its digest."""


def is_digest(value: str) -> bool:
    """True if ``value`` is a well-formed ``sha256:<64 lowercase hex>`` digest."""
    return bool(_DIGEST.match(value))


def check_digest(value: str, what: str = "digest") -> str:
    """Return ``value`` if it is a well-formed digest, else raise DigestError naming ``what``."""
    if not is_digest(value):
        raise DigestError(f"{what}: invalid digest {value!r} (want sha256:<64 hex digits>)")
    return value


def hex_of(digest: str) -> str:
    """The hex part of a digest: the file name of a blob under ``blobs/sha256/``."""
    return check_digest(digest).split(":", 1)[1]


def of_bytes(data: bytes) -> str:
    """The digest of ``data``."""
    import hashlib  # here: loading OpenSSL costs ``corral images`` 2 ms

    return f"{ALGORITHM}:{hashlib.sha256(data).hexdigest()}"


def chain_id(parent: str | None, diff_id: str) -> str:
    """The chain ID of layer ``diff_id`` stacked on the layers named by chain ID ``parent``."""
    check_digest(diff_id, "diff_id")
    if parent is None:
        return diff_id
    check_digest(parent, "chain_id")
    return of_bytes(f"{parent} {diff_id}".encode())


def chain_ids(diff_ids: Iterable[str]) -> list[str]:
    """The chain ID of every prefix of ``diff_ids`` (bottom layer first)."""
    out: list[str] = []
    parent: str | None = None
    for diff_id in diff_ids:
        parent = chain_id(parent, diff_id)
        out.append(parent)
    return out


def short_id(digest: str) -> str:
    """The 12-hex-digit form docker prints in IMAGE ID columns."""
    return digest.split(":", 1)[-1][:12]
