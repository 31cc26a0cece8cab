"""The registry client: the OCI distribution API (``/v2/``), with the standard library only.

- ``transport``    HTTPS and TLS, keep-alive connections, the ping and the auth handshake
                   (basic, bearer tokens per scope), registry errors in their own words
- ``credentials``  auth.json (podman's and docker's format): who to be on which registry
- ``pull``         manifest (an index resolved to this platform), config, layers in parallel,
                   each verified, resumable, unpacked; the image registered last
- ``push``         blobs (skipped if there, mounted across repositories, uploaded whole or in
                   chunks), then the manifest
- ``login``        credentials checked against the registry, then stored; logout
- ``events``       typed progress events for the caller's callback: the engine draws nothing

What the documents mean (media types, manifests, indexes, platforms) is ``images.media``'s.
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
"""

from corral.engine.distribution.credentials import AuthFile, Credentials, default_auth_file
from corral.engine.distribution.login import login, logout, read_password
from corral.engine.distribution.pull import pull
from corral.engine.distribution.push import push
from corral.engine.distribution.transport import AuthError, Options, RegistryError

__all__ = [
    "AuthError",
    "AuthFile",
    "Credentials",
    "Options",
    "RegistryError",
    "default_auth_file",
    "login",
    "logout",
    "pull",
    "push",
    "read_password",
]
