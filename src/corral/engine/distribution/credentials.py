"""Registry credentials: ``<root>/auth.json`` in podman's (and docker's) format.

::

    {"auths": {"127.0.0.1:5000": {"auth": "<base64 of user:password>"},
               "docker.io": {"auth": "..."}}}

Keys are ``host[:port]``, or ``host[:port]/repository/path`` for credentials that apply to one
namespace only (podman writes those with ``login registry/ns``); the longest key that covers a
repository wins. docker's legacy key ``https://index.docker.io/v1/`` counts as ``docker.io``.
The file is written atomically with mode 0600. Credential helpers are not supported.

``corral login`` writes it (after the registry accepted the credentials, see ``login``); a pull
or push reads it for the repository it talks to (``transport.client_for``), unless ``--creds``
gives them. How the credentials are then sent (basic, or traded for a bearer token) is the
transport's business.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral.engine.images.reference import DOCKER_HUB, registry_key
from corral.errors import UserError

if TYPE_CHECKING:
    from corral.engine.layout import Layout

_LEGACY_HUB = ("https://index.docker.io/v1/", "index.docker.io", "registry-1.docker.io")


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


class AuthFile:
    """One auth.json; reading a missing file gives no credentials."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"auths": {}}
        except (OSError, ValueError) as err:
            raise UserError(f"{self.path}: not a valid auth file: {err}")
        if not isinstance(data, dict) or not isinstance(data.get("auths", {}), dict):
            raise UserError(f"{self.path}: not a valid auth file: no 'auths' object")
        data.setdefault("auths", {})
        return data

    def _save(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".auth-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent="\t")
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.rename(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, name: str) -> Credentials | None:
        """Credentials for repository ``name`` (``host/path``) or for a bare registry."""
        auths: dict[str, Any] = self._load()["auths"]
        by_key: dict[str, Any] = {}
        for key, value in auths.items():
            norm = DOCKER_HUB if key in _LEGACY_HUB else key.removeprefix("https://")
            norm = norm.removeprefix("http://").rstrip("/")
            by_key.setdefault(norm, value)
        parts = name.split("/")
        for i in range(len(parts), 0, -1):
            entry = by_key.get("/".join(parts[:i]))
            if isinstance(entry, dict) and entry.get("auth"):
                try:
                    raw = base64.b64decode(str(entry["auth"]), validate=True).decode()
                except (ValueError, UnicodeDecodeError):
                    raise UserError(f"{self.path}: credentials for {name}: invalid 'auth' value")
                user, sep, password = raw.partition(":")
                if not sep:
                    raise UserError(f"{self.path}: credentials for {name}: want user:password")
                return Credentials(user, password)
        return None

    def set(self, key: str, creds: Credentials) -> None:
        data = self._load()
        auth = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
        data["auths"][key] = {"auth": auth}
        self._save(data)

    def remove(self, key: str) -> bool:
        """Forget ``key``'s credentials; False if there were none."""
        data = self._load()
        keys = [key, *(_LEGACY_HUB if key == DOCKER_HUB else ())]
        found = [k for k in keys if k in data["auths"]]
        for k in found:
            del data["auths"][k]
        if found:
            self._save(data)
        return bool(found)

    def remove_all(self) -> None:
        data = self._load()
        data["auths"] = {}
        self._save(data)


def key_for(registry: str) -> str:
    """The auth.json key ``login REGISTRY`` writes: ``host[:port]`` or ``host[:port]/path``."""
    text = registry.removeprefix("docker://").removeprefix("https://").removeprefix("http://")
    host, _, rest = text.rstrip("/").partition("/")
    key = registry_key(host)
    return f"{key}/{rest}" if rest else key


def default_auth_file(layout: Layout) -> Path:
    """``$REGISTRY_AUTH_FILE`` (podman's variable), else ``<root>/auth.json``."""
    env = os.environ.get("REGISTRY_AUTH_FILE")
    return Path(env) if env else layout.auth_file
