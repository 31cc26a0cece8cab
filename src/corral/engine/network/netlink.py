"""Links, addresses and routes, through netlink (pyroute2), and the few sysctls networking needs.

A container on a network gets one veth pair: the host's end (``veth<11 hex>``) is a port of the
network's bridge, the other end is moved into the container's namespace at creation (pyroute2
passes the namespace file as ``IFLA_NET_NS_FD``) and there renamed ``eth0`` (``eth1``... for
further networks), given its address and, unless the network is internal, a default route via
the bridge's address. The work inside the namespace is done by a forked child that ``setns``es
into it: the engine's own process never changes namespace (DESIGN.md). Deleting either end
deletes the pair, and the kernel deletes it by itself when the container's namespace goes.

pyroute2 is imported inside the functions: it costs ~0.1 s and only network set-up needs it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

from corral.errors import KernelError

IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"


def _ipr() -> Any:
    from pyroute2 import IPRoute

    return IPRoute()


def _netlink_error(op: str, err: Exception, name: str) -> KernelError:
    code = getattr(err, "code", 0) or 0
    return KernelError(op, int(code), str(err), name)


def index(name: str) -> int | None:
    with _ipr() as ipr:
        found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def ensure_bridge(name: str, gateway: str, prefixlen: int) -> None:
    """The bridge ``name`` with ``gateway/prefixlen``, up, with route_localnet on (so that
    connections to 127.0.0.1:HOST can be DNATed into it)."""
    from pyroute2 import NetlinkError

    with _ipr() as ipr:
        try:
            if not ipr.link_lookup(ifname=name):
                ipr.link("add", ifname=name, kind="bridge")
            idx = ipr.link_lookup(ifname=name)[0]
            have = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=idx, family=2)}
            if gateway not in have:
                ipr.addr("add", index=idx, address=gateway, prefixlen=prefixlen)
            ipr.link("set", index=idx, state="up")
        except NetlinkError as err:
            raise _netlink_error("bridge", err, name) from None
    write_sysctl(f"/proc/sys/net/ipv4/conf/{name}/route_localnet", "1")


def delete_link(name: str) -> bool:
    """Delete the link ``name`` (a bridge, or a veth and so its pair); False if not there."""
    from pyroute2 import NetlinkError

    with _ipr() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            return False
        try:
            ipr.link("del", index=found[0])
        except NetlinkError as err:
            if getattr(err, "code", 0) == 19:  # ENODEV: gone meanwhile
                return False
            raise _netlink_error("link del", err, name) from None
    return True


def add_veth(host: str, peer: str, bridge: str, netns_path: str, mac: str | None = None) -> None:
    """A veth pair: ``host`` on ``bridge`` (up, hairpin on), ``peer`` in the namespace file
    (with the MAC address ``mac``, when given)."""
    from pyroute2 import NetlinkError

    with _ipr() as ipr:
        try:
            inside = {"ifname": peer, "net_ns_fd": netns_path}
            if mac:
                inside["address"] = mac
            ipr.link("add", ifname=host, kind="veth", peer=inside)
            idx = ipr.link_lookup(ifname=host)[0]
            master = ipr.link_lookup(ifname=bridge)[0]
            ipr.link("set", index=idx, master=master, state="up")
            # A container reaching itself through a published port: the bridge must send the
            # frame back out of the port it came in on (IFLA_BRPORT_MODE).
            ipr.brport("set", index=idx, mode=1)
        except NetlinkError as err:
            with contextlib.suppress(Exception):
                delete_link(host)
            raise _netlink_error("veth", err, host) from None


def configure_inside(
    netns_path: str, peer: str, ifname: str, address: str, prefixlen: int, gateway: str | None
) -> None:
    """In the namespace: rename ``peer`` to ``ifname``, address it, up, default route."""

    def work() -> None:
        with _ipr() as ipr:
            idx = ipr.link_lookup(ifname=peer)[0]
            ipr.link("set", index=idx, ifname=ifname)
            ipr.addr("add", index=idx, address=address, prefixlen=prefixlen)
            ipr.link("set", index=idx, state="up")
            lo = ipr.link_lookup(ifname="lo")
            if lo:
                ipr.link("set", index=lo[0], state="up")
            if gateway is not None and not _has_default_route(ipr):
                ipr.route("add", dst="0.0.0.0/0", gateway=gateway)

    in_netns(netns_path, work, "configure " + ifname)


def remove_inside(netns_path: str, ifname: str) -> None:
    """Delete ``ifname`` in the namespace (and so its veth pair)."""

    def work() -> None:
        with _ipr() as ipr:
            found = ipr.link_lookup(ifname=ifname)
            if found:
                ipr.link("del", index=found[0])

    in_netns(netns_path, work, "remove " + ifname)


def _has_default_route(ipr: Any) -> bool:
    return any(r.get("dst_len") == 0 for r in ipr.get_routes(family=2, table=254))


def in_netns(netns_path: str, work: Callable[[], None], what: str) -> None:
    """Run ``work`` in a forked child that joined the network namespace ``netns_path``."""
    from corral import sys as csys

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            os.close(read)
            fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
            csys.setns(fd, csys.CLONE_NEWNET, netns_path)
            work()
        except BaseException as err:
            with contextlib.suppress(OSError):
                os.write(write, f"{type(err).__name__}: {err}".encode()[:4000])
            code = 1
        os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        message = f.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise KernelError(what, 0, message or f"child status {status:#x}", netns_path)


def read_sysctl(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def write_sysctl(path: str, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as err:
        raise KernelError("write", err.errno or 0, err.strerror or str(err), path) from None
