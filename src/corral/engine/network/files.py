"""A networked container's /etc/hosts, /etc/hostname and /etc/resolv.conf.

The engine writes them in the container's directory and the OCI config bind-mounts them over
the image's files (as docker does), so the image is never changed and the files can be updated
while the container runs.

Name resolution between containers is **/etc/hosts kept current**, not a DNS server: when a
container joins or leaves a user-defined network, the hosts file of every running container on
that network is rewritten in place (same inode: a bind mount pins the inode, so a rename would
not be seen). Why not a small DNS responder per network, like docker's 127.0.0.11: it would be
one more long-lived process per network to start, supervise, put in the right namespace and
clean up after, and one more place to be wrong when it dies; /etc/hosts is read by every libc
resolver (glibc, musl, busybox) on each lookup, costs nothing at run time, and is correct as
soon as the write returns. The cost is O(containers on the network) file writes on each join or
leave, which is small next to creating a veth. A name resolves only on networks the two
containers share (docker's rule); the default ``bridge`` network resolves no names.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: run --network none writes these files without the model
    from corral.engine.network.model import Endpoint

HOSTS, HOSTNAME, RESOLV = "hosts", "hostname", "resolv.conf"
FALLBACK_NAMESERVERS = ("8.8.8.8", "8.8.4.4")  # docker's, when the host's are all loopback


def hosts_text(
    hostname: str, own: Iterable[Endpoint], peers: Iterable[Endpoint], extra: str = ""
) -> str:
    """The container's /etc/hosts: loopback, its own addresses, its peers' (``extra``: the
    ``--add-host`` lines, engine.containers.etc_files keeps them in ``hosts.extra``)."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    mine = list(own)
    for ep in mine:
        names = _unique([hostname, ep.name, *ep.aliases])
        lines.append(f"{ep.address}\t{' '.join(names)}")
    if not mine:
        lines.append(f"127.0.1.1\t{hostname}")
    for ep in peers:
        names = _unique([ep.name, ep.container_id[:12], *ep.aliases])
        lines.append(f"{ep.address}\t{' '.join(names)}")
    lines += extra.splitlines()
    return "\n".join(lines) + "\n"


def resolv_text(host_resolv: str) -> str:
    """The host's resolv.conf without loopback nameservers (they are not reachable from the
    container's namespace); docker's public fallback when none is left."""
    out, servers = [], 0
    for line in host_resolv.splitlines():
        fields = line.split()
        if fields[:1] == ["nameserver"] and len(fields) > 1:
            if fields[1].startswith("127.") or fields[1] == "::1":
                continue
            servers += 1
        out.append(line)
    if not servers:
        out += [f"nameserver {ns}" for ns in FALLBACK_NAMESERVERS]
    return "\n".join(out) + "\n"


def write_in_place(path: Path, text: str) -> None:
    """Replace the file's contents without replacing the file (a bind mount shows its inode)."""
    data = text.encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def write_initial(container_dir: Path, hostname: str) -> None:
    """The three files as they are before the container joins any network."""
    try:
        host = Path("/etc/resolv.conf").read_text()
    except OSError:
        host = ""
    write_in_place(container_dir / RESOLV, resolv_text(host))
    write_in_place(container_dir / HOSTNAME, hostname + "\n")
    write_in_place(container_dir / HOSTS, hosts_text(hostname, [], []))


def spec_mounts(container_dir: Path) -> list[dict[str, object]]:
    """OCI mounts of the three files over the image's."""
    return [
        {"destination": f"/etc/{name}", "type": "bind", "source": str(container_dir / name),
         "options": ["rbind", "rprivate"]}
        for name in (HOSTS, HOSTNAME, RESOLV)
    ]  # fmt: skip


def read_extra_hosts(container_dir: Path) -> str:
    from corral.engine.containers.etc_files import EXTRA_HOSTS

    with contextlib.suppress(OSError):
        return (container_dir / EXTRA_HOSTS).read_text()
    return ""


def read_hostname(container_dir: Path, default: str) -> str:
    with contextlib.suppress(OSError):
        return (container_dir / HOSTNAME).read_text().strip() or default
    return default


def _unique(names: Iterable[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        if name and name not in out:
            out.append(name)
    return out
