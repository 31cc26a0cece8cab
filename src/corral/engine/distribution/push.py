"""``corral push``: an image from the store to a registry, blobs first, the manifest last.

The distribution spec's push, as this module does it, for each blob (config and layers, in
parallel) and then the manifest::

    HEAD /v2/<name>/blobs/<digest>                    200: the registry has it; skip
    POST /v2/<name>/blobs/uploads/?mount=<d>&from=<r>  201: mounted from repository <r> of the
                                                      same registry (a local tag says it is
                                                      there): no bytes sent
                                                      202: not mountable, an upload is open
    POST /v2/<name>/blobs/uploads/                    202 + Location: an upload session
    PATCH <location>  Content-Range: a-b              only with ``chunk_size``: one per chunk,
                                                      each 202 + the next Location
    PUT  <location>?digest=<d>                        the (rest of the) bytes; 201: committed,
                                                      the registry checked the digest
    PUT  /v2/<name>/manifests/<tag>                   Content-Type: the manifest's media type

The manifest goes byte for byte as stored (so its digest is the one ``corral images --digests``
shows), unless ``--format`` asks for the other vocabulary (``media.convert_manifest``: OCI <->
docker schema 2; the digest then changes). The registry's ``Docker-Content-Digest`` must be the
digest of what was sent.

Progress is reported as events (``events``) to the caller's callback, never printed here.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Literal

from corral.engine.distribution.events import (
    BlobProgress,
    ManifestWritten,
    Phase,
    ProgressCallback,
    Pushing,
    ignore,
)
from corral.engine.distribution.transport import (
    MAX_ERROR_BODY,
    Body,
    Client,
    Options,
    RegistryError,
    client_for,
    read_limited,
    reason,
    scope,
)
from corral.engine.images import media
from corral.engine.images.reference import Reference, parse
from corral.errors import NotFoundError, UsageError

if TYPE_CHECKING:
    from corral.engine.images.media import Descriptor
    from corral.engine.images.store import ImageStore

FORMATS = {"docker": "v2s2", "v2s2": "v2s2", "oci": "oci"}


def push(
    store: ImageStore,
    source: str,
    destination: str | None,
    options: Options,
    fmt: str | None,
    progress: ProgressCallback | None = None,
) -> tuple[str, int]:
    """Upload the blobs of image ``source``, then its manifest; returns (manifest digest, size).

    ``destination`` defaults to ``source``; ``fmt`` (``oci``, ``v2s2``/``docker``) converts the
    manifest, None sends it as stored.
    """
    emit = ignore if progress is None else progress
    image = store.get(source)
    dest_text = destination or source
    dest = parse(dest_text, "destination")
    if dest.digest:
        raise UsageError(f"destination {dest_text!r}: push to a tag, not a digest")
    what = str(dest)
    kind = store.manifest_media_type(image.manifest)
    data = store.content.read_bytes(image.manifest)
    if fmt is not None:
        fmt = FORMATS.get(fmt)
        if fmt is None:
            raise UsageError("--format: want oci or v2s2")
        _, doc = media.parse_document(data, kind, what)
        converted = media.convert_manifest(doc, kind, fmt, what)
        if converted is not doc:
            data = json.dumps(converted, separators=(",", ":")).encode()
            kind = converted["mediaType"]
    manifest = media.image_manifest(*media.parse_document(data, kind, what), what)
    blobs = list({d.digest: d for d in [manifest.config, *manifest.layers]}.values())
    uploads = [
        _Upload(store, dest, d, "config" if i == 0 else "layer", emit) for i, d in enumerate(blobs)
    ]
    client = client_for(dest, options)
    emit(Pushing(what))
    try:
        client.ping()
        with ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool:
            futures = [pool.submit(u.run, client) for u in uploads]
            for fut in futures:
                fut.result()
        resp = client.request(
            "PUT",
            f"/v2/{dest.path}/manifests/{dest.tag}",
            scope(dest, push=True),
            {"Content-Type": kind},
            data,
        )
        if resp.status not in (200, 201):
            raise client.fail(resp, f"{what}: manifest")
        resp.read()
    except (OSError, http.client.HTTPException) as err:
        raise RegistryError(f"{what}: {reason(err)}")
    finally:
        client.close()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    header = resp.getheader("Docker-Content-Digest")
    if header and header != digest:
        raise RegistryError(f"{what}: registry stored the manifest as {header}, expected {digest}")
    emit(ManifestWritten(digest))
    return digest, len(data)


class _Upload:
    """One blob to the registry: skipped if there, mounted if it can be, else uploaded."""

    def __init__(
        self,
        store: ImageStore,
        dest: Reference,
        desc: Descriptor,
        kind: Literal["config", "layer"],
        emit: ProgressCallback,
    ) -> None:
        self.store = store
        self.dest = dest
        self.desc = desc
        self.kind = kind
        self.emit = emit
        self.what = f"{dest.name}: blob {desc.digest}"
        self.scope = scope(dest, push=True)
        self.sources = _mount_sources(store, desc.digest, dest)

    def report(self, phase: Phase, done: int, source: str = "") -> None:
        self.emit(BlobProgress(self.desc.digest, self.kind, phase, done, self.desc.size, source))

    def run(self, client: Client) -> str:
        desc = self.desc
        self.report("waiting", 0)
        base = f"/v2/{self.dest.path}/blobs/"
        resp = client.request("HEAD", base + desc.digest, self.scope)
        resp.read()
        if resp.status == 200:
            self.report("exists", desc.size)
            return "exists"
        if resp.status not in (404,):
            raise RegistryError(f"{self.what}: HEAD answered HTTP {resp.status}")
        for source in self.sources:
            mscope = f"{self.scope} repository:{source}:pull"
            query = urllib.parse.urlencode({"mount": desc.digest, "from": source})
            resp = client.request("POST", f"{base}uploads/?{query}", mscope, body=b"")
            read_limited(resp, MAX_ERROR_BODY)
            if resp.status == 201:
                self.report("mounted", desc.size, source)
                return "mounted"
            if resp.status == 202:  # not mountable: the registry opened an upload; use it
                return self._upload_to(client, resp)
        resp = client.request("POST", f"{base}uploads/", self.scope, body=b"")
        read_limited(resp, MAX_ERROR_BODY)
        if resp.status != 202:
            raise RegistryError(f"{self.what}: starting the upload answered HTTP {resp.status}")
        return self._upload_to(client, resp)

    def _upload_to(self, client: Client, resp: http.client.HTTPResponse) -> str:
        desc = self.desc
        location = resp.getheader("Location")
        if not location:
            raise RegistryError(f"{self.what}: the registry gave no upload location")
        url = urllib.parse.urljoin(client.url(f"/v2/{self.dest.path}/blobs/uploads/"), location)
        path = self.store.content.path(desc.digest)
        if not path.is_file():
            raise NotFoundError(f"{self.what}: not in the local content store")
        done = 0
        self.report("uploading", done)

        def sent(n: int) -> None:
            nonlocal done
            done += n
            self.report("uploading", done)

        chunk = client.options.chunk_size
        if chunk > 0:
            offset = 0
            while offset < desc.size:
                n = min(chunk, desc.size - offset)
                headers = {
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + n - 1}",
                }
                r = client.request("PATCH", url, self.scope, headers, (path, offset, n), sent)
                read_limited(r, MAX_ERROR_BODY)
                if r.status != 202:
                    raise RegistryError(f"{self.what}: PATCH answered HTTP {r.status}")
                url = urllib.parse.urljoin(url, r.getheader("Location") or url)
                offset += n
            body: Body = b""
        else:
            body = (path, 0, desc.size)
        sep = "&" if "?" in url else "?"
        put = f"{url}{sep}{urllib.parse.urlencode({'digest': desc.digest})}"
        headers = {"Content-Type": "application/octet-stream"}
        r = client.request("PUT", put, self.scope, headers, body, sent)
        if r.status != 201:
            raise client.fail(r, self.what)
        r.read()
        self.report("done", desc.size)
        return "uploaded"


def _mount_sources(store: ImageStore, digest: str, dest: Reference) -> list[str]:
    """Repositories on ``dest``'s registry that local tags say already hold blob ``digest``."""
    rows = store.db.execute(
        "SELECT t.name FROM tags t WHERE t.image_id = ?"
        " UNION SELECT t.name FROM tags t JOIN image_layers il ON il.image_id = t.image_id"
        " WHERE il.blob = ?",
        (digest, digest),
    ).fetchall()
    out: list[str] = []
    for row in rows:
        try:
            other = parse(str(row["name"]))
        except UsageError:
            continue
        if other.domain == dest.domain and other.path != dest.path and other.path not in out:
            out.append(other.path)
    return out
