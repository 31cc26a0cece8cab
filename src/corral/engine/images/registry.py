"""Pull and push images over the OCI distribution API (``/v2/``), with the standard library.

::

    corral pull 127.0.0.1:5000/app:1        GET  /v2/                          ping: scheme, auth
                                            GET  /v2/app/manifests/1           index or manifest
                                            GET  /v2/app/manifests/sha256:..   the platform's one
                                            GET  /v2/app/blobs/<config>        verified, stored
                                            GET  /v2/app/blobs/<layer> x N     in parallel, each
                                                 (Range: bytes=N- to resume)   into <root>/ingest
    corral push app:1 127.0.0.1:5000/app:1  HEAD /v2/app/blobs/<d>             skip what exists
                                            POST /v2/app/blobs/uploads/?mount=<d>&from=<repo>
                                            PUT  <location>&digest=<d>         (or PATCH chunks)
                                            PUT  /v2/app/manifests/1

**Transport.** HTTPS, verified against the system's CAs plus ``--cert-dir`` (``*.crt`` CA files,
``*.cert``/``*.key`` client pairs; ``/etc/containers/certs.d/<host>`` and
``/etc/docker/certs.d/<host>`` are read too). ``--tls-verify=false`` accepts any certificate and
falls back to plain HTTP when the registry does not speak TLS. Connections are kept alive, one
per worker thread.

**Auth.** The ping's ``WWW-Authenticate`` says which scheme: ``Basic`` (the credentials from
``auth.json`` or ``--creds``) or ``Bearer`` (a token from the realm, asked for with the
credentials and the scope ``repository:<path>:pull[,push]``; cached per scope and refreshed on a
401).

**Nothing is trusted.** A manifest is at most 4 MiB and, pulled by digest, must hash to it (the
``Docker-Content-Digest`` header too, when sent); a config at most 32 MiB; every blob is hashed
while it downloads and must match its digest and declared size before it is renamed into the
content store. A declared size larger than the free space of the store is refused before any
byte is fetched. Layers are unpacked by the store's snapshotter (``layers.apply_layer``), which
refuses truncated or escaping tarballs, and the image is registered only after all of it is in
place: a refused pull never shows in ``corral images``.

**Resuming.** Blobs download into ``<root>/ingest/<hex>``, which survives an interrupted pull
(``tmp/`` is swept by the next command; ``ingest/`` is not). The next pull skips blobs already in
the content store and asks for the rest of a partial one with ``Range``; a registry that answers
``200`` instead of ``206`` sends the whole blob again, and only that blob restarts. A transient
network error is retried the same way (3 times) within one pull.

The whole pull holds the store lock (``Layout.locked``): blobs fetched but not yet referenced by
an image must not be collected by a concurrent ``rmi``; a second pull waits.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import ssl
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TextIO

from corral.engine.format import human_size
from corral.engine.images.auth import AuthFile, Challenge, Credentials, key_for, parse_challenges
from corral.engine.images.content import DigestMismatch
from corral.engine.images.digest import check_digest, is_digest, short_id
from corral.engine.images.layers import LAYER_MEDIA_TYPES, LayerError
from corral.engine.images.reference import Reference, parse
from corral.errors import NotFoundError, RuntimeFailure, UsageError, UserError

if TYPE_CHECKING:
    from corral.engine.images.store import Image, ImageStore

MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_DOCKER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
MEDIA_DOCKER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MEDIA_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
MANIFESTS = (MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST)
INDEXES = (MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST)
ACCEPT = ", ".join((*MANIFESTS, *INDEXES))
# Layer media types a pull accepts: the store's, plus docker's uncompressed one.
PULL_LAYER_TYPES = {**LAYER_MEDIA_TYPES, MEDIA_DOCKER_TAR: "tar"}
# --format: OCI <-> docker schema 2 media types (manifest, config, layers).
_TO_DOCKER = {
    MEDIA_OCI_MANIFEST: MEDIA_DOCKER_MANIFEST,
    MEDIA_OCI_CONFIG: MEDIA_DOCKER_CONFIG,
    "application/vnd.oci.image.layer.v1.tar": MEDIA_DOCKER_TAR,
    "application/vnd.oci.image.layer.v1.tar+gzip": MEDIA_DOCKER_GZIP,
}
_TO_OCI = {v: k for k, v in _TO_DOCKER.items()}
_TO_OCI["application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"] = (
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
)

MAX_MANIFEST = 4 << 20
MAX_CONFIG = 32 << 20
MAX_ERROR_BODY = 64 << 10
CHUNK = 1 << 20
RETRIES = 3
_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm"}

Body = bytes | tuple[Path, int, int] | None  # bytes, or (file, offset, length)


class RegistryError(RuntimeFailure):
    """The registry could not be reached, or answered with an error."""


class AuthError(UserError):
    """Missing or wrong credentials, or access denied."""


@dataclass
class Options:
    """How to talk to registries; the CLI flags map onto these one to one."""

    tls_verify: bool = True
    cert_dir: str | None = None
    auth_file: Path | None = None
    credentials: Credentials | None = None
    platform: str | None = None
    quiet: bool = False
    jobs: int = 3
    chunk_size: int = 0  # push: 0 uploads each blob with one PUT, else PATCH chunks of this size
    retries: int = RETRIES
    timeout: float = 60.0
    out: TextIO = field(default_factory=lambda: sys.stderr)


def default_auth_file(store: ImageStore) -> Path:
    """``$REGISTRY_AUTH_FILE`` (podman's variable), else ``<root>/auth.json``."""
    env = os.environ.get("REGISTRY_AUTH_FILE")
    return Path(env) if env else store.layout.root / "auth.json"


# -- HTTP ------------------------------------------------------------------------------------------


class Client:
    """One registry, as seen by one pull or push: scheme, TLS, auth, keep-alive connections."""

    def __init__(self, host: str, options: Options, credentials: Credentials | None) -> None:
        self.host = host
        self.options = options
        self.credentials = credentials
        self.scheme = "https"
        self._context = _tls_context(host, options)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._challenge: Challenge | None = None
        self._tokens: dict[str, str] = {}
        self._pinged = False
        self._ping_lock = threading.Lock()

    # connections

    def _connection(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        conns: dict[tuple[str, str], http.client.HTTPConnection] = getattr(self._local, "conns", {})
        self._local.conns = conns
        conn = conns.get((scheme, netloc))
        if conn is None:
            if scheme == "https":
                conn = http.client.HTTPSConnection(
                    netloc, timeout=self.options.timeout, context=self._context
                )
            else:
                conn = http.client.HTTPConnection(netloc, timeout=self.options.timeout)
            conns[(scheme, netloc)] = conn
        return conn

    def _drop(self, scheme: str, netloc: str) -> None:
        conns: dict[tuple[str, str], http.client.HTTPConnection] = getattr(self._local, "conns", {})
        conn = conns.pop((scheme, netloc), None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        for conn in getattr(self._local, "conns", {}).values():
            conn.close()
        self._local.conns = {}

    def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: Body,
        progress: Callable[[int], None] | None = None,
    ) -> http.client.HTTPResponse:
        """One request; a kept-alive connection the server closed meanwhile is re-opened once."""
        parts = urllib.parse.urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        for attempt in (0, 1):
            conn = self._connection(parts.scheme, parts.netloc)
            fresh = conn.sock is None
            try:
                conn.putrequest(method, target, skip_accept_encoding=True)
                length = len(body) if isinstance(body, bytes) else body[2] if body else 0
                if body is not None or method in ("PUT", "POST", "PATCH"):
                    conn.putheader("Content-Length", str(length))
                for key, value in headers.items():
                    conn.putheader(key, value)
                conn.putheader("User-Agent", "corral")
                conn.endheaders()
                if isinstance(body, bytes):
                    conn.send(body)
                elif body is not None:
                    _send_file(conn, body, progress)
                return conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self._drop(parts.scheme, parts.netloc)
                if attempt or fresh:
                    raise
            except BaseException:
                self._drop(parts.scheme, parts.netloc)
                raise
        raise AssertionError("unreachable")

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}{path}"

    # ping and auth

    def ping(self) -> None:
        """``GET /v2/``: pick the scheme (https, or http under --tls-verify=false), learn auth."""
        with self._ping_lock:
            if not self._pinged:
                self._ping()

    def _ping(self) -> None:
        schemes = ["https", "http"] if not self.options.tls_verify else ["https"]
        last: Exception | None = None
        for scheme in schemes:
            self.scheme = scheme
            try:
                resp = self._send("GET", self.url("/v2/"), {}, None)
            except ssl.SSLCertVerificationError as err:
                raise RegistryError(
                    f"{self.host}: TLS certificate not trusted ({err.verify_message}); "
                    "give its CA with --cert-dir, or use --tls-verify=false"
                )
            except (OSError, http.client.HTTPException) as err:
                last = err
                self._drop(scheme, self.host)
                continue
            data = _read_limited(resp, MAX_ERROR_BODY)
            if resp.status == 401:
                self._challenge = _pick_challenge(resp.getheader("WWW-Authenticate") or "")
            elif resp.status != 200:
                raise RegistryError(
                    f"{self.host}: /v2/ answered HTTP {resp.status}: {_error_text(data)}"
                    " (is it an OCI registry?)"
                )
            self._pinged = True
            return
        hint = "" if not self.options.tls_verify else " (for plain HTTP use --tls-verify=false)"
        raise RegistryError(f"{self.host}: cannot reach the registry: {_reason(last)}{hint}")

    def _token(self, scope: str, refresh: bool = False) -> str:
        assert self._challenge is not None
        with self._lock:
            if not refresh and scope in self._tokens:
                return self._tokens[scope]
        params = self._challenge.params
        realm = params.get("realm")
        if not realm:
            raise RegistryError(f"{self.host}: bearer challenge without a realm")
        query = [("service", params["service"])] if params.get("service") else []
        query += [("scope", s) for s in scope.split(" ") if s]
        if self.credentials is not None:
            query.append(("account", self.credentials.username))
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
        headers = {"Accept": "application/json"}
        if self.credentials is not None:
            headers["Authorization"] = self.credentials.basic()
        try:
            resp = self._send("GET", url, headers, None)
            data = _read_limited(resp, MAX_ERROR_BODY)
        except (OSError, http.client.HTTPException) as err:
            raise RegistryError(f"{self.host}: token server {realm}: {_reason(err)}")
        if resp.status in (401, 403):
            raise self._auth_failed()
        if resp.status != 200:
            raise RegistryError(
                f"{self.host}: token server answered HTTP {resp.status}: {_error_text(data)}"
            )
        try:
            answer = json.loads(data)
            token = str(answer.get("token") or answer.get("access_token") or "")
        except (ValueError, AttributeError):
            token = ""
        if not token:
            raise RegistryError(f"{self.host}: token server sent no token")
        with self._lock:
            self._tokens[scope] = token
        return token

    def _auth_failed(self) -> AuthError:
        if self.credentials is None:
            return AuthError(
                f"{self.host}: authentication required (run: corral login {self.host})"
            )
        return AuthError(f"{self.host}: invalid username or password")

    def _authorization(self, scope: str, refresh: bool = False) -> str | None:
        challenge = self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            return self.credentials.basic() if self.credentials else None
        return "Bearer " + self._token(scope, refresh)

    def request(
        self,
        method: str,
        path: str,
        scope: str,
        headers: dict[str, str] | None = None,
        body: Body = None,
        progress: Callable[[int], None] | None = None,
    ) -> http.client.HTTPResponse:
        """A request with auth, redirects followed; the caller reads (or drains) the response."""
        self.ping()
        url = path if "://" in path else self.url(path)
        hdrs = dict(headers or {})
        auth = self._authorization(scope)
        retried = False
        for _ in range(6):
            send = dict(hdrs)
            same_host = urllib.parse.urlsplit(url).netloc == self.host
            if auth and same_host:
                send["Authorization"] = auth
            try:
                resp = self._send(method, url, send, body, progress)
            except ssl.SSLCertVerificationError as err:
                raise RegistryError(f"{self.host}: TLS certificate not trusted: {err}")
            if resp.status == 401 and same_host and not retried:
                _read_limited(resp, MAX_ERROR_BODY)
                retried = True
                found = _pick_challenge(resp.getheader("WWW-Authenticate") or "")
                if found is None:
                    raise self._auth_failed()
                self._challenge = found
                if found.scheme == "basic":
                    if self.credentials is None or auth:
                        raise self._auth_failed()
                    auth = self.credentials.basic()
                else:
                    wanted = " ".join(
                        dict.fromkeys([*scope.split(), found.params.get("scope", "")])
                    )
                    auth = "Bearer " + self._token(wanted.strip(), refresh=True)
                continue
            if resp.status == 401:
                _read_limited(resp, MAX_ERROR_BODY)
                raise self._auth_failed()
            if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
                _read_limited(resp, MAX_ERROR_BODY)
                url = urllib.parse.urljoin(url, resp.getheader("Location") or "")
                if resp.status == 303:
                    method, body = "GET", None
                continue
            return resp
        raise RegistryError(f"{self.host}: too many redirects or auth retries for {path}")

    def fail(self, resp: http.client.HTTPResponse, what: str) -> RegistryError | AuthError:
        """The error for a response that is not what was asked for (its body is consumed)."""
        data = _read_limited(resp, MAX_ERROR_BODY)
        text = _error_text(data)
        if resp.status == 403:
            return AuthError(f"{what}: access denied: {text}")
        return RegistryError(f"{what}: {text} (HTTP {resp.status})")


def _send_file(
    conn: http.client.HTTPConnection,
    body: tuple[Path, int, int],
    progress: Callable[[int], None] | None,
) -> None:
    path, offset, length = body
    with open(path, "rb") as f:
        f.seek(offset)
        left = length
        while left > 0:
            data = f.read(min(CHUNK, left))
            if not data:
                raise RegistryError(f"{path}: shorter than expected while uploading")
            conn.send(data)
            left -= len(data)
            if progress is not None:
                progress(len(data))


def _read_limited(resp: http.client.HTTPResponse, limit: int) -> bytes:
    data = resp.read(limit + 1)
    if len(data) > limit:
        resp.close()  # do not drain an endless body; the connection is not reused
    return data[:limit]


def _error_text(data: bytes) -> str:
    """The registry's ``{"errors": [{"code", "message"}]}`` as one line."""
    try:
        errors = json.loads(data).get("errors") or []
        parts = [
            f"{e.get('code', '')}: {e.get('message', '')}".strip(": ")
            for e in errors
            if isinstance(e, dict)
        ]
        if parts:
            return "; ".join(parts)
    except (ValueError, AttributeError):
        pass
    text = data.decode("utf-8", "replace").strip()
    return " ".join(text.split())[:200] or "no details"


def _reason(err: BaseException | None) -> str:
    if isinstance(err, ssl.SSLError):
        return f"TLS: {err.reason or err}"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err) or type(err).__name__


def _pick_challenge(header: str) -> Challenge | None:
    found = parse_challenges(header)
    for scheme in ("bearer", "basic"):
        for c in found:
            if c.scheme == scheme:
                return c
    return None


def _tls_context(host: str, options: Options) -> ssl.SSLContext:
    if not options.tls_verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    ctx = ssl.create_default_context()
    dirs = [options.cert_dir] if options.cert_dir else []
    dirs += [f"/etc/containers/certs.d/{host}", f"/etc/docker/certs.d/{host}"]
    for i, d in enumerate(dirs):
        try:
            names = sorted(os.listdir(d))
        except FileNotFoundError:
            if i == 0 and options.cert_dir:
                raise UsageError(f"--cert-dir {d}: no such directory")
            continue
        except OSError as err:
            raise UserError(f"{d}: {err.strerror}")
        try:
            for name in names:
                if name.endswith(".crt"):
                    ctx.load_verify_locations(cafile=os.path.join(d, name))
                elif name.endswith(".cert"):
                    key = os.path.join(d, name[: -len(".cert")] + ".key")
                    ctx.load_cert_chain(os.path.join(d, name), key)
        except (ssl.SSLError, OSError) as err:
            raise UserError(f"{d}/{name}: not a usable certificate: {_reason(err)}")
    return ctx


def _scope(ref: Reference, push: bool = False) -> str:
    return f"repository:{ref.path}:{'pull,push' if push else 'pull'}"


def client_for(ref: Reference, options: Options) -> Client:
    creds = options.credentials
    if creds is None and options.auth_file is not None:
        creds = AuthFile(options.auth_file).get(ref.name)
    return Client(ref.api_host, options, creds)


# -- progress --------------------------------------------------------------------------------------


class Progress:
    """Per-blob progress: redrawn bars on a terminal, one plain line per finished blob otherwise."""

    def __init__(self, out: TextIO, quiet: bool = False) -> None:
        self.out = out
        self.quiet = quiet
        self.tty = out.isatty() and not quiet
        self._rows: list[list[Any]] = []  # [label, done, total, status]
        self._lock = threading.Lock()
        self._drawn = 0
        self._last = 0.0

    def add(self, label: str, total: int) -> int:
        with self._lock:
            self._rows.append([label, 0, total, "waiting"])
            return len(self._rows) - 1

    def advance(self, row: int, amount: int, status: str = "") -> None:
        with self._lock:
            self._rows[row][1] += amount
            if status:
                self._rows[row][3] = status
            now = time.monotonic()
            if self.tty and now - self._last > 0.1:
                self._last = now
                self._draw()

    def set(self, row: int, done: int, status: str) -> None:
        with self._lock:
            self._rows[row][1] = done
            self._rows[row][3] = status
            if self.tty:
                self._draw()

    def finish(self, row: int, status: str) -> None:
        with self._lock:
            label, done, total, _ = self._rows[row]
            self._rows[row][3] = status
            if self.tty:
                self._draw()
            elif not self.quiet:
                size = f" ({human_size(max(done, total))})" if total else ""
                self.out.write(f"{label}: {status}{size}\n")
                self.out.flush()

    def line(self, text: str) -> None:
        if self.quiet:
            return
        with self._lock:
            if self.tty:
                self._drawn = 0  # printed lines stay above the bars
            self.out.write(text + "\n")
            self.out.flush()

    def _draw(self) -> None:
        out = [f"\x1b[{self._drawn}A"] if self._drawn else []
        for label, done, total, status in self._rows:
            width = 30
            filled = width * done // total if total else width
            bar = "[" + "=" * filled + (">" if filled < width else "") + " " * (width - filled)
            bar = bar[: width + 1] + "]"
            amount = f"{human_size(done)}/{human_size(total)}" if total else ""
            out.append(f"\x1b[2K{label}: {status:<12} {bar} {amount}\n")
        self.out.write("".join(out))
        self.out.flush()
        self._drawn = len(self._rows)


# -- manifests -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: dict[str, Any] = field(default_factory=dict)


def _descriptor(data: Any, where: str) -> Descriptor:
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


def media_type_of(data: bytes, header: str | None, what: str) -> tuple[str, dict[str, Any]]:
    """Parse a manifest; its type from the JSON's mediaType, else the Content-Type, else shape."""
    try:
        doc = json.loads(data)
    except ValueError:
        raise UserError(f"{what}: manifest is not JSON")
    if not isinstance(doc, dict):
        raise UserError(f"{what}: manifest is not a JSON object")
    media = doc.get("mediaType") or (header or "").split(";")[0].strip()
    if doc.get("schemaVersion") == 1 or media in MEDIA_SCHEMA1:
        raise UserError(f"{what}: docker schema 1 manifests are not supported")
    if media not in (*MANIFESTS, *INDEXES):
        if "manifests" in doc:
            media = MEDIA_OCI_INDEX
        elif "config" in doc and "layers" in doc:
            media = MEDIA_OCI_MANIFEST
        else:
            raise UserError(f"{what}: unsupported manifest media type {media!r}")
    if doc.get("schemaVersion") != 2:
        raise UserError(f"{what}: schemaVersion must be 2")
    return media, doc


def parse_platform(text: str | None) -> tuple[str, str, str]:
    """``"linux/arm64/v8"`` -> ``("linux", "arm64", "v8")``; None means this machine's."""
    from corral.engine.images.store import host_architecture

    if not text:
        return "linux", host_architecture(), ""
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise UsageError(f"--platform {text!r}: want os/arch[/variant], e.g. linux/arm64")
    arch = _ARCH_ALIASES.get(parts[1], parts[1])
    return parts[0], arch, parts[2] if len(parts) == 3 else ""


def choose_platform(
    entries: Sequence[Descriptor], want: tuple[str, str, str], what: str
) -> Descriptor:
    """The index entry for ``want`` (os, arch, variant); arm64's variant v8 is the default."""
    os_, arch, variant = want

    def norm_variant(a: str, v: str) -> str:
        return "" if (a, v) == ("arm64", "v8") else v

    for entry in entries:
        p = entry.platform
        if entry.media_type not in MANIFESTS and entry.media_type:
            continue
        if (
            p.get("os") != os_
            or _ARCH_ALIASES.get(p.get("architecture", ""), p.get("architecture")) != arch
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


# -- pull ------------------------------------------------------------------------------------------


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
        resp = client.request("GET", path, _scope(ref), {"Accept": ACCEPT})
        if resp.status == 404:
            _read_limited(resp, MAX_ERROR_BODY)
            raise NotFoundError(f"{what}: manifest unknown (no such image in the registry)")
        if resp.status != 200:
            raise client.fail(resp, what)
        declared = resp.getheader("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_MANIFEST:
            resp.close()
            raise UserError(f"{what}: manifest of {declared} bytes is larger than 4 MiB")
        data = resp.read(MAX_MANIFEST + 1)
    except (OSError, http.client.HTTPException) as err:
        raise RegistryError(f"{what}: {_reason(err)}")
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
    media, _ = media_type_of(data, resp.getheader("Content-Type"), what)
    return data, media, digest


class _Download:
    """One blob into ``<root>/ingest/<hex>``, resumed with Range, verified, renamed into place."""

    def __init__(
        self,
        client: Client,
        ref: Reference,
        desc: Descriptor,
        store: ImageStore,
        progress: Progress,
        stop: threading.Event,
        label: str,
    ) -> None:
        self.client = client
        self.ref = ref
        self.desc = desc
        self.store = store
        self.progress = progress
        self.stop = stop
        self.row = progress.add(label, desc.size)
        self.what = f"{ref.name}: blob {desc.digest}"

    def run(self) -> str:
        desc = self.desc
        content = self.store.content
        if content.exists(desc.digest):
            self.progress.set(self.row, desc.size, "exists")
            self.progress.finish(self.row, "already exists")
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
                self.client._drop(self.client.scheme, self.client.host)
                continue
        else:
            raise RegistryError(f"{self.what}: download failed: {_reason(last)}")
        self._commit(partial)
        self.progress.finish(self.row, "done")
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
            "GET", f"/v2/{self.ref.path}/blobs/{desc.digest}", _scope(self.ref), headers
        )
        if resp.status == 416 and offset:
            _read_limited(resp, MAX_ERROR_BODY)
            partial.unlink(missing_ok=True)
            raise _Transient("range not satisfiable; restarting")
        if resp.status == 404:
            _read_limited(resp, MAX_ERROR_BODY)
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
        self.progress.set(self.row, start, "resuming" if start else "downloading")
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
                self.progress.advance(self.row, len(data), "downloading")
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
    resp = client.request("GET", f"/v2/{ref.path}/blobs/{desc.digest}", _scope(ref))
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


def pull(store: ImageStore, text: str, options: Options) -> Image:
    """``corral pull``: fetch, verify, unpack and tag an image; returns it."""
    ref = parse(text)
    want = parse_platform(options.platform)
    client = client_for(ref, options)
    progress = Progress(options.out, options.quiet)
    try:
        return _pull(store, ref, client, want, progress, options)
    finally:
        client.close()


def _pull(
    store: ImageStore,
    ref: Reference,
    client: Client,
    want: tuple[str, str, str],
    progress: Progress,
    options: Options,
) -> Image:
    what = str(ref)
    data, media, digest = fetch_manifest(client, ref, ref.reference, ref.digest)
    if media in INDEXES:
        _, doc = media_type_of(data, media, what)
        entries = [
            _descriptor(e, f"{what}: manifests[{i}]")
            for i, e in enumerate(doc.get("manifests") or [])
        ]
        chosen = choose_platform(entries, want, what)
        progress.line(f"Resolved {what} to {'/'.join(x for x in want if x)}: {chosen.digest}")
        data, media, digest = fetch_manifest(client, ref, chosen.digest, chosen.digest, chosen.size)
        if media not in MANIFESTS:
            raise UserError(f"{what}: index entry {chosen.digest} is not an image manifest")
    _, manifest = media_type_of(data, media, what)
    config_desc = _descriptor(manifest.get("config"), f"{what}: config")
    raw_layers = manifest.get("layers")
    if not isinstance(raw_layers, list):
        raise UserError(f"{what}: manifest has no layers list")
    layers = [_descriptor(x, f"{what}: layers[{i}]") for i, x in enumerate(raw_layers)]
    for i, layer in enumerate(layers):
        if layer.media_type not in PULL_LAYER_TYPES:
            raise UserError(f"{what}: layers[{i}]: unsupported media type {layer.media_type!r}")
    progress.line(f"Pulling {what} ({digest})")
    with store.locked():
        _sweep_ingest(store)
        _check_space(store, [config_desc, *layers], what)
        config_bytes = _fetch_small_blob(client, ref, config_desc, MAX_CONFIG)
        try:
            config = json.loads(config_bytes)
            diff_ids = list(config["rootfs"]["diff_ids"])
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{what}: config {config_desc.digest} has no rootfs.diff_ids")
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
                jobs[layer.digest] = _Download(
                    client,
                    ref,
                    layer,
                    store,
                    progress,
                    stop,
                    f"Copying blob {short_id(layer.digest)}",
                )
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
            store.content.write_bytes(config_bytes, config_desc.digest, f"{what}: config")
            image = store._commit_image(
                config,
                [(x.digest, x.media_type, x.size) for x in layers],
                ref.local_tag,
                config_bytes=config_bytes,
                manifest_bytes=data,
                manifest_media_type=media,
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
    progress.line(f"Writing manifest to image destination: {digest}")
    return image


# -- push ------------------------------------------------------------------------------------------


def convert_manifest(manifest: dict[str, Any], media: str, fmt: str, what: str) -> dict[str, Any]:
    """The manifest with OCI <-> docker schema 2 media types (``fmt``: ``oci`` or ``v2s2``)."""
    target = MEDIA_OCI_MANIFEST if fmt == "oci" else MEDIA_DOCKER_MANIFEST
    if media == target:
        return manifest
    table = _TO_OCI if fmt == "oci" else _TO_DOCKER
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


def _upload(
    client: Client,
    store: ImageStore,
    dest: Reference,
    desc: Descriptor,
    progress: Progress,
    label: str,
    sources: Sequence[str],
) -> str:
    row = progress.add(label, desc.size)
    what = f"{dest.name}: blob {desc.digest}"
    scope = _scope(dest, push=True)
    base = f"/v2/{dest.path}/blobs/"
    resp = client.request("HEAD", base + desc.digest, scope)
    resp.read()
    if resp.status == 200:
        progress.set(row, desc.size, "exists")
        progress.finish(row, "already exists")
        return "exists"
    if resp.status not in (404,):
        raise RegistryError(f"{what}: HEAD answered HTTP {resp.status}")
    for source in sources:
        mscope = f"{scope} repository:{source}:pull"
        query = urllib.parse.urlencode({"mount": desc.digest, "from": source})
        resp = client.request("POST", f"{base}uploads/?{query}", mscope, body=b"")
        _read_limited(resp, MAX_ERROR_BODY)
        if resp.status == 201:
            progress.set(row, desc.size, "mounted")
            progress.finish(row, f"mounted from {source}")
            return "mounted"
        if resp.status == 202:  # not mountable: the registry opened an upload; use it
            return _upload_to(client, store, dest, desc, progress, row, resp, what)
    resp = client.request("POST", f"{base}uploads/", scope, body=b"")
    _read_limited(resp, MAX_ERROR_BODY)
    if resp.status != 202:
        raise RegistryError(f"{what}: starting the upload answered HTTP {resp.status}")
    return _upload_to(client, store, dest, desc, progress, row, resp, what)


def _upload_to(
    client: Client,
    store: ImageStore,
    dest: Reference,
    desc: Descriptor,
    progress: Progress,
    row: int,
    resp: http.client.HTTPResponse,
    what: str,
) -> str:
    scope = _scope(dest, push=True)
    location = resp.getheader("Location")
    if not location:
        raise RegistryError(f"{what}: the registry gave no upload location")
    url = urllib.parse.urljoin(client.url(f"/v2/{dest.path}/blobs/uploads/"), location)
    path = store.content.path(desc.digest)
    if not path.is_file():
        raise NotFoundError(f"{what}: not in the local content store")
    progress.set(row, 0, "uploading")

    def step(n: int) -> None:
        progress.advance(row, n)

    chunk = client.options.chunk_size
    if chunk > 0:
        offset = 0
        while offset < desc.size:
            n = min(chunk, desc.size - offset)
            headers = {
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + n - 1}",
            }
            r = client.request("PATCH", url, scope, headers, (path, offset, n), step)
            _read_limited(r, MAX_ERROR_BODY)
            if r.status != 202:
                raise RegistryError(f"{what}: PATCH answered HTTP {r.status}")
            url = urllib.parse.urljoin(url, r.getheader("Location") or url)
            offset += n
        body: Body = b""
    else:
        body = (path, 0, desc.size)
    sep = "&" if "?" in url else "?"
    put = f"{url}{sep}{urllib.parse.urlencode({'digest': desc.digest})}"
    r = client.request("PUT", put, scope, {"Content-Type": "application/octet-stream"}, body, step)
    if r.status != 201:
        raise client.fail(r, what)
    r.read()
    progress.finish(row, "done")
    return "uploaded"


def push(
    store: ImageStore, source: str, destination: str | None, options: Options, fmt: str | None
) -> tuple[str, int]:
    """``corral push``: upload blobs, then the manifest; returns (manifest digest, size)."""
    image = store.get(source)
    dest_text = destination or source
    dest = parse(dest_text, "destination")
    if dest.digest:
        raise UsageError(f"destination {dest_text!r}: push to a tag, not a digest")
    what = str(dest)
    media = store.manifest_media_type(image.manifest)
    data = store.content.read_bytes(image.manifest)
    if fmt is not None:
        fmt = {"docker": "v2s2", "v2s2": "v2s2", "oci": "oci"}.get(fmt)
        if fmt is None:
            raise UsageError("--format: want oci or v2s2")
        _, manifest = media_type_of(data, media, what)
        converted = convert_manifest(manifest, media, fmt, what)
        if converted is not manifest:
            data = json.dumps(converted, separators=(",", ":")).encode()
            media = converted["mediaType"]
    _, manifest = media_type_of(data, media, what)
    blobs = [_descriptor(manifest["config"], "config")] + [
        _descriptor(x, f"layers[{i}]") for i, x in enumerate(manifest["layers"])
    ]
    client = client_for(dest, options)
    progress = Progress(options.out, options.quiet)
    progress.line(f"Pushing {what}")
    try:
        client.ping()
        with ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool:
            futures = [
                pool.submit(
                    _upload,
                    client,
                    store,
                    dest,
                    d,
                    progress,
                    f"Copying {'config' if i == 0 else 'blob'} {short_id(d.digest)}",
                    _mount_sources(store, d.digest, dest),
                )
                for i, d in enumerate(dict((b.digest, b) for b in blobs).values())
            ]
            for fut in futures:
                fut.result()
        resp = client.request(
            "PUT",
            f"/v2/{dest.path}/manifests/{dest.tag}",
            _scope(dest, push=True),
            {"Content-Type": media},
            data,
        )
        if resp.status not in (200, 201):
            raise client.fail(resp, f"{what}: manifest")
        resp.read()
    except (OSError, http.client.HTTPException) as err:
        raise RegistryError(f"{what}: {_reason(err)}")
    finally:
        client.close()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    header = resp.getheader("Docker-Content-Digest")
    if header and header != digest:
        raise RegistryError(f"{what}: registry stored the manifest as {header}, expected {digest}")
    progress.line(f"Writing manifest to image destination: {digest}")
    return digest, len(data)


# -- login -----------------------------------------------------------------------------------------


def login(registry: str, credentials: Credentials, auth_file: Path, options: Options) -> str:
    """Check ``credentials`` against the registry, then store them; returns the auth.json key."""
    key = key_for(registry)
    host = parse(f"{key.split('/', 1)[0]}/x").api_host
    client = Client(host, options, credentials)
    try:
        client.ping()
        challenge = client._challenge
        if challenge is None:
            pass  # the registry needs no auth; docker stores the credentials anyway
        elif challenge.scheme == "basic":
            resp = client._send(
                "GET", client.url("/v2/"), {"Authorization": credentials.basic()}, None
            )
            _read_limited(resp, MAX_ERROR_BODY)
            if resp.status == 401:
                raise client._auth_failed()
            if resp.status != 200:
                raise RegistryError(f"{host}: /v2/ answered HTTP {resp.status}")
        else:
            client._token("")
    except (OSError, http.client.HTTPException) as err:
        raise RegistryError(f"{host}: {_reason(err)}")
    finally:
        client.close()
    AuthFile(auth_file).set(key, credentials)
    return key


def logout(registry: str | None, auth_file: Path) -> str:
    """Forget one registry's credentials (``None``: all of them)."""
    store = AuthFile(auth_file)
    if registry is None:
        store.remove_all()
        return "all registries"
    key = key_for(registry)
    if not store.remove(key):
        raise NotFoundError(f"not logged into {key}")
    return key


def read_password(stream: IO[str]) -> str:
    """``--password-stdin``: the first line, without its newline."""
    return stream.readline().rstrip("\r\n")
