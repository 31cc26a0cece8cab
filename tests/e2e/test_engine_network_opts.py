"""Issue 12's gaps end to end: ``inspect``'s NetworkSettings, ``--ip``, ``--dns*``.

As in test_engine_network.py (whose ``host`` fixture this uses), every command runs inside a
network namespace the test makes, which takes with it whatever a failing test left there.
"""

from __future__ import annotations

import json

import test_engine_network
from test_engine_network import Host, _detached

host = test_engine_network.host  # the fixture: a namespace standing for the host, cleaned up


def _one_line_error(host: Host, *args: str, needle: str, code: int = 125) -> None:
    done = host.corral(*args, check=False)
    assert done.returncode == code, (args, done.returncode, done.stderr)
    assert needle in done.stderr, (args, done.stderr)
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def _inside(host: Host, name: str) -> tuple[str, str]:
    """(address/prefix, MAC) of the container's eth0, as its kernel has them."""
    out = host.corral("exec", name, "ip", "-o", "addr", "show", "eth0").stdout
    inet = next(line.split()[3] for line in out.splitlines() if " inet " in line)
    link = host.corral("exec", name, "cat", "/sys/class/net/eth0/address").stdout.strip()
    return inet, link


def _veths(host: Host) -> list[str]:
    return [n for n in host.link_names() if n.startswith("veth")]


def test_inspect_shows_network_settings_running_and_stopped(host: Host) -> None:
    host.corral("network", "create", "app", "--subnet", "10.97.0.0/24")
    _detached(host, "--name", "web", "-p", "8080:80", "-p", "127.0.0.1:8081:81/udp", "busybox",
              "sleep", "300")  # fmt: skip
    host.corral("network", "connect", "--alias", "svc", "app", "web")
    fmt = "{{.NetworkSettings.IPAddress}}/{{.NetworkSettings.IPPrefixLen}}"
    address = host.corral("inspect", "web", "--format", fmt).stdout.strip()
    data = json.loads(host.corral("inspect", "web").stdout)[0]
    settings = data["NetworkSettings"]
    inet, mac = _inside(host, "web")
    assert address == inet and address.startswith("10.86.")
    assert settings["MacAddress"] == mac and settings["Gateway"] == "10.86.0.1"
    assert settings["Ports"] == {
        "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}],
        "81/udp": [{"HostIp": "127.0.0.1", "HostPort": "8081"}],
    }
    assert settings["SandboxKey"].endswith("/netns") and len(settings["EndpointID"]) == 64
    nets = settings["Networks"]
    assert set(nets) == {"bridge", "app"}
    app_id = host.corral("network", "inspect", "app").stdout
    assert nets["app"]["NetworkID"] == json.loads(app_id)[0]["Id"]
    assert nets["app"]["IPAddress"].startswith("10.97.0.") and nets["app"]["IPPrefixLen"] == 24
    assert nets["app"]["Gateway"] == "10.97.0.1" and "svc" in nets["app"]["Aliases"]
    assert nets["bridge"]["IPAddress"] == settings["IPAddress"]
    each = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"
    ips = host.corral("inspect", "web", "--format", each).stdout.split()
    assert ips == [nets["app"]["IPAddress"], settings["IPAddress"]]  # by network name
    assert data["HostConfig"]["NetworkMode"] == "bridge"
    assert data["ResolvConfPath"].endswith("/resolv.conf")
    # stopped: the networks stay listed, every address empty, no ports, no sandbox (docker's)
    host.corral("stop", "-t", "0", "web")
    settings = json.loads(host.corral("inspect", "web").stdout)[0]["NetworkSettings"]
    assert (settings["IPAddress"], settings["Gateway"], settings["MacAddress"]) == ("", "", "")
    assert settings["Ports"] == {} and settings["SandboxKey"] == ""
    assert set(settings["Networks"]) == {"bridge", "app"}
    assert settings["Networks"]["app"]["IPAddress"] == ""
    assert settings["Networks"]["app"]["NetworkID"] == nets["app"]["NetworkID"]


def test_static_ip_on_a_user_network(host: Host) -> None:
    host.corral("network", "create", "app", "--subnet", "10.97.0.0/24")
    _detached(host, "--name", "fixed", "--network", "app", "--ip", "10.97.0.50", "busybox",
              "sleep", "300")  # fmt: skip
    assert _inside(host, "fixed")[0] == "10.97.0.50/24"
    ipam = host.corral("inspect", "fixed", "--format",
                       "{{json .NetworkSettings.Networks.app.IPAMConfig}}").stdout  # fmt: skip
    assert json.loads(ipam) == {"IPv4Address": "10.97.0.50"}
    # a container without --ip does not get it; one with it is refused, nothing made
    _detached(host, "--name", "any", "--network", "app", "busybox", "sleep", "300")
    assert _inside(host, "any")[0] == "10.97.0.2/24"
    _one_line_error(host, "run", "-d", "--name", "clash", "--network", "app", "--ip",
                    "10.97.0.50", "busybox", "sleep", "300",
                    needle="10.97.0.50: Address already in use on network app")  # fmt: skip
    assert "clash" not in host.corral("ps", "-a").stdout and len(_veths(host)) == 2
    # docker's refusals: the default bridge, an address out of the subnet, not an IPv4 address
    _one_line_error(host, "run", "--rm", "--ip", "10.86.0.9", "busybox", "true",
                    needle="user specified IP address is supported on user defined networks "
                    "only")  # fmt: skip
    _one_line_error(host, "create", "--network", "app", "--ip", "10.98.0.9", "busybox",
                    needle="does not belong to any of this network's subnets")  # fmt: skip
    _one_line_error(host, "run", "--rm", "--network", "app", "--ip", "10.97.0.256", "busybox",
                    "true", needle="--ip: invalid IPv4 address: 10.97.0.256")  # fmt: skip
    _one_line_error(host, "network", "connect", "--ip", "nonsense", "app", "any", code=1,
                    needle="invalid IPv4 address: nonsense")  # fmt: skip
    # a clash found at start (both were created while the address was free): a clear error,
    # the start undone, and the lease released with its holder
    host.corral("create", "--name", "later", "--network", "app", "--ip", "10.97.0.60",
                "busybox", "sleep", "300")  # fmt: skip
    host.corral("create", "--name", "twin", "--network", "app", "--ip", "10.97.0.60",
                "busybox", "sleep", "300")  # fmt: skip
    host.corral("start", "later")
    done = host.corral("start", "twin", check=False)
    assert done.returncode != 0 and "Address already in use" in done.stderr, done.stderr
    assert len(_veths(host)) == 3
    host.corral("rm", "-f", "later")
    host.corral("start", "twin")
    assert _inside(host, "twin")[0] == "10.97.0.60/24"
    # network connect --ip, on a running container
    _detached(host, "--name", "joiner", "busybox", "sleep", "300")
    host.corral("network", "connect", "--ip", "10.97.0.70", "app", "joiner")
    out = host.corral("exec", "joiner", "ip", "-o", "-4", "addr", "show", "eth1").stdout
    assert "10.97.0.70/24" in out
    _one_line_error(host, "network", "connect", "--ip", "10.97.0.70", "app", "any", code=1,
                    needle="Address already in use")  # fmt: skip
    host.corral("rm", "-f", "fixed", "any", "twin", "joiner")
    assert _veths(host) == [] and "ctr:" not in host.rules()


def test_dns_flags_write_resolv_conf(host: Host) -> None:
    out = host.corral("run", "--rm", "--dns", "10.97.0.53", "--dns", "10.97.0.54",
                      "--dns-search", "corp.example", "--dns-option", "ndots:3",
                      "--dns-opt", "timeout:1", "busybox", "cat", "/etc/resolv.conf").stdout
    assert out == ("search corp.example\nnameserver 10.97.0.53\nnameserver 10.97.0.54\n"
                   "options ndots:3 timeout:1\n")  # fmt: skip
    for flag, value in (("--dns", "10.97.0"), ("--dns-search", "a..b"), ("--dns-option", "a b")):
        _one_line_error(host, "run", "--rm", "--name", "bad", flag, value, "busybox", "true",
                        needle=f'for "{flag}" flag')  # fmt: skip
    assert "bad" not in host.corral("ps", "-a").stdout
