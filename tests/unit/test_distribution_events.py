"""Progress as events: what ``pull`` and ``push`` tell their callback, and how the CLI draws it.

The registry here is a fake of a few dozen lines in this process (127.0.0.1, a free port): the
real registry's protocol checks are tests/integration/test_engine_registry.py's.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import random
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from corral.cli.progress import Progress
from corral.engine.distribution import Options, pull, push
from corral.engine.distribution.events import (
    BlobProgress,
    ManifestWritten,
    ProgressEvent,
    Pulling,
    Pushing,
    Resolved,
)
from corral.engine.engine import Engine
from corral.engine.images import media
from corral.engine.images import testing as t
from corral.engine.images.store import ImageStore, host_architecture


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class FakeRegistry:
    """Manifests and blobs in dicts, served over HTTP/1.1 with Range; uploads land in ``blobs``."""

    manifests: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # tag or digest
    blobs: dict[str, bytes] = field(default_factory=dict)
    host: str = ""

    def add_image(self, tag: str, layers: list[bytes], arch: str = "") -> str:
        """A one-platform image of gzip ``layers`` under ``tag``; returns its manifest digest."""
        diff_ids = [sha256(gzip.decompress(x)) for x in layers]
        config = json.dumps(
            {
                "architecture": arch or host_architecture(),
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
            }
        ).encode()
        self.blobs[sha256(config)] = config
        for layer in layers:
            self.blobs[sha256(layer)] = layer
        doc = {
            "schemaVersion": 2,
            "mediaType": media.OCI_MANIFEST,
            "config": {
                "mediaType": media.OCI_CONFIG,
                "digest": sha256(config),
                "size": len(config),
            },
            "layers": [
                {"mediaType": media.OCI_LAYER_GZIP, "digest": sha256(x), "size": len(x)}
                for x in layers
            ],
        }
        return self.put_manifest(tag, json.dumps(doc).encode(), media.OCI_MANIFEST)

    def put_manifest(self, tag: str, data: bytes, media_type: str) -> str:
        self.manifests[tag] = self.manifests[sha256(data)] = (data, media_type)
        return sha256(data)

    def serve(self) -> http.server.ThreadingHTTPServer:
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def reply(self, status: int, body: bytes = b"", **headers: str) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key.replace("_", "-"), value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/v2/":
                    return self.reply(200, b"{}")
                m = re.fullmatch(r"/v2/[a-z/]+/manifests/(.+)", self.path)
                if m and m.group(1) in fake.manifests:
                    data, mt = fake.manifests[m.group(1)]
                    return self.reply(200, data, Content_Type=mt)
                m = re.fullmatch(r"/v2/[a-z/]+/blobs/(.+)", self.path)
                if m and m.group(1) in fake.blobs:
                    data = fake.blobs[m.group(1)]
                    r = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
                    if r:
                        start = int(r.group(1))
                        crange = f"bytes {start}-{len(data) - 1}/{len(data)}"
                        return self.reply(206, data[start:], Content_Range=crange)
                    return self.reply(200, data)
                self.reply(404, b'{"errors":[{"code":"UNKNOWN"}]}')

            do_HEAD = do_GET

            def do_POST(self) -> None:
                self.reply(202, Location="/upload/1")

            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                m = re.fullmatch(r"/upload/1\?digest=(.+)", self.path)
                if m:
                    fake.blobs[m.group(1).replace("%3A", ":")] = body
                    return self.reply(201)
                tag = self.path.rsplit("/", 1)[1]
                digest = fake.put_manifest(tag, body, self.headers["Content-Type"])
                self.reply(201, Docker_Content_Digest=digest)

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    fake = FakeRegistry()
    server = fake.serve()
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ImageStore]:
    s = Engine(tmp_path / "root").images
    yield s
    s.close()


class Recorder(list[ProgressEvent]):
    """The progress callback of these tests: every event, under a lock (workers call it)."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()

    def __call__(self, event: ProgressEvent) -> None:
        with self.lock:
            self.append(event)

    def blobs(self, digest: str) -> list[BlobProgress]:
        return [e for e in self if isinstance(e, BlobProgress) and e.digest == digest]


def layers() -> list[bytes]:
    small = t.layer_tar([t.file("small", b"s" * 1000)], "gzip")
    noise = random.Random(1).randbytes(2_500_000)  # does not compress: 3 chunks of 1 MiB
    big = t.layer_tar([t.file("big", noise)], "gzip")
    return [small, big]


OPTS = Options(tls_verify=False, jobs=2)


def test_pull_reports_every_blob_and_the_manifest(
    registry: FakeRegistry, store: ImageStore
) -> None:
    small, big = layers()
    digest = registry.add_image("1", [small, big])
    events = Recorder()
    image = pull(store, f"{registry.host}/app:1", OPTS, events)
    assert image.manifest == digest
    assert events[0] == Pulling(f"{registry.host}/app:1", digest)
    assert events[-1] == ManifestWritten(digest)
    # every layer announced, in manifest order, before any of them moves
    assert [(e.digest, e.phase) for e in events[1:3] if isinstance(e, BlobProgress)] == [
        (sha256(small), "waiting"),
        (sha256(big), "waiting"),
    ]
    for blob in (small, big):
        seen = events.blobs(sha256(blob))
        assert all(e.kind == "layer" and e.total == len(blob) for e in seen)
        assert [e.phase for e in seen][:2] == ["waiting", "downloading"]
        assert seen[-1].phase == "done" and seen[-1].done == len(blob)
        moving = [e.done for e in seen if e.phase == "downloading"]
        assert moving[0] == 0 and moving[-1] == len(blob) and moving == sorted(moving)
    assert len([e for e in events.blobs(sha256(big)) if e.phase == "downloading"]) > 2  # chunks
    # again: everything is there; each blob says so once
    events.clear()
    pull(store, f"{registry.host}/app:1", OPTS, events)
    assert [(e.phase, e.done) for e in events.blobs(sha256(big))] == [
        ("waiting", 0),
        ("exists", len(big)),
    ]


def test_pull_of_an_index_reports_the_platform_and_a_resume(
    registry: FakeRegistry, store: ImageStore
) -> None:
    small, big = layers()
    arch = host_architecture()
    mine = registry.add_image("mine", [small, big])
    other = registry.add_image("other", [small], arch="s390x")
    index = {
        "schemaVersion": 2,
        "mediaType": media.OCI_INDEX,
        "manifests": [
            {
                "mediaType": media.OCI_MANIFEST,
                "digest": d,
                "size": len(registry.manifests[d][0]),
                "platform": {"os": "linux", "architecture": a},
            }
            for d, a in ((other, "s390x"), (mine, arch))
        ],
    }
    registry.put_manifest("multi", json.dumps(index).encode(), media.OCI_INDEX)
    ingest = store.layout.root / "ingest"
    ingest.mkdir(parents=True)
    (ingest / sha256(big).split(":")[1]).write_bytes(big[:1000])  # a pull cut short before
    events = Recorder()
    pull(store, f"{registry.host}/app:multi", OPTS, events)
    assert events[0] == Resolved(f"{registry.host}/app:multi", f"linux/{arch}", mine)
    assert events[1] == Pulling(f"{registry.host}/app:multi", mine)
    seen = events.blobs(sha256(big))
    assert (seen[1].phase, seen[1].done) == ("resuming", 1000)
    assert seen[2].phase == "downloading" and seen[2].done > 1000


def test_push_reports_config_and_layers(
    registry: FakeRegistry, store: ImageStore, tmp_path: Path
) -> None:
    rootfs = tmp_path / "rootfs.tar.gz"
    rootfs.write_bytes(layers()[1])
    image = store.import_rootfs(rootfs, "app:1")
    events = Recorder()
    digest, _ = push(store, "app:1", f"{registry.host}/app:1", OPTS, None, events)
    assert events[0] == Pushing(f"{registry.host}/app:1") and events[-1] == ManifestWritten(digest)
    config = events.blobs(image.id)
    assert {e.kind for e in config} == {"config"}
    layer = events.blobs(image.layers[0].blob)
    assert [e.phase for e in layer][:2] == ["waiting", "uploading"]
    assert layer[-1].phase == "done" and layer[-2].done == image.layers[0].blob_size
    assert registry.blobs[image.layers[0].blob] == store.content.read_bytes(image.layers[0].blob)
    # again: the registry has every blob
    events.clear()
    push(store, "app:1", f"{registry.host}/app:1", OPTS, None, events)
    phases = {e.digest: e.phase for e in events if isinstance(e, BlobProgress)}
    assert phases == {image.id: "exists", image.layers[0].blob: "exists"}


def test_no_callback_no_output(
    registry: FakeRegistry, store: ImageStore, capfd: pytest.CaptureFixture[str]
) -> None:
    registry.add_image("1", layers())
    pull(store, f"{registry.host}/app:1", OPTS)
    assert capfd.readouterr() == ("", "")  # the engine never writes to the terminal


# -- the CLI's renderer ---------------------------------------------------------------------------

A, B = "sha256:" + "a" * 64, "sha256:" + "b" * 64
MB = 1_000_000


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def feed(out: io.StringIO) -> None:
    render = Progress(out)
    render(Pulling("reg/app:1", "sha256:" + "c" * 64))
    render(BlobProgress(A, "layer", "waiting", 0, 2 * MB))
    render(BlobProgress(B, "layer", "waiting", 0, 3 * MB))
    render(BlobProgress(A, "layer", "exists", 2 * MB, 2 * MB))
    render(BlobProgress(B, "layer", "downloading", 0, 3 * MB))
    render(BlobProgress(B, "layer", "downloading", 3 * MB, 3 * MB))
    render(BlobProgress(B, "layer", "done", 3 * MB, 3 * MB))
    render(ManifestWritten("sha256:" + "c" * 64))


def test_lines_off_a_terminal() -> None:
    out = io.StringIO()
    feed(out)
    assert out.getvalue() == (
        f"Pulling reg/app:1 (sha256:{'c' * 64})\n"
        "Copying blob aaaaaaaaaaaa: already exists (2MB)\n"
        "Copying blob bbbbbbbbbbbb: done (3MB)\n"
        f"Writing manifest to image destination: sha256:{'c' * 64}\n"
    )


def test_bars_on_a_terminal() -> None:
    out = Tty()
    feed(out)
    empty, full = "[>" + " " * 29 + "]", "[" + "=" * 30 + "]"

    def frame(a: str, b: str) -> str:
        return f"\x1b[2KCopying blob {'a' * 12}: {a}\n\x1b[2KCopying blob {'b' * 12}: {b}\n"

    up = "\x1b[2A"  # back over the two bars
    assert out.getvalue() == (
        f"Pulling reg/app:1 (sha256:{'c' * 64})\n"
        + frame(f"exists       {full} 2MB/2MB", f"waiting      {empty} 0B/3MB")
        + up
        + frame(f"already exists {full} 2MB/2MB", f"waiting      {empty} 0B/3MB")
        + up
        + frame(f"already exists {full} 2MB/2MB", f"downloading  {empty} 0B/3MB")
        + up
        + frame(f"already exists {full} 2MB/2MB", f"downloading  {full} 3MB/3MB")
        + up
        + frame(f"already exists {full} 2MB/2MB", f"done         {full} 3MB/3MB")
        + f"Writing manifest to image destination: sha256:{'c' * 64}\n"
    )
