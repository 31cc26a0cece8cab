"""The socket shortcut (corral.engine.network.shortcut) on the real kernel, without the engine.

Two network namespaces play the engine's (H, with the bridge's address 10.231.0.1) and a
container's (C, 10.231.0.2), joined by a veth pair. An echo server runs in C. What the engine
does at ``run -p 127.0.0.1:19000:9000`` (``shortcut.publish``) and at teardown
(``shortcut.withdraw``) is done by a small script run in H, which then checks, as a client in
H: that a TCP connect() to 127.0.0.1:19000 reaches the server at its own address (while
getpeername still says 127.0.0.1:19000), that both
ends are entered in the sockhash, that 16 MiB each way arrive intact without being sent as TCP
segments, that UDP is left alone, that a third namespace claiming the container's address is
never entered, and that everything is detached once the port is withdrawn.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.clients import NetNS

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv" / "bin" / "python")

ECHO = """
import socket, threading
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", 9000))
srv.listen(8)
print("ready", flush=True)
def echo(conn):
    while data := conn.recv(1 << 16):
        conn.sendall(data)
    conn.close()
while True:
    threading.Thread(target=echo, args=(srv.accept()[0],), daemon=True).start()
"""

#: Runs in H. argv: the container's namespace path, then the impostor's.
SCENARIO = r"""
import hashlib, json, os, socket, sys, threading, time
from corral.engine.network import shortcut as sc
from corral.sys import bpf

container_ns, impostor_ns = sys.argv[1], sys.argv[2]
out = {}
route = sc.Route("", 19000, "10.231.0.2", 9000, "10.231.0.1")
held = sc.publish([route], container_ns)

def segments_out():
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Tcp:")]
    return int(rows[1][rows[0].index("OutSegs")])

def entered():
    shortcut = sc.Shortcut()
    _, maps = shortcut.find()
    try:
        keys = bpf.map_keys(maps.socks, 24)
    finally:
        maps.close()
    return sorted((int.from_bytes(k[:8], "little"), socket.inet_ntoa(k[8:12]),
                   socket.inet_ntoa(k[12:16]), int.from_bytes(k[16:20], "little"),
                   int.from_bytes(k[20:24], "little")) for k in keys)

out["cookies"] = [sc.netns_cookie(), sc.netns_cookie(container_ns), sc.netns_cookie(impostor_ns)]
sock = socket.create_connection(("127.0.0.1", 19000), timeout=10)
out["peer"] = list(sock.getpeername())
out["local"] = list(sock.getsockname())
payload = os.urandom(16 << 20)
before = segments_out()
got = bytearray()
def reader():
    while len(got) < len(payload):
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        got.extend(chunk)
thread = threading.Thread(target=reader)
thread.start()
sock.sendall(payload)
thread.join(30)
out["segments"] = segments_out() - before
out["intact"] = hashlib.sha256(got).hexdigest() == hashlib.sha256(payload).hexdigest()
out["entered"] = entered()
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.connect(("127.0.0.1", 19000))
out["udp_peer"] = list(udp.getpeername())
udp.close()
sock.close()
deadline = time.monotonic() + 5  # the server closes its end when it reads the EOF
while entered() and time.monotonic() < deadline:
    time.sleep(0.01)
out["entered_after_close"] = entered()
sc.withdraw([route])
os.close(held)
out["found_after_withdraw"] = sorted(sc.Shortcut().find()[0])
print(json.dumps(out))
"""

#: Runs in the impostor's namespace X, which has both addresses on its own lo: a connection
#: from 10.231.0.1 to 10.231.0.2 inside X must not be entered (the map places those addresses
#: in H and C). Prints nothing; the scenario's sockhash listing is checked.
IMPOSTOR = r"""
import socket, sys, time
srv = socket.socket()
srv.bind(("10.231.0.2", 9000))
srv.listen(1)
cli = socket.create_connection(("10.231.0.2", 9000), source_address=("10.231.0.1", 0))
conn, _ = srv.accept()
print("ready", flush=True)
time.sleep(60)
"""


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60).stdout


def _wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", line


@pytest.fixture
def namespaces() -> Iterator[tuple[NetNS, NetNS, NetNS]]:
    from corral.engine.network import shortcut

    why = shortcut.available()
    if why:
        pytest.skip(f"the socket shortcut cannot run here: {why}")
    h, c, x = NetNS(), NetNS(), NetNS()
    try:
        _run("ip", "link", "add", "vethsc0", "netns", h.path, "type", "veth", "peer", "name",
             "vethsc1", "netns", c.path)  # fmt: skip
        _run(*h.enter, "ip", "addr", "add", "10.231.0.1/24", "dev", "vethsc0")
        _run(*h.enter, "ip", "link", "set", "vethsc0", "up")
        _run(*c.enter, "ip", "addr", "add", "10.231.0.2/24", "dev", "vethsc1")
        _run(*c.enter, "ip", "link", "set", "vethsc1", "up")
        for address in ("10.231.0.1/32", "10.231.0.2/32"):
            _run(*x.enter, "ip", "addr", "add", address, "dev", "lo")
        yield h, c, x
    finally:
        for ns in (h, c, x):
            ns.close()


def _serve(ns: NetNS, program: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([*ns.enter, PYTHON, "-c", program], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        _wait_ready(proc)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc


def test_host_connections_to_a_published_port_take_the_shortcut_intact(
    namespaces: tuple[NetNS, NetNS, NetNS],
) -> None:
    h, c, x = namespaces
    echo = _serve(c, ECHO)
    impostor = _serve(x, IMPOSTOR)
    try:
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        done = subprocess.run(
            [*h.enter, PYTHON, "-c", SCENARIO, c.path, x.path], capture_output=True, text=True,
            timeout=120, env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
    finally:
        for proc in (echo, impostor):
            proc.kill()
            proc.wait()
    host, container, impostor_ns = out["cookies"]
    # connect() went to the container's address: no NAT, and the host's end is the bridge's
    # (getsockname); getpeername names what was asked for, as after a DNAT
    assert out["peer"] == ["127.0.0.1", 19000]
    assert out["local"][0] == "10.231.0.1"
    port = out["local"][1]
    # both ends entered, each under its own namespace; nothing of the impostor's
    ours = [
        [host, "10.231.0.1", "10.231.0.2", port, 9000],
        [container, "10.231.0.2", "10.231.0.1", 9000, port],
    ]
    assert out["entered"] == sorted(ours), out["entered"]
    assert all(entry[0] != impostor_ns for entry in out["entered"])
    # 16 MiB each way, intact, and not as TCP segments (a veth would need thousands)
    assert out["intact"]
    assert out["segments"] < 200, out["segments"]
    # UDP keeps the nftables path: its connect() is not translated
    assert out["udp_peer"] == ["127.0.0.1", 19000]
    # a closed socket leaves the sockhash; the last withdrawn port detaches the programs
    assert out["entered_after_close"] == []
    assert out["found_after_withdraw"] == []


def test_turned_off_or_unavailable_is_a_clear_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    from corral.engine.network import shortcut

    monkeypatch.setenv(shortcut.ENV, "0")
    assert shortcut.available() == f"turned off ({shortcut.ENV}=0)"
    with pytest.raises(shortcut.Unavailable, match="turned off"):
        shortcut.publish([shortcut.Route("", 1, "10.231.0.2", 2, "10.231.0.1")], "/nonexistent")
    monkeypatch.delenv(shortcut.ENV)
    monkeypatch.setattr(shortcut, "cgroup2_root", lambda: None)
    assert shortcut.available() == "no cgroup2 hierarchy is mounted"


def test_a_container_namespace_cookie_is_read_from_its_file(
    namespaces: tuple[NetNS, NetNS, NetNS],
) -> None:
    from corral.engine.network import shortcut

    h, c, _ = namespaces
    mine = os.readlink("/proc/thread-self/ns/net")
    cookies = {shortcut.netns_cookie(ns.path) for ns in (h, c)}
    assert len(cookies) == 2
    assert shortcut.netns_cookie() not in cookies
    assert shortcut.netns_cookie(h.path) == shortcut.netns_cookie(h.path)
    # only the short-lived thread joined the namespace: this one never moved
    assert os.readlink("/proc/thread-self/ns/net") == mine
