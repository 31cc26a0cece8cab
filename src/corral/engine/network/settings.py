"""``NetworkSettings`` of ``corral inspect CONTAINER``, in docker's shape (docker 20+)::

    "NetworkSettings": {
        "Bridge": "", "SandboxID": "...", "SandboxKey": "<root>/containers/<id>/netns",
        "Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}], "443/tcp": null},
        "IPAddress": "10.86.0.2", "IPPrefixLen": 16, "Gateway": "10.86.0.1",
        "MacAddress": "02:42:0a:56:00:02", "EndpointID": "...",       (the default bridge's;
        ...                                                           "" when not on it)
        "Networks": {"app": {"IPAMConfig": {"IPv4Address": "10.87.0.9"} | null,
                             "Links": null, "Aliases": [...] | null, "NetworkID": "...",
                             "EndpointID": "...", "Gateway": "...", "IPAddress": "...",
                             "IPPrefixLen": 24, "MacAddress": "...", ...}}
    }

A container that does not run keeps its ``Networks`` (NetworkID, IPAMConfig, Aliases) with
empty addresses, empty ``Ports`` and no sandbox, as docker shows it. ``json_of`` is pure;
``network_settings`` reads the engine's records.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from corral.engine.network.model import DEFAULT_NETWORK, Endpoint, Network, PortMapping, mac_address
from corral.errors import NotFoundError

#: An attachment: the network, its aliases, the address ``--ip`` asked for ("": any).
Attachment = tuple[Network, Sequence[str], str]


def _endpoint_id(container_id: str, ep: Endpoint) -> str:
    """A stable 64-hex id for the lease (docker makes one per endpoint)."""
    return hashlib.sha256(f"{container_id}/{ep.network}/{ep.address}".encode()).hexdigest()


def endpoint_json(net: Network | None, aliases: Sequence[str], ip: str, container_id: str,
                  ep: Endpoint | None) -> dict[str, Any]:  # fmt: skip
    """One entry of ``Networks`` (``ep`` None: not running, addresses empty)."""
    user_aliases: list[str] | None = None
    if net is not None and net.user_defined:  # docker adds the short id on user networks
        user_aliases = [*aliases] + ([container_id[:12]] if ep is not None else [])
    return {
        "IPAMConfig": {"IPv4Address": ip} if ip else None,
        "Links": None,
        "Aliases": user_aliases,
        "NetworkID": net.id if net is not None else "",
        "EndpointID": _endpoint_id(container_id, ep) if ep is not None else "",
        "Gateway": net.gateway if ep is not None and net is not None and not net.internal
        else "",
        "IPAddress": ep.address if ep is not None else "",
        "IPPrefixLen": net.prefixlen if ep is not None and net is not None else 0,
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "MacAddress": mac_address(ep.address) if ep is not None else "",
        "DriverOpts": None,
    }


def ports_json(
    published: Sequence[PortMapping], exposed: Sequence[tuple[int, str]]
) -> dict[str, list[dict[str, str]] | None]:
    """``Ports``: each published port's host bindings; an exposed port not published: null."""
    out: dict[str, list[dict[str, str]] | None] = {}
    for port, proto in exposed:
        out.setdefault(f"{port}/{proto}", None)
    for p in published:
        bindings = out.get(f"{p.container_port}/{p.proto}") or []
        bindings.append({"HostIp": p.host_ip or "0.0.0.0", "HostPort": str(p.host_port)})
        out[f"{p.container_port}/{p.proto}"] = bindings
    return dict(sorted(out.items(), key=lambda kv: (int(kv[0].split("/")[0]), kv[0])))


def json_of(
    container_id: str,
    attached: Sequence[Attachment],
    endpoints: Sequence[Endpoint],
    published: Sequence[PortMapping],
    exposed: Sequence[tuple[int, str]],
    sandbox: str,
    mode: str = "",
) -> dict[str, Any]:
    """docker's NetworkSettings. ``sandbox``: the namespace file while the container runs, else
    ""; ``mode``: a mode without a network of corral's (``none``, ``host``) lists that name."""
    running = bool(sandbox)
    by_network = {ep.network: ep for ep in endpoints} if running else {}
    networks: dict[str, Any] = {
        net.name: endpoint_json(net, aliases, ip, container_id, by_network.get(net.name))
        for net, aliases, ip in attached
    }
    if not attached and mode in ("none", "host"):
        networks[mode] = endpoint_json(None, (), "", container_id, None)
    default = networks.get(DEFAULT_NETWORK) or endpoint_json(None, (), "", container_id, None)
    return {
        "Bridge": "",
        "SandboxID": hashlib.sha256(sandbox.encode()).hexdigest() if running else "",
        "HairpinMode": False,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "Ports": ports_json(published, exposed) if running else {},
        "SandboxKey": sandbox,
        "SecondaryIPAddresses": None,
        "SecondaryIPv6Addresses": None,
        **{key: default[key] for key in (
            "EndpointID", "Gateway", "GlobalIPv6Address", "GlobalIPv6PrefixLen", "IPAddress",
            "IPPrefixLen", "IPv6Gateway", "MacAddress")},
        "Networks": networks,
    }  # fmt: skip


def network_settings(
    networks: Any, container_id: str, exposed: Sequence[tuple[int, str]], sandbox: str
) -> dict[str, Any]:
    """NetworkSettings from the records of ``networks`` (a ``Networks``)."""
    store = networks.store
    request = store.request(container_id)
    static = store.static_addresses(container_id)
    attached = []
    for name, aliases in store.attachments(container_id):
        try:
            net = networks.get(name)
        except NotFoundError:  # removed under us: show what is left
            continue
        attached.append((net, aliases, static.get(name, "")))
    return json_of(
        container_id, attached, networks.endpoints(container_id), networks.ports(container_id),
        exposed, sandbox, request.mode if request is not None else "none",
    )
