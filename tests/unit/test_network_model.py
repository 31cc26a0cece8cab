"""corral.engine.network without the kernel: parsing, IPAM in SQLite, the nft batches, files."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from corral.engine.db import connect
from corral.engine.network import files, nft
from corral.engine.network.model import (
    Endpoint,
    Network,
    PortMapping,
    parse_expose,
    parse_mode,
    parse_publish,
    parse_subnet,
)
from corral.engine.network.store import NetworkStore
from corral.errors import RuntimeFailure, UsageError, UserError

# -- -p and friends --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("8080:80", [PortMapping(80, 8080)]),
        ("80", [PortMapping(80, 0)]),
        ("127.0.0.1:8080:80/udp", [PortMapping(80, 8080, "127.0.0.1", "udp")]),
        ("127.0.0.1::80", [PortMapping(80, 0, "127.0.0.1")]),
        ("0.0.0.0:81:80", [PortMapping(80, 81)]),
        ("8000-8001:80-81/TCP", [PortMapping(80, 8000), PortMapping(81, 8001)]),
        ("8000-8009:80", [PortMapping(80, 8000)]),
    ],
)
def test_parse_publish(value: str, want: list[PortMapping]) -> None:
    assert parse_publish(value) == want


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("70000:80", "70000"),
        ("80:0", "out of range"),
        ("80:80/sctp", "sctp"),
        ("x:80", "invalid port"),
        ("1.2.3:80:80", "host address"),
        ("::1:80:80", "host address"),
        ("8000-8002:80-81", "length"),
        ("90-80:80-90", "invalid range"),
    ],
)
def test_parse_publish_errors_name_the_value(value: str, needle: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_publish(value)
    assert needle in str(err.value) and repr(value) in str(err.value)


def test_expose_mode_and_subnet() -> None:
    assert parse_expose("80/tcp") == [(80, "tcp")]
    assert parse_expose("53/udp") == [(53, "udp")]
    assert parse_expose("8000-8001") == [(8000, "tcp"), (8001, "tcp")]
    assert parse_expose("9/sctp") == []
    assert parse_mode("default") == "bridge"
    assert parse_mode("container:web") == "container:web"
    for bad in ("", "container:", "no spaces"):
        with pytest.raises(UsageError):
            parse_mode(bad)
    assert str(parse_subnet("10.1.0.0/16")) == "10.1.0.0/16"
    for bad in ("10.1.0.1/16", "10.1.0.0/31", "fd00::/64", "nonsense", "10.0.0.0/33"):
        with pytest.raises(UsageError):
            parse_subnet(bad)


# -- IPAM ---------------------------------------------------------------------------------------


def _net(name: str = "n", subnet: str = "10.5.0.0/24") -> Network:
    base = subnet.rsplit(".", 1)[0]
    return Network(name, name * 8, subnet, f"{base}.1", f"corral-{name}", False, 1.0)


def test_overlapping_subnets_and_names_are_refused(tmp_path: Path) -> None:
    store = NetworkStore(connect(tmp_path / "db"))
    store.add_network(_net("a", "10.5.0.0/16"))
    with pytest.raises(UserError, match="overlaps network 'a'"):
        store.add_network(_net("b", "10.5.7.0/24"))
    with pytest.raises(UserError, match="already exists"):
        store.add_network(_net("a", "10.6.0.0/24"))
    assert [n.name for n in store.networks()] == ["a"]
    assert store.free_subnet("10.4.0.0/15", 24) == "10.4.0.0/24"
    with pytest.raises(RuntimeFailure, match="no free /24"):
        store.free_subnet("10.5.0.0/16", 24)


def test_leases_skip_the_gateway_are_stable_and_are_freed(tmp_path: Path) -> None:
    store = NetworkStore(connect(tmp_path / "db"))
    net = store.add_network(_net())
    a = store.lease(net, "a", "veth-a", "a", [])
    b = store.lease(net, "b", "veth-b", "b", ["bee"])
    assert (a.address, b.address) == ("10.5.0.2", "10.5.0.3")
    assert store.lease(net, "a", "veth-a", "a", []).address == "10.5.0.2"  # the same again
    assert [e.address for e in store.release("a")] == ["10.5.0.2"]
    assert store.lease(net, "c", "veth-c", "c", []).address == "10.5.0.2"  # reused once free
    assert store.endpoints(container_id="b")[0].aliases == ("bee",)


def test_a_full_subnet_is_a_clear_error(tmp_path: Path) -> None:
    store = NetworkStore(connect(tmp_path / "db"))
    net = store.add_network(_net("s", "10.9.0.0/30"))
    store.lease(net, "a", "v", "a", [])
    with pytest.raises(RuntimeFailure, match="no free address"):
        store.lease(net, "b", "v2", "b", [])


def _lease_many(args: tuple[str, int]) -> list[str]:
    path, worker = args
    store = NetworkStore(connect(Path(path)))
    net = store.network("n")
    assert net is not None
    return [store.lease(net, f"c{worker}-{i}", f"v{worker}-{i}", "", []).address
            for i in range(10)]  # fmt: skip


def test_concurrent_processes_never_share_an_address(tmp_path: Path) -> None:
    path = tmp_path / "db"
    NetworkStore(connect(path)).add_network(_net("n", "10.7.0.0/24"))
    with multiprocessing.get_context("fork").Pool(8) as pool:
        got = [a for chunk in pool.map(_lease_many, [(str(path), w) for w in range(8)])
               for a in chunk]  # fmt: skip
    assert len(got) == 80 and len(set(got)) == 80


def test_ports_clash_between_containers(tmp_path: Path) -> None:
    store = NetworkStore(connect(tmp_path / "db"))
    store.reserve_ports("a", "n", "10.0.0.2", [PortMapping(80, 8080, "127.0.0.1")])
    with pytest.raises(UserError, match="already published by container a"):
        store.reserve_ports("b", "n", "10.0.0.3", [PortMapping(80, 8080)])
    store.reserve_ports("b", "n", "10.0.0.3", [PortMapping(80, 8080, "", "udp")])  # other proto
    store.release("a")
    store.reserve_ports("b", "n", "10.0.0.3", [PortMapping(80, 8080)])


# -- nftables batches -----------------------------------------------------------------------------


def test_every_rule_names_its_owner_and_stays_in_corrals_table() -> None:
    net = _net("web", "10.8.0.0/24")
    batch = nft.table_batch() + nft.network_batch(net)
    batch += nft.ports_batch("cid", [(PortMapping(80, 8080), "10.8.0.2")])
    for item in batch:
        (obj,) = item["add"].values()
        assert obj.get("table", obj.get("name")) == "corral" and obj["family"] == "ip"
    rules = [i["add"]["rule"] for i in batch if "rule" in i["add"]]
    assert {r["comment"] for r in rules} == {"table", "net:web", "ctr:cid"}
    dnat = [r for r in rules if r["comment"] == "ctr:cid"]
    assert {r["chain"] for r in dnat} == {"prerouting", "output"}
    assert {"dnat": {"addr": "10.8.0.2", "port": 80}} in dnat[0]["expr"]
    masq = [r for r in rules if r["chain"] == "postrouting"]
    assert len(masq) == 3  # out, hairpin, 127.0.0.1


def test_only_nat_chains_see_the_hosts_published_port_traffic() -> None:
    # The per-packet cost of a published port (bench/network.py): a nat chain runs for a
    # connection's first packet only, later packets follow conntrack's NAT binding. The one filter
    # chain hooks forward, which the host's own connections (output -> bridge, and the replies'
    # input) never cross; there an established flow's packet meets the internal chain (one
    # source check per network, and --internal networks' rules), then the accept.
    batch = nft.table_batch() + nft.network_batch(_net("web", "10.8.0.0/24"))
    chains = [i["add"]["chain"] for i in batch if "hook" in i["add"].get("chain", {})]
    assert {(c["hook"], c["type"]) for c in chains} == {
        ("prerouting", "nat"), ("output", "nat"), ("postrouting", "nat"), ("forward", "filter"),
    }  # fmt: skip
    forward = [i["add"]["rule"]["expr"] for i in batch
               if "rule" in i["add"] and i["add"]["rule"]["chain"] == "forward"]  # fmt: skip
    assert forward[0] == [{"jump": {"target": "internal"}}]
    assert forward[1][0]["match"]["right"] == ["established", "related"]


def test_internal_network_has_drops_and_no_masquerade() -> None:
    net = Network("in", "x" * 8, "10.8.1.0/24", "10.8.1.1", "corral-in", True)
    rules = [i["add"]["rule"] for i in nft.network_batch(net) if "rule" in i["add"]]
    assert sum(1 for r in rules if r["chain"] == "internal") == 3  # the source check, in, out
    outbound = [r for r in rules if r["chain"] == "postrouting"
                and {"match": {"op": "!=", "left": {"meta": {"key": "oifname"}},
                               "right": "corral-in"}} in r["expr"]]  # fmt: skip
    assert outbound == []


def test_a_networks_bridge_passes_only_its_own_source_addresses() -> None:
    """Before the established accept (``jump internal`` comes first): a forged source could
    otherwise ride another network's flow past ``isolate``, or leave unmasqueraded."""
    rules = [i["add"]["rule"] for i in nft.network_batch(_net("web", "10.8.0.0/24"))
             if "rule" in i["add"]]  # fmt: skip
    guard = [r for r in rules if r["chain"] == "internal"]
    assert [r["expr"] for r in guard] == [[
        {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "corral-web"}},
        {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                   "right": {"prefix": {"addr": "10.8.0.0", "len": 24}}}},
        {"drop": None},
    ]]  # fmt: skip


# -- files --------------------------------------------------------------------------------------


def test_hosts_and_resolv_conf() -> None:
    me = Endpoint("n", "a" * 64, "10.1.0.2", "v", "api", ("svc",))
    peer = Endpoint("n", "b" * 64, "10.1.0.3", "v", "db")
    text = files.hosts_text("apihost", [me], [peer])
    assert "10.1.0.2\tapihost api svc" in text
    assert f"10.1.0.3\tdb {'b' * 12}" in text
    assert "127.0.1.1\th" in files.hosts_text("h", [], [])
    resolv = files.resolv_text("search x\nnameserver 127.0.0.53\nnameserver 10.0.0.1\n")
    assert resolv == "search x\nnameserver 10.0.0.1\n"
    assert "nameserver 8.8.8.8" in files.resolv_text("nameserver 127.0.0.53\n")


def test_write_in_place_keeps_the_inode(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    files.write_in_place(path, "a long first version\n")
    inode = path.stat().st_ino
    files.write_in_place(path, "short\n")
    assert path.read_text() == "short\n" and path.stat().st_ino == inode
