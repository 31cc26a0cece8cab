"""Media types, and the manifests and indexes they name: the one table the engine uses.

An image is a small tree of JSON documents over blobs, each node reached by a *descriptor*
(``{"mediaType", "digest", "size"}``), so every object is named by its hash::

    index (docker: "manifest list")     manifests[]: one descriptor per platform
      └── manifest                      one image for one platform
            ├── config                  JSON: architecture, os, Env/Cmd..., rootfs.diff_ids
            └── layers[]                tarballs, bottom first: tar, tar+gzip or tar+zstd

Two vocabularies name the same objects: the OCI image-spec's and Docker's schema 2, which OCI
grew out of (schema 1, signed and without content-addressed configs, is refused). They map one
to one, which is how ``push --format`` rewrites a manifest (``convert_manifest``); a registry
answers with either, so a pull accepts both and keeps the bytes it got.

The media type of a manifest is read from its ``mediaType`` field, else from the HTTP
``Content-Type``, else from its shape (``manifests`` makes an index; ``config`` and ``layers``
an image manifest): old registries and tools omit the field. A layer's media type says how it
is compressed (``LAYER_MEDIA_TYPES``), though ``layers.detect`` trusts the first bytes.

``choose_platform`` picks an index's entry as docker does: os and architecture must match
(``x86_64`` is ``amd64``, ``aarch64`` is ``arm64``), a variant only when one is asked for, and
arm64's ``v8`` is the same as none.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from corral._record import datarecord, field
from corral.engine.images.digest import is_digest
from corral.errors import NotFoundError, UsageError, UserError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# -- the types -------------------------------------------------------------------------------------

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_PREFIX = "application/vnd.oci.image.layer."
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_FOREIGN_TAR = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_FOREIGN_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_FOREIGN_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)

MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEXES = (OCI_INDEX, DOCKER_LIST)
# The Accept header of a manifest GET: everything a pull can use.
ACCEPT = ", ".join((*MANIFESTS, *INDEXES))

# Layer media type -> the compression it declares (see layers.detect for what is really there).
LAYER_MEDIA_TYPES = {
    OCI_LAYER_TAR: "tar",
    OCI_LAYER_GZIP: "gzip",
    OCI_LAYER_ZSTD: "zstd",
    OCI_FOREIGN_TAR: "tar",
    OCI_FOREIGN_GZIP: "gzip",
    OCI_FOREIGN_ZSTD: "zstd",
    DOCKER_LAYER_TAR: "tar",
    DOCKER_LAYER_GZIP: "gzip",
    DOCKER_FOREIGN_GZIP: "gzip",
}
# Compression -> the OCI media type a layer made or re-described here gets.
OCI_LAYER_TYPE = {"tar": OCI_LAYER_TAR, "gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD}

# push --format: OCI <-> docker schema 2, for the manifest, the config and the layers.
TO_DOCKER = {
    OCI_MANIFEST: DOCKER_MANIFEST,
    OCI_CONFIG: DOCKER_CONFIG,
    OCI_LAYER_TAR: DOCKER_LAYER_TAR,
    OCI_LAYER_GZIP: DOCKER_LAYER_GZIP,
}
TO_OCI = {v: k for k, v in TO_DOCKER.items()} | {DOCKER_FOREIGN_GZIP: OCI_FOREIGN_GZIP}

ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm"}


# -- descriptors and documents ---------------------------------------------------------------------


@datarecord(frozen=True)
class Descriptor:
    """A pointer to a blob: what it is, its digest and its size (and, in an index, platform)."""

    media_type: str
    digest: str
    size: int
    platform: dict[str, Any] = field(default_factory=dict)


@datarecord(frozen=True)
class Manifest:
    """An image manifest, checked: its media type, config and layers (bottom first)."""

    media_type: str
    config: Descriptor
    layers: list[Descriptor]


def parse_descriptor(data: Any, where: str) -> Descriptor:
    """A descriptor object, checked; ``where`` names the field in errors (``x: layers[2]``)."""
    if not isinstance(data, dict):
        raise UserError(f"{where}: not a descriptor object")
    digest, size, media = data.get("digest"), data.get("size"), data.get("mediaType", "")
    if not isinstance(digest, str) or not is_digest(digest):
        raise UserError(f"{where}: invalid or unsupported digest {digest!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise UserError(f"{where}: invalid size {size!r}")
    if not isinstance(media, str):
        raise UserError(f"{where}: invalid mediaType")
    platform = data.get("platform") or {}
    return Descriptor(media, digest, size, platform if isinstance(platform, dict) else {})


def parse_document(data: bytes, header: str | None, what: str) -> tuple[str, dict[str, Any]]:
    """A manifest or index: (its media type, the JSON); the type as the module docstring says."""
    try:
        doc = json.loads(data)
    except ValueError:
        raise UserError(f"{what}: manifest is not JSON")
    if not isinstance(doc, dict):
        raise UserError(f"{what}: manifest is not a JSON object")
    media = doc.get("mediaType") or (header or "").split(";")[0].strip()
    if doc.get("schemaVersion") == 1 or media in DOCKER_SCHEMA1:
        raise UserError(f"{what}: docker schema 1 manifests are not supported")
    if media not in (*MANIFESTS, *INDEXES):
        if "manifests" in doc:
            media = OCI_INDEX
        elif "config" in doc and "layers" in doc:
            media = OCI_MANIFEST
        else:
            raise UserError(f"{what}: unsupported manifest media type {media!r}")
    if doc.get("schemaVersion") != 2:
        raise UserError(f"{what}: schemaVersion must be 2")
    return media, doc


def index_entries(doc: dict[str, Any], what: str) -> list[Descriptor]:
    """The descriptors of an index's ``manifests`` list."""
    return [
        parse_descriptor(e, f"{what}: manifests[{i}]")
        for i, e in enumerate(doc.get("manifests") or [])
    ]


def image_manifest(media: str, doc: dict[str, Any], what: str) -> Manifest:
    """An image manifest's config and layers; a layer of a type not unpacked here is refused."""
    config = parse_descriptor(doc.get("config"), f"{what}: config")
    raw_layers = doc.get("layers")
    if not isinstance(raw_layers, list):
        raise UserError(f"{what}: manifest has no layers list")
    layers = [parse_descriptor(x, f"{what}: layers[{i}]") for i, x in enumerate(raw_layers)]
    for i, layer in enumerate(layers):
        if layer.media_type not in LAYER_MEDIA_TYPES:
            raise UserError(f"{what}: layers[{i}]: unsupported media type {layer.media_type!r}")
    return Manifest(media, config, layers)


def oci_manifest(
    config_digest: str, config_size: int, layers: Iterable[tuple[str, str, int]]
) -> bytes:
    """The OCI manifest of a config and ``layers`` (digest, media type, size), compact JSON.

    The bytes are the image's identity on a registry: the same inputs must give the same bytes.
    """
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": mt, "digest": d, "size": s} for d, mt, s in layers],
    }
    return json.dumps(manifest, separators=(",", ":")).encode()


def convert_manifest(manifest: dict[str, Any], media: str, fmt: str, what: str) -> dict[str, Any]:
    """The manifest with OCI <-> docker schema 2 media types (``fmt``: ``oci`` or ``v2s2``)."""
    target = OCI_MANIFEST if fmt == "oci" else DOCKER_MANIFEST
    if media == target:
        return manifest
    table = TO_OCI if fmt == "oci" else TO_DOCKER
    out: dict[str, Any] = {"schemaVersion": 2, "mediaType": target}

    def conv(desc: dict[str, Any], where: str) -> dict[str, Any]:
        mt = desc.get("mediaType", "")
        if mt not in table:
            raise UserError(f"{what}: {where} media type {mt!r} has no {fmt} equivalent")
        new = {"mediaType": table[mt], "digest": desc["digest"], "size": desc["size"]}
        if fmt == "oci" and desc.get("urls"):
            new["urls"] = desc["urls"]
        return new

    out["config"] = conv(manifest["config"], "config")
    out["layers"] = [conv(x, f"layers[{i}]") for i, x in enumerate(manifest["layers"])]
    if fmt == "oci" and manifest.get("annotations"):
        out["annotations"] = manifest["annotations"]
    return out


# -- platforms -------------------------------------------------------------------------------------


Platform = tuple[str, str, str]  # os, architecture, variant ("" for none)


def parse_platform(text: str | None) -> Platform:
    """``"linux/arm64/v8"`` -> ``("linux", "arm64", "v8")``; None means this machine's."""
    from corral.engine.images.store import host_architecture

    if not text:
        return "linux", host_architecture(), ""
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise UsageError(f"--platform {text!r}: want os/arch[/variant], e.g. linux/arm64")
    arch = ARCH_ALIASES.get(parts[1], parts[1])
    return parts[0], arch, parts[2] if len(parts) == 3 else ""


def choose_platform(entries: Sequence[Descriptor], want: Platform, what: str) -> Descriptor:
    """The first image-manifest entry of an index for ``want``; NotFoundError lists the others."""
    os_, arch, variant = want

    def norm_variant(a: str, v: str) -> str:
        return "" if (a, v) == ("arm64", "v8") else v

    for entry in entries:
        p = entry.platform
        if entry.media_type not in MANIFESTS and entry.media_type:
            continue
        if (
            p.get("os") != os_
            or ARCH_ALIASES.get(p.get("architecture", ""), p.get("architecture")) != arch
        ):
            continue
        if variant and norm_variant(arch, p.get("variant", "")) != norm_variant(arch, variant):
            continue
        return entry
    have = sorted(
        "/".join(
            x
            for x in (
                e.platform.get("os"),
                e.platform.get("architecture"),
                e.platform.get("variant"),
            )
            if x
        )
        for e in entries
    )
    wanted = "/".join(x for x in want if x)
    raise NotFoundError(
        f"{what}: no image for platform {wanted} (the index has {', '.join(have) or 'none'})"
    )
