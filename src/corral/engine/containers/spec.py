"""A container's OCI config from its image's config and the ``run`` flags: pure, no kernel.

::

    default_spec()                      runc's config.json: namespaces, mounts, masked paths
      + image config  Env, Entrypoint, Cmd, WorkingDir, User
      + run flags     -e K=V, -w DIR, -u UID[:GID], --hostname, CMD...
      = config.json   process.{args, env, cwd, user, terminal: false}, docker's 14 capabilities,
                      root "rootfs" (read-write: the overlay's upper dir takes the writes),
                      network namespace: the file the engine made (loopback only, for now)

The rules follow docker: CMD... replaces the image's Cmd, never its Entrypoint; ``-e`` wins over
the image's Env for the same name; HOSTNAME and HOME are added when missing; ``-u`` and the
image's User are numeric (names would need the image's /etc/passwd; not supported yet).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from corral.errors import UsageError

if TYPE_CHECKING:
    from corral.engine.network.model import NetworkRequest

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: docker's default capability set (moby's oci/caps/defaults.go).
DOCKER_CAPS = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]


@dataclass
class RunOptions:
    """The ``corral run`` / ``create`` flags that shape the container."""

    command: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    workdir: str | None = None
    user: str | None = None
    hostname: str | None = None
    entrypoint: str | None = None
    seccomp: bool = True  # podman's/docker's default profile; --security-opt seccomp=unconfined
    network: NetworkRequest | None = None  # --network, -p, -P (None: the default bridge)


def parse_user(value: str, what: str) -> tuple[int, int]:
    """``UID[:GID]`` -> (uid, gid); gid defaults to uid's value as docker does for numbers (0)."""
    text = value.strip()
    if text in ("", "root"):
        return 0, 0
    uid_text, _, gid_text = text.partition(":")
    try:
        uid = int(uid_text)
        gid = int(gid_text) if gid_text else 0
    except ValueError:
        raise UsageError(
            f"{what} {value!r}: only numeric UID[:GID] is supported (user names are not yet)"
        ) from None
    if not (0 <= uid < 2**32 - 1 and 0 <= gid < 2**32 - 1):
        raise UsageError(f"{what} {value!r}: out of range")
    return uid, gid


def merge_env(image_env: Sequence[str], overrides: Sequence[str]) -> list[str]:
    """The image's Env with ``-e`` applied: ``K=V`` sets, ``K`` alone passes the caller's value."""
    out: dict[str, str] = {}
    for item in image_env:
        key, _, value = item.partition("=")
        out[key] = value
    for item in overrides:
        key, eq, value = item.partition("=")
        if not key:
            raise UsageError(f"-e {item!r}: the variable name is empty")
        if not eq:
            import os

            if key in os.environ:  # docker: -e NAME passes the caller's value through
                out[key] = os.environ[key]
            continue
        out[key] = value
    return [f"{k}={v}" for k, v in out.items()]


def build_spec(
    image_config: dict[str, Any],
    opts: RunOptions,
    *,
    container_id: str,
    netns: str | None,
) -> dict[str, Any]:
    """The OCI config.json for a container of an image whose config is ``image_config``."""
    from corral.spec.defaults import default_spec

    cfg = image_config.get("config") or {}
    entrypoint = list(cfg.get("Entrypoint") or [])
    if opts.entrypoint is not None:
        entrypoint = [opts.entrypoint] if opts.entrypoint else []
    cmd = list(opts.command) if opts.command else list(cfg.get("Cmd") or [])
    if opts.entrypoint is not None and not opts.command:
        cmd = []
    args = entrypoint + cmd
    if not args:
        raise UsageError("no command specified (the image has no Cmd or Entrypoint; give one)")
    uid, gid = parse_user(
        opts.user if opts.user is not None else str(cfg.get("User") or ""),
        "-u" if opts.user is not None else "the image's User",
    )
    hostname = opts.hostname or container_id[:12]
    env = merge_env(list(cfg.get("Env") or [DEFAULT_PATH]), opts.env)
    names = {item.partition("=")[0] for item in env}
    if "PATH" not in names:
        env.insert(0, DEFAULT_PATH)
    if "HOSTNAME" not in names:
        env.append(f"HOSTNAME={hostname}")
    if "HOME" not in names:
        env.append("HOME=/root" if uid == 0 else "HOME=/")
    cwd = opts.workdir or cfg.get("WorkingDir") or "/"
    if not cwd.startswith("/"):
        raise UsageError(f"-w {cwd!r}: the working directory must be an absolute path")

    spec: dict[str, Any] = copy.deepcopy(default_spec())
    process = spec["process"]
    process.update(
        terminal=False,
        user={"uid": uid, "gid": gid},
        args=args,
        env=env,
        cwd=cwd,
        noNewPrivileges=False,
    )
    process["capabilities"] = {
        "bounding": list(DOCKER_CAPS),
        "effective": list(DOCKER_CAPS),
        "permitted": list(DOCKER_CAPS),
    }
    spec["root"] = {"path": "rootfs", "readonly": False}
    spec["hostname"] = hostname
    linux = spec["linux"]
    namespaces = []
    for ns in linux["namespaces"]:
        if ns["type"] == "network" and netns is not None:
            namespaces.append({"type": "network", "path": netns})
        else:
            namespaces.append(ns)
    linux["namespaces"] = namespaces
    linux["cgroupsPath"] = f"/corral/{container_id}"
    if opts.seccomp:
        from corral.engine.seccomp_default import default_seccomp

        linux["seccomp"] = default_seccomp(list(DOCKER_CAPS))
    spec["annotations"] = {"io.corral.engine": "1"}
    return spec
