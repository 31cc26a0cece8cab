"""``corral login`` and ``logout``: credentials checked against the registry, kept in auth.json.

A login is the ping and auth handshake of every pull, with nothing pulled (``transport``)::

    GET /v2/                       200: the registry wants no credentials (docker stores them
                                        anyway, and so does this)
                                   401 Basic: GET /v2/ again with them; 401 means wrong
                                   401 Bearer: ask the realm for a token with them (no scope);
                                        401/403 from the token server means wrong

and only if the registry accepted them are they written to the auth file (``credentials``),
under ``host[:port]`` or the ``host[:port]/namespace`` that was given. A logout only edits the
file: registries keep no sessions.
"""

from __future__ import annotations

import http.client
from pathlib import Path
from typing import IO

from corral.engine.distribution.credentials import AuthFile, Credentials, key_for
from corral.engine.distribution.transport import Client, Options, RegistryError, reason
from corral.engine.images.reference import parse
from corral.errors import NotFoundError


def login(registry: str, credentials: Credentials, auth_file: Path, options: Options) -> str:
    """Check ``credentials`` against the registry, then store them; returns the auth.json key."""
    key = key_for(registry)
    host = parse(f"{key.split('/', 1)[0]}/x").api_host
    client = Client(host, options, credentials)
    try:
        client.authenticate()
    except (OSError, http.client.HTTPException) as err:
        raise RegistryError(f"{host}: {reason(err)}")
    finally:
        client.close()
    AuthFile(auth_file).set(key, credentials)
    return key


def logout(registry: str | None, auth_file: Path) -> str:
    """Forget one registry's credentials (``None``: all of them); returns what was forgotten."""
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
