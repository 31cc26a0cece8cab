"""What the network code talks about, and the parsing of what users type: pure, no kernel.

``-p`` follows docker::

    -p 8080:80                 every local address, TCP port 8080 -> the container's 80
    -p 127.0.0.1:8080:80/udp   only 127.0.0.1, UDP
    -p 8000-8002:80-82         a range, host and container of the same length
    -p 80                      the container's 80 on a host port the kernel picks (like -P)
    -p 127.0.0.1::80           the same, on 127.0.0.1 only

``--network`` names a mode: ``none`` (loopback only), ``host`` (the host's namespace),
``container:NAME`` (another container's namespace), ``bridge`` (the default network, corral0)
or a network made with ``network create``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from corral.errors import UsageError

#: The default network, made on first use. A /16 that is neither podman's 10.88.0.0/16 (nor its
#: 10.89.x.0/24 user networks) nor docker's 172.17.0.0/16 (nor its 172.18-31 and 192.168 pools).
DEFAULT_NETWORK = "bridge"
DEFAULT_BRIDGE = "corral0"
DEFAULT_SUBNET = "10.86.0.0/16"
#: Where ``network create`` without ``--subnet`` takes its /24s from.
POOL = "10.87.0.0/16"
POOL_PREFIX = 24
MODES = ("none", "host", "bridge")
PROTOCOLS = ("tcp", "udp")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Network:
    """A network: a Linux bridge with an address (the containers' gateway) on a subnet."""

    name: str
    id: str
    subnet: str  # "10.87.3.0/24"
    gateway: str  # "10.87.3.1"
    bridge: str  # "corral-1a2b3c4d", "corral0"
    internal: bool = False
    created: float = 0.0

    @property
    def prefixlen(self) -> int:
        return ipaddress.ip_network(self.subnet).prefixlen

    @property
    def user_defined(self) -> bool:
        """Containers on a user-defined network find each other by name (docker's rule)."""
        return self.name != DEFAULT_NETWORK


@dataclass(frozen=True)
class PortMapping:
    """One published port: ``host_ip:host_port -> container_port`` for ``proto``.

    ``host_ip`` "" means every local address; ``host_port`` 0 means "let the kernel pick".
    """

    container_port: int
    host_port: int = 0
    host_ip: str = ""
    proto: str = "tcp"

    def __str__(self) -> str:
        host = self.host_ip or "0.0.0.0"
        return f"{self.container_port}/{self.proto} -> {host}:{self.host_port}"


@dataclass(frozen=True)
class Endpoint:
    """A container's place on a network while it runs: its address and the host's veth end."""

    network: str
    container_id: str
    address: str
    veth: str
    name: str = ""
    aliases: tuple[str, ...] = ()


@dataclass
class NetworkRequest:
    """How a container asked to be networked (``--network``, ``-p``, ``-P``, ``--network-alias``),
    kept from ``create`` to every ``start``."""

    mode: str = DEFAULT_NETWORK  # none | host | container:<id> | a network's name
    aliases: list[str] = field(default_factory=list)
    publish: list[PortMapping] = field(default_factory=list)
    publish_all: bool = False  # -P: every port the image EXPOSEs, on host ports the kernel picks
    ip: str = ""  # --ip: a static IPv4 address on the (user-defined) network of ``mode``


def valid_name(name: str) -> bool:
    return bool(_NAME.match(name))


def _port(text: str, what: str, allow_zero: bool = False) -> int:
    if not text.isdigit():
        raise UsageError(f"{what}: invalid port {text!r}")
    port = int(text)
    if not (1 if not allow_zero else 0) <= port <= 65535:
        raise UsageError(f"{what}: port {port} is out of range (1-65535)")
    return port


def _range(text: str, what: str) -> list[int]:
    low, dash, high = text.partition("-")
    first = _port(low, what)
    last = _port(high, what) if dash else first
    if last < first:
        raise UsageError(f"{what}: invalid range {text!r}")
    return list(range(first, last + 1))


def parse_publish(value: str) -> list[PortMapping]:
    """One ``-p`` value -> its mappings (several for a range). UsageError names the value."""
    what = f"-p {value!r}"
    spec, slash, proto = value.partition("/")
    proto = proto.lower() if slash else "tcp"
    if proto not in PROTOCOLS:
        raise UsageError(f"{what}: unknown protocol {proto!r} (use tcp or udp)")
    # IP:HOST:CONTAINER, HOST:CONTAINER, CONTAINER; an IPv6 host address would need brackets.
    parts = spec.rsplit(":", 2)
    host_ip, host = "", ""
    if len(parts) == 3:
        host_ip, host, container = parts
    elif len(parts) == 2:
        host, container = parts
    else:
        (container,) = parts
    if host_ip:
        try:
            addr = ipaddress.ip_address(host_ip)
        except ValueError:
            raise UsageError(f"{what}: invalid host address {host_ip!r}") from None
        if addr.version != 4:
            raise UsageError(f"{what}: only IPv4 host addresses are supported")
        host_ip = "" if addr.is_unspecified else str(addr)
    inner = _range(container, what)
    outer = _range(host, what) if host else [0] * len(inner)
    if len(outer) != len(inner):
        if len(inner) == 1 and host:  # docker: a host range for one container port: the first
            outer = outer[:1]
        else:
            raise UsageError(f"{what}: host and container port ranges differ in length")
    return [PortMapping(c, h, host_ip, proto) for h, c in zip(outer, inner, strict=True)]


def parse_expose(value: str) -> list[tuple[int, str]]:
    """An image's ExposedPorts key ("80/tcp", "53/udp", "8000-8001") -> (port, proto) pairs."""
    spec, slash, proto = value.partition("/")
    proto = proto.lower() if slash else "tcp"
    if proto not in PROTOCOLS:
        return []
    return [(p, proto) for p in _range(spec, f"EXPOSE {value!r}")]


def parse_subnet(value: str, what: str = "--subnet") -> ipaddress.IPv4Network:
    """An IPv4 CIDR with room for a gateway and a container (at most /30)."""
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError as err:
        raise UsageError(f"{what} {value!r}: invalid CIDR ({err})") from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise UsageError(f"{what} {value!r}: only IPv4 subnets are supported")
    if net.prefixlen > 30:
        raise UsageError(f"{what} {value!r}: too small (at most /30: a gateway and one container)")
    return net


def parse_gateway(value: str, subnet: ipaddress.IPv4Network) -> str:
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        raise UsageError(f"--gateway {value!r}: invalid address") from None
    if addr not in subnet or addr in (subnet.network_address, subnet.broadcast_address):
        raise UsageError(f"--gateway {value!r}: not a host address of {subnet}")
    return str(addr)


def parse_ip(value: str, flag: str = "--ip") -> str:
    """``--ip ADDRESS``: an IPv4 address (docker's words when it is not one)."""
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        addr = None
    if not isinstance(addr, ipaddress.IPv4Address):
        raise UsageError(f"{flag}: invalid IPv4 address: {value}")
    return str(addr)


def check_static(net: Network, address: str, flag: str = "--ip") -> None:
    """A static address must be a container address of a user-defined network's subnet (docker
    refuses it on the default bridge)."""
    if not net.user_defined:
        raise UsageError(
            f"{flag} {address}: user specified IP address is supported on user defined networks "
            "only"
        )
    subnet = ipaddress.ip_network(net.subnet)
    addr = ipaddress.ip_address(address)
    if addr not in subnet:
        raise UsageError(
            f"{flag} {address}: Invalid address {address}: It does not belong to any of this "
            f"network's subnets ({net.name}: {net.subnet})"
        )
    if addr in (subnet.network_address, subnet.broadcast_address) or address == net.gateway:
        what = "gateway" if address == net.gateway else "network or broadcast"
        raise UsageError(f"{flag} {address}: is the {what} address of network {net.name}")


def mac_address(address: str) -> str:
    """docker's MAC for an IPv4 address (libnetwork's GenerateMACFromIP): 02:42 and the four
    bytes of the address, locally administered and unique among corral's networks."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(address).packed)


def parse_mode(value: str) -> str:
    """``--network`` as given -> the mode kept (containers are resolved by the caller)."""
    if not value:
        raise UsageError("--network: must not be empty")
    if value.startswith("container:"):
        if not value[len("container:") :]:
            raise UsageError(f"--network {value!r}: name the container")
        return value
    if value == "default":
        return DEFAULT_NETWORK
    if value in MODES or valid_name(value):
        return value
    raise UsageError(f"--network {value!r}: invalid network name")
