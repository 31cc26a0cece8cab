"""Networking for the engine: docker's model on the kernel's own machinery.

::

            host (its own namespace)                         container namespaces
    +------------------------------------------------+
    |  eth0 ... (the host's uplinks)                 |
    |     ^  masquerade (nft postrouting)            |
    |     |  ip_forward = 1                          |
    |  corral0  10.86.0.1/16 (a Linux bridge)  --------- vethXXXX === eth0 10.86.0.2/16
    |     |  DNAT host ports -> container (nft)      |                default via 10.86.0.1
    |  corral-1a2b3c4d  10.87.0.1/24 (user net) ------- vethYYYY === eth0 10.87.0.2/24
    +------------------------------------------------+

- ``model``    what users type, parsed (``-p``, ``--subnet``, ``--network``) and the records.
- ``store``    the tables in the engine's SQLite database; IPAM leases in one BEGIN IMMEDIATE
               transaction each, so concurrent runs never share an address.
- ``netlink``  bridge, veth, addresses and routes through pyroute2; namespace-side work in a
               forked child (the engine never setns()es itself).
- ``nft``      corral's own nftables table ``ip corral`` via ``nft -j``: masquerade, DNAT of
               published ports (prerouting and output; 127.0.0.1 works via route_localnet on the
               bridge plus a masquerade of loopback sources), hairpin, isolation, --internal.
- ``compat``   the ACCEPT rules docker's DOCKER-USER chain needs when dockerd is there.
- ``files``    /etc/hosts (kept current: name resolution between containers), hostname,
               resolv.conf, bind-mounted into the container.
- ``manager``  ``Networks``, the facade the engine and the CLI use.

No userspace proxy is on the data path: every published port is a kernel DNAT rule; the port is
only *reserved* (bound, never listened on) by the process that waits for the container.
IPv4 only (IPv6 is optional in the issue and not done).
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.engine.network.manager import NetworkInfo, Networks
    from corral.engine.network.model import (
        DEFAULT_BRIDGE,
        DEFAULT_NETWORK,
        DEFAULT_SUBNET,
        Endpoint,
        Network,
        NetworkRequest,
        PortMapping,
        parse_mode,
        parse_publish,
    )

# The names below load on first use (PEP 562): importing ``corral.engine.network.model`` or
# ``.files`` (what ``run --network none`` needs at most) must not import the manager and its
# kernel modules (socket, subprocess, nft, netlink).
_FROM = {
    "NetworkInfo": "manager",
    "Networks": "manager",
    **dict.fromkeys(
        (
            "DEFAULT_BRIDGE", "DEFAULT_NETWORK", "DEFAULT_SUBNET", "Endpoint", "Network",
            "NetworkRequest", "PortMapping", "parse_mode", "parse_publish",
        ),
        "model",
    ),
}  # fmt: skip


def __getattr__(name: str) -> object:
    module = _FROM.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_BRIDGE",
    "DEFAULT_NETWORK",
    "DEFAULT_SUBNET",
    "Endpoint",
    "Network",
    "NetworkInfo",
    "NetworkRequest",
    "Networks",
    "PortMapping",
    "parse_mode",
    "parse_publish",
]
