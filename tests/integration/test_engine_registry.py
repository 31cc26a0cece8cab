"""The registry client (corral.engine.distribution) against a real docker-registry on 127.0.0.1.

Protocol-level checks through the library: round trips, digests, indexes, auth (basic, token),
TLS, resumable pulls (a counting, cutting proxy in front of the registry) and hostile input
(tampered blobs on the registry's disk, lying manifests, truncated layers).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.engine.distribution import (
    AuthError,
    AuthFile,
    Credentials,
    Options,
    RegistryError,
    login,
    logout,
    pull,
    push,
)
from corral.engine.engine import Engine
from corral.engine.images.content import DigestMismatch
from corral.engine.images.layers import LayerError
from corral.engine.images.media import DOCKER_MANIFEST as MEDIA_DOCKER_MANIFEST
from corral.engine.images.store import ImageStore
from corral.engine.images.testing import file, layer_tar
from corral.errors import NotFoundError, UserError
from helpers.registry import (
    Proxy,
    Registry,
    push_image,
    push_index,
    put_manifest,
    start_registry,
)


def opts(**kw: object) -> Options:
    kw.setdefault("tls_verify", False)
    return Options(**kw)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ImageStore]:
    s = Engine(tmp_path / "root").images
    yield s
    s.close()


@pytest.fixture
def other(tmp_path: Path) -> Iterator[ImageStore]:
    s = Engine(tmp_path / "root2").images
    yield s
    s.close()


@pytest.fixture
def private_registry(tmp_path: Path) -> Iterator[Registry]:
    """A registry of the test's own, for tampering with its data directory."""
    reg = start_registry(tmp_path / "registry")
    yield reg
    reg.stop()


@pytest.fixture
def proxy(private_registry: Registry) -> Iterator[Proxy]:
    p = Proxy(private_registry.host)
    yield p
    p.stop()


def files_of(store: ImageStore, ref: str) -> dict[str, bytes]:
    """Regular files of an image's layers, top layer winning (no whiteouts in these tests)."""
    out: dict[str, bytes] = {}
    image = store.get(ref)
    for layer in reversed(store.snapshots.stack(image.layers[-1].chain_id)):
        for dirpath, _, names in os.walk(layer.path):
            for name in names:
                p = Path(dirpath, name)
                if p.is_file() and not p.is_symlink():
                    out[str(p.relative_to(layer.path))] = p.read_bytes()
    return out


def nothing_listed(store: ImageStore) -> None:
    assert store.images() == []
    assert store.db.execute("SELECT COUNT(*) FROM tags").fetchone()[0] == 0


# -- round trips --------------------------------------------------------------------------------


def test_push_then_pull_keeps_digests(store: ImageStore, other: ImageStore, registry: str) -> None:
    image = store.busybox("bb:1")
    digest, size = push(store, "bb:1", f"{registry}/rt/bb:1", opts(), None)
    assert size > 0 and digest.startswith("sha256:")
    assert store.get("bb:1").manifest == digest  # pushed as stored: OCI, the same bytes
    pulled = pull(other, f"{registry}/rt/bb:1", opts())
    assert pulled.id == image.id and pulled.manifest == digest
    assert other.get(f"{registry}/rt/bb:1").id == image.id
    assert files_of(other, pulled.id)["bin/busybox"] == Path("/bin/busybox").read_bytes()
    # again: everything is there, nothing fetched, same image
    assert pull(other, f"{registry}/rt/bb:1", opts()).id == image.id
    # by digest: no tag
    other2 = Engine(other.layout.root.parent / "root3").images
    by_digest = pull(other2, f"{registry}/rt/bb@{digest}", opts())
    assert by_digest.id == image.id and by_digest.tags == []


def test_push_v2s2_and_pull_it(store: ImageStore, other: ImageStore, registry: str) -> None:
    layer = layer_tar([file("etc/motd", b"hello v2s2")], compression="gzip")
    pushed = push_image(registry, "rt/docker", "v1", [layer], docker=True)
    image = pull(other, f"{registry}/rt/docker:v1", opts())
    assert image.manifest == pushed.manifest
    assert other.manifest_media_type(image.manifest) == MEDIA_DOCKER_MANIFEST
    assert files_of(other, image.id)["etc/motd"] == b"hello v2s2"
    # and push it back as OCI and as docker again
    d_oci, _ = push(other, image.id, f"{registry}/rt/docker:oci", opts(), "oci")
    d_v2, _ = push(other, image.id, f"{registry}/rt/docker:v2", opts(), "v2s2")
    assert d_v2 == pushed.manifest and d_oci != pushed.manifest


def test_cross_repo_mount_and_chunked_upload(
    store: ImageStore, private_registry: Registry, proxy: Proxy
) -> None:
    store.busybox(f"{proxy.host}/src/bb:1")
    push(store, f"{proxy.host}/src/bb:1", None, opts(chunk_size=256 << 10), None)
    patches = [p for m, p, _ in proxy.requests if m == "PATCH"]
    assert len(patches) >= 4  # a 2 MB busybox layer in 256 KiB chunks
    proxy.requests.clear()
    store.tag(f"{proxy.host}/src/bb:1", f"{proxy.host}/dst/bb:1")
    push(store, f"{proxy.host}/dst/bb:1", None, opts(), None)
    posts = [p for m, p, _ in proxy.requests if m == "POST"]
    assert posts and all("mount=" in p and "from=src%2Fbb" in p for p in posts)
    assert not [m for m, p, _ in proxy.requests if m in ("PUT", "PATCH") and "/blobs/" in p]
    # a third push: every blob exists already (HEAD), only the manifest goes
    proxy.requests.clear()
    push(store, f"{proxy.host}/dst/bb:1", None, opts(), None)
    assert [(m, p) for m, p, _ in proxy.requests if m != "HEAD"][-1][0] == "PUT", proxy.requests


# -- indexes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("docker", [False, True], ids=["oci-index", "docker-list"])
def test_index_resolves_platform(other: ImageStore, registry: str, docker: bool) -> None:
    repo = f"multi/{'list' if docker else 'index'}"
    layer = layer_tar([file("etc/os", b"multi")], compression="gzip")
    amd = push_image(registry, repo, "amd64", [layer], arch="amd64", docker=docker)
    arm = push_image(registry, repo, "arm64", [layer], arch="arm64", variant="v8", docker=docker)
    push_index(
        registry,
        repo,
        "latest",
        [
            (arm, {"os": "linux", "architecture": "arm64", "variant": "v8"}),
            (amd, {"os": "linux", "architecture": "amd64"}),
        ],
        docker,
    )
    image = pull(other, f"{registry}/{repo}", opts())
    assert image.id == amd.config and image.manifest == amd.manifest
    assert other.config(image.id)["architecture"] == "amd64"
    image = pull(other, f"{registry}/{repo}:latest", opts(platform="linux/arm64"))
    assert image.id == arm.config and other.config(image.id)["architecture"] == "arm64"
    image = pull(other, f"{registry}/{repo}:latest", opts(platform="linux/aarch64/v8"))
    assert image.id == arm.config
    with pytest.raises(NotFoundError, match="no image for platform linux/s390x"):
        pull(other, f"{registry}/{repo}", opts(platform="linux/s390x"))


# -- hostile input ------------------------------------------------------------------------------


def test_manifest_digest_mismatch_by_digest(
    other: ImageStore, private_registry: Registry, tmp_path: Path
) -> None:
    host = private_registry.host
    layer = layer_tar([file("a", b"x")], compression="gzip")
    pushed = push_image(host, "evil/m", "v1", [layer])
    blob = private_registry.blob_path(pushed.manifest)
    data = blob.read_bytes()
    blob.write_bytes(data.replace(b'"schemaVersion": 2', b'"schemaVersion":  2'))
    assert blob.read_bytes() != data  # same JSON, other bytes
    with pytest.raises(DigestMismatch, match="manifest digest mismatch"):
        pull(other, f"{host}/evil/m@{pushed.manifest}", opts())
    nothing_listed(other)


def test_tampered_blob_is_refused(other: ImageStore, private_registry: Registry) -> None:
    host = private_registry.host
    layer = layer_tar([file("a", b"A" * 100_000)], compression="gzip")
    pushed = push_image(host, "evil/blob", "v1", [layer])
    path = private_registry.blob_path(pushed.layers[0])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DigestMismatch, match="digest mismatch"):
        pull(other, f"{host}/evil/blob:v1", opts())
    nothing_listed(other)
    assert not other.content.exists(pushed.layers[0])
    assert not list((other.layout.root / "ingest").iterdir())


def test_huge_declared_size_refused_before_download(
    other: ImageStore, private_registry: Registry, proxy: Proxy
) -> None:
    layer = layer_tar([file("a", b"small")], compression="gzip")
    pushed = push_image(private_registry.host, "evil/huge", "v1", [layer], sizes=[10 * 10**12])
    with pytest.raises(UserError, match=r"declares 10(\.0)?TB.*refusing"):
        pull(other, f"{proxy.host}/evil/huge:v1", opts())
    assert proxy.gets(pushed.layers[0]) == []
    assert proxy.gets(pushed.config) == []
    nothing_listed(other)


def test_truncated_gzip_layer_refused(other: ImageStore, private_registry: Registry) -> None:
    good = layer_tar([file("big", os.urandom(200_000))], compression="gzip")
    truncated = good[: len(good) // 2]
    diff = "sha256:" + "0" * 64  # never reached: the gzip stream ends early
    pushed = push_image(private_registry.host, "evil/trunc", "v1", [truncated], diff_ids=[diff])
    with pytest.raises(LayerError):
        pull(other, f"{private_registry.host}/evil/trunc:v1", opts())
    nothing_listed(other)
    assert not other.content.exists(pushed.layers[0])
    assert other.db.execute("SELECT COUNT(*) FROM layers").fetchone()[0] == 0
    assert not [e for e in os.listdir(other.layout.snapshots) if not e.startswith(".")]


def test_wrong_diff_id_refused(other: ImageStore, private_registry: Registry) -> None:
    layer = layer_tar([file("a", b"content")], compression="gzip")
    host = private_registry.host
    push_image(host, "evil/diff", "v1", [layer], diff_ids=["sha256:" + "1" * 64])
    with pytest.raises(LayerError, match="diff_id mismatch"):
        pull(other, f"{host}/evil/diff:v1", opts())
    nothing_listed(other)


def test_manifest_and_layers_disagree(other: ImageStore, private_registry: Registry) -> None:
    host = private_registry.host
    layer = layer_tar([file("a", b"content")], compression="gzip")
    pushed = push_image(host, "evil/count", "v1", [layer])
    doc = json.loads(pushed.body)
    doc["layers"][0]["mediaType"] = "application/x-evil"
    put_manifest(host, "evil/count", "v2", json.dumps(doc).encode(), doc["mediaType"])
    with pytest.raises(UserError, match="unsupported media type"):
        pull(other, f"{host}/evil/count:v2", opts())
    nothing_listed(other)


# -- resuming -----------------------------------------------------------------------------------


def _two_layers(host: str, repo: str) -> tuple[str, str]:
    small = layer_tar([file("small", b"s" * 1000)], compression="gzip")
    big = layer_tar([file("big", os.urandom(3 << 20))])  # 3 MiB, uncompressed tar
    pushed = push_image(host, repo, "v1", [small, big])
    return pushed.layers[0], pushed.layers[1]


def test_cut_download_resumes_with_range(
    other: ImageStore, private_registry: Registry, proxy: Proxy
) -> None:
    small, big = _two_layers(private_registry.host, "resume/a")
    proxy.cut[big] = 1 << 20
    image = pull(other, f"{proxy.host}/resume/a:v1", opts())
    assert proxy.gets(big) == ["", f"bytes={1 << 20}-"]
    assert proxy.gets(small) == [""]
    assert len(files_of(other, image.id)["big"]) == 3 << 20


def test_interrupted_pull_resumes_next_time(
    other: ImageStore, private_registry: Registry, proxy: Proxy
) -> None:
    small, big = _two_layers(private_registry.host, "resume/b")
    proxy.cut[big] = 1 << 20
    proxy.cut_times = -1  # every attempt dies after 1 MiB (from wherever it started)
    with pytest.raises(RegistryError, match="download failed"):
        pull(other, f"{proxy.host}/resume/b:v1", opts(retries=1))
    nothing_listed(other)
    assert other.content.exists(small)  # finished blobs are kept for the next pull
    partial = other.layout.root / "ingest" / big.split(":")[1]
    assert partial.stat().st_size == 2 << 20  # 1 MiB, then 1 more resumed
    proxy.cut.clear()
    proxy.requests.clear()
    image = pull(other, f"{proxy.host}/resume/b:v1", opts())
    assert proxy.gets(small) == []  # not fetched again
    assert proxy.gets(big) == [f"bytes={2 << 20}-"]
    assert image.tags == [f"{proxy.host}/resume/b:v1"]
    assert not partial.exists()


def test_registry_without_range_restarts_only_that_blob(
    other: ImageStore, private_registry: Registry, proxy: Proxy
) -> None:
    small, big = _two_layers(private_registry.host, "resume/c")
    proxy.cut[big] = 1 << 20
    proxy.no_range = True
    pull(other, f"{proxy.host}/resume/c:v1", opts())
    assert proxy.gets(big) == ["", f"bytes={1 << 20}-"]  # asked; got 200: restarted
    assert proxy.gets(small) == [""]


# -- auth ---------------------------------------------------------------------------------------


def test_basic_auth(
    store: ImageStore, other: ImageStore, auth_registry: Registry, tmp_path: Path
) -> None:
    host = auth_registry.host
    auth_file = tmp_path / "auth.json"
    store.busybox("bb:1")
    with pytest.raises(AuthError, match="authentication required"):
        push(store, "bb:1", f"{host}/a/bb:1", opts(auth_file=auth_file), None)
    with pytest.raises(AuthError, match="invalid username or password"):
        login(host, Credentials("alice", "wrong"), auth_file, opts())
    assert not auth_file.exists()
    assert login(host, Credentials("alice", "wonderland"), auth_file, opts()) == host
    assert stat.S_IMODE(auth_file.stat().st_mode) == 0o600
    assert set(json.loads(auth_file.read_text())["auths"]) == {host}
    assert AuthFile(auth_file).get(f"{host}/a/bb") == Credentials("alice", "wonderland")
    push(store, "bb:1", f"{host}/a/bb:1", opts(auth_file=auth_file), None)
    assert pull(other, f"{host}/a/bb:1", opts(auth_file=auth_file)).id == store.get("bb:1").id
    logout(host, auth_file)
    with pytest.raises(NotFoundError, match="not logged into"):
        logout(host, auth_file)
    with pytest.raises(AuthError, match="authentication required"):
        pull(other, f"{host}/a/bb:1", opts(auth_file=auth_file))


def test_token_auth(
    store: ImageStore, other: ImageStore, token_registry: Registry, tmp_path: Path
) -> None:
    host = token_registry.host
    tokens = token_registry.tokens
    assert tokens is not None
    auth_file = tmp_path / "auth.json"
    store.busybox("bb:1")
    with pytest.raises(AuthError):
        push(store, "bb:1", f"{host}/t/bb:1", opts(), None)
    with pytest.raises(AuthError, match="invalid username or password"):
        login(host, Credentials("bob", "nope"), auth_file, opts())
    login(host, Credentials("bob", "builder"), auth_file, opts())
    tokens.requests.clear()
    push(store, "bb:1", f"{host}/t/bb:1", opts(auth_file=auth_file), None)
    assert ("bob", ["repository:t/bb:pull,push"]) in tokens.requests
    assert pull(other, f"{host}/t/bb:1", opts(auth_file=auth_file)).id == store.get("bb:1").id
    assert ("bob", ["repository:t/bb:pull"]) in tokens.requests
    # --creds instead of the file
    other2 = Engine(tmp_path / "root3").images
    assert pull(other2, f"{host}/t/bb:1", opts(credentials=Credentials("bob", "builder")))


# -- TLS ----------------------------------------------------------------------------------------


def test_tls(store: ImageStore, other: ImageStore, tls_registry: Registry, tmp_path: Path) -> None:
    host = tls_registry.host
    store.busybox("bb:1")
    with pytest.raises(RegistryError, match="not trusted"):
        push(store, "bb:1", f"{host}/tls/bb:1", opts(tls_verify=True), None)
    push(store, "bb:1", f"{host}/tls/bb:1", opts(tls_verify=False), None)
    certs = tmp_path / "certs"
    certs.mkdir()
    assert tls_registry.ca is not None
    (certs / "ca.crt").write_bytes(tls_registry.ca.read_bytes())
    image = pull(other, f"{host}/tls/bb:1", opts(tls_verify=True, cert_dir=str(certs)))
    assert image.id == store.get("bb:1").id


def test_plain_http_needs_tls_verify_false(store: ImageStore, registry: str) -> None:
    with pytest.raises(RegistryError, match="--tls-verify=false"):
        pull(store, f"{registry}/nothing/here:1", opts(tls_verify=True))


def test_unknown_image(store: ImageStore, registry: str) -> None:
    with pytest.raises(NotFoundError, match="manifest unknown"):
        pull(store, f"{registry}/nothing/here:1", opts())
