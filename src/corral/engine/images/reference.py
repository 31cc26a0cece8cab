"""Image references as docker reads them: ``[registry[:port]/]path[:tag][@sha256:hex]``.

::

    busybox                          docker.io/library/busybox:latest
    alice/app:1                      docker.io/alice/app:1
    localhost:5000/x:y               localhost:5000/x:y
    127.0.0.1:5000/a/b@sha256:...    127.0.0.1:5000/a/b@sha256:... (no tag)
    docker://quay.io/x               quay.io/x:latest (podman's transport prefix is accepted)

The first component is a registry when it holds a ``.`` or a ``:`` or is ``localhost``;
otherwise the image lives on Docker Hub, and a one-component name there is under ``library/``.
Local tags use docker's *familiar* form (``busybox:latest``, ``127.0.0.1:5000/x:y``), which is
what ``corral images`` shows and what ``corral run busybox`` finds.
"""

from __future__ import annotations

import re

from corral._record import datarecord
from corral.errors import UsageError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DEFAULT_TAG = "latest"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_DOMAIN = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$"
)
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@datarecord(frozen=True)
class Reference:
    """A parsed, normalized reference. ``tag`` is None only when ``digest`` is set."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``docker.io/library/busybox``: the full repository name."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """``busybox``, ``alice/app``, ``127.0.0.1:5000/x``: the name docker prints."""
        if self.domain == DOCKER_HUB:
            return self.path.removeprefix("library/")
        return self.name

    @property
    def api_host(self) -> str:
        """The host the registry API is served on (Docker Hub's differs from its name)."""
        return DOCKER_HUB_API if self.domain == DOCKER_HUB else self.domain

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/``: the digest if there is one, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def local_tag(self) -> str | None:
        """The local tag an image pulled by this reference gets (None for a digest-only pull)."""
        return f"{self.familiar_name}:{self.tag}" if self.tag else None

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.domain, self.path, tag, None)

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def parse(ref: str, what: str = "image reference") -> Reference:
    """Parse and normalize ``ref``; a malformed one is a UsageError naming it."""
    text = ref.removeprefix("docker://")
    if not text:
        raise UsageError(f"{what}: must not be empty")
    digest = None
    if "@" in text:
        text, digest = text.split("@", 1)
        if not _DIGEST.match(digest):
            raise UsageError(f"{what} {ref!r}: invalid digest (want sha256:<64 hex digits>)")
    tag = None
    slash, colon = text.rfind("/"), text.rfind(":")
    if colon > slash:
        text, tag = text[:colon], text[colon + 1 :]
        if not _TAG.match(tag):
            raise UsageError(f"{what} {ref!r}: invalid tag {tag!r}")
    first, sep, rest = text.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, rest
        if not _DOMAIN.match(domain):
            raise UsageError(f"{what} {ref!r}: invalid registry {domain!r}")
    else:
        domain, path = DOCKER_HUB, text
    if domain == "index.docker.io":
        domain = DOCKER_HUB
    if domain == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not _PATH.match(path):
        raise UsageError(
            f"{what} {ref!r}: invalid repository name (lowercase letters, digits and . _ - /)"
        )
    if len(f"{domain}/{path}") > 255:
        raise UsageError(f"{what} {ref!r}: repository name longer than 255 characters")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest)


def normalize(ref: str, what: str = "image reference") -> str:
    """The local tag ``ref`` names, in docker's familiar form: ``busybox`` and
    ``docker.io/library/busybox:latest`` are both ``busybox:latest``. A digest-only reference
    names no tag: a UsageError (``what`` names the argument)."""
    parsed = parse(ref, what)
    if parsed.tag is None:
        raise UsageError(f"{what} {ref!r}: a digest reference cannot be used as a tag here")
    return f"{parsed.familiar_name}:{parsed.tag}"


def split_local(ref: str, what: str = "image reference") -> tuple[str, str | None]:
    """``(familiar repository, tag or None)``: ``corral images docker.io/library/busybox`` lists
    ``busybox`` with every tag (no tag given: None), ``busybox:1`` only tag ``1``."""
    parsed = parse(ref, what)
    text = ref.removeprefix("docker://").split("@", 1)[0]
    tagged = text.rfind(":") > text.rfind("/")
    return parsed.familiar_name, parsed.tag if tagged else None


def registry_key(registry: str) -> str:
    """A registry as auth.json keys it: ``docker.io`` for Docker Hub, else ``host[:port]``."""
    text = registry.removeprefix("docker://").removeprefix("https://").removeprefix("http://")
    text = text.split("/", 1)[0]
    if text in ("index.docker.io", DOCKER_HUB_API, ""):
        return DOCKER_HUB
    if not _DOMAIN.match(text):
        raise UsageError(f"registry {registry!r}: invalid host name")
    return text
