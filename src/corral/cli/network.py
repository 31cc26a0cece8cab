"""``corral network create|ls|inspect|rm|connect|disconnect|prune`` and ``corral port``; the
``run``/``create`` flags ``--network``, ``--network-alias``, ``--ip``, ``-p``, ``-P``.

Thin (DESIGN.md): parse, call ``Engine.networks``, print as docker prints.
"""

from __future__ import annotations

import sys

from corral.cli.common import engine

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from corral.cli.common import Commands
    from corral.engine.network import NetworkRequest


# -- the run/create flags ----------------------------------------------------------------------


def add_run_flags(p: Any) -> None:
    """``--network``, ``--network-alias``, ``--ip``, ``-p``, ``-P`` on a run/create parser.

    ``--network`` defaults to ``$CORRAL_NETWORK``, else ``bridge`` (docker's default); the
    test suite sets ``CORRAL_NETWORK=none`` so that tests that do not ask for a network never
    touch the host's.
    """
    import os

    p.add_argument(
        "--network",
        "--net",
        metavar="NET",
        default=os.environ.get("CORRAL_NETWORK") or "bridge",
        help="none, host, bridge (default), container:NAME or a network's name",
    )
    p.add_argument(
        "--network-alias",
        action="append",
        metavar="ALIAS",
        help="another name for the container on a user-defined network",
    )
    p.add_argument("--ip", metavar="IPV4", help="its address on a user-defined network")
    p.add_argument(
        "-p",
        "--publish",
        action="append",
        metavar="[IP:]HOST:CTR[/PROTO]",
        help="publish a container port on the host",
    )
    p.add_argument("-P", "--publish-all", action="store_true", help="publish every EXPOSEd port")


def request_from(ns: argparse.Namespace) -> NetworkRequest:
    """The parsed flags as the engine's NetworkRequest (UsageError names a bad flag)."""
    from corral.engine.network.model import NetworkRequest, parse_ip, parse_mode, parse_publish

    publish = []
    for value in ns.publish or []:
        publish += parse_publish(value)
    return NetworkRequest(
        parse_mode(ns.network), list(ns.network_alias or []), publish, bool(ns.publish_all),
        parse_ip(ns.ip) if ns.ip else "",
    )


# -- commands ------------------------------------------------------------------------------------


def cmd_create(ns: argparse.Namespace) -> int:
    net = engine(ns).networks.create(ns.name, ns.subnet, ns.gateway, ns.internal)
    print(net.id)
    return 0


def cmd_ls(ns: argparse.Namespace) -> int:
    from corral.engine.format import table

    nets = engine(ns).networks.ls()
    if ns.quiet:
        for n in nets:
            print(n.id if ns.no_trunc else n.id[:12])
        return 0
    rows = [[n.id if ns.no_trunc else n.id[:12], n.name, "bridge", "local"] for n in nets]
    sys.stdout.write(table(["NETWORK ID", "NAME", "DRIVER", "SCOPE"], rows))
    return 0


def cmd_inspect(ns: argparse.Namespace) -> int:
    import json

    from corral.engine.format import rfc3339

    networks = engine(ns).networks
    out = []
    for ref in ns.networks:
        info = networks.inspect(ref)
        n = info.network
        out.append({
            "Name": n.name, "Id": n.id, "Created": rfc3339(n.created), "Scope": "local",
            "Driver": "bridge", "Internal": n.internal,
            "IPAM": {"Driver": "default", "Config": [{"Subnet": n.subnet, "Gateway": n.gateway}]},
            "Options": {"com.docker.network.bridge.name": n.bridge},
            "Containers": {
                ep.container_id: {"Name": ep.name, "IPv4Address": f"{ep.address}/{n.prefixlen}",
                                  "Aliases": list(ep.aliases)}
                for ep in info.endpoints
            },
        })  # fmt: skip
    print(json.dumps(out, indent=4))
    return 0


def cmd_rm(ns: argparse.Namespace) -> int:
    from corral.errors import CorralError

    failed: CorralError | None = None
    networks = engine(ns).networks
    for ref in ns.networks:
        try:
            networks.remove(ref)
            print(ref)
        except CorralError as err:
            print(f"Error: {err}", file=sys.stderr)
            failed = err
    return 0 if failed is None else failed.exit_code


def cmd_prune(ns: argparse.Namespace) -> int:
    from corral.cli.common import confirm

    if not ns.force and not confirm(
        "WARNING! This will remove all custom networks not used by at least one container.\n"
    ):
        return 0
    gone = engine(ns).networks.prune()
    if gone:
        print("Deleted Networks:")
        for name in gone:
            print(name)
    return 0


def cmd_connect(ns: argparse.Namespace) -> int:
    from corral.engine.network.model import parse_ip

    ip = parse_ip(ns.ip) if ns.ip else ""
    eng = engine(ns)
    record = eng.containers.record(ns.container)
    running = eng.containers.status(record).state == "running"
    netns = str(eng.layout.container_dir(record.id) / "netns") if running else None
    eng.networks.connect(ns.network, record.id, record.name, list(ns.alias or []), netns, ip)
    return 0


def cmd_disconnect(ns: argparse.Namespace) -> int:
    eng = engine(ns)
    record = eng.containers.record(ns.container)
    eng.networks.disconnect(ns.network, record.id)
    return 0


def cmd_port(ns: argparse.Namespace) -> int:
    eng = engine(ns)
    record = eng.containers.record(ns.container)
    for p in eng.networks.ports(record.id):
        if ns.port:
            want, _, proto = ns.port.partition("/")
            if want != str(p.container_port) or (proto and proto != p.proto):
                continue
        line = f"{p.host_ip or '0.0.0.0'}:{p.host_port}"
        print(line if ns.port else f"{p.container_port}/{p.proto} -> {line}")
    return 0


# -- the parser ------------------------------------------------------------------------------------


def register(commands: Commands) -> None:
    sub = commands.group("network", "manage networks")

    p = sub.add_parser("create", help="create a network")
    p.add_argument("name", metavar="NETWORK")
    p.add_argument("--subnet", metavar="CIDR", help="its IPv4 subnet (default: a free /24)")
    p.add_argument("--gateway", metavar="IP", help="the bridge's address (default: the first)")
    p.add_argument("--internal", action="store_true", help="no way in or out of the network")
    p.add_argument("-d", "--driver", choices=["bridge"], default="bridge", help="bridge only")
    p.set_defaults(func=cmd_create)

    p = sub.add_parser("ls", aliases=["list"], help="list networks")
    p.add_argument("-q", "--quiet", action="store_true", help="only ids")
    p.add_argument("--no-trunc", action="store_true")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("inspect", help="networks' details as JSON")
    p.add_argument("networks", nargs="+", metavar="NETWORK")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("rm", aliases=["remove"], help="remove networks")
    p.add_argument("networks", nargs="+", metavar="NETWORK")
    p.set_defaults(func=cmd_rm)

    p = sub.add_parser("prune", help="remove unused networks")
    p.add_argument("-f", "--force", action="store_true", help="do not ask")
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("connect", help="connect a container to a network")
    p.add_argument("--alias", action="append", metavar="ALIAS", help="another name on it")
    p.add_argument("--ip", metavar="IPV4", help="its address on the network")
    p.add_argument("network", metavar="NETWORK")
    p.add_argument("container", metavar="CONTAINER")
    p.set_defaults(func=cmd_connect)

    p = sub.add_parser("disconnect", help="disconnect a container from a network")
    p.add_argument("network", metavar="NETWORK")
    p.add_argument("container", metavar="CONTAINER")
    p.set_defaults(func=cmd_disconnect)

    p = commands.top.add_parser("port", help="list a container's published ports")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("port", nargs="?", metavar="PORT[/PROTO]")
    p.set_defaults(func=cmd_port)
