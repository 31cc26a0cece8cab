"""``Networks``: docker's network model on one engine root (see the package docstring).

Lifecycle of a container's networking, as the container code calls it::

    create   request(cid, NetworkRequest)        what --network / -p / -P asked, kept
             edit_spec(cid, spec, dir)           the netns to join, /etc files bind-mounted
    start    setup(cid, name, netns, dir)        lease, veth, address, route, DNAT, hosts files
    end      teardown(cid)                       rules, veth, lease, port reservations, peers'
                                                 hosts files (also after a dead monitor: the
                                                 engine's next command calls it)
    rm       forget(cid)                         the request and attachments
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import os
import secrets
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.engine.network import compat, files, netlink, nft, shortcut
from corral.engine.network.model import (
    DEFAULT_BRIDGE,
    DEFAULT_NETWORK,
    DEFAULT_SUBNET,
    POOL,
    POOL_PREFIX,
    Endpoint,
    Network,
    NetworkRequest,
    PortMapping,
    check_static,
    mac_address,
    parse_expose,
    parse_gateway,
    parse_subnet,
    valid_name,
)
from corral.engine.network.store import NetworkStore
from corral.errors import CorralError, NotFoundError, UsageError, UserError

IP_FORWARD_KEY = "ip_forward"


@dataclass(frozen=True)
class NetworkInfo:
    """``network inspect``: the network and the containers on it now."""

    network: Network
    endpoints: list[Endpoint]


class Networks:
    """The networks of one engine root.

    ``db`` is the engine's database connection; ``state_dir`` holds the lock that serializes
    kernel set-up (bridge and table creation) between concurrent commands; ``container_dir``
    maps a container id to its directory (where its /etc files are); ``alive`` tells whether a
    container still runs (for cleaning up after a dead monitor).
    """

    def __init__(
        self,
        db: sqlite3.Connection | Callable[[], sqlite3.Connection],
        state_dir: Path,
        container_dir: Callable[[str], Path],
        alive: Callable[[str], bool] | None = None,
    ) -> None:
        self.store = NetworkStore(db)
        self.state_dir = state_dir
        self.container_dir = container_dir
        self.alive = alive
        self._held: dict[str, list[socket.socket]] = {}
        self._kept: dict[str, int] = {}

    @contextlib.contextmanager
    def kernel_lock(self) -> Iterator[None]:
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.state_dir / "network.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- networks -------------------------------------------------------------------------------

    def default(self) -> Network:
        """The default network's record (made on first use; its bridge when a container needs
        it)."""
        net = self.store.network(DEFAULT_NETWORK)
        if net is None:
            subnet = ipaddress.ip_network(DEFAULT_SUBNET)
            with contextlib.suppress(CorralError):  # a concurrent command made it first
                self.store.add_network(Network(
                    DEFAULT_NETWORK, _new_id(), DEFAULT_SUBNET, str(subnet.network_address + 1),
                    DEFAULT_BRIDGE, False, time.time(),
                ))  # fmt: skip
            net = self.store.network(DEFAULT_NETWORK)
            assert net is not None
        return net

    def create(
        self, name: str, subnet: str | None = None, gateway: str | None = None,
        internal: bool = False,
    ) -> Network:  # fmt: skip
        """``network create``: a record only; the bridge comes up with its first container."""
        if not valid_name(name):
            raise UsageError(f"network name {name!r}: use letters, digits and _ . - ")
        if name in ("none", "host", "default", DEFAULT_NETWORK):
            raise UserError(f"network name {name!r} is reserved")
        self.default()
        if self.store.network(name) is not None:
            raise UserError(f"network with name {name} already exists")
        if subnet is not None:
            net = parse_subnet(subnet)
        else:
            if gateway is not None:
                raise UsageError("--gateway needs --subnet")
            net = ipaddress.IPv4Network(self.store.free_subnet(POOL, POOL_PREFIX))
        gw = parse_gateway(gateway, net) if gateway else str(net.network_address + 1)
        nid = _new_id()
        return self.store.add_network(
            Network(name, nid, str(net), gw, f"corral-{nid[:8]}", internal, time.time())
        )

    def get(self, ref: str) -> Network:
        if ref in (DEFAULT_NETWORK, "default"):
            return self.default()
        net = self.store.network(ref)
        if net is None:
            raise NotFoundError(f"network {ref} not found")
        return net

    def ls(self) -> list[Network]:
        self.default()
        return self.store.networks()

    def inspect(self, ref: str) -> NetworkInfo:
        net = self.get(ref)
        return NetworkInfo(net, self.store.endpoints(network=net.name))

    def remove(self, ref: str) -> str:
        """``network rm``: refused for the default network and while containers are on it."""
        net = self.get(ref)
        if net.name == DEFAULT_NETWORK:
            raise UserError(f"{net.name} is a pre-defined network and cannot be removed")
        self.store.remove_network(net.name)
        self._down(net)
        return net.name

    def prune(self) -> list[str]:
        """Remove the user-defined networks no container is on; when nothing at all is in use,
        also bring down the default bridge and corral's table and put ip_forward back."""
        used = self.store.attached_networks()
        gone = []
        for net in self.store.networks():
            if net.name != DEFAULT_NETWORK and net.name not in used:
                self.remove(net.name)
                gone.append(net.name)
        if not self.store.endpoints():
            self.reset()
        return gone

    def reset(self) -> None:
        """No container is networked: take down every bridge, corral's table, and restore
        ip_forward (refused while any container holds a lease)."""
        if self.store.endpoints():
            raise UserError("containers are still on corral's networks: stop them first")
        with self.kernel_lock():
            for net in self.store.networks():
                self._down(net)
            nft.delete_table()
            with contextlib.suppress(CorralError, OSError), shortcut.lock():
                shortcut.reset()
            old = self.store.get_state(IP_FORWARD_KEY)
            if old is not None:
                with contextlib.suppress(CorralError):
                    netlink.write_sysctl(netlink.IP_FORWARD, old)
                self.store.set_state(IP_FORWARD_KEY, None)

    def _up(self, net: Network) -> None:
        """The network's bridge, rules and forwarding, made if missing (idempotent)."""
        with self.kernel_lock():
            nft.ensure_table()
            if netlink.index(net.bridge) is None or nft.network_owner(net.name) not in nft.owners():
                netlink.ensure_bridge(net.bridge, net.gateway, net.prefixlen)
                nft.delete_owned(nft.network_owner(net.name))
                nft.run(nft.network_batch(net))
            if not net.internal and netlink.read_sysctl(netlink.IP_FORWARD) != "1":
                if self.store.get_state(IP_FORWARD_KEY) is None:
                    self.store.set_state(IP_FORWARD_KEY, netlink.read_sysctl(netlink.IP_FORWARD))
                netlink.write_sysctl(netlink.IP_FORWARD, "1")
            compat.ensure(net.bridge)

    def _down(self, net: Network) -> None:
        nft.delete_owned(nft.network_owner(net.name))
        nft.remove_bridge_element(net.bridge)
        compat.remove(net.bridge)
        netlink.delete_link(net.bridge)

    # -- containers: create ------------------------------------------------------------------

    def create_container(
        self, container_id: str, req: NetworkRequest | None, image_config: dict[str, Any],
        spec: dict[str, Any], container_dir: Path, resolve: Callable[[str], str],
    ) -> None:  # fmt: skip
        """At ``create``: keep the request (``container:NAME`` resolved to an id by
        ``resolve``) and point the OCI config at the right namespace and /etc files."""
        req = req or NetworkRequest()
        if req.mode.startswith("container:"):
            other = resolve(req.mode[len("container:") :])
            req = NetworkRequest(
                f"container:{other}", req.aliases, req.publish, req.publish_all, req.ip
            )
        exposed: list[tuple[int, str]] = []
        config = image_config.get("config") or {}
        for key in config.get("ExposedPorts") or {}:
            exposed += parse_expose(str(key))
        self.request(container_id, req, exposed)
        self.edit_spec(container_id, spec, container_dir)

    def request(
        self, container_id: str, req: NetworkRequest, exposed: list[tuple[int, str]] | None = None
    ) -> None:
        """Keep what ``create`` asked for. ``container:`` modes must already name an id."""
        shared = req.mode in ("none", "host") or req.mode.startswith("container:")
        if shared and (req.publish or req.publish_all):
            raise UsageError(f"-p/-P: cannot publish ports with --network {req.mode}")
        networks: list[str] = []
        if not shared:
            networks = [self.get(req.mode).name]
        if req.aliases and (not networks or networks[0] == DEFAULT_NETWORK):
            raise UsageError("--network-alias: only for user-defined networks")
        if req.ip:  # --ip (issue 12)
            self._check_static(networks[0] if networks else req.mode, req.ip)
        publish = list(req.publish)
        if req.publish_all and exposed:
            have = {(p.container_port, p.proto) for p in publish}
            publish += [PortMapping(c, 0, "", proto) for c, proto in exposed
                        if (c, proto) not in have]  # fmt: skip
        self.store.set_request(
            container_id, NetworkRequest(req.mode, req.aliases, publish, ip=req.ip), networks
        )

    def edit_spec(self, container_id: str, spec: dict[str, Any], container_dir: Path) -> None:
        """Point the config's network namespace at the mode's and mount the /etc files."""
        req = self.store.request(container_id) or NetworkRequest()
        linux = spec.setdefault("linux", {})
        spaces = [ns for ns in linux.get("namespaces", []) if ns.get("type") != "network"]
        if req.mode.startswith("container:"):
            other = req.mode[len("container:") :]
            spaces.append({"type": "network", "path": str(self.container_dir(other) / "netns")})
        elif req.mode != "host":
            spaces.append({"type": "network", "path": str(container_dir / "netns")})
        linux["namespaces"] = spaces
        mounts = spec.setdefault("mounts", [])
        have = {m.get("destination") for m in mounts}
        if req.mode != "host" and "/etc/hosts" not in have:  # else etc_files made them
            hostname = str(spec.get("hostname") or container_id[:12])
            files.write_initial(container_dir, hostname)
            mounts.extend(files.spec_mounts(container_dir))

    def mode(self, container_id: str) -> str:
        req = self.store.request(container_id)
        return req.mode if req else "none"

    # -- containers: start and end -----------------------------------------------------------

    def setup(self, container_id: str, name: str, netns_path: str, container_dir: Path) -> None:
        """At start: the container joins its networks and its ports are published. On failure
        everything made here is undone."""
        self.reconcile()
        req = self.store.request(container_id)
        if req is None:
            return
        try:
            for i, (net_name, aliases) in enumerate(self.store.attachments(container_id)):
                net = self.get(net_name)
                self._join(net, container_id, name, aliases, netns_path, f"eth{i}")
            self._publish(container_id, req.publish)
        except BaseException:
            self.teardown(container_id)
            raise

    def _join(
        self, net: Network, container_id: str, name: str, aliases: list[str], netns_path: str,
        ifname: str,
    ) -> Endpoint:  # fmt: skip
        self._up(net)
        veth = _veth_name(container_id, net.name)
        endpoint = self.store.lease(net, container_id, veth, name, aliases)
        peer = "tmp" + veth[4:]
        netlink.delete_link(veth)  # a leftover of a crashed start
        netlink.add_veth(veth, peer, net.bridge, netns_path, mac_address(endpoint.address))
        netlink.configure_inside(
            netns_path, peer, ifname, endpoint.address, net.prefixlen,
            None if net.internal else net.gateway,
        )  # fmt: skip
        self._write_hosts(net.name)
        return endpoint

    def _publish(self, container_id: str, publish: list[PortMapping]) -> None:
        if not publish:
            return
        endpoints = self.store.endpoints(container_id=container_id)
        routable = [ep for ep in endpoints if not self.get(ep.network).internal]
        if not routable:
            raise UsageError("-p: the container is on no network that can publish ports")
        target = routable[0]
        held: list[socket.socket] = self._held.setdefault(container_id, [])
        resolved = []
        for port in publish:
            sock = _reserve(port)
            held.append(sock)
            resolved.append(PortMapping(port.container_port, sock.getsockname()[1], port.host_ip,
                                        port.proto))  # fmt: skip
        self.store.reserve_ports(container_id, target.network, target.address, resolved)
        nft.run(nft.ports_batch(container_id, self.store.port_targets(container_id)))
        self._shortcut_publish(container_id)

    # -- the socket shortcut (shortcut.py): the host's own TCP connections to published ports

    def _routes(self, container_id: str) -> list[shortcut.Route]:
        gateways = {ep.address: self.get(ep.network).gateway
                    for ep in self.store.endpoints(container_id=container_id)}  # fmt: skip
        targets = self.store.port_targets(container_id)
        return [
            shortcut.Route(p.host_ip, p.host_port, addr, p.container_port, gateways[addr])
            for p, addr in targets
            if p.proto == "tcp" and addr in gateways
        ]

    def _shortcut_publish(self, container_id: str) -> None:
        """Add the container's TCP ports to the shortcut, and keep what its waiter must hold
        (:meth:`held`). Where the kernel cannot, or anything fails, the nftables rules just
        made carry the traffic alone."""
        routes = self._routes(container_id)
        if not routes:
            return
        netns = str(self.container_dir(container_id) / "netns")
        try:
            with shortcut.lock():
                fd = shortcut.publish(routes, netns)
        except (CorralError, OSError):
            return
        old = self._kept.pop(container_id, None)
        if old is not None:
            os.close(old)
        self._kept[container_id] = fd

    def held(self, container_id: str) -> list[int]:
        """The fds the container's waiter holds while the container lives: its published
        ports' reserved host sockets (so nothing else binds them meanwhile) and the socket
        shortcut's map (whose sk_msg program the kernel keeps only while someone holds it)."""
        fds = [sock.fileno() for sock in self._held.get(container_id, [])]
        kept = self._kept.get(container_id)
        return fds + ([kept] if kept is not None else [])

    def _shortcut_withdraw(self, container_id: str) -> None:
        routes = self._routes(container_id)
        if routes:
            with contextlib.suppress(CorralError, OSError), shortcut.lock():
                shortcut.withdraw(routes)

    def teardown(self, container_id: str) -> None:
        """The container ended: its rules, veths, leases and port reservations go, and its
        neighbours' hosts files forget it. Safe to call twice, and for anything half-made."""
        if self.mode(container_id) not in ("none", "host"):  # no rules without a network: no
            self._shortcut_withdraw(container_id)  # nft runs (2 x 4 ms) for them
            nft.delete_owned(nft.container_owner(container_id))
        for sock in self._held.pop(container_id, []):
            sock.close()
        kept = self._kept.pop(container_id, None)
        if kept is not None:
            os.close(kept)
        gone = self.store.release(container_id)
        for ep in gone:
            netlink.delete_link(ep.veth)
        for net in {ep.network for ep in gone}:
            self._write_hosts(net)

    def forget(self, container_id: str) -> None:
        """The container is removed."""
        self.teardown(container_id)
        self.store.forget(container_id)

    def reconcile(self) -> list[str]:
        """Tear down the networking of containers that no longer run (their monitor died):
        the ids cleaned up."""
        if self.alive is None:
            return []
        dead = {ep.container_id for ep in self.store.endpoints() if not self.alive(ep.container_id)}
        for cid in sorted(dead):
            self.teardown(cid)
        return sorted(dead)

    # -- containers: connect, disconnect, port -----------------------------------------------

    def connect(
        self, ref: str, container_id: str, name: str, aliases: list[str],
        netns_path: str | None, ip: str = "",
    ) -> None:  # fmt: skip
        """``network connect``: recorded; joined at once when the container runs (its
        namespace file ``netns_path``)."""
        net = self.get(ref)
        mode = self.mode(container_id)
        if mode in ("none", "host") or mode.startswith("container:"):
            raise UserError(f"container {name}: cannot connect a container with --network {mode}")
        if aliases and net.name == DEFAULT_NETWORK:
            raise UsageError("--alias: only for user-defined networks")
        if ip:
            self._check_static(net.name, ip)
        self.store.attach(container_id, net.name, aliases, ip)
        if netns_path is not None:
            ifname = f"eth{len(self.store.attachments(container_id)) - 1}"
            try:
                self._join(net, container_id, name, aliases, netns_path, ifname)
            except BaseException:
                self._leave(net, container_id)
                self.store.detach(container_id, net.name)
                raise

    def disconnect(self, ref: str, container_id: str) -> None:
        net = self.get(ref)
        if net.name not in [n for n, _ in self.store.attachments(container_id)]:
            raise UserError(f"container {container_id[:12]} is not connected to network {ref}")
        self._leave(net, container_id)
        self.store.detach(container_id, net.name)

    def _leave(self, net: Network, container_id: str) -> None:
        self._shortcut_withdraw(container_id)
        for ep in self.store.release(container_id, net.name):
            netlink.delete_link(ep.veth)
        # its DNAT rules pointed at that address: rebuild them from what is left
        nft.delete_owned(nft.container_owner(container_id))
        nft.run(nft.ports_batch(container_id, self.store.port_targets(container_id)))
        self._shortcut_publish(container_id)
        self._write_hosts(net.name)

    def _check_static(self, network: str, address: str) -> None:
        """``--ip`` on ``network`` (a mode that is no network: refused as on the default
        bridge): in its subnet, and not held by a running container now."""
        if network in ("none", "host") or network.startswith("container:"):
            net = self.default()
        else:
            net = self.get(network)
        check_static(net, address)
        holder = self.store.holder(net.name, address)
        if holder:
            raise UserError(f"--ip {address}: Address already in use on network {net.name}{holder}")

    def ports(self, container_id: str) -> list[PortMapping]:
        return self.store.ports(container_id)

    def endpoints(self, container_id: str) -> list[Endpoint]:
        return self.store.endpoints(container_id=container_id)

    # -- /etc/hosts ---------------------------------------------------------------------------

    def _write_hosts(self, network: str) -> None:
        """Rewrite the hosts file of every running container on ``network``."""
        for ep in self.store.endpoints(network=network):
            self._write_hosts_of(ep.container_id)

    def _write_hosts_of(self, container_id: str) -> None:
        cdir = self.container_dir(container_id)
        if not cdir.is_dir():
            return
        own = self.store.endpoints(container_id=container_id)
        peers: dict[str, Endpoint] = {}
        for ep in own:
            if self.get(ep.network).user_defined:
                for other in self.store.endpoints(network=ep.network):
                    if other.container_id != container_id:
                        peers.setdefault(f"{other.network}/{other.container_id}", other)
        hostname = files.read_hostname(cdir, container_id[:12])
        text = files.hosts_text(hostname, own, peers.values(), files.read_extra_hosts(cdir))
        files.write_in_place(cdir / files.HOSTS, text)


def _new_id() -> str:
    return secrets.token_hex(32)


def _veth_name(container_id: str, network: str) -> str:
    """``veth`` + 11 hex digits: 15 characters, the kernel's limit for an interface name."""
    return "veth" + hashlib.sha256(f"{container_id}/{network}".encode()).hexdigest()[:11]


def _reserve(port: PortMapping) -> socket.socket:
    """Bind (never listen on) the host port: a clear error now if something has it, and nobody
    else can take it while the container runs. A port of 0 gets a free one from the kernel."""
    kind = socket.SOCK_STREAM if port.proto == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(socket.AF_INET, kind)
    try:
        sock.bind((port.host_ip or "0.0.0.0", port.host_port))
    except OSError as err:
        sock.close()
        where = f"{port.host_ip}:" if port.host_ip else ""
        raise UserError(
            f"-p {where}{port.host_port}:{port.container_port}/{port.proto}: host port "
            f"{port.host_port} is already in use ({err.strerror})"
        ) from None
    return sock
