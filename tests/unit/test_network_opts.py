"""Issue 12's gaps without the kernel: --ip (parsing, checks, leases in SQLite), --dns flags and
resolv.conf, inspect's NetworkSettings."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.cli.common import go_template
from corral.cli.main import build_parser
from corral.cli.run_flags import run_options
from corral.engine.containers.etc_files import Dns, resolv_conf
from corral.engine.db import connect
from corral.engine.network.manager import Networks
from corral.engine.network.model import (
    Endpoint,
    Network,
    NetworkRequest,
    PortMapping,
    check_static,
    mac_address,
    parse_ip,
)
from corral.engine.network.settings import json_of
from corral.engine.network.store import NetworkStore
from corral.errors import UsageError, UserError

APP = Network("app", "n" * 64, "10.5.0.0/24", "10.5.0.1", "corral-nnnnnnnn")
BRIDGE = Network("bridge", "b" * 64, "10.86.0.0/16", "10.86.0.1", "corral0")

# -- --ip ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["10.5.0.300", "nonsense", "::1", "10.5.0.0/24", ""])
def test_ip_must_be_an_ipv4_address_in_dockers_words(value: str) -> None:
    with pytest.raises(UsageError, match=f"^--ip: invalid IPv4 address: {value}$"):
        parse_ip(value)
    assert parse_ip("10.5.0.9") == "10.5.0.9"


def test_static_address_checks() -> None:
    check_static(APP, "10.5.0.9")
    with pytest.raises(UsageError, match="supported on user defined networks only"):
        check_static(BRIDGE, "10.86.0.9")
    with pytest.raises(UsageError, match="does not belong to any of this network's subnets"):
        check_static(APP, "10.6.0.9")
    for taken in ("10.5.0.0", "10.5.0.1", "10.5.0.255"):
        with pytest.raises(UsageError, match=f"--ip {taken}: is the"):
            check_static(APP, taken)


def test_mac_is_dockers_from_the_address() -> None:
    assert mac_address("172.17.0.2") == "02:42:ac:11:00:02"


def test_static_lease_clash_and_dynamic_leases_skip_asked_addresses(tmp_path: Path) -> None:
    store = NetworkStore(connect(tmp_path / "db"))
    store.add_network(APP)
    store.set_request("s1", NetworkRequest("app", ip="10.5.0.2"), ["app"])
    store.set_request("s2", NetworkRequest("app", ip="10.5.0.2"), ["app"])
    assert store.static_addresses("s1") == {"app": "10.5.0.2"}
    # another container's dynamic lease does not take the address s1 asked for
    assert store.lease(APP, "d", "veth-d", "d", []).address == "10.5.0.3"
    assert store.lease(APP, "s1", "veth-s1", "s1", []).address == "10.5.0.2"
    assert store.holder("app", "10.5.0.2") == " (container s1)"
    with pytest.raises(UserError, match=r"--ip 10.5.0.2: Address already in use .*s1"):
        store.lease(APP, "s2", "veth-s2", "s2", [])
    assert not store.endpoints(container_id="s2")  # nothing half-made
    store.release("s1")
    assert store.lease(APP, "s2", "veth-s2", "s2", []).address == "10.5.0.2"
    store.attach("c", "app", [], "10.5.0.9")
    assert store.lease(APP, "c", "veth-c", "c", []).address == "10.5.0.9"


def test_an_older_database_gets_the_column(tmp_path: Path) -> None:
    db = connect(tmp_path / "db")
    db.execute(
        "CREATE TABLE net_attach (container_id TEXT NOT NULL, network TEXT NOT NULL, "
        "aliases TEXT NOT NULL DEFAULT '[]', PRIMARY KEY (container_id, network))"
    )
    db.execute("INSERT INTO net_attach VALUES ('old', 'app', '[]')")
    store = NetworkStore(db)
    store.add_network(APP)
    assert store.attachments("old") == [("app", [])]
    store.attach("new", "app", [], "10.5.0.7")
    assert store.static_addresses("new") == {"app": "10.5.0.7"}
    assert store.static_addresses("old") == {}


def _networks(tmp_path: Path) -> Networks:
    db = connect(tmp_path / "db")
    return Networks(db, tmp_path / "state", lambda cid: tmp_path / cid)


def test_request_and_connect_refuse_a_bad_ip_and_record_nothing(tmp_path: Path) -> None:
    nets = _networks(tmp_path)
    nets.create("app", "10.5.0.0/24")
    with pytest.raises(UsageError, match="supported on user defined networks only"):
        nets.request("a", NetworkRequest("bridge", ip="10.86.0.5"))
    with pytest.raises(UsageError, match="supported on user defined networks only"):
        nets.request("a", NetworkRequest("none", ip="10.86.0.5"))
    with pytest.raises(UsageError, match="does not belong"):
        nets.request("a", NetworkRequest("app", ip="10.9.0.5"))
    assert nets.store.request("a") is None and nets.store.attachments("a") == []
    nets.store.lease(nets.get("app"), "holder", "veth-h", "web", [])  # 10.5.0.2 in use
    with pytest.raises(UserError, match=r"10.5.0.2: Address already in use .*container web"):
        nets.request("a", NetworkRequest("app", ip="10.5.0.2"))
    nets.request("b", NetworkRequest("bridge"))
    with pytest.raises(UserError, match="Address already in use"):
        nets.connect("app", "b", "b", [], None, "10.5.0.2")
    assert nets.store.attachments("b") == [("bridge", [])]
    nets.connect("app", "b", "b", [], None, "10.5.0.8")
    assert nets.store.static_addresses("b") == {"app": "10.5.0.8"}


# -- --dns ----------------------------------------------------------------------------------------

HOST_RESOLV = "# made by hand\nnameserver 127.0.0.53\nnameserver 192.0.2.53\nsearch corp\n" \
    "options edns0\n"  # fmt: skip


def test_resolv_conf_as_docker_builds_it() -> None:
    assert resolv_conf(HOST_RESOLV, dns=Dns(["10.1.1.1", "10.1.1.2"], ["a.example"], ["ndots:2"])
                       ) == ("search a.example\nnameserver 10.1.1.1\nnameserver 10.1.1.2\n"
                             "options ndots:2\n")  # fmt: skip
    # what a flag does not give comes from the host's file (loopback servers left out)
    assert resolv_conf(HOST_RESOLV, dns=Dns(["10.1.1.1"])) == (
        "search corp\nnameserver 10.1.1.1\noptions edns0\n"
    )
    assert resolv_conf(HOST_RESOLV, dns=Dns(search=["."])) == (
        "nameserver 192.0.2.53\noptions edns0\n"
    )
    assert resolv_conf(HOST_RESOLV, dns=Dns()) == resolv_conf(HOST_RESOLV)


def _parse(*flags: str) -> object:
    ns = build_parser().parse_args(["run", *flags, "busybox", "true"])
    return run_options(ns)


def test_dns_flags_reach_run_options() -> None:
    opts = _parse("--dns", "10.1.1.1", "--dns", "fd00::1", "--dns-search", "Example.COM.",
                  "--dns-option", "ndots:3", "--dns-opt", "rotate")  # fmt: skip
    assert opts.dns == ["10.1.1.1", "fd00::1"]  # type: ignore[attr-defined]
    assert opts.dns_search == ["Example.COM"]  # type: ignore[attr-defined]
    assert opts.dns_options == ["ndots:3", "rotate"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--dns", "10.1.1"), 'invalid argument "10.1.1" for "--dns" flag: 10.1.1 is not an ip'),
        (("--dns-search=a..b",), '"--dns-search" flag: a..b is not a valid domain'),
        (("--dns-search", "1.2.3"), '"--dns-search" flag: 1.2.3 is not a valid domain'),
        (("--dns-option", "a b"), '"--dns-option" flag'),
    ],
)
def test_bad_dns_flags_name_the_flag(flags: tuple[str, ...], message: str) -> None:
    with pytest.raises(UsageError) as err:
        _parse(*flags)
    assert message in str(err.value) and "\n" not in str(err.value)


# -- inspect's NetworkSettings --------------------------------------------------------------------


def test_network_settings_running_on_the_bridge_and_a_user_network() -> None:
    on_bridge = Endpoint("bridge", "c" * 64, "10.86.0.2", "vethb")
    on_app = Endpoint("app", "c" * 64, "10.5.0.9", "veth-a", "web", ("svc",))
    out = json_of("c" * 64, [(BRIDGE, [], ""), (APP, ["svc"], "10.5.0.9")],
                  [on_bridge, on_app], [PortMapping(80, 8080), PortMapping(80, 8081, "127.0.0.1")],
                  [(80, "tcp"), (443, "tcp")], "/r/containers/c/netns", "bridge")  # fmt: skip
    assert out["IPAddress"] == "10.86.0.2" and out["IPPrefixLen"] == 16
    assert out["Gateway"] == "10.86.0.1" and out["MacAddress"] == "02:42:0a:56:00:02"
    assert out["SandboxKey"] == "/r/containers/c/netns"
    assert out["Ports"] == {
        "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"},
                   {"HostIp": "127.0.0.1", "HostPort": "8081"}],
        "443/tcp": None,
    }  # fmt: skip
    app = out["Networks"]["app"]
    assert app["IPAMConfig"] == {"IPv4Address": "10.5.0.9"}
    assert app["Aliases"] == ["svc", "c" * 12] and app["NetworkID"] == APP.id
    assert (app["IPAddress"], app["IPPrefixLen"], app["Gateway"]) == ("10.5.0.9", 24, "10.5.0.1")
    assert len(app["EndpointID"]) == 64 and app["Links"] is None
    assert out["Networks"]["bridge"]["Aliases"] is None
    assert go_template("{{.NetworkSettings.IPAddress}}", {"NetworkSettings": out}) == "10.86.0.2"
    each = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"
    assert go_template(each, {"NetworkSettings": out}) == "10.5.0.9 10.86.0.2 "  # by name
    assert go_template("{{range .L}}<{{.}}>{{end}}", {"L": ["a", "b"]}) == "<a><b>"


def test_network_settings_of_a_user_network_only_and_of_a_stopped_container() -> None:
    on_app = Endpoint("app", "c" * 64, "10.5.0.2", "veth-a")
    running = json_of("c" * 64, [(APP, [], "")], [on_app], [], [], "/ns", "app")
    assert running["IPAddress"] == "" and running["Gateway"] == ""  # docker: the bridge's only
    assert running["Networks"]["app"]["IPAddress"] == "10.5.0.2"
    stopped = json_of("c" * 64, [(APP, [], "10.5.0.2")], [], [PortMapping(80, 8080)],
                      [(80, "tcp")], "", "app")  # fmt: skip
    assert stopped["Ports"] == {} and stopped["SandboxKey"] == "" and stopped["IPAddress"] == ""
    net = stopped["Networks"]["app"]
    assert net["NetworkID"] == APP.id and net["IPAMConfig"] == {"IPv4Address": "10.5.0.2"}
    assert (net["IPAddress"], net["IPPrefixLen"], net["MacAddress"], net["EndpointID"]) == (
        "", 0, "", "")
    assert list(json_of("c" * 64, [], [], [], [], "", "none")["Networks"]) == ["none"]
