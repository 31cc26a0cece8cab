"""corral's networking end to end, each test inside network namespaces it makes.

Every command runs as ``nsenter --net=<the test's namespace> corral ...``: the bridge, veths,
corral's nftables table and the ip_forward sysctl are that namespace's, never the host's, and
deleting the namespace removes whatever a failing test left there. The containers' mounts and
monitor processes are on the host as usual, so the leak check still sees them. The only
addresses used are loopback and those the tests give inside their namespaces.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.engine import CORRAL

#: A "remote" host, in its own namespace, routed from the test's (TEST-NET-2, never routed).
UPLINK_HOST, UPLINK_REMOTE = "198.51.100.1", "198.51.100.2"
HTTPD = ["httpd", "-f", "-p", "80", "-h", "/etc"]  # serves /etc/hostname: who answered


def fetch(url: str, seconds: int = 5) -> str:
    """A container's shell command that GETs ``url``. Not ``wget -T``: Debian's static busybox
    wget crashes with it. busybox ``timeout`` execs the program in its own place, and sh -c execs
    a last simple command, so "; exit $?" keeps the fetch from being PID 1 (which ignores the
    SIGTERM that ends it)."""
    return f"timeout {seconds} wget -q -O- {url}; exit $?"


def _sh(*argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if check:
        assert done.returncode == 0, f"{argv}: {done.stderr}"
    return done


class Host:
    """A network namespace standing for the host corral runs on."""

    def __init__(self, root: Path, enter: list[str] | None = None) -> None:
        self.name = f"corral-t-{secrets.token_hex(4)}"
        self.root = root
        self.own = enter is None
        if enter is None:
            _sh("ip", "netns", "add", self.name)
            enter = ["nsenter", f"--net=/run/netns/{self.name}"]
        self.enter = enter
        self.sh("ip", "link", "set", "lo", "up")
        if self.own:  # a new namespace copies ip_forward from the host's: start from "off"
            self.sh("sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward")

    def sh(self, *argv: str, check: bool = True, timeout: float = 60
           ) -> subprocess.CompletedProcess[str]:  # fmt: skip
        return _sh(*self.enter, *argv, check=check, timeout=timeout)

    def corral(self, *args: str, check: bool = True, timeout: float = 120
               ) -> subprocess.CompletedProcess[str]:  # fmt: skip
        done = subprocess.run(
            [*self.enter, CORRAL, "--root", str(self.root), *args],
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
            env={**os.environ, "CORRAL_NETWORK": "bridge"},  # this namespace is the test's
        )  # fmt: skip
        if check:
            assert done.returncode == 0, f"corral {' '.join(args)}: {done.stderr}"
        return done

    def fetch(self, url: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """GET ``url`` from the host's namespace (Python: Debian's static busybox wget crashes
        with -T, so containers run it under busybox timeout instead)."""
        program = (
            "import sys, urllib.request as u; "
            "print(u.urlopen(sys.argv[1], timeout=5).read().decode())"
        )
        return self.sh(sys.executable, "-c", program, url, check=check)

    def rules(self) -> str:
        return self.sh("nft", "list", "ruleset").stdout

    def link_names(self) -> list[str]:
        out = self.sh("ip", "-o", "link", "show").stdout
        return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]

    def close(self) -> None:
        ids = self.corral("ps", "-aq", "--no-trunc", check=False).stdout.split()
        if ids:
            self.corral("rm", "-f", *ids, check=False)
        if self.own:
            _sh("ip", "netns", "delete", self.name, check=False)


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    h = Host(tmp_path / "root")
    h.corral("image", "busybox")
    try:
        yield h
    finally:
        h.close()


def _detached(host: Host, *args: str) -> str:
    return host.corral("run", "-d", *args).stdout.strip()


def _wait_http(host: Host, url: str) -> str:
    deadline = time.monotonic() + 10
    while True:
        done = host.fetch(url, check=False)
        if done.returncode == 0 or time.monotonic() > deadline:
            assert done.returncode == 0, f"{url}: {done.stderr}"
            return done.stdout.strip()
        time.sleep(0.1)


# -- published ports ----------------------------------------------------------------------------


def test_published_port_from_host_loopback_bridge_and_hairpin(host: Host) -> None:
    cid = _detached(host, "--name", "web", "--hostname", "webhost", "-p", "8080:80", "busybox",
                    *HTTPD)  # fmt: skip
    assert host.corral("port", "web").stdout.strip() == "80/tcp -> 0.0.0.0:8080"
    # From the host itself through 127.0.0.1 (OUTPUT DNAT + route_localnet + masquerade).
    assert _wait_http(host, "http://127.0.0.1:8080/hostname") == "webhost"
    # Through the bridge's address.
    assert host.fetch("http://10.86.0.1:8080/hostname").stdout.strip() == "webhost"
    # From another container on the bridge through the host's port (hairpin), and from the
    # container to itself.
    other = host.corral("run", "--rm", "--network", "bridge", "busybox",
                        "sh", "-c", fetch("http://10.86.0.1:8080/hostname"))  # fmt: skip
    assert other.stdout.strip() == "webhost"
    # No userspace proxy: nothing listens on 8080 in the host namespace.
    listening = host.sh("ss", "-ltn", check=False).stdout
    assert ":8080 " not in listening
    rules = host.rules()
    assert f"ctr:{cid}" in rules and "dnat to 10.86." in rules
    host.corral("rm", "-f", "web")
    assert f"ctr:{cid}" not in host.rules()
    assert host.fetch("http://127.0.0.1:8080/hostname", check=False).returncode != 0


#: Run in the host's namespace: GET the file at argv[1] (http://127.0.0.1:PORT/big), and print
#: its sha256, its peer and local addresses, how many TCP segments this namespace received
#: meanwhile, and which socket-shortcut programs serve the namespace afterwards.
_SHORTCUT_PROBE = r"""
import hashlib, json, socket, sys
from corral.engine.network import shortcut
def segments():
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Tcp:")]
    return int(rows[1][rows[0].index("InSegs")])
port = int(sys.argv[1])
before = segments()
sock = socket.create_connection(("127.0.0.1", port), timeout=10)
peer, local = sock.getpeername(), sock.getsockname()
sock.sendall(b"GET /big HTTP/1.0\r\n\r\n")
body = b""
while chunk := sock.recv(1 << 16):
    body += chunk
sock.close()
print(json.dumps({"sha256": hashlib.sha256(body.partition(b"\r\n\r\n")[2]).hexdigest(),
                  "peer": list(peer), "local": list(local), "segments": segments() - before,
                  "programs": sorted(shortcut.Shortcut().find()[0])}))
"""


def test_the_hosts_connections_to_a_published_port_take_the_socket_shortcut(
    host: Host, tmp_path: Path
) -> None:
    """docs/network.md, "The socket shortcut": 127.0.0.1:HOST is connected to the container's
    own address (connect4), and the bytes go socket to socket (sockhash + sk_msg), so a 16 MiB
    download brings the host's namespace a handful of TCP segments instead of hundreds. This
    holds after ``run -d`` has exited (the waiter keeps the program attached), and ends with
    the container; CORRAL_SOCKET_SHORTCUT=0 keeps the nftables path."""
    import hashlib

    from corral.engine.network import shortcut

    why = shortcut.available()
    if why:  # published ports keep the nftables path: test_published_port_... covers it
        pytest.skip(f"the socket shortcut cannot run here: {why}")
    www = tmp_path / "www"
    www.mkdir()
    data = os.urandom(16 << 20)
    (www / "big").write_bytes(data)
    (www / "index.html").write_text("up")
    want = hashlib.sha256(data).hexdigest()
    httpd = ["busybox", "httpd", "-f", "-p", "80", "-h", "/www"]
    _detached(host, "--name", "big", "-p", "127.0.0.1:8081:80", "-v", f"{www}:/www", *httpd)
    gateway = json.loads(host.corral("inspect", "big").stdout)[0]["NetworkSettings"]["Gateway"]

    def probe(port: int) -> dict[str, Any]:
        done = host.sh(sys.executable, "-c", _SHORTCUT_PROBE, str(port))
        return dict(json.loads(done.stdout))

    assert _wait_http(host, "http://127.0.0.1:8081/") == "up"
    out = probe(8081)
    assert out["sha256"] == want
    assert out["peer"] == ["127.0.0.1", 8081]  # as after a DNAT (getpeername4)
    assert out["local"][0] == gateway  # but connected to the container's address
    assert out["segments"] < 50, out  # the handshake and the close
    assert out["programs"] == ["corral_connect", "corral_peername", "corral_sockops"]
    host.corral("rm", "-f", "big")
    listing = "from corral.engine.network import shortcut as s; print(s.Shortcut().find()[0])"
    gone = host.sh(sys.executable, "-c", listing)
    assert gone.stdout.strip() == "{}"

    # turned off: the same download through nftables' DNAT, as TCP segments
    done = subprocess.run(
        [*host.enter, CORRAL, "--root", str(host.root), "run", "-d", "--name", "big2", "-p",
         "127.0.0.1:8082:80", "-v", f"{www}:/www", *httpd],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        env={**os.environ, "CORRAL_NETWORK": "bridge", "CORRAL_SOCKET_SHORTCUT": "0"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert _wait_http(host, "http://127.0.0.1:8082/") == "up"
    out = probe(8082)
    assert out["sha256"] == want
    assert out["peer"] == ["127.0.0.1", 8082]
    assert out["local"][0] == "127.0.0.1"
    assert out["segments"] > 200, out  # 16 MiB in skbs of at most 64 KiB (GRO)
    assert out["programs"] == []


def test_publish_all_and_udp_and_specific_address(host: Host) -> None:
    _detached(host, "--name", "u", "-p", "127.0.0.1:5353:53/udp", "-p", "127.0.0.1::80",
              "busybox", "sleep", "60")  # fmt: skip
    lines = host.corral("port", "u").stdout.splitlines()
    assert "53/udp -> 127.0.0.1:5353" in lines
    tcp = [ln for ln in lines if ln.startswith("80/tcp -> 127.0.0.1:")]
    assert tcp and int(tcp[0].rsplit(":", 1)[1]) > 0
    assert host.corral("port", "u", "53/udp").stdout.strip() == "127.0.0.1:5353"
    port = tcp[0].rsplit(":", 1)[1]  # docker's PORTS column, from the view and from the engine
    for ps in (["ps"], ["ps"], ["ps", "--no-trunc"]):
        assert f"127.0.0.1:{port}->80/tcp, 127.0.0.1:5353->53/udp   u" in host.corral(*ps).stdout


def test_a_published_host_port_stays_taken_while_the_container_runs(host: Host) -> None:
    """The host sockets that reserve published ports are held by the container's waiter
    (corral.engine.monitor.waiter, fds 8 on): after ``run -d`` has exited, nothing on the host
    can bind the port (it would never see a connection: DNAT takes them), until the
    container is gone."""
    bind = ("import socket, sys; s = socket.socket(); "
            "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
            "s.bind(('0.0.0.0', int(sys.argv[1]))); print('bound')")  # fmt: skip
    _detached(host, "--name", "holder", "-p", "8093:80", "busybox", "sleep", "60")
    taken = host.sh(sys.executable, "-c", bind, "8093", check=False)
    assert taken.returncode != 0 and "Address already in use" in taken.stderr
    host.corral("rm", "-f", "holder")
    assert host.sh(sys.executable, "-c", bind, "8093").stdout.strip() == "bound"


# -- user-defined networks and names ------------------------------------------------------------


def test_user_network_names_resolve_and_other_network_cannot(host: Host) -> None:
    host.corral("network", "create", "front")
    host.corral("network", "create", "back", "--subnet", "10.99.0.0/24")
    _detached(host, "--name", "api", "--hostname", "apihost", "--network", "front",
              "--network-alias", "service", "busybox", *HTTPD)  # fmt: skip
    _detached(host, "--name", "db", "--network", "back", "busybox", "sleep", "60")

    def fetch_from(net: str, url: str) -> subprocess.CompletedProcess[str]:
        return host.corral("run", "--rm", "--network", net, "busybox",
                           "sh", "-c", fetch(url, 3), check=False)  # fmt: skip

    deadline = time.monotonic() + 10
    while (done := fetch_from("front", "http://api/hostname")).returncode != 0:
        assert time.monotonic() < deadline, done.stderr
        time.sleep(0.2)
    assert done.stdout.strip() == "apihost"
    assert fetch_from("front", "http://service/hostname").stdout.strip() == "apihost"
    # Another network neither resolves the name nor reaches the address.
    assert fetch_from("back", "http://api/hostname").returncode != 0
    info = json.loads(host.corral("network", "inspect", "front").stdout)[0]
    (address,) = [c["IPv4Address"].split("/")[0] for c in info["Containers"].values()
                  if c["Name"] == "api"]  # fmt: skip
    assert fetch_from("back", f"http://{address}/hostname").returncode != 0
    # connect: now it can, by name too; disconnect: not any more.
    host.corral("network", "connect", "front", "db")
    db_hosts = host.corral("logs", "db").stdout  # nothing, but the container still runs
    del db_hosts
    hosts = (host.root / "containers").glob("*/hosts")
    assert any("api" in p.read_text() and "10.99." in p.read_text() for p in hosts)
    host.corral("network", "disconnect", "front", "db")
    assert host.corral("network", "rm", "front", check=False).returncode != 0  # api is on it
    host.corral("rm", "-f", "api", "db")
    host.corral("network", "rm", "front", "back")
    assert "corral-" not in " ".join(host.link_names())


def test_internal_network_has_no_way_out(host: Host, tmp_path: Path) -> None:
    remote = Remote(host)
    try:
        remote.serve()
        host.corral("network", "create", "--internal", "sealed")
        out = host.corral("run", "--rm", "--network", "sealed", "busybox", "sh", "-c",
                          fetch(f"http://{UPLINK_REMOTE}:8000/", 2), check=False)  # fmt: skip
        assert out.returncode != 0 and "unreachable" in out.stderr
        assert remote.peer() is None
        # Even with a route (a container with NET_ADMIN could add one), the forward chain
        # drops what would leave: checked on the rules.
        assert 'iifname "corral-' in host.rules().split("chain internal")[1].split("}")[0]
        # The same from the default network works: the remote is reachable at all.
        host.corral("run", "--rm", "--network", "bridge", "busybox",
                    "sh", "-c", fetch(f"http://{UPLINK_REMOTE}:8000/"))  # fmt: skip
        assert remote.peer() == UPLINK_HOST
    finally:
        remote.close()


# -- outbound NAT -------------------------------------------------------------------------------


class Remote:
    """A second namespace linked to the host's by a veth pair, running a TCP server that writes
    down the address each client came from."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.name = host.name + "-r"
        _sh("ip", "netns", "add", self.name)
        host.sh("ip", "link", "add", "up0", "type", "veth", "peer", "name", "down0",
                "netns", self.name)  # fmt: skip
        host.sh("ip", "addr", "add", f"{UPLINK_HOST}/24", "dev", "up0")
        host.sh("ip", "link", "set", "up0", "up")
        self.enter = ["nsenter", f"--net=/run/netns/{self.name}"]
        _sh(*self.enter, "ip", "addr", "add", f"{UPLINK_REMOTE}/24", "dev", "down0")
        _sh(*self.enter, "ip", "link", "set", "down0", "up")
        _sh(*self.enter, "ip", "link", "set", "lo", "up")
        self.log = host.root.parent / f"peers-{self.name}"
        self.proc: subprocess.Popen[bytes] | None = None

    def serve(self) -> None:
        program = (
            "import socket,sys\n"
            "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            "s.bind(('0.0.0.0', 8000)); s.listen(8)\n"
            "while True:\n"
            "    c, a = s.accept()\n"
            f"    open({str(self.log)!r}, 'a').write(a[0] + '\\n')\n"
            "    c.recv(4096); c.sendall(b'HTTP/1.0 200 OK\\r\\n\\r\\nremote\\n'); c.close()\n"
        )
        self.proc = subprocess.Popen([*self.enter, sys.executable, "-c", program])
        deadline = time.monotonic() + 10
        while "8000" not in _sh(*self.enter, "ss", "-ltn").stdout:
            assert time.monotonic() < deadline, "the remote's server did not start"
            time.sleep(0.05)

    def peer(self) -> str | None:
        try:
            lines = self.log.read_text().split()
        except FileNotFoundError:
            return None
        return lines[-1] if lines else None

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        _sh("ip", "netns", "delete", self.name, check=False)


def test_outbound_nat_remote_sees_the_host_address(host: Host) -> None:
    remote = Remote(host)
    try:
        remote.serve()
        out = host.corral("run", "--rm", "--network", "bridge", "busybox",
                          "sh", "-c", fetch(f"http://{UPLINK_REMOTE}:8000/"))  # fmt: skip
        assert out.stdout.strip() == "remote"
        assert remote.peer() == UPLINK_HOST  # masqueraded: not 10.86.x.y
        assert host.sh("cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip() == "1"
    finally:
        remote.close()


def test_a_forged_source_address_does_not_leave_the_bridge(host: Host) -> None:
    """A container may send any source address (CAP_NET_RAW, and here NET_ADMIN to add one):
    only its network's own leave its bridge. Counted at the remote, whose ICMP counters see
    the echo requests that arrive, answered or not."""
    remote = Remote(host)
    try:
        # no reverse-path filter on the way: only corral's rules may stop the forged packets
        loose = ["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0",
                 "net.ipv4.conf.default.rp_filter=0"]  # fmt: skip
        host.sh(*loose)
        _sh(*remote.enter, *loose, "net.ipv4.conf.down0.rp_filter=0")

        def echoes() -> int:
            snmp = _sh(*remote.enter, "cat", "/proc/net/snmp").stdout.splitlines()
            names, values = [line.split()[1:] for line in snmp if line.startswith("Icmp:")][:2]
            return int(values[names.index("InEchos")])

        before = echoes()
        ping = f"ping -c 3 -W 1 -I {{}} {UPLINK_REMOTE}"
        own = host.corral("run", "--rm", "--network", "bridge", "busybox", "sh", "-c",
                          ping.format("eth0"))  # fmt: skip
        assert own.returncode == 0 and echoes() == before + 3  # the container's own address
        forged = host.corral("run", "--rm", "--network", "bridge", "--cap-add", "NET_ADMIN",
                             "busybox", "sh", "-c",
                             "ip addr add 192.0.2.77/32 dev eth0 && " + ping.format("192.0.2.77"),
                             check=False)  # fmt: skip
        assert forged.returncode != 0
        assert echoes() == before + 3, "a forged source left the host"
    finally:
        remote.close()


# -- many at once, and cleanup ------------------------------------------------------------------


def test_fifty_concurrent_containers_get_distinct_addresses_and_leave_nothing(host: Host) -> None:
    count = 50

    def start(i: int) -> str:
        return host.corral("run", "-d", "--name", f"c{i}", "--network", "bridge", "busybox",
                           "sleep", "120", timeout=300).stdout.strip()  # fmt: skip

    with concurrent.futures.ThreadPoolExecutor(max_workers=count) as pool:
        ids = list(pool.map(start, range(count)))
    info = json.loads(host.corral("network", "inspect", "bridge").stdout)[0]
    addresses = [c["IPv4Address"] for c in info["Containers"].values()]
    assert len(addresses) == count and len(set(addresses)) == count
    assert set(info["Containers"]) == set(ids)
    veths = [n for n in host.link_names() if n.startswith("veth")]
    assert len(veths) == count
    host.corral("rm", "-f", *ids, timeout=300)
    assert [n for n in host.link_names() if n.startswith("veth")] == []
    assert "ctr:" not in host.rules()
    info = json.loads(host.corral("network", "inspect", "bridge").stdout)[0]
    assert info["Containers"] == {}
    # prune with nothing running: bridge, table and ip_forward as they were before corral.
    host.corral("network", "prune", "-f")
    assert "corral0" not in host.link_names()
    assert host.rules().strip() == ""
    assert host.sh("cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip() == "0"


def test_dead_waiter_is_cleaned_up_by_the_next_command(host: Host) -> None:
    import signal

    cid = _detached(host, "--name", "orphan", "-p", "9090:80", "--network", "bridge", "busybox",
                    *HTTPD)  # fmt: skip
    # Kill the root's monitor, then the container's waiter (the init's parent): with no monitor
    # left to notice (docs/engine-monitor.md), the next command must clean up.
    init = json.loads(host.corral("inspect", cid).stdout)[0]["State"]["Pid"]
    with open(f"/proc/{init}/stat") as f:
        waiter = int(f.read().rpartition(")")[2].split()[1])
    os.kill(int((host.root / "monitor.pid").read_text()), signal.SIGKILL)
    os.kill(waiter, signal.SIGKILL)
    time.sleep(0.2)
    assert f"ctr:{cid}" in host.rules()  # nobody has cleaned up yet
    host.corral("ps", "-a")  # the next command
    assert f"ctr:{cid}" not in host.rules()
    assert [n for n in host.link_names() if n.startswith("veth")] == []
    info = json.loads(host.corral("network", "inspect", "bridge").stdout)[0]
    assert info["Containers"] == {}


# -- bad input ---------------------------------------------------------------------------------


def test_bad_input_is_one_clear_line_and_nothing_half_made(host: Host) -> None:
    def fails(*args: str, code: int, needle: str) -> None:
        done = host.corral(*args, check=False)
        assert done.returncode == code, (args, done.returncode, done.stderr)
        assert needle in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1

    host.corral("network", "create", "one", "--subnet", "10.98.0.0/16")
    fails("network", "create", "two", "--subnet", "10.98.5.0/24", code=1, needle="overlaps")
    fails("network", "create", "three", "--subnet", "10.98.0.0/33", code=1, needle="CIDR")
    fails("network", "create", "four", "--subnet", "nonsense", code=1, needle="CIDR")
    fails("network", "create", "one", code=1, needle="already exists")
    fails("run", "--rm", "-p", "70000:80", "busybox", "true", code=125, needle="70000")
    fails("run", "--rm", "-p", "80:80/sctp", "busybox", "true", code=125, needle="sctp")
    fails("run", "--rm", "--network", "missing", "busybox", "true", code=125,
          needle="network missing not found")  # fmt: skip
    host.corral("create", "--name", "idle", "busybox", "true")
    fails("network", "connect", "missing", "idle", code=1, needle="network missing not found")
    # A port another container publishes, and a port a host process has.
    _detached(host, "--name", "first", "-p", "8081:80", "busybox", "sleep", "60")
    fails("run", "-d", "--name", "second", "-p", "8081:80", "busybox", "sleep", "60", code=125,
          needle="8081")  # fmt: skip
    listener = subprocess.Popen([*host.enter, "busybox", "nc", "-l", "-p", "8082"])
    try:
        deadline = time.monotonic() + 5
        while ":8082" not in host.sh("ss", "-ltn").stdout:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        fails("run", "--rm", "-p", "8082:80", "busybox", "true", code=125,
              needle="already in use")  # fmt: skip
    finally:
        listener.kill()
        listener.wait()
    # Nothing half-made: only the containers that were made, only first's veth and rules.
    names = host.corral("ps", "-a", "--format", "{{.Names}}", check=False).stdout
    del names
    ps = host.corral("ps", "-a").stdout
    assert "second" in ps  # docker too keeps a container whose start failed (Created)
    veths = [n for n in host.link_names() if n.startswith("veth")]
    assert len(veths) == 1
    assert host.rules().count("ctr:") == 2  # first's 8081 in prerouting and output


# -- beside dockerd ------------------------------------------------------------------------------


def _docker_rules(host: Host) -> str:
    """docker's iptables rules (its tables, not corral's), less corral's DOCKER-USER rules."""
    out = []
    for table in ("filter", "nat"):
        text = host.sh("iptables", "-t", table, "-S").stdout
        out += [ln for ln in text.splitlines() if "corral:" not in ln]
    return "\n".join(out)


def test_dockerd_beside(tmp_path: Path) -> None:
    """With dockerd in the same namespace (FORWARD policy DROP), corral's published port and
    outbound NAT still work, and docker's rules are untouched. (A short name: dockerd's
    containerd puts unix sockets under tmp_path, and sun_path holds 108 bytes.)"""
    from helpers import clients

    with clients.dockerd(tmp_path / "d") as docker:
        host = Host(tmp_path / "root", enter=docker.netns.enter)
        remote = None
        try:
            host.corral("image", "busybox")
            # dockerd sets the FORWARD policy to DROP when it finds forwarding off; a new
            # namespace copies ip_forward from the host's, which may have it on: set what
            # dockerd sets on a fresh host, so the test does not depend on the host's state.
            host.sh("iptables", "-P", "FORWARD", "DROP")
            policy = host.sh("iptables", "-S", "FORWARD").stdout
            assert "-P FORWARD DROP" in policy
            before = _docker_rules(host)
            remote = Remote(host)
            remote.serve()
            _detached(host, "--name", "web", "--hostname", "webhost", "-p", "8080:80",
                      "busybox", *HTTPD)  # fmt: skip
            assert _wait_http(host, "http://127.0.0.1:8080/hostname") == "webhost"
            out = host.corral("run", "--rm", "busybox", "sh", "-c",
                              fetch(f"http://{UPLINK_REMOTE}:8000/"))  # fmt: skip
            assert out.stdout.strip() == "remote" and remote.peer() == UPLINK_HOST
            # Published port from the "remote" side (forwarded through docker's DROP policy).
            program = (
                "import urllib.request as u; "
                f"print(u.urlopen('http://{UPLINK_HOST}:8080/hostname', timeout=5).read().decode())"
            )
            got = _sh(*remote.enter, sys.executable, "-c", program)
            assert got.stdout.strip() == "webhost"
            # docker's own rules are as they were; corral's are only in DOCKER-USER.
            assert _docker_rules(host) == before
            user = host.sh("iptables", "-S", "DOCKER-USER").stdout
            assert "corral:corral0" in user
            host.corral("rm", "-f", "web")
            host.corral("network", "prune", "-f")
            assert "corral:" not in host.sh("iptables", "-S", "DOCKER-USER").stdout
            assert _docker_rules(host) == before
        finally:
            if remote is not None:
                remote.close()
            host.close()
