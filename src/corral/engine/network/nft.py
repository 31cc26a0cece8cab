"""corral's packet rules: one nftables table, ``ip corral``, spoken to through ``nft -j``.

Why ``nft -j`` (the JSON interface of the ``nft`` command, Debian's ``nftables`` package) rather
than Debian's python3-nftables: that binding is a ctypes wrapper of libnftables installed for the
system interpreter only (corral's venv does not see it, and only ``corral.sys`` may use ctypes);
the JSON it speaks is the same. A batch given to ``nft -j -f -`` is applied as ONE kernel
transaction: all of it or none of it.

Everything corral does to packets lives in its own table, made by corral on first use and deleted
by corral when nothing uses it; no other table is read or written here (docker's and podman's
rules are someone else's; see compat.py for the one thing docker needs from us)::

    table ip corral
      set bridges             the bridges of corral's networks (type ifname)
      chain prerouting        nat, hook prerouting, dstnat (-100): published ports, traffic
                              from outside and from containers (hairpin)
      chain output            nat, hook output, -100: the same for the host's own connections,
                              127.0.0.1:HOST included (see postrouting and route_localnet)
      chain postrouting       nat, hook postrouting, srcnat (100):
                                masquerade what leaves a (non-internal) network's subnet
                                masquerade hairpin (a container reaching itself or a neighbour
                                  through a published port: the reply must come back via us)
                                masquerade 127.0.0.0/8 sources going into a bridge (a connection
                                  to 127.0.0.1:HOST; the bridge has route_localnet=1 so the
                                  kernel routes that source at all)
      chain forward           filter, hook forward, 0, policy accept:
                                jump internal   (a network's edge: from its bridge only its own
                                                 source addresses; --internal: nothing in or out)
                                established/related accept; DNATed (published) accept
                                jump isolate    (no traffic from one corral network to another)
      chain internal, isolate regular chains, one rule per network

What runs per packet: the nat chains are evaluated for a connection's first packet only (later
packets follow the NAT binding conntrack keeps), so the number of published ports or networks
does not change the cost of an established flow. The host's own connection to a published port
(127.0.0.1:HOST, output -> corral0 -> veth) meets no chain of ours after its first packet: what
it pays is conntrack (switched on for the namespace by these nat chains), the NAT rewrite, one
route lookup per packet in each direction (the kernel re-routes a locally generated packet whose
destination DNAT changed, and bridge-nf-call-iptables re-routes the reply whose destination the
masquerade's reverse changed) and the bridge. Forwarded packets (from outside, container egress)
also meet the forward chain: ``jump internal`` (one source check per network, and the
--internal networks' rules), then the established accept. docs/network.md has the measured split.

Every rule carries a comment naming its owner (``ctr:<container id>`` or ``net:<name>``), so a
container's or network's rules are found and deleted by handle, and nothing else is touched.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from corral.engine.network.model import Network, PortMapping
from corral.errors import RuntimeFailure

FAMILY = "ip"
TABLE = "corral"
NFT = "nft"
Expr = dict[str, Any]

_BASE_CHAINS = (
    ("prerouting", "nat", "prerouting", -100),
    ("output", "nat", "output", -100),
    ("postrouting", "nat", "postrouting", 100),
    ("forward", "filter", "forward", 0),
)


class NftError(RuntimeFailure):
    """``nft`` refused a batch or is missing."""


# -- expressions --------------------------------------------------------------------------------


def _is(left: Expr, right: Any, op: str = "==") -> Expr:
    return {"match": {"op": op, "left": left, "right": right}}


def _meta(key: str) -> Expr:
    return {"meta": {"key": key}}


def _ip(field: str) -> Expr:
    return {"payload": {"protocol": "ip", "field": field}}


def _prefix(cidr: str) -> dict[str, Any]:
    addr, _, length = cidr.partition("/")
    return {"prefix": {"addr": addr, "len": int(length or 32)}}


def _local_daddr() -> Expr:
    return _is({"fib": {"result": "type", "flags": ["daddr"]}}, "local")


def _verdict(name: str, target: str | None = None) -> Expr:
    return {name: {"target": target} if target else None}


def _rule(chain: str, owner: str, *expr: Expr) -> Expr:
    return {"rule": {"family": FAMILY, "table": TABLE, "chain": chain, "comment": owner,
                     "expr": list(expr)}}  # fmt: skip


def network_owner(name: str) -> str:
    return f"net:{name}"


def container_owner(container_id: str) -> str:
    return f"ctr:{container_id}"


# -- batches ----------------------------------------------------------------------------------


def table_batch() -> list[Expr]:
    """Make the table, its set and chains, and the forward chain's fixed rules."""
    out: list[Expr] = [
        {"add": {"table": {"family": FAMILY, "name": TABLE}}},
        {"add": {"set": {"family": FAMILY, "table": TABLE, "name": "bridges", "type": "ifname"}}},
    ]
    for name, kind, hook, prio in _BASE_CHAINS:
        out.append({"add": {"chain": {
            "family": FAMILY, "table": TABLE, "name": name, "type": kind, "hook": hook,
            "prio": prio, "policy": "accept",
        }}})  # fmt: skip
    for name in ("internal", "isolate"):
        out.append({"add": {"chain": {"family": FAMILY, "table": TABLE, "name": name}}})
    fixed = "table"
    out += [
        {"add": _rule("forward", fixed, _verdict("jump", "internal"))},
        {
            "add": _rule(
                "forward",
                fixed,
                _is({"ct": {"key": "state"}}, ["established", "related"], "in"),
                _verdict("accept"),
            )
        },
        {
            "add": _rule(
                "forward", fixed, _is({"ct": {"key": "status"}}, "dnat", "in"), _verdict("accept")
            )
        },
        {"add": _rule("forward", fixed, _verdict("jump", "isolate"))},
    ]
    return out


def network_batch(net: Network) -> list[Expr]:
    """A network's rules: NAT out (unless internal), hairpin, localhost, isolation."""
    owner, br = network_owner(net.name), net.bridge
    out: list[Expr] = [
        {"add": {"element": {"family": FAMILY, "table": TABLE, "name": "bridges", "elem": [br]}}},
    ]
    # A container with CAP_NET_RAW (docker's default) can send any source address. From its
    # bridge, only its network's own may pass: a forged one could ride another network's
    # established flow past ``isolate`` (the established accept comes first), or leave the host
    # unmasqueraded under an address that is not ours.
    out.append({"add": _rule(
        "internal", owner, _is(_meta("iifname"), br),
        _is(_ip("saddr"), _prefix(net.subnet), "!="), _verdict("drop"),
    )})  # fmt: skip
    if net.internal:
        out += [
            {
                "add": _rule(
                    "internal",
                    owner,
                    _is(_meta("iifname"), br),
                    _is(_meta("oifname"), br, "!="),
                    _verdict("drop"),
                )
            },
            {
                "add": _rule(
                    "internal",
                    owner,
                    _is(_meta("oifname"), br),
                    _is(_meta("iifname"), br, "!="),
                    _verdict("drop"),
                )
            },
        ]
    else:
        out.append({"add": _rule(
            "postrouting", owner, _is(_ip("saddr"), _prefix(net.subnet)),
            _is(_meta("oifname"), br, "!="), {"masquerade": None},
        )})  # fmt: skip
    out += [
        {"add": _rule("postrouting", owner, _is(_meta("oifname"), br),
                      _is(_ip("saddr"), _prefix(net.subnet)),
                      _is({"ct": {"key": "status"}}, "dnat", "in"), {"masquerade": None})},
        {"add": _rule("postrouting", owner, _is(_meta("oifname"), br),
                      _is(_ip("saddr"), _prefix("127.0.0.0/8")), {"masquerade": None})},
        {"add": _rule("isolate", owner, _is(_meta("iifname"), br),
                      _is(_meta("oifname"), "@bridges"), _is(_meta("oifname"), br, "!="),
                      _verdict("drop"))},
    ]  # fmt: skip
    return out


def ports_batch(container_id: str, targets: list[tuple[PortMapping, str]]) -> list[Expr]:
    """DNAT of each published port to the container's address, in prerouting and output."""
    out: list[Expr] = []
    owner = container_owner(container_id)
    for port, address in targets:
        match = [_local_daddr()]
        if port.host_ip:
            match = [_is(_ip("daddr"), port.host_ip)]
        match += [
            _is(_meta("l4proto"), port.proto),
            _is({"payload": {"protocol": "th", "field": "dport"}}, port.host_port),
        ]
        action = {"dnat": {"addr": address, "port": port.container_port}}
        for chain in ("prerouting", "output"):
            out.append({"add": _rule(chain, owner, *match, action)})
    return out


# -- running nft --------------------------------------------------------------------------------


def run(batch: list[Expr]) -> None:
    """Apply ``batch`` as one transaction."""
    if batch:
        _nft(["-j", "-f", "-"], json.dumps({"nftables": batch}))


def table_exists() -> bool:
    try:
        _nft(["-j", "list", "table", FAMILY, TABLE])
    except NftError:
        return False
    return True


def ensure_table() -> None:
    """Make the table if it is not there (callers serialize this with the network lock)."""
    if not table_exists():
        run(table_batch())


def delete_owned(owner: str) -> int:
    """Delete every rule (and bridge set element) owned by ``owner``; how many rules went."""
    if not table_exists():
        return 0
    listing = json.loads(_nft(["-j", "-a", "list", "table", FAMILY, TABLE]))
    batch: list[Expr] = []
    for item in listing.get("nftables", []):
        rule = item.get("rule")
        if rule and rule.get("comment") == owner:
            batch.append({"delete": {"rule": {
                "family": FAMILY, "table": TABLE, "chain": rule["chain"], "handle": rule["handle"],
            }}})  # fmt: skip
    run(batch)
    return len(batch)


def remove_bridge_element(bridge: str) -> None:
    if table_exists():
        try:
            run([{"delete": {"element": {"family": FAMILY, "table": TABLE, "name": "bridges",
                                         "elem": [bridge]}}}])  # fmt: skip
        except NftError:  # not in the set
            pass


def owners() -> set[str]:
    """The owners named by the table's rules (for reconciling with the database)."""
    if not table_exists():
        return set()
    listing = json.loads(_nft(["-j", "list", "table", FAMILY, TABLE]))
    return {
        str(item["rule"]["comment"])
        for item in listing.get("nftables", [])
        if "rule" in item and item["rule"].get("comment")
    }


def delete_table() -> None:
    if table_exists():
        run([{"delete": {"table": {"family": FAMILY, "name": TABLE}}}])


def _nft(args: list[str], stdin: str | None = None) -> str:
    try:
        done = subprocess.run(
            [NFT, *args], input=stdin, capture_output=True, text=True, timeout=30, check=False
        )
    except FileNotFoundError:
        raise NftError(
            "nft: not found (install Debian's nftables package: corral's networking needs it)"
        ) from None
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
        raise NftError(f"nft {' '.join(args[:3])}: {lines[0] if lines else done.returncode}")
    return done.stdout
