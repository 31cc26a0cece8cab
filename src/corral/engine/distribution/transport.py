"""The registry transport: HTTPS, keep-alive connections, and the auth handshake of ``/v2/``.

Every pull, push and login starts the same way (the distribution spec's "API version check")::

    GET /v2/                                  200: no auth needed
                                              401 + WWW-Authenticate: which scheme, where
    Basic realm="..."                         send "Authorization: Basic <user:password>"
    Bearer realm="https://auth/token",        GET <realm>?service=reg&scope=repository:app:pull
           service="reg"                          (with Basic credentials, if any) -> {"token"}
                                              send "Authorization: Bearer <token>"

A bearer token is good for one *scope* (``repository:<path>:pull`` or ``:pull,push``), so it
is cached per scope; a 401 on a later request carries a challenge that may name a wider scope
(a cross-repository mount wants pull on the source too): the token is fetched again for the
union and the request repeated, once. Redirects (a registry hands blobs to a CDN) are followed;
credentials go only to the registry's own host.

**TLS.** HTTPS, verified against the system's CAs plus ``--cert-dir`` (``*.crt`` CA files,
``*.cert``/``*.key`` client pairs; ``/etc/containers/certs.d/<host>`` and
``/etc/docker/certs.d/<host>`` are read too). ``--tls-verify=false`` accepts any certificate and
falls back to plain HTTP when the registry does not speak TLS (the scheme is chosen by the ping).

**Connections** are kept alive, one per worker thread and host; one the server closed while it
was idle is re-opened once. Retrying a failed transfer is the caller's choice (a pull resumes a
blob with ``Range``; see ``pull``), as is what counts as success: ``request`` returns the
response, and ``fail`` turns an unexpected one into an error with the registry's own words.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import ssl
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from corral.engine.distribution.credentials import AuthFile, Credentials
from corral.engine.images.reference import Reference
from corral.errors import RuntimeFailure, UsageError, UserError

MAX_ERROR_BODY = 64 << 10
CHUNK = 1 << 20
RETRIES = 3

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
    jobs: int = 3
    chunk_size: int = 0  # push: 0 uploads each blob with one PUT, else PATCH chunks of this size
    retries: int = RETRIES
    timeout: float = 60.0


def scope(ref: Reference, push: bool = False) -> str:
    """The token scope a pull (or push) of ``ref`` needs."""
    return f"repository:{ref.path}:{'pull,push' if push else 'pull'}"


def client_for(ref: Reference, options: Options) -> Client:
    """A client for ``ref``'s registry, with ``--creds`` or the auth file's credentials."""
    creds = options.credentials
    if creds is None and options.auth_file is not None:
        creds = AuthFile(options.auth_file).get(ref.name)
    return Client(ref.api_host, options, creds)


# -- challenges (RFC 7235) -------------------------------------------------------------------------

_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lowercase: "basic" or "bearer"
    params: dict[str, str]


def parse_challenges(header: str) -> list[Challenge]:
    """``Bearer realm="https://a/token",service="reg",scope="x"`` -> [Challenge(...)]."""
    out: list[Challenge] = []
    text = header.strip()
    while text:
        m = re.match(r"([A-Za-z][A-Za-z0-9_-]*)\s*", text)
        if m is None:
            break
        scheme = m.group(1).lower()
        text = text[m.end() :]
        params: dict[str, str] = {}
        while True:
            p = _PARAM.match(text)
            if p is None or not p.group(0).strip():
                break
            value = p.group(2) if p.group(2) is not None else p.group(3) or ""
            params[p.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
            text = text[p.end() :]
        out.append(Challenge(scheme, params))
        text = text.lstrip(", ")
    return out


def _pick_challenge(header: str) -> Challenge | None:
    found = parse_challenges(header)
    for scheme in ("bearer", "basic"):
        for c in found:
            if c.scheme == scheme:
                return c
    return None


# -- the client ------------------------------------------------------------------------------------


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

    def reset(self) -> None:
        """Close this thread's connection to the registry (after a transfer broke off)."""
        self._drop(self.scheme, self.host)

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
        sent: Callable[[int], None] | None = None,
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
                    _send_file(conn, body, sent)
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
            data = read_limited(resp, MAX_ERROR_BODY)
            if resp.status == 401:
                self._challenge = _pick_challenge(resp.getheader("WWW-Authenticate") or "")
            elif resp.status != 200:
                raise RegistryError(
                    f"{self.host}: /v2/ answered HTTP {resp.status}: {error_text(data)}"
                    " (is it an OCI registry?)"
                )
            self._pinged = True
            return
        hint = "" if not self.options.tls_verify else " (for plain HTTP use --tls-verify=false)"
        raise RegistryError(f"{self.host}: cannot reach the registry: {reason(last)}{hint}")

    def authenticate(self) -> None:
        """Prove the credentials now (``login``): basic against ``/v2/``, bearer by a token."""
        self.ping()
        challenge = self._challenge
        if challenge is None:
            return  # the registry needs no auth; docker stores the credentials anyway
        if challenge.scheme == "basic":
            headers = {"Authorization": self.credentials.basic()} if self.credentials else {}
            resp = self._send("GET", self.url("/v2/"), headers, None)
            read_limited(resp, MAX_ERROR_BODY)
            if resp.status == 401:
                raise self._auth_failed()
            if resp.status != 200:
                raise RegistryError(f"{self.host}: /v2/ answered HTTP {resp.status}")
        else:
            self._token("")

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
            data = read_limited(resp, MAX_ERROR_BODY)
        except (OSError, http.client.HTTPException) as err:
            raise RegistryError(f"{self.host}: token server {realm}: {reason(err)}")
        if resp.status in (401, 403):
            raise self._auth_failed()
        if resp.status != 200:
            raise RegistryError(
                f"{self.host}: token server answered HTTP {resp.status}: {error_text(data)}"
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

    # requests

    def request(
        self,
        method: str,
        path: str,
        scope: str,
        headers: dict[str, str] | None = None,
        body: Body = None,
        sent: Callable[[int], None] | None = None,
    ) -> http.client.HTTPResponse:
        """A request with auth, redirects followed; the caller reads (or drains) the response.

        ``sent`` is told how many bytes of a file body went out, chunk by chunk.
        """
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
                resp = self._send(method, url, send, body, sent)
            except ssl.SSLCertVerificationError as err:
                raise RegistryError(f"{self.host}: TLS certificate not trusted: {err}")
            if resp.status == 401 and same_host and not retried:
                read_limited(resp, MAX_ERROR_BODY)
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
                read_limited(resp, MAX_ERROR_BODY)
                raise self._auth_failed()
            if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
                read_limited(resp, MAX_ERROR_BODY)
                url = urllib.parse.urljoin(url, resp.getheader("Location") or "")
                if resp.status == 303:
                    method, body = "GET", None
                continue
            return resp
        raise RegistryError(f"{self.host}: too many redirects or auth retries for {path}")

    def fail(self, resp: http.client.HTTPResponse, what: str) -> RegistryError | AuthError:
        """The error for a response that is not what was asked for (its body is consumed)."""
        data = read_limited(resp, MAX_ERROR_BODY)
        text = error_text(data)
        if resp.status == 403:
            return AuthError(f"{what}: access denied: {text}")
        return RegistryError(f"{what}: {text} (HTTP {resp.status})")


def _send_file(
    conn: http.client.HTTPConnection,
    body: tuple[Path, int, int],
    sent: Callable[[int], None] | None,
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
            if sent is not None:
                sent(len(data))


# -- helpers ---------------------------------------------------------------------------------------


def read_limited(resp: http.client.HTTPResponse, limit: int) -> bytes:
    """At most ``limit`` bytes of the body; a longer one is cut and its connection closed."""
    data = resp.read(limit + 1)
    if len(data) > limit:
        resp.close()  # do not drain an endless body; the connection is not reused
    return data[:limit]


def error_text(data: bytes) -> str:
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


def reason(err: BaseException | None) -> str:
    """A network error in a few words."""
    if isinstance(err, ssl.SSLError):
        return f"TLS: {err.reason or err}"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err) or type(err).__name__


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
            raise UserError(f"{d}/{name}: not a usable certificate: {reason(err)}")
    return ctx
