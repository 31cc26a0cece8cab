"""Image archives: ``corral load`` and ``corral save``, in the formats the other tools write.

Three containers of the same few objects (a manifest, a config, layer tarballs)::

    docker-archive (docker save, skopeo docker-archive:, podman save)     a tar of
        manifest.json      [{"Config": "<hex>.json", "RepoTags": ["busybox:latest"],
                             "Layers": ["<id>/layer.tar", ...]}]
        <hex>.json         the config (its name is its digest)
        <id>/layer.tar     each layer, usually uncompressed; docker >= 25 writes them as
                           blobs/sha256/<hex> next to an OCI layout instead
    oci-archive (skopeo oci-archive:, podman save --format oci-archive)   a tar of an
    OCI layout directory (umoci, skopeo oci:)
        oci-layout         {"imageLayoutVersion": "1.0.0"}
        index.json         manifests (or nested indexes), each tagged with the annotation
                           org.opencontainers.image.ref.name
        blobs/sha256/<hex> manifests, configs and layers, named by digest

**An archive is hostile input**, like a layer. Loading never extracts the outer tar: it is
indexed (names with a ``..`` component or a leading ``/`` are refused, links are followed
inside the archive's own name space only) and each object is streamed out of it into the
digest-verified content store. A blob whose bytes do not match its digest, a layer whose
diff_id is not the one its config names, a missing blob: one-line error, and everything the
load wrote is collected again, so nothing shows up in ``corral images``.

Saving writes the stored blobs into a temporary file next to the output and renames it into
place once complete. docker-archive layers are written uncompressed (what ``docker load``
expects); oci-archive keeps them as stored, with OCI media types.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import re
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from corral.engine.images.digest import check_digest, hex_of, is_digest, of_bytes
from corral.engine.images.layers import CHUNK, DecompressingReader, detect
from corral.engine.images.media import (
    INDEXES,
    LAYER_MEDIA_TYPES,
    MANIFESTS,
    OCI_INDEX,
    OCI_LAYER_PREFIX,
    OCI_LAYER_TYPE,
    OCI_MANIFEST,
    oci_manifest,
)
from corral.errors import NotFoundError, UsageError, UserError

if TYPE_CHECKING:
    from corral.engine.images.store import Image, ImageStore

FORMATS = ("docker-archive", "oci-archive")
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_MAX_JSON = 16 << 20  # manifests, indexes and configs are small; refuse to read a huge "JSON"
_MAX_LINKS = 16


class ArchiveError(UserError):
    """An archive or layout is malformed, incomplete, or its content does not match its names."""


@dataclass(frozen=True)
class Loaded:
    """One image a load brought in: its id and the tags it got."""

    id: str
    tags: tuple[str, ...]


# -- reading archives and layouts ----------------------------------------------------------------


class _Source:
    """Files of an archive or layout by relative name; subclasses say where the bytes are."""

    what: str

    def exists(self, name: str) -> bool:
        raise NotImplementedError

    def open(self, name: str) -> BinaryIO:
        raise NotImplementedError

    def size(self, name: str) -> int:
        raise NotImplementedError

    def read_json(self, name: str, expected: str | None = None) -> tuple[bytes, Any]:
        """The bytes of ``name`` (checked against ``expected``) and their JSON."""
        if not self.exists(name):
            raise ArchiveError(f"{self.what}: {name} is missing")
        if self.size(name) > _MAX_JSON:
            raise ArchiveError(f"{self.what}: {name} is too large for a JSON document")
        with self.open(name) as f:
            data = f.read()
        if expected is not None and of_bytes(data) != expected:
            raise ArchiveError(
                f"{self.what}: {name}: digest mismatch: expected {expected}, got {of_bytes(data)}"
            )
        try:
            return data, json.loads(data)
        except (ValueError, UnicodeDecodeError) as err:
            raise ArchiveError(f"{self.what}: {name}: invalid JSON ({err})") from None


class _DirSource(_Source):
    """An OCI layout directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.what = str(root)

    def _path(self, name: str) -> Path:
        return self.root.joinpath(*_split(name, self.what))

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def open(self, name: str) -> BinaryIO:
        return open(self._path(name), "rb")

    def size(self, name: str) -> int:
        return self._path(name).stat().st_size


class _TarSource(_Source):
    """A tar (docker-archive or oci-archive), indexed once, read member by member."""

    def __init__(self, tar: tarfile.TarFile, what: str) -> None:
        self.tar = tar
        self.what = what
        self.members: dict[str, tarfile.TarInfo] = {}
        try:
            for member in tar:
                parts = _split(member.name, what)
                if not parts or member.isdir():
                    continue
                if member.isfile() or member.issym() or member.islnk():
                    self.members["/".join(parts)] = member
        except tarfile.TarError as err:
            raise ArchiveError(f"{what}: malformed tar: {err}") from None

    def _member(self, name: str) -> tarfile.TarInfo | None:
        key = "/".join(_split(name, self.what))
        for _ in range(_MAX_LINKS):
            member = self.members.get(key)
            if member is None or member.isfile():
                return member
            if member.issym():
                target = posixpath.join(posixpath.dirname(key), member.linkname)
            else:  # a hard link names another member of the archive
                target = member.linkname
            if target.startswith("/"):
                raise ArchiveError(f"{self.what}: link {key!r} points outside the archive")
            norm = posixpath.normpath(target)
            if norm == ".." or norm.startswith("../"):
                raise ArchiveError(f"{self.what}: link {key!r} points outside the archive")
            key = "/".join(_split(norm, self.what))
        raise ArchiveError(f"{self.what}: too many levels of links at {name!r}")

    def exists(self, name: str) -> bool:
        return self._member(name) is not None

    def open(self, name: str) -> BinaryIO:
        member = self._member(name)
        if member is None:
            raise ArchiveError(f"{self.what}: {name} is missing")
        f = self.tar.extractfile(member)
        if f is None:
            raise ArchiveError(f"{self.what}: {name} is not a regular file")
        return f  # type: ignore[return-value]

    def size(self, name: str) -> int:
        member = self._member(name)
        if member is None:
            raise ArchiveError(f"{self.what}: {name} is missing")
        return int(member.size)


def _split(name: str, what: str) -> list[str]:
    """An archive member name as components; absolute names and ``..`` are hostile."""
    if name.startswith("/"):
        raise ArchiveError(f"{what}: entry {name!r} is an absolute path (refused)")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"{what}: entry {name!r} has a '..' component (refused)")
    return parts


def _blob_name(digest: str, what: str) -> str:
    try:
        return f"blobs/sha256/{hex_of(digest)}"
    except UserError:
        raise ArchiveError(f"{what}: invalid digest {digest!r}") from None


# -- the spec of what to load ----------------------------------------------------------------------


@dataclass(frozen=True)
class LoadSpec:
    """What ``load`` reads: a path, its transport, and for layouts an optional ref name."""

    path: str
    transport: str | None = None  # "oci", "oci-archive", "docker-archive", or None: guess
    ref: str | None = None


def parse_source(text: str) -> LoadSpec:
    """``FILE``, ``DIR``, ``oci:DIR[:ref]``, ``oci-archive:FILE[:ref]``, ``docker-archive:FILE``."""
    for transport in ("oci", "oci-archive", "docker-archive"):
        prefix = transport + ":"
        if text.startswith(prefix):
            rest = text[len(prefix) :]
            ref = None
            if transport != "docker-archive" and ":" in rest:
                head, _, tail = rest.rpartition(":")
                if tail and "/" not in tail and head:
                    rest, ref = head, tail
            if not rest:
                raise UsageError(f"{text!r}: no path after {prefix}")
            return LoadSpec(rest, transport, ref)
    return LoadSpec(text)


# -- load ------------------------------------------------------------------------------------------


@dataclass
class _Plan:
    """One image found in an archive: where its config and layers are, and what to call it."""

    config_name: str
    config_digest: str | None
    layers: Sequence[tuple[str, str | None, str | None, int | None]]  # name, digest, media, size
    tags: list[str]
    manifest_bytes: bytes | None = None
    manifest_media_type: str = OCI_MANIFEST


def load(store: ImageStore, source: str | LoadSpec) -> list[Loaded]:
    """Load every image (or the one ``ref`` names) of an archive or OCI layout into ``store``.

    All or nothing per call: if any image fails, what this call wrote is collected again.
    """
    spec = parse_source(source) if isinstance(source, str) else source
    path = Path(spec.path)
    what = spec.path
    if not path.exists():
        raise UserError(f"{what}: no such file or directory")
    with store.locked(), ExitStack() as stack:
        if path.is_dir():
            if spec.transport not in (None, "oci"):
                raise UsageError(f"{what}: is a directory; {spec.transport} wants a file")
            src: _Source = _DirSource(path)
        else:
            if spec.transport == "oci":
                raise UsageError(f"{what}: not a directory (oci: is an OCI layout directory)")
            src = _TarSource(stack.enter_context(_open_tar(store, path, what)), what)
        plans = _plans(src, spec, path)
        before = {image.id for image in store.images()}
        done: list[Loaded] = []
        try:
            for plan in plans:
                done.append(_ingest(store, src, plan))
        except BaseException:
            _undo(store, before, done)
            raise
        return done


@contextmanager
def _open_tar(store: ImageStore, path: Path, what: str) -> Iterator[tarfile.TarFile]:
    """The archive as a seekable plain tar (a compressed one is decompressed to the store's tmp)."""
    with open(path, "rb") as raw:
        kind = detect(raw.read(8))
        raw.seek(0)
        if kind == "tar":
            try:
                tar = tarfile.open(fileobj=raw, mode="r:")  # noqa: SIM115
            except tarfile.TarError as err:
                raise ArchiveError(f"{what}: not a tar archive ({err})") from None
            yield tar
            return
        with tempfile.TemporaryFile(dir=store.layout.tmp) as tmp:
            reader = DecompressingReader(raw, kind, what)
            while chunk := reader.read(CHUNK):
                tmp.write(chunk)
            tmp.seek(0)
            try:
                tar = tarfile.open(fileobj=tmp, mode="r:")  # noqa: SIM115
            except tarfile.TarError as err:
                raise ArchiveError(f"{what}: not a tar archive ({err})") from None
            yield tar


def _plans(src: _Source, spec: LoadSpec, path: Path) -> list[_Plan]:
    docker = src.exists("manifest.json")
    oci = src.exists("index.json")
    if spec.transport == "docker-archive" or (docker and spec.transport is None and not spec.ref):
        if not docker:
            raise ArchiveError(f"{src.what}: no manifest.json (not a docker-archive)")
        return _docker_plans(src)
    if not oci:
        raise ArchiveError(
            f"{src.what}: neither manifest.json nor index.json (not a docker-archive, "
            "oci-archive or OCI layout)"
        )
    _, layout = src.read_json("oci-layout") if src.exists("oci-layout") else (b"", {})
    version = layout.get("imageLayoutVersion") if isinstance(layout, dict) else None
    if src.exists("oci-layout") and version != "1.0.0":
        raise ArchiveError(f"{src.what}: oci-layout: unsupported imageLayoutVersion {version!r}")
    return _oci_plans(src, spec.ref, _default_repo(path))


def _default_repo(path: Path) -> str | None:
    """A repository name from a layout's file name (``/tmp/app.tar`` -> ``app``), if valid."""
    from corral.engine.images.reference import parse

    base = path.resolve().name
    for ext in (".tar.gz", ".tgz", ".tar", ".oci"):
        if base.endswith(ext):
            base = base[: -len(ext)]
    base = base.lower()
    try:
        parse(base)
    except UserError:
        return None
    return base if ":" not in base else None


def _docker_plans(src: _Source) -> list[_Plan]:
    from corral.engine.images.reference import normalize

    _, entries = src.read_json("manifest.json")
    if not isinstance(entries, list) or not entries:
        raise ArchiveError(f"{src.what}: manifest.json: expected a non-empty list")
    plans = []
    for i, entry in enumerate(entries):
        where = f"{src.what}: manifest.json[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
            raise ArchiveError(f"{where}: no Config")
        layers = entry.get("Layers")
        if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
            raise ArchiveError(f"{where}: Layers must be a list of file names")
        config = entry["Config"]
        tags = []
        for tag in entry.get("RepoTags") or []:
            try:
                tags.append(normalize(str(tag)))
            except UserError as err:
                raise ArchiveError(f"{where}: RepoTags: {err}") from None
        plans.append(
            _Plan(
                config,
                _digest_in_name(config),
                [(name, _digest_in_name(name), None, None) for name in layers],
                tags,
            )
        )
    return plans


def _digest_in_name(name: str) -> str | None:
    """``abc...json`` or ``blobs/sha256/abc...``: the digest a docker-archive name promises."""
    base = posixpath.basename(name)
    if base.endswith(".json"):
        base = base[: -len(".json")]
    if _HEX64.match(base) and (name.endswith(".json") or "sha256/" in name):
        return f"sha256:{base}"
    return None


def _oci_plans(src: _Source, ref: str | None, repo: str | None) -> list[_Plan]:
    _, index = src.read_json("index.json")
    found: list[tuple[dict[str, Any], str | None]] = []
    _walk_index(src, index, "index.json", None, found, depth=0)
    if ref is not None:
        found = [(d, name) for d, name in found if name == ref or _short(name) == ref]
        if not found:
            raise NotFoundError(f"{src.what}: no image named {ref!r} in index.json")
    if not found:
        raise ArchiveError(f"{src.what}: index.json lists no image manifests")
    plans = []
    for descriptor, name in found:
        digest = check_digest(str(descriptor.get("digest", "")), f"{src.what}: manifest digest")
        manifest_bytes, manifest = src.read_json(_blob_name(digest, src.what), digest)
        what = f"{src.what}: manifest {digest}"
        if not isinstance(manifest, dict):
            raise ArchiveError(f"{what}: not a JSON object")
        media = manifest.get("mediaType") or descriptor.get("mediaType") or OCI_MANIFEST
        if media not in MANIFESTS:
            raise ArchiveError(f"{what}: unsupported media type {media!r}")
        config = manifest.get("config") or {}
        config_digest = check_digest(str(config.get("digest", "")), f"{what}: config digest")
        layers = []
        for i, layer in enumerate(manifest.get("layers") or []):
            layer_digest = check_digest(str(layer.get("digest", "")), f"{what}: layers[{i}]")
            layer_media = str(layer.get("mediaType", ""))
            if layer_media not in LAYER_MEDIA_TYPES:
                raise ArchiveError(f"{what}: layers[{i}]: unsupported media type {layer_media!r}")
            size = layer.get("size")
            layers.append(
                (
                    _blob_name(layer_digest, src.what),
                    layer_digest,
                    layer_media,
                    size if isinstance(size, int) else None,
                )
            )
        plans.append(
            _Plan(
                _blob_name(config_digest, src.what),
                config_digest,
                layers,
                _oci_tags(name, descriptor, repo),
                manifest_bytes,
                str(media),
            )
        )
    return plans


def _short(name: str | None) -> str | None:
    """The tag part of a full ref name (``x/y:1`` -> ``1``)."""
    if name is None:
        return None
    head, _, tail = name.rpartition(":")
    return tail if head and "/" not in tail else name


def _walk_index(
    src: _Source,
    index: Any,
    where: str,
    name: str | None,
    out: list[tuple[dict[str, Any], str | None]],
    depth: int,
) -> None:
    """Collect the image manifests of an index (recursing into nested indexes, by platform)."""
    from corral.engine.images.store import host_architecture

    if depth > 4:
        raise ArchiveError(f"{src.what}: indexes nested too deeply")
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise ArchiveError(f"{src.what}: {where}: no manifests list")
    nested: list[tuple[dict[str, Any], str | None]] = []
    for descriptor in index["manifests"]:
        if not isinstance(descriptor, dict):
            raise ArchiveError(f"{src.what}: {where}: a manifest descriptor is not an object")
        annotations = descriptor.get("annotations") or {}
        ref = annotations.get(CONTAINERD_NAME) or annotations.get(REF_NAME) or name
        platform = descriptor.get("platform")
        if (
            depth > 0
            and isinstance(platform, dict)
            and (
                platform.get("os", "linux") != "linux"
                or platform.get("architecture") != host_architecture()
            )
        ):
            continue
        media = descriptor.get("mediaType")
        if media in INDEXES:
            nested.append((descriptor, ref))
        elif media in MANIFESTS or media is None:
            out.append((descriptor, ref))
    for descriptor, ref in nested:
        digest = check_digest(str(descriptor.get("digest", "")), f"{src.what}: index digest")
        _, child = src.read_json(_blob_name(digest, src.what), digest)
        before = len(out)
        _walk_index(src, child, f"index {digest}", ref, out, depth + 1)
        if len(out) > before + 1:  # one image per platform: keep the first match
            del out[before + 1 :]


def _oci_tags(name: str | None, descriptor: dict[str, Any], repo: str | None) -> list[str]:
    """Tags for an image of a layout: a full ref name as is, a bare tag under the file's name."""
    from corral.engine.images.reference import normalize

    if not name:
        return []
    full = _short(name) != name or "/" in name
    try:
        if full:
            return [normalize(name)]
        if repo is not None:
            return [normalize(f"{repo}:{name}")]
    except UserError:
        return []
    return []


def _ingest(store: ImageStore, src: _Source, plan: _Plan) -> Loaded:
    """Verify and store one image's blobs, unpack its layers, record it."""
    config_bytes, config = src.read_json(plan.config_name, plan.config_digest)
    what = f"{src.what}: {plan.config_name}"
    if not isinstance(config, dict):
        raise ArchiveError(f"{what}: the config is not a JSON object")
    rootfs = config.get("rootfs") or {}
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise ArchiveError(f"{what}: rootfs.diff_ids is missing")
    for d in diff_ids:
        if not is_digest(d):
            raise ArchiveError(f"{what}: rootfs.diff_ids: invalid digest {d!r}")
    if len(diff_ids) != len(plan.layers):
        raise ArchiveError(
            f"{what}: the config names {len(diff_ids)} layers, the manifest {len(plan.layers)}"
        )
    store.content.write_bytes(config_bytes)
    blobs: list[tuple[str, str, int]] = []
    parent: str | None = None
    for (name, digest, media, size), diff_id in zip(plan.layers, diff_ids, strict=True):
        layer_what = f"{src.what}: {name}"
        if not src.exists(name):
            raise ArchiveError(f"{src.what}: layer {name} is missing")
        with src.open(name) as f, store.content.writer(digest, size, layer_what) as writer:
            head = f.read(8)
            writer.write(head)
            writer.copy_from(f)
            blob = writer.commit()
        if media is None:
            kind = detect(head)
            if kind not in OCI_LAYER_TYPE:
                raise ArchiveError(f"{layer_what}: unsupported layer compression {kind}")
            media = OCI_LAYER_TYPE[kind]
        with store.content.open(blob) as f:
            layer, _ = store.snapshots.unpack(f, parent, diff_id, what=layer_what)
        parent = layer.chain_id
        blobs.append((blob, media, store.content.size(blob)))
    tag = plan.tags[0] if plan.tags else None
    kwargs: dict[str, Any] = {"config_bytes": config_bytes}
    if plan.manifest_bytes is not None:
        kwargs["manifest_bytes"] = plan.manifest_bytes
        kwargs["manifest_media_type"] = plan.manifest_media_type
    image = store._commit_image(config, blobs, tag, **kwargs)
    for extra in plan.tags[1:]:
        store.tag(image.id, extra)
    return Loaded(image.id, tuple(plan.tags))


def _undo(store: ImageStore, before: set[str], done: list[Loaded]) -> None:
    """A load failed: remove the images it added, the layers and blobs nothing else needs."""
    for loaded in done:
        if loaded.id not in before:
            try:
                store._delete(loaded.id)
            except UserError:
                pass
    store.snapshots.collect()
    store.collect_blobs()


# -- save ------------------------------------------------------------------------------------------


def save(
    store: ImageStore,
    refs: list[str],
    output: str | None,
    fmt: str = "docker-archive",
    stdout: BinaryIO | None = None,
) -> None:
    """Write the images ``refs`` name to ``output`` (or ``stdout``) as ``fmt``."""
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: must be one of {', '.join(FORMATS)}")
    if not refs:
        raise UsageError("save: name at least one image")
    from corral.engine.images.reference import normalize

    selected: list[tuple[Image, list[str]]] = []
    for ref in refs:
        image = store.get(ref)
        try:
            tag: str | None = normalize(ref)
        except UserError:
            tag = None
        tags = [tag] if tag in image.tags else []
        for known, known_tags in selected:
            if known.id == image.id:
                known_tags.extend(t for t in tags if t not in known_tags)
                break
        else:
            selected.append((image, tags))
    if output is None:
        if stdout is None:
            raise UsageError("save: no -o FILE, and the output would be the terminal")
        with tempfile.TemporaryFile(dir=store.layout.tmp) as tmp:
            _write(store, selected, fmt, tmp)
            tmp.seek(0)
            while chunk := tmp.read(CHUNK):
                stdout.write(chunk)
        return
    target = os.path.abspath(output)
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):
        raise UserError(f"-o {output}: no such directory {directory}")
    fd, tmp_name = tempfile.mkstemp(prefix=".corral-save-", dir=directory)
    try:
        with os.fdopen(fd, "w+b") as f:
            _write(store, selected, fmt, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_name, 0o644)
        os.rename(tmp_name, target)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise


def _write(
    store: ImageStore, selected: list[tuple[Image, list[str]]], fmt: str, out: BinaryIO
) -> None:
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        if fmt == "docker-archive":
            _write_docker(store, selected, tar)
        else:
            _write_oci(store, selected, tar)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str, added: set[str]) -> None:
    if name in added:
        return
    added.add(name)
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    tar.addfile(info)


def _add_file(tar: tarfile.TarFile, name: str, f: BinaryIO, size: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    tar.addfile(info, f)


def _write_docker(
    store: ImageStore, selected: list[tuple[Image, list[str]]], tar: tarfile.TarFile
) -> None:
    entries = []
    added: set[str] = set()
    repositories: dict[str, dict[str, str]] = {}
    for image, tags in selected:
        config_name = f"{hex_of(image.id)}.json"
        if config_name not in added:
            added.add(config_name)
            _add_bytes(tar, config_name, store.content.read_bytes(image.id))
        layer_names = []
        for layer in image.layers:
            folder = hex_of(layer.diff_id)
            name = f"{folder}/layer.tar"
            layer_names.append(name)
            if name in added:
                continue
            _add_dir(tar, folder, added)
            added.add(name)
            with store.content.open(layer.blob) as blob:
                kind = detect(blob.read(8))
                blob.seek(0)
                if kind == "tar":
                    _add_file(tar, name, blob, store.content.size(layer.blob))
                    continue
                with tempfile.TemporaryFile(dir=store.layout.tmp) as plain:
                    reader = DecompressingReader(blob, kind, layer.blob)
                    while chunk := reader.read(CHUNK):
                        plain.write(chunk)
                    size = plain.tell()
                    plain.seek(0)
                    _add_file(tar, name, plain, size)
        for tag in tags:
            repo, _, version = tag.rpartition(":")
            if image.layers:
                repositories.setdefault(repo, {})[version] = hex_of(image.layers[-1].diff_id)
        entries.append({"Config": config_name, "RepoTags": tags or None, "Layers": layer_names})
    _add_bytes(tar, "manifest.json", json.dumps(entries, separators=(",", ":")).encode())
    if repositories:
        _add_bytes(tar, "repositories", json.dumps(repositories).encode())


def _oci_media_type(store: ImageStore, blob: str, media_type: str) -> str:
    """A layer's OCI media type (docker's gzip type becomes OCI's tar+gzip)."""
    if media_type.startswith(OCI_LAYER_PREFIX):
        return media_type
    with store.content.open(blob) as f:
        kind = detect(f.read(8))
    return OCI_LAYER_TYPE.get(kind, media_type)


def _write_oci(
    store: ImageStore, selected: list[tuple[Image, list[str]]], tar: tarfile.TarFile
) -> None:
    added: set[str] = set()
    _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    for folder in ("blobs", "blobs/sha256"):
        _add_dir(tar, folder, added)

    def add_blob(digest: str, data: bytes | None = None) -> None:
        name = f"blobs/sha256/{hex_of(digest)}"
        if name in added:
            return
        added.add(name)
        if data is not None:
            _add_bytes(tar, name, data)
            return
        with store.content.open(digest) as f:
            _add_file(tar, name, f, store.content.size(digest))

    descriptors = []
    for image, tags in selected:
        config_bytes = store.content.read_bytes(image.id)
        layers = [
            (x.blob, _oci_media_type(store, x.blob, x.media_type), x.blob_size)
            for x in image.layers
        ]
        manifest_bytes = oci_manifest(image.id, len(config_bytes), layers)
        manifest_digest = of_bytes(manifest_bytes)
        add_blob(image.id, config_bytes)
        for x in image.layers:
            add_blob(x.blob)
        add_blob(manifest_digest, manifest_bytes)
        base = {
            "mediaType": OCI_MANIFEST,
            "digest": manifest_digest,
            "size": len(manifest_bytes),
            "platform": {"architecture": image.architecture, "os": image.os},
        }
        if not tags:
            descriptors.append(base)
        for tag in tags:
            descriptors.append(
                {
                    **base,
                    "annotations": {CONTAINERD_NAME: tag, REF_NAME: tag.rpartition(":")[2]},
                }
            )
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
    _add_bytes(tar, "index.json", json.dumps(index, separators=(",", ":")).encode())
