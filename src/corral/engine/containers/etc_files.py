"""The /etc/hosts, /etc/hostname and /etc/resolv.conf a container sees, as docker makes them.

The engine writes the three files in the container's directory and bind-mounts each over the
image's own (the runtime creates the target when the image lacks it), so they stay writable
even with ``--read-only`` and the image's files are untouched::

    <root>/containers/<id>/hosts        127.0.0.1 localhost, the IPv6 names, the container's
                                        own name, then every --add-host
    <root>/containers/<id>/hostname     the hostname and a newline
    <root>/containers/<id>/resolv.conf  the host's, without loopback nameservers (they would
                                        be the container's own loopback); docker's public
                                        defaults where none is left. With --dns, --dns-search
                                        or --dns-option, docker's: search, nameserver and
                                        options lines, each from its flag or else the host's

Without a network of its own the container's name maps to 127.0.0.1 so that ``hostname -i``
and ``getent hosts $(hostname)`` work; the network code passes the container's address.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from corral._record import datarecord, field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

HOST_RESOLV_CONF = "/etc/resolv.conf"
#: The ``--add-host`` lines, kept apart so that a rewrite of ``hosts`` can add them again.
EXTRA_HOSTS = "hosts.extra"
#: docker's fallback when the host's resolv.conf names only loopback servers (libnetwork).
DEFAULT_NAMESERVERS = ("8.8.8.8", "8.8.4.4")

_HOSTS_HEAD = """127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
ff00::0\tip6-mcastprefix
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
"""


def hosts(
    hostname: str, add_hosts: Sequence[tuple[str, str]] = (), address: str | None = None
) -> str:
    """The text of /etc/hosts; ``add_hosts`` is [(name, address)] as ``--add-host`` gives."""
    lines = [_HOSTS_HEAD.rstrip("\n")]
    lines.append(f"{address or '127.0.0.1'}\t{hostname}")
    lines += [f"{ip}\t{name}" for name, ip in add_hosts]
    return "\n".join(lines) + "\n"


@datarecord(frozen=True)
class Dns:
    """``--dns``, ``--dns-search``, ``--dns-option`` (each empty: not given)."""

    nameservers: Sequence[str] = field(default_factory=tuple)
    search: Sequence[str] = field(default_factory=tuple)
    options: Sequence[str] = field(default_factory=tuple)


def resolv_conf(
    host_text: str | None, nameservers: Sequence[str] | None = None, dns: Dns | None = None
) -> str:
    """The container's resolv.conf: the host's search/options, its non-loopback nameservers.
    With any of the ``dns`` flags, rebuilt as docker's libnetwork does (resolvconf.Build): one
    ``search`` line (none for ``--dns-search .``), the nameservers, one ``options`` line; what a
    flag does not give comes from the host's file."""
    if dns is not None and (dns.nameservers or dns.search or dns.options):
        return _built(host_text or "", dns)
    keep: list[str] = []
    servers: list[str] = list(nameservers or [])
    for line in (host_text or "").splitlines():
        words = line.split()
        if not words or words[0].startswith(("#", ";")):
            continue
        if words[0] == "nameserver":
            if nameservers is None and len(words) > 1 and not _loopback(words[1]):
                servers.append(words[1])
            continue
        keep.append(line.strip())
    if not servers:
        servers = list(DEFAULT_NAMESERVERS)
    return "".join(f"{line}\n" for line in keep + [f"nameserver {s}" for s in servers])


def _built(host_text: str, dns: Dns) -> str:
    servers, search, options = [], [], []
    for line in host_text.splitlines():
        words = line.split()
        if words[:1] == ["nameserver"] and len(words) > 1 and not _loopback(words[1]):
            servers.append(words[1])
        elif words[:1] in (["search"], ["domain"]):  # the last of them wins (resolv.conf(5))
            search = words[1:]
        elif words[:1] == ["options"]:
            options += words[1:]
    servers = list(dns.nameservers) or servers or list(DEFAULT_NAMESERVERS)
    search = list(dns.search) or search
    options = list(dns.options) or options
    lines = []
    if search and " ".join(search).strip() != ".":
        lines.append("search " + " ".join(search))
    lines += [f"nameserver {s}" for s in servers]
    if options:
        lines.append("options " + " ".join(options))
    return "".join(f"{line}\n" for line in lines)


def _loopback(address: str) -> bool:
    return address.startswith("127.") or address == "::1"


def write(
    container_dir: Path,
    hostname: str,
    add_hosts: Sequence[tuple[str, str]] = (),
    address: str | None = None,
    dns: Dns | None = None,
) -> list[dict[str, Any]]:
    """Write the three files in ``container_dir``; the OCI mounts that put them in /etc."""
    try:
        with open(HOST_RESOLV_CONF, encoding="utf-8", errors="replace") as f:
            host_resolv: str | None = f.read()
    except OSError:
        host_resolv = None
    files = {
        "hosts": hosts(hostname, add_hosts, address),
        "hostname": hostname + "\n",
        "resolv.conf": resolv_conf(host_resolv, dns=dns),
    }
    # The network part rewrites "hosts" as containers join and leave; it keeps these lines.
    (container_dir / EXTRA_HOSTS).write_text("".join(f"{ip}\t{name}\n" for name, ip in add_hosts))
    mounts = []
    for name, text in files.items():
        path = container_dir / name
        path.write_text(text)
        os.chmod(path, 0o644)
        mounts.append(
            {
                "destination": f"/etc/{name}",
                "type": "bind",
                "source": str(path),
                "options": ["rbind", "rprivate", "nosuid", "nodev", "noexec"],
            }
        )
    return mounts
