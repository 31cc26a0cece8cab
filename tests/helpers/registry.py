"""A real registry for the tests: Debian's ``docker-registry`` on 127.0.0.1, plus tools around it.

::

    reg = start_registry(tmp / "reg")                         # plain HTTP, anonymous
    reg = start_registry(tmp / "reg", users={"alice": "pw"})  # htpasswd basic auth
    reg = start_registry(tmp / "reg", tls=True)               # HTTPS, self-signed; reg.ca
    tokens = TokenServer(tmp / "tok", users={"bob": "pw"})    # JWTs signed by openssl
    reg = start_registry(tmp / "reg", token=tokens)           # auth: token (realm = tokens.url)
    reg.host            # "127.0.0.1:PORT"
    reg.blob_path(d)    # <data>/docker/registry/v2/blobs/sha256/xx/<hex>/data (tamper with it)
    reg.stop()

    proxy = Proxy(reg.host)     # counts requests; can cut a blob's body or ignore Range
    proxy.host; proxy.requests; proxy.cut[digest] = 4096; proxy.no_range = True

Everything listens on 127.0.0.1 only, on a free port, with its config, data, certificates and
logs in the directory given. Each registry gets its own ``http.secret`` so upload state survives
requests. ``stop()`` terminates the process and waits for it.
"""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def self_signed(directory: Path, name: str = "server", cn: str = "127.0.0.1") -> tuple[Path, Path]:
    """``(cert.pem, key.pem)``: a self-signed certificate for 127.0.0.1 (also usable as a CA)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={cn}",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-addext", "basicConstraints=critical,CA:TRUE",
        ],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """A docker token server on 127.0.0.1: ``GET /token?service=&scope=`` with basic auth.

    Known users get every action they ask for; anonymous callers get a token with no access.
    Tokens are RS256 JWTs with the signing certificate in ``x5c``; the registry trusts them
    through ``rootcertbundle`` (``self.cert``). ``requests`` records (user, scopes).
    """

    def __init__(self, directory: Path, users: dict[str, str], service: str = "corral-test"):
        self.cert, self.key = self_signed(directory, "token")
        der = subprocess.run(
            ["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
            check=True,
            capture_output=True,
        ).stdout
        self.x5c = base64.b64encode(der).decode()
        self.users = users
        self.service = service
        self.issuer = "corral-test-issuer"
        self.requests: list[tuple[str | None, list[str]]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                from urllib.parse import parse_qs, urlsplit

                query = parse_qs(urlsplit(self.path).query)
                user = None
                header = self.headers.get("Authorization", "")
                if header.startswith("Basic "):
                    raw = base64.b64decode(header[6:]).decode()
                    name, _, password = raw.partition(":")
                    if server.users.get(name) != password:
                        self.send_response(401)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    user = name
                scopes = query.get("scope", [])
                server.requests.append((user, scopes))
                token = server.issue(user, scopes if user else [])
                body = json.dumps({"token": token, "access_token": token, "expires_in": 300})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def issue(self, user: str | None, scopes: list[str]) -> str:
        access = []
        for scope in " ".join(scopes).split():
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": user or "",
            "aud": self.service,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": os.urandom(8).hex(),
            "access": access,
        }
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        signing = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        sig = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing.encode(),
            check=True,
            capture_output=True,
        ).stdout
        return f"{signing}.{_b64url(sig)}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class Registry:
    """A running ``docker-registry``."""

    host: str
    directory: Path
    data: Path
    process: subprocess.Popen[bytes]
    log: Path
    scheme: str = "http"
    ca: Path | None = None
    users: dict[str, str] = field(default_factory=dict)
    tokens: TokenServer | None = None

    def blob_path(self, digest: str) -> Path:
        hexpart = digest.split(":", 1)[1]
        return self.data / "docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart / "data"

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}{path}"

    def stop(self) -> None:
        if self.tokens is not None:
            self.tokens.stop()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __str__(self) -> str:
        return self.host


def start_registry(
    directory: Path,
    *,
    users: dict[str, str] | None = None,
    tls: bool = False,
    token: TokenServer | None = None,
    timeout: float = 20.0,
) -> Registry:
    """Start ``docker-registry serve`` with its own config and data under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / "data"
    data.mkdir(exist_ok=True)
    port = free_port()
    lines = [
        "version: 0.1",
        "log:",
        "  level: info",
        "  accesslog:",
        "    disabled: false",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {data}",
        "  delete:",
        "    enabled: true",
        "  maintenance:",
        "    uploadpurging:",
        "      enabled: false",
        "http:",
        f"  addr: 127.0.0.1:{port}",
        f"  secret: {os.urandom(16).hex()}",
    ]
    ca = None
    if tls:
        cert, key = self_signed(directory / "tls")
        ca = cert
        lines += ["  tls:", f"    certificate: {cert}", f"    key: {key}"]
    if users:
        htpasswd = directory / "htpasswd"
        htpasswd.unlink(missing_ok=True)
        for name, password in users.items():
            subprocess.run(
                ["htpasswd", "-Bb", *(["-c"] if not htpasswd.exists() else []), str(htpasswd),
                 name, password],
                check=True, capture_output=True,
            )  # fmt: skip
        lines += ["auth:", "  htpasswd:", "    realm: corral-test", f"    path: {htpasswd}"]
    elif token is not None:
        lines += [
            "auth:",
            "  token:",
            f"    realm: {token.url}",
            f"    service: {token.service}",
            f"    issuer: {token.issuer}",
            f"    rootcertbundle: {token.cert}",
        ]
    config = directory / "config.yml"
    config.write_text("\n".join(lines) + "\n")
    log = directory / "registry.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    reg = Registry(
        f"127.0.0.1:{port}",
        directory,
        data,
        process,
        log,
        "https" if tls else "http",
        ca,
        dict(users or {}),
        token,
    )
    context = ssl._create_unverified_context()
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited ({process.returncode}): {log.read_text()}")
        try:
            urllib.request.urlopen(reg.url("/v2/"), timeout=2, context=context).close()
            return reg
        except urllib.error.HTTPError:  # 401 is an answer: it is up
            return reg
        except OSError:
            if time.monotonic() > deadline:
                reg.stop()
                raise RuntimeError(f"docker-registry did not answer on {reg.host}") from None
            time.sleep(0.05)


# -- a counting, fault-injecting proxy ----------------------------------------------------------

_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade", "te"}


class Proxy:
    """HTTP proxy in front of a plain-HTTP registry, on 127.0.0.1.

    ``requests``: (method, path, Range header or "") for every request seen.
    ``cut``: digest -> byte count: a blob GET whose path ends with that digest sends only that
    many bytes of the body and drops the connection (``cut_times`` limits how often; -1 always).
    ``no_range``: the Range header is not passed on (a registry without range support).
    ``delay``: seconds to sleep after each 64 KiB of a blob body (to kill a client mid-way).
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.requests: list[tuple[str, str, str]] = []
        self.cut: dict[str, int] = {}
        self.cut_times = 1
        self.no_range = False
        self.delay = 0.0
        self._cuts_done = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy._lock:
                    proxy.requests.append((self.command, self.path, self.headers.get("Range", "")))
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in _HOP and not (proxy.no_range and k.lower() == "range")
                }
                conn = http.client.HTTPConnection(proxy.upstream, timeout=60)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    self.send_response(resp.status)
                    for k, v in resp.getheaders():
                        if k.lower() not in _HOP:
                            self.send_header(k, v)
                    self.end_headers()
                    if self.command == "HEAD":
                        return
                    limit = None
                    if self.command == "GET" and "/blobs/" in self.path:
                        for digest, n in proxy.cut.items():
                            if self.path.endswith(digest) and (
                                proxy.cut_times < 0 or proxy._cuts_done < proxy.cut_times
                            ):
                                limit = n
                                proxy._cuts_done += 1
                    sent = 0
                    while True:
                        chunk = resp.read(65536)
                        if not chunk:
                            break
                        if limit is not None and sent + len(chunk) >= limit:
                            self.wfile.write(chunk[: limit - sent])
                            self.wfile.flush()
                            self.close_connection = True
                            return
                        self.wfile.write(chunk)
                        sent += len(chunk)
                        if proxy.delay and "/blobs/" in self.path:
                            self.wfile.flush()
                            time.sleep(proxy.delay)
                finally:
                    conn.close()

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def gets(self, digest: str) -> list[str]:
        """The Range headers of the GETs of blob ``digest`` (one entry per GET)."""
        return [r for m, p, r in self.requests if m == "GET" and p.endswith(f"/blobs/{digest}")]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# -- crafting images by hand through the API -----------------------------------------------------

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_TAR = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def sha256(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def _call(
    host: str, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection(host, timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp


def put_blob(host: str, repo: str, data: bytes) -> str:
    """Upload ``data`` monolithically to an anonymous plain-HTTP registry; returns its digest."""
    digest = sha256(data)
    resp = _call(host, "POST", f"/v2/{repo}/blobs/uploads/")
    assert resp.status == 202, resp.status
    location = resp.getheader("Location") or ""
    path = location.split(host, 1)[-1]
    sep = "&" if "?" in path else "?"
    resp = _call(host, "PUT", f"{path}{sep}digest={digest}", data,
                 {"Content-Type": "application/octet-stream"})  # fmt: skip
    assert resp.status == 201, resp.status
    return digest


def put_manifest(host: str, repo: str, ref: str, body: bytes, media_type: str) -> str:
    resp = _call(host, "PUT", f"/v2/{repo}/manifests/{ref}", body, {"Content-Type": media_type})
    assert resp.status == 201, (resp.status, body[:200])
    return sha256(body)


@dataclass
class Pushed:
    manifest: str
    config: str
    layers: list[str]
    body: bytes


def push_image(
    host: str,
    repo: str,
    tag: str,
    layers: list[bytes],
    *,
    arch: str = "amd64",
    variant: str | None = None,
    docker: bool = False,
    diff_ids: list[str] | None = None,
    sizes: list[int] | None = None,
) -> Pushed:
    """Push an image made of ``layers`` (tarballs; gzip or not, by their magic) by hand.

    ``diff_ids`` overrides the config's (default: digest of each layer, gunzipped); ``sizes``
    overrides the sizes the manifest declares (hostile tests).
    """
    import gzip

    layer_digests = [put_blob(host, repo, data) for data in layers]
    if diff_ids is None:
        diff_ids = [sha256(gzip.decompress(d) if d[:2] == b"\x1f\x8b" else d) for d in layers]
    config: dict[str, Any] = {
        "architecture": arch,
        "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    if variant:
        config["variant"] = variant
    config_bytes = json.dumps(config).encode()
    config_digest = put_blob(host, repo, config_bytes)

    def layer_type(data: bytes) -> str:
        gz = data[:2] == b"\x1f\x8b"
        if docker:
            return DOCKER_GZIP if gz else "application/vnd.docker.image.rootfs.diff.tar"
        return OCI_GZIP if gz else OCI_TAR

    manifest = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
        "config": {
            "mediaType": DOCKER_CONFIG if docker else OCI_CONFIG,
            "digest": config_digest,
            "size": len(config_bytes),
        },
        "layers": [
            {
                "mediaType": layer_type(d),
                "digest": dg,
                "size": (sizes or [])[i] if sizes else len(d),
            }
            for i, (d, dg) in enumerate(zip(layers, layer_digests, strict=True))
        ],
    }
    body = json.dumps(manifest, indent=2).encode()
    digest = put_manifest(host, repo, tag, body, str(manifest["mediaType"]))
    return Pushed(digest, config_digest, layer_digests, body)


def push_index(
    host: str, repo: str, tag: str, entries: list[tuple[Pushed, dict[str, str]]], docker: bool
) -> str:
    """An index (or docker manifest list) of already pushed manifests with their platforms."""
    index = {
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST if docker else OCI_INDEX,
        "manifests": [
            {
                "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
                "digest": p.manifest,
                "size": len(p.body),
                "platform": platform,
            }
            for p, platform in entries
        ],
    }
    body = json.dumps(index).encode()
    return put_manifest(host, repo, tag, body, str(index["mediaType"]))
