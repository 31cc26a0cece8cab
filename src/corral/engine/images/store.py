"""The image store: what an image *is* in corral, and the verbs on it.

An image is three kinds of objects, each stored where it belongs::

    tags (SQLite)          "busybox:latest" ──▶ image id = digest of the config blob
    images (SQLite)        image id ──▶ manifest digest, created, size, arch, os
    blobs/sha256/...       manifest (JSON) ──▶ config (JSON) + layer blobs (tar[.gz|.zst])
    snapshots/<n>/fs       each layer unpacked once, keyed by chain id (see engine.snapshots)

``ImageStore`` ties them together. Every change holds the store lock and commits its database
rows in one transaction after the files it references are in place, so a failed import (a
hostile layer, a digest mismatch) never shows up in ``corral images``.

Sizes follow docker: an image's SIZE is the unpacked size of all its layers; ``system df``
counts a layer shared by several images once.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from corral._record import datarecord, field
from corral.engine.db import transaction
from corral.engine.format import rfc3339
from corral.engine.images.content import ContentStore
from corral.engine.images.digest import chain_ids, is_digest, short_id
from corral.engine.images.media import OCI_LAYER_TAR, OCI_LAYER_TYPE, OCI_MANIFEST, oci_manifest
from corral.engine.images.reference import normalize, parse
from corral.errors import NotFoundError, StateError, UsageError, UserError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO

    from corral.engine.engine import Engine
    from corral.engine.images.fromhost import RootfsBuilder
    from corral.engine.snapshots.overlay import Snapshotter

DEFAULT_TAG = "latest"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_ARCH = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "armv7l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def host_architecture() -> str:
    """The OCI name of this machine's architecture (``amd64`` on x86_64)."""
    machine = os.uname().machine
    return _ARCH.get(machine, machine)


@datarecord(frozen=True)
class LayerRef:
    """One layer of an image as its manifest and config name it."""

    blob: str
    media_type: str
    blob_size: int
    diff_id: str
    chain_id: str
    size: int


@datarecord(frozen=True)
class NewLayer:
    """A layer ``add_layer`` made: its blob (an uncompressed tar) and its unpacked snapshot."""

    blob: str
    media_type: str
    blob_size: int
    diff_id: str
    chain_id: str


@datarecord
class Image:
    """An image's row plus what hangs off it."""

    id: str
    created: str
    size: int
    architecture: str
    os: str
    manifest: str
    added: float
    tags: list[str] = field(default_factory=list)
    layers: list[LayerRef] = field(default_factory=list)

    @property
    def short_id(self) -> str:
        return short_id(self.id)


@datarecord(frozen=True)
class DiskUsageRow:
    kind: str
    total: int
    active: int
    size: int
    reclaimable: int


@datarecord
class DiskUsage:
    """``system df``: images (shared layers counted once), containers, volumes, build cache."""

    rows: list[DiskUsageRow]
    images: list[dict[str, Any]]
    containers: list[dict[str, Any]]
    blob_bytes: int


class ImageStore:
    """The images of one engine (``Engine.images``). Cheap to create: nothing opens until used.

    The database, the lock and the paths are the engine's; this class adds what an image is.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.layout = engine.layout
        self._content: ContentStore | None = None

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def db(self) -> sqlite3.Connection:
        return self.engine.db

    @property
    def content(self) -> ContentStore:
        if self._content is None:
            self.layout.create()
            self._content = ContentStore(self.layout.blobs, self.layout.tmp)
        return self._content

    @property
    def snapshots(self) -> Snapshotter:
        return self.engine.snapshots

    def close(self) -> None:
        self.engine.close()

    @contextmanager
    def locked(self) -> Iterator[None]:
        with self.engine.locked():
            yield

    # -- reading -------------------------------------------------------------------------------

    def _image(self, image_id: str) -> Image:
        row = self.db.execute("SELECT * FROM images WHERE id = ?", (image_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"No such image: {image_id}")
        tags = [
            r["name"]
            for r in self.db.execute(
                "SELECT name FROM tags WHERE image_id = ? ORDER BY name", (image_id,)
            )
        ]
        layers = [
            LayerRef(
                r["blob"], r["media_type"], r["blob_size"], r["diff_id"], r["chain_id"], r["size"]
            )
            for r in self.db.execute(
                "SELECT il.*, l.size FROM image_layers il JOIN layers l USING (chain_id)"
                " WHERE il.image_id = ? ORDER BY il.idx",
                (image_id,),
            )
        ]
        return Image(
            row["id"],
            row["created"],
            row["size"],
            row["architecture"],
            row["os"],
            row["manifest"],
            row["added"],
            tags,
            layers,
        )

    def resolve(self, ref: str) -> str:
        """The image id that ``ref`` names: a tag, a full id, or a unique id prefix."""
        if not ref:
            raise UsageError("image name: must not be empty")
        try:
            parsed = parse(ref)
        except UsageError:
            parsed = None
        if parsed is not None and parsed.digest is not None:  # name@sha256:<manifest digest>
            row = self.db.execute(
                "SELECT image_id FROM manifests WHERE digest = ?", (parsed.digest,)
            ).fetchone()
            if row is not None:
                return str(row["image_id"])
        elif parsed is not None:
            tag = f"{parsed.familiar_name}:{parsed.tag}"
            row = self.db.execute("SELECT image_id FROM tags WHERE name = ?", (tag,)).fetchone()
            if row is not None:
                return str(row["image_id"])
        hexpart = ref[len("sha256:") :] if ref.startswith("sha256:") else ref
        if re.fullmatch(r"[0-9a-f]{1,64}", hexpart):
            rows = self.db.execute(
                "SELECT id FROM images WHERE id LIKE ?", (f"sha256:{hexpart}%",)
            ).fetchall()
            if len(rows) == 1:
                return str(rows[0]["id"])
            if len(rows) > 1:
                raise UserError(f"image {ref!r}: ambiguous id prefix ({len(rows)} images match)")
        raise NotFoundError(f"No such image: {ref}")

    def get(self, ref: str) -> Image:
        return self._image(self.resolve(ref))

    def images(self) -> list[Image]:
        """Every image, newest first."""
        rows = self.db.execute("SELECT id FROM images ORDER BY created DESC, added DESC").fetchall()
        return [self._image(r["id"]) for r in rows]

    def config(self, ref: str) -> dict[str, Any]:
        """The image's OCI config (the JSON whose digest is the image id)."""
        image_id = self.resolve(ref)
        data: dict[str, Any] = json.loads(self.content.read_bytes(image_id))
        return data

    def manifest(self, ref: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.content.read_bytes(self.get(ref).manifest))
        return data

    def manifest_media_type(self, digest: str) -> str:
        """The media type a stored manifest was recorded with (OCI unless pulled otherwise)."""
        row = self.db.execute(
            "SELECT media_type FROM manifests WHERE digest = ?", (digest,)
        ).fetchone()
        return str(row["media_type"]) if row is not None else OCI_MANIFEST

    def inspect(self, ref: str) -> dict[str, Any]:
        """Docker's ``image inspect`` fields, plus the snapshot dirs the layers live in."""
        image = self.get(ref)
        config = self.config(image.id)
        lowers = []
        if image.layers:
            lowers = [str(x.path) for x in self.snapshots.stack(image.layers[-1].chain_id)]
        return {
            "Id": image.id,
            "RepoTags": image.tags,
            "RepoDigests": [],
            "Parent": "",
            "Comment": (config.get("history") or [{}])[-1].get("comment", ""),
            "Created": image.created,
            "Author": config.get("author", ""),
            "Config": config.get("config", {}),
            "Architecture": image.architecture,
            "Os": image.os,
            "Size": image.size,
            "GraphDriver": {"Name": "overlay", "Data": {"LowerDir": ":".join(lowers)}},
            "RootFS": {"Type": "layers", "Layers": [x.diff_id for x in image.layers]},
            "Metadata": {"LastTagTime": rfc3339(image.added)},
            "Descriptor": {
                "mediaType": self.manifest_media_type(image.manifest),
                "digest": image.manifest,
                "size": self.content.size(image.manifest),
            },
            "Layers": [
                {
                    "chainID": x.chain_id,
                    "diffID": x.diff_id,
                    "blob": x.blob,
                    "mediaType": x.media_type,
                    "blobSize": x.blob_size,
                    "size": x.size,
                }
                for x in image.layers
            ],
        }

    def history(self, ref: str) -> list[dict[str, Any]]:
        """The config's history, newest first, each non-empty step with its layer's size."""
        image = self.get(ref)
        config = self.config(image.id)
        steps = list(config.get("history") or [])
        sizes = [x.size for x in image.layers]
        out = []
        for step in steps:
            size = 0
            if not step.get("empty_layer") and sizes:
                size = sizes.pop(0)
            out.append(
                {
                    "created": step.get("created", ""),
                    "created_by": step.get("created_by", ""),
                    "comment": step.get("comment", ""),
                    "size": size,
                    "empty_layer": bool(step.get("empty_layer")),
                }
            )
        out.reverse()
        for i, row in enumerate(out):
            row["id"] = image.id if i == 0 else "<missing>"
        return out

    # -- writing -------------------------------------------------------------------------------

    def import_rootfs(
        self,
        path: str | os.PathLike[str],
        ref: str | None,
        *,
        cmd: Sequence[str] | None = None,
        env: Sequence[str] | None = None,
        created_by: str | None = None,
        comment: str = "",
    ) -> Image:
        """``corral image import``: a root filesystem tarball becomes a one-layer image.

        The tarball (plain, gzip, zstd, xz or bzip2) is stored as the layer blob (xz and bzip2,
        which are not OCI layer formats, are stored decompressed), unpacked into a snapshot, and
        described by a new config and manifest.
        """
        where = os.fspath(path)
        tag = normalize(ref) if ref else None
        try:
            source: BinaryIO = open(where, "rb")  # noqa: SIM115  (closed by the with below)
        except OSError as err:
            raise UserError(f"{where}: {err.strerror or err}")
        with source, self.locked():
            if not os.path.isfile(where):
                raise UserError(f"{where}: not a regular file")
            return self.import_stream(
                source,
                where,
                tag,
                cmd=cmd,
                env=env,
                created_by=created_by or f"corral image import {os.path.basename(where)}",
                comment=comment,
            )

    def import_stream(
        self,
        source: BinaryIO,
        what: str,
        tag: str | None,
        *,
        cmd: Sequence[str] | None = None,
        env: Sequence[str] | None = None,
        created_by: str = "",
        comment: str = "",
    ) -> Image:
        """Import the seekable root filesystem tarball ``source``; call with the lock held."""
        from corral.engine.images.layers import DecompressingReader, detect

        head = source.read(8)
        source.seek(0)
        kind = detect(head)
        with self.content.writer(what=what) as writer:
            if kind in OCI_LAYER_TYPE:
                writer.copy_from(source)
                media_type = OCI_LAYER_TYPE[kind]
            else:
                writer.copy_from(DecompressingReader(source, kind, what))
                media_type = OCI_LAYER_TYPE["tar"]
            blob = writer.commit()
            blob_size = writer.size
        try:
            with self.content.open(blob) as f:
                layer, _ = self.snapshots.unpack(f, None, what=what)
        except BaseException:
            self.collect_blobs()  # the refused layer's blob must not stay behind
            raise
        created = rfc3339()
        config = {
            "created": created,
            "architecture": host_architecture(),
            "os": "linux",
            "config": {
                "Env": list(env) if env else [DEFAULT_PATH],
                **({"Cmd": list(cmd)} if cmd else {}),
            },
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
            "history": [
                {
                    "created": created,
                    "created_by": created_by,
                    **({"comment": comment} if comment else {}),
                }
            ],
        }
        return self._commit_image(config, [(blob, media_type, blob_size)], tag)

    def import_tree(
        self,
        builder: RootfsBuilder,
        ref: str | None,
        *,
        cmd: Sequence[str] | None = None,
        created_by: str = "",
        comment: str = "",
    ) -> Image:
        """Write ``builder``'s tree as a tar inside the store and import it as a one-layer image."""
        import tempfile

        tag = normalize(ref) if ref else None
        with self.locked(), tempfile.TemporaryFile(dir=self.layout.tmp) as f:
            builder.write_tar(f)
            f.seek(0)
            return self.import_stream(
                f, created_by or "rootfs", tag, cmd=cmd, created_by=created_by, comment=comment
            )

    def from_host(
        self,
        ref: str,
        programs: Sequence[str],
        extra: Sequence[str] = (),
        cmd: Sequence[str] | None = None,
    ) -> Image:
        """``corral image from-host``: host programs and exactly the libraries they need."""
        from corral.engine.images.fromhost import from_host

        normalize(ref)
        builder = from_host(programs, extra)
        by = "corral image from-host " + " ".join([*programs, *(f"--add {p}" for p in extra)])
        return self.import_tree(builder, ref, cmd=list(cmd or programs[:1]), created_by=by)

    def busybox(self, ref: str = "busybox:latest", binary: str = "/bin/busybox") -> Image:
        """``corral image busybox``: the classic busybox image from the host's static busybox."""
        from corral.engine.images.fromhost import busybox_rootfs

        normalize(ref)
        return self.import_tree(
            busybox_rootfs(binary), ref, cmd=["sh"], created_by=f"corral image busybox {binary}"
        )

    def ensure_busybox(self, ref: str = "busybox:latest") -> Image:
        """The default image: ``busybox:latest``, built from the host on first use."""
        try:
            return self.get(ref)
        except NotFoundError:
            return self.busybox(ref)

    def add_layer(
        self, upper: str | os.PathLike[str], parent: str | None, what: str = "layer"
    ) -> NewLayer:
        """Turn the overlay upper directory ``upper`` into a layer on top of chain ``parent``.

        Its tar (corral.engine.images.diff) becomes a blob, and the blob is unpacked once as a
        committed snapshot (nothing read again if that chain exists). ``build`` does this for
        each RUN/COPY step, ``commit`` for a container. Hold the lock, and make sure nothing
        writes to ``upper`` meanwhile (unmounted, or the container paused).
        """
        from corral.engine.images.diff import write_diff

        with self.content.writer(what=what) as writer:
            stats = write_diff(upper, writer)  # type: ignore[arg-type]
            blob = writer.commit()
        with self.content.open(blob) as f:
            layer, _ = self.snapshots.unpack(f, parent, stats.diff_id, what=what)
        return NewLayer(blob, OCI_LAYER_TAR, stats.size, stats.diff_id, layer.chain_id)

    def commit(
        self, config: dict[str, Any], layers: Sequence[tuple[str, str, int]], tag: str | None
    ) -> Image:
        """Record the image ``config`` describes, made of ``layers`` (blob, media type, size:
        blobs in the store, unpacked), tagged ``tag``: the end of ``build`` and ``commit``.
        The config and manifest are written here; hold the lock."""
        if tag is not None:
            tag = normalize(tag)
        return self._commit_image(config, layers, tag)

    def _commit_image(
        self,
        config: dict[str, Any],
        blobs: Sequence[tuple[str, str, int]],
        tag: str | None,
        *,
        config_bytes: bytes | None = None,
        manifest_bytes: bytes | None = None,
        manifest_media_type: str = OCI_MANIFEST,
    ) -> Image:
        """Store config and manifest blobs and record the image (layers must be unpacked).

        A pulled or loaded image passes its own ``config_bytes`` and ``manifest_bytes`` (kept
        byte for byte, so its digests stay those of the registry); otherwise both are made here.
        """
        diff_ids: list[str] = list(config["rootfs"]["diff_ids"])
        chains = chain_ids(diff_ids)
        for chain in chains:
            self.snapshots.layer(chain)
        if config_bytes is None:
            config_bytes = json.dumps(config, separators=(",", ":")).encode()
        config_digest = self.content.write_bytes(config_bytes)
        if manifest_bytes is not None:
            manifest_digest = self.content.write_bytes(manifest_bytes)
        else:
            manifest_bytes, manifest_digest = self._make_manifest(
                config_digest, config_bytes, blobs
            )
        sizes = [self.snapshots.layer(c).size for c in chains]
        with transaction(self.db) as db:
            exists = db.execute("SELECT 1 FROM images WHERE id = ?", (config_digest,)).fetchone()
            if not exists:
                db.execute(
                    "INSERT INTO images (id, created, size, architecture, os, manifest, added)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        config_digest,
                        config.get("created", ""),
                        sum(sizes),
                        config.get("architecture", ""),
                        config.get("os", ""),
                        manifest_digest,
                        time.time(),
                    ),
                )
                db.execute(
                    "INSERT OR REPLACE INTO manifests (digest, image_id, media_type, size)"
                    " VALUES (?, ?, ?, ?)",
                    (manifest_digest, config_digest, manifest_media_type, len(manifest_bytes)),
                )
                for idx, ((blob, media_type, blob_size), diff_id, chain) in enumerate(
                    zip(blobs, diff_ids, chains, strict=True)
                ):
                    db.execute(
                        "INSERT INTO image_layers (image_id, idx, chain_id, diff_id, blob,"
                        " media_type, blob_size) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (config_digest, idx, chain, diff_id, blob, media_type, blob_size),
                    )
                    db.execute(
                        "UPDATE layers SET refcount = refcount + 1 WHERE chain_id = ?", (chain,)
                    )
            if tag is not None:
                db.execute(
                    "INSERT OR REPLACE INTO tags (name, image_id) VALUES (?, ?)",
                    (tag, config_digest),
                )
        return self._image(config_digest)

    def _make_manifest(
        self, config_digest: str, config_bytes: bytes, blobs: Sequence[tuple[str, str, int]]
    ) -> tuple[bytes, str]:
        manifest_bytes = oci_manifest(config_digest, len(config_bytes), blobs)
        manifest_digest = self.content.write_bytes(manifest_bytes)
        return manifest_bytes, manifest_digest

    def tag(self, source: str, target: str) -> str:
        """Point tag ``target`` at the image ``source`` names; returns the normalized tag."""
        name = normalize(target, "target image")
        with self.locked():
            image_id = self.resolve(source)
            with transaction(self.db) as db:
                db.execute(
                    "INSERT OR REPLACE INTO tags (name, image_id) VALUES (?, ?)", (name, image_id)
                )
        return name

    def users(self, image_id: str) -> list[str]:
        """IDs of the containers made from ``image_id``."""
        return [
            r["id"]
            for r in self.db.execute(
                "SELECT id FROM containers WHERE image_id = ? ORDER BY created", (image_id,)
            )
        ]

    def remove(self, ref: str, force: bool = False) -> list[str]:
        """``rmi``: untag ``ref``; delete the image when its last tag goes (docker's rules).

        Refused while containers use the image, unless ``force``; forced, the image goes but
        the layers under those containers' snapshots stay until the containers are removed.
        Returns docker's lines: ``Untagged: ...``, ``Deleted: sha256:...``.
        """
        with self.locked():
            image_id = self.resolve(ref)
            tags = [
                r["name"]
                for r in self.db.execute(
                    "SELECT name FROM tags WHERE image_id = ? ORDER BY name", (image_id,)
                )
            ]
            try:
                by_tag: str | None = normalize(ref)
            except UsageError:
                by_tag = None
            if by_tag not in tags:
                by_tag = None
            if by_tag is not None and len(tags) > 1:  # one of several names: docker untags it,
                with transaction(self.db) as db:  # whoever uses the image
                    db.execute("DELETE FROM tags WHERE name = ?", (by_tag,))
                return [f"Untagged: {by_tag}"]
            users = self.users(image_id)
            if users and not force:
                what = f'repository reference "{by_tag}"' if by_tag else short_id(image_id)
                raise StateError(
                    f"conflict: unable to remove {what} (must force) - container "
                    f"{users[0][:12]} is using its referenced image {short_id(image_id)}"
                )
            lines: list[str] = []
            if by_tag is None and len(tags) > 1 and not force:
                raise StateError(
                    f"conflict: unable to delete {short_id(image_id)} (must be forced) - image "
                    "is referenced in multiple repositories"
                )
            lines += [f"Untagged: {t}" for t in tags]
            lines += self._delete(image_id)
            return lines

    def _delete(self, image_id: str) -> list[str]:
        """Delete an image's rows, then layers and blobs nothing references any more."""
        image = self._image(image_id)
        with transaction(self.db) as db:
            db.execute("DELETE FROM tags WHERE image_id = ?", (image_id,))
            for layer in image.layers:
                db.execute(
                    "UPDATE layers SET refcount = refcount - 1 WHERE chain_id = ?",
                    (layer.chain_id,),
                )
            db.execute("DELETE FROM image_layers WHERE image_id = ?", (image_id,))
            db.execute("DELETE FROM manifests WHERE image_id = ?", (image_id,))
            db.execute("DELETE FROM images WHERE id = ?", (image_id,))
        lines = [f"Deleted: {image_id}"]
        lines += [f"Deleted: {layer.chain_id}" for layer in self.snapshots.collect()]
        self.collect_blobs()
        return lines

    def collect_blobs(self) -> int:
        """Delete blobs no image references (manifest, config, layers); return bytes freed."""
        keep: set[str] = set()
        for row in self.db.execute("SELECT id, manifest FROM images"):
            keep.update((row["id"], row["manifest"]))
        for row in self.db.execute("SELECT blob FROM image_layers"):
            keep.add(row["blob"])
        freed = 0
        for digest in self.content.digests():
            if digest not in keep and is_digest(digest):
                try:
                    freed += self.content.size(digest)
                except FileNotFoundError:
                    continue
                self.content.delete(digest)
        return freed

    def prune(self, all_images: bool = False) -> tuple[list[str], int]:
        """Remove dangling images (untagged), or with ``all_images`` every unused image.

        Images used by containers stay. Returns docker's lines and the bytes reclaimed (the
        unpacked size of the layers that went).
        """
        lines: list[str] = []
        reclaimed = 0
        with self.locked():
            for image in self.images():
                if self.users(image.id) or (image.tags and not all_images):
                    continue
                lines += [f"untagged: {t}" for t in image.tags]
                before = {x.chain_id: x.size for x in self._all_layers()}
                for line in self._delete(image.id):
                    lines.append(line.replace("Deleted:", "deleted:"))
                after = {x.chain_id for x in self._all_layers()}
                reclaimed += sum(size for chain, size in before.items() if chain not in after)
            self.snapshots.collect()
            self.collect_blobs()
        return lines, reclaimed

    def _all_layers(self) -> list[LayerRef]:
        return [
            LayerRef("", "", 0, r["diff_id"], r["chain_id"], r["size"])
            for r in self.db.execute("SELECT chain_id, diff_id, size FROM layers")
        ]

    # -- accounting ------------------------------------------------------------------------------

    def disk_usage(self) -> DiskUsage:
        """Docker's ``system df``: layers shared by several images are counted once."""
        images = self.images()
        layer_size = {x.chain_id: x.size for x in self._all_layers()}
        users: dict[str, int] = {}
        for image in images:
            for layer in image.layers:
                users[layer.chain_id] = users.get(layer.chain_id, 0) + 1
        in_use = {r["image_id"] for r in self.db.execute("SELECT image_id FROM containers")}
        total = sum(layer_size[c] for c in users)
        used_layers = {x.chain_id for i in images if i.id in in_use for x in i.layers}
        used = sum(layer_size[c] for c in used_layers)
        image_rows = []
        for image in images:
            shared = sum(x.size for x in image.layers if users[x.chain_id] > 1)
            image_rows.append(
                {
                    "id": image.id,
                    "tags": image.tags,
                    "created": image.created,
                    "size": image.size,
                    "shared": shared,
                    "unique": image.size - shared,
                    "containers": len(self.users(image.id)),
                }
            )
        snap = self.snapshots
        active_keys = {key: upper for key, _, upper in snap.active()}
        mounted = _mounted_uppers()
        container_rows = []
        for row in self.db.execute("SELECT * FROM containers ORDER BY created DESC"):
            upper = active_keys.get(row["snapshot_key"] or "")
            size = snap.usage(row["snapshot_key"]) if upper is not None else 0
            running = upper is not None and str(upper) in mounted
            container_rows.append(
                {
                    "id": row["id"],
                    "name": row["name"] or "",
                    "image": row["image_id"],
                    "size": size,
                    "created": row["created"],
                    "active": running,
                }
            )
        c_size = sum(int(c["size"]) for c in container_rows)
        c_active = sum(1 for c in container_rows if c["active"])
        c_reclaim = sum(int(c["size"]) for c in container_rows if not c["active"])
        blob_bytes = 0
        for digest in self.content.digests():
            try:
                blob_bytes += self.content.size(digest)
            except FileNotFoundError:
                pass
        rows = [
            DiskUsageRow(
                "Images", len(images), sum(1 for i in images if i.id in in_use), total, total - used
            ),
            DiskUsageRow("Containers", len(container_rows), c_active, c_size, c_reclaim),
            DiskUsageRow("Local Volumes", 0, 0, 0, 0),
            DiskUsageRow("Build Cache", 0, 0, 0, 0),
        ]
        return DiskUsage(rows, image_rows, container_rows, blob_bytes)


def _mounted_uppers() -> set[str]:
    """Upper dirs of the overlays mounted now (a mounted container rootfs counts as active)."""
    out: set[str] = set()
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                for option in line.rsplit(" ", 1)[-1].split(","):
                    if option.startswith("upperdir="):
                        out.add(option[len("upperdir=") :].strip())
    except OSError:
        pass
    return out


def existing(path: str) -> Path:
    """``path`` as a Path, or a one-line error naming it."""
    if not os.path.exists(path):
        raise UserError(f"{path}: no such file or directory")
    return Path(path)
