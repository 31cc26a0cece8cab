"""``corral pull``: an image from a registry into the store, checked at every step.

The distribution spec's pull, as this module does it::

    GET  /v2/                                 ping: scheme and auth (transport)
    GET  /v2/<name>/manifests/<tag|digest>    Accept: OCI and docker manifests and indexes
      an index?  choose this platform's entry, GET /v2/<name>/manifests/<its digest>
    GET  /v2/<name>/blobs/<config>            small: read into memory, verified
    GET  /v2/<name>/blobs/<layer> x N         in parallel (``--jobs``), each streamed into
         (Range: bytes=N- to resume)          <root>/ingest/<hex>, hashed, renamed into the
                                              content store; unpacked in order as they land

**Nothing is trusted.** A manifest is at most 4 MiB and, pulled by digest, must hash to it (the
``Docker-Content-Digest`` header too, when sent); a config at most 32 MiB; every blob is hashed
while it downloads and must match its digest and declared size before it is renamed into the
content store. A declared size larger than the free space of the store is refused before any
byte is fetched. Layers are unpacked by the store's snapshotter (``layers.apply_layer``), which
refuses truncated or escaping tarballs, and the image is registered only after all of it is in
place: a refused pull never shows in ``corral images``.

**Resuming.** Blobs download into ``<root>/ingest/<hex>``, which survives an interrupted pull
(``tmp/`` is swept by the next command; ``ingest/`` only of files left there a week). The
next pull skips blobs already in the content store and asks for the rest of a partial one with
``Range``; a registry that answers ``200`` instead of ``206`` sends the whole blob again, and
only that blob restarts. A transient network error is retried the same way (``retries``, 3)
within one pull.

The whole pull holds the store lock (``Engine.locked``): blobs fetched but not yet referenced by
an image must not be collected by a concurrent ``rmi``; a second pull waits.

Progress is reported as events (``events``) to the caller's callback, never printed here.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from corral.engine.distribution.events import (
    BlobProgress,
    ManifestWritten,
    Phase,
    ProgressCallback,
    Pulling,
    Resolved,
    ignore,
)
from corral.engine.distribution.transport import (
    CHUNK,
    MAX_ERROR_BODY,
    Client,
    Options,
    RegistryError,
    client_for,
    read_limited,
    reason,
    scope,
)
from corral.engine.format import human_size
from corral.engine.images import media
from corral.engine.images.content import DigestMismatch
from corral.engine.images.digest import check_digest, is_digest, short_id
from corral.engine.images.layers import LayerError
from corral.engine.images.reference import Reference, parse
from corral.errors import NotFoundError, UserError

if TYPE_CHECKING:
    from corral.engine.images.media import Descriptor, Platform
    from corral.engine.images.store import Image, ImageStore

MAX_MANIFEST = 4 << 20
MAX_CONFIG = 32 << 20


def pull(
    store: ImageStore, text: str, options: Options, progress: ProgressCallback | None = None
) -> Image:
    """Fetch, verify, unpack and tag the image ``text`` names; returns it."""
    ref = parse(text)
    want = media.parse_platform(options.platform)
    client = client_for(ref, options)
    try:
        return _pull(store, ref, client, want, ignore if progress is None else progress, options)
    finally:
        client.close()


def _pull(
    store: ImageStore,
    ref: Reference,
    client: Client,
    want: Platform,
    emit: ProgressCallback,
    options: Options,
) -> Image:
    what = str(ref)
    data, kind, digest = fetch_manifest(client, ref, ref.reference, ref.digest)
    if kind in media.INDEXES:
        _, doc = media.parse_document(data, kind, what)
        chosen = media.choose_platform(media.index_entries(doc, what), want, what)
        emit(Resolved(what, "/".join(x for x in want if x), chosen.digest))
        data, kind, digest = fetch_manifest(client, ref, chosen.digest, chosen.digest, chosen.size)
        if kind not in media.MANIFESTS:
            raise UserError(f"{what}: index entry {chosen.digest} is not an image manifest")
    manifest = media.image_manifest(*media.parse_document(data, kind, what), what)
    layers = manifest.layers
    emit(Pulling(what, digest))
    with store.locked():
        _sweep_ingest(store)
        _check_space(store, [manifest.config, *layers], what)
        config_bytes = _fetch_small_blob(client, ref, manifest.config, MAX_CONFIG)
        try:
            config = json.loads(config_bytes)
            diff_ids = list(config["rootfs"]["diff_ids"])
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{what}: config {manifest.config.digest} has no rootfs.diff_ids")
        if len(diff_ids) != len(layers):
            raise UserError(
                f"{what}: config lists {len(diff_ids)} diff_ids for {len(layers)} layers"
            )
        for d in diff_ids:
            check_digest(str(d), f"{what}: config rootfs.diff_ids")
        stop = threading.Event()
        jobs: dict[str, _Download] = {}
        for layer in layers:
            if layer.digest not in jobs:
                jobs[layer.digest] = _Download(client, ref, layer, store, emit, stop)
                jobs[layer.digest].report("waiting", 0)
        pool = ThreadPoolExecutor(max_workers=max(1, options.jobs), thread_name_prefix="pull")
        futures: dict[str, Future[str]] = {d: pool.submit(j.run) for d, j in jobs.items()}
        try:
            parent: str | None = None
            for i, (layer, diff_id) in enumerate(zip(layers, diff_ids, strict=True)):
                futures[layer.digest].result()
                try:
                    with store.content.open(layer.digest) as f:
                        unpacked, _ = store.snapshots.unpack(
                            f, parent, str(diff_id), what=f"{what}: layer {i} ({layer.digest})"
                        )
                except LayerError:
                    store.content.delete(layer.digest)
                    raise
                parent = unpacked.chain_id
            store.content.write_bytes(config_bytes, manifest.config.digest, f"{what}: config")
            image = store._commit_image(
                config,
                [(x.digest, x.media_type, x.size) for x in layers],
                ref.local_tag,
                config_bytes=config_bytes,
                manifest_bytes=data,
                manifest_media_type=kind,
            )
        except UserError:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            store.snapshots.collect()
            raise
        except BaseException:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
    emit(ManifestWritten(digest))
    return image


def fetch_manifest(
    client: Client,
    ref: Reference,
    reference: str,
    expect: str | None,
    expect_size: int | None = None,
) -> tuple[bytes, str, str]:
    """GET a manifest; returns (bytes, media type, digest). Checked against ``expect``."""
    what = f"{ref.name}@{reference}" if is_digest(reference) else f"{ref.name}:{reference}"
    path = f"/v2/{ref.path}/manifests/{reference}"
    try:
        resp = client.request("GET", path, scope(ref), {"Accept": media.ACCEPT})
        if resp.status == 404:
            read_limited(resp, MAX_ERROR_BODY)
            raise NotFoundError(f"{what}: manifest unknown (no such image in the registry)")
        if resp.status != 200:
            raise client.fail(resp, what)
        declared = resp.getheader("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_MANIFEST:
            resp.close()
            raise UserError(f"{what}: manifest of {declared} bytes is larger than 4 MiB")
        data = resp.read(MAX_MANIFEST + 1)
    except (OSError, http.client.HTTPException) as err:
        raise RegistryError(f"{what}: {reason(err)}")
    if len(data) > MAX_MANIFEST:
        resp.close()
        raise UserError(f"{what}: manifest is larger than 4 MiB")
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    if expect is not None and digest != expect:
        raise DigestMismatch(f"{what}: manifest digest mismatch: got {digest}")
    if expect_size is not None and len(data) != expect_size:
        raise DigestMismatch(f"{what}: manifest is {len(data)} bytes, the index says {expect_size}")
    header = resp.getheader("Docker-Content-Digest")
    if header and is_digest(header) and header != digest:
        raise DigestMismatch(
            f"{what}: manifest digest mismatch: registry says {header}, content is {digest}"
        )
    kind, _ = media.parse_document(data, resp.getheader("Content-Type"), what)
    return data, kind, digest


class _Download:
    """One blob into ``<root>/ingest/<hex>``, resumed with Range, verified, renamed into place."""

    def __init__(
        self,
        client: Client,
        ref: Reference,
        desc: Descriptor,
        store: ImageStore,
        emit: ProgressCallback,
        stop: threading.Event,
    ) -> None:
        self.client = client
        self.ref = ref
        self.desc = desc
        self.store = store
        self.emit = emit
        self.stop = stop
        self.what = f"{ref.name}: blob {desc.digest}"

    def report(self, phase: Phase, done: int) -> None:
        self.emit(BlobProgress(self.desc.digest, "layer", phase, done, self.desc.size))

    def run(self) -> str:
        desc = self.desc
        if self.store.content.exists(desc.digest):
            self.report("exists", desc.size)
            return desc.digest
        ingest = self.store.layout.root / "ingest"
        ingest.mkdir(mode=0o700, exist_ok=True)
        partial = ingest / desc.digest.split(":", 1)[1]
        last: BaseException | None = None
        for attempt in range(self.client.options.retries + 1):
            if self.stop.is_set():
                raise RegistryError(f"{self.what}: cancelled")
            if attempt:
                time.sleep(min(2.0, 0.2 * attempt))
            try:
                self._fetch(partial)
                break
            except (OSError, http.client.HTTPException, _Transient) as err:
                last = err
                self.client.reset()
                continue
        else:
            raise RegistryError(f"{self.what}: download failed: {reason(last)}")
        self._commit(partial)
        self.report("done", desc.size)
        return desc.digest

    def _fetch(self, partial: Path) -> None:
        desc = self.desc
        offset = partial.stat().st_size if partial.exists() else 0
        if offset > desc.size:
            offset = 0
        if offset == desc.size and offset > 0:
            return
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        resp = self.client.request(
            "GET", f"/v2/{self.ref.path}/blobs/{desc.digest}", scope(self.ref), headers
        )
        if resp.status == 416 and offset:
            read_limited(resp, MAX_ERROR_BODY)
            partial.unlink(missing_ok=True)
            raise _Transient("range not satisfiable; restarting")
        if resp.status == 404:
            read_limited(resp, MAX_ERROR_BODY)
            raise NotFoundError(f"{self.what}: blob unknown to the registry")
        if resp.status not in (200, 206):
            raise self.client.fail(resp, self.what)
        start = 0
        if resp.status == 206:
            crange = resp.getheader("Content-Range") or ""
            if not crange.startswith(f"bytes {offset}-"):
                resp.close()
                partial.unlink(missing_ok=True)
                raise _Transient(f"unexpected Content-Range {crange!r}; restarting")
            start = offset
        length = resp.getheader("Content-Length")
        if length is not None and length.isdigit() and start + int(length) != desc.size:
            resp.close()
            raise DigestMismatch(
                f"{self.what}: registry sends {start + int(length)} bytes, manifest says "
                f"{desc.size}"
            )
        self.report("resuming" if start else "downloading", start)
        with open(partial, "r+b" if start else "wb") as f:
            f.seek(start)
            f.truncate()
            written = start
            while True:
                if self.stop.is_set():
                    resp.close()
                    raise RegistryError(f"{self.what}: cancelled")
                data = resp.read(CHUNK)
                if not data:
                    break
                written += len(data)
                if written > desc.size:
                    resp.close()
                    raise DigestMismatch(
                        f"{self.what}: more than the {desc.size} bytes the manifest declares"
                    )
                f.write(data)
                self.report("downloading", written)
            f.flush()
            os.fsync(f.fileno())
        if written < desc.size:
            raise _Transient(f"connection closed after {written} of {desc.size} bytes")

    def _commit(self, partial: Path) -> None:
        desc = self.desc
        h = hashlib.sha256()
        with open(partial, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
            size = f.tell()
        digest = f"sha256:{h.hexdigest()}"
        if size != desc.size or digest != desc.digest:
            partial.unlink(missing_ok=True)
            raise DigestMismatch(f"{self.what}: digest mismatch: content is {digest}")
        os.chmod(partial, 0o444)
        os.rename(partial, self.store.content.path(desc.digest))


class _Transient(Exception):
    """A download that stopped early and may be resumed."""


def _fetch_small_blob(client: Client, ref: Reference, desc: Descriptor, limit: int) -> bytes:
    what = f"{ref.name}: blob {desc.digest}"
    if desc.size > limit:
        raise UserError(f"{what}: declared size {desc.size} is over the {human_size(limit)} limit")
    resp = client.request("GET", f"/v2/{ref.path}/blobs/{desc.digest}", scope(ref))
    if resp.status != 200:
        raise client.fail(resp, what)
    data = resp.read(desc.size + 1)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    if len(data) != desc.size or digest != desc.digest:
        resp.close()
        raise DigestMismatch(f"{what}: digest mismatch: content is {digest} ({len(data)} bytes)")
    return data


def _check_space(store: ImageStore, descs: Sequence[Descriptor], what: str) -> None:
    missing = [d for d in descs if not store.content.exists(d.digest)]
    st = os.statvfs(store.layout.root)
    free = st.f_bavail * st.f_frsize
    for d in missing:
        if d.size > free:
            raise UserError(
                f"{what}: layer {short_id(d.digest)} declares {human_size(d.size)}, more than the "
                f"{human_size(free)} free in {store.layout.root}; refusing to download it"
            )
    total = sum(d.size for d in missing)
    if total > free:
        raise UserError(
            f"{what}: the layers to download need {human_size(total)}, only {human_size(free)} "
            f"is free in {store.layout.root}"
        )


def _sweep_ingest(store: ImageStore, max_age: float = 7 * 86400) -> None:
    ingest = store.layout.root / "ingest"
    now = time.time()
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(ingest):
            with contextlib.suppress(OSError):
                if now - entry.stat().st_mtime > max_age:
                    os.unlink(entry.path)
