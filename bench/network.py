"""Throughput and latency through a published port: corral, docker and podman, against a plain
veth pair without NAT.

    .venv/bin/python bench/network.py [--seconds 5] [--round-trips 20000] [--json]
                                      [--paths veth,corral,docker,podman]

Run as root, with what scripts/install.sh installs (iperf3, docker.io, podman). Nothing leaves
this machine: every engine runs in a network namespace the bench makes (tests/helpers/clients.py:
``NetNS``; dockerd and podman on private roots exactly as the client tests start them), and the
"host" side of each measurement is that namespace's own loopback or bridge address.

One image serves everything: ``corral image from-host netbench iperf3 python3`` (Debian's
iperf3 and the host's python3 with its stdlib), saved with ``corral save`` and loaded into
docker's and podman's stores. Its container runs ``iperf3 -s`` (port 5201) and a Python TCP echo
server (port 7000), both published on the host side. Per path:

- throughput: ``iperf3 -c ADDR -p PORT -t SECONDS`` (one TCP stream, host -> container);
  the receiver's bits per second;
- latency: one TCP connection (TCP_NODELAY), ROUND-TRIPS times 1 byte out and 1 byte back,
  each timed with perf_counter_ns; median and 99th percentile in microseconds.

Paths:

- ``veth``: the baseline. A veth pair between the bench's namespace and a second one holding
  the servers (no bridge, no NAT, no conntrack rules);
- ``corral``: ``corral run -p 127.0.0.1:H:C``: nftables DNAT in the kernel, no proxy process;
- ``docker 127.0.0.1``: dockerd's default (``userland-proxy`` on): traffic to 127.0.0.1 is
  accepted by ``docker-proxy``, a userspace process copying bytes to the container;
- ``docker bridge-ip``: the same port through docker0's address: iptables DNAT, no proxy;
- ``podman``: podman 4.3's CNI ``portmap`` plugin: iptables DNAT (with route_localnet for
  127.0.0.1); conmon only holds the port open, it does not carry the traffic.

The bench prints what carried each path's traffic (the process listening on the host port, if
any). It is a benchmark, not a test: it exits 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CORRAL = str(REPO / ".venv" / "bin" / "corral")
IMAGE = "netbench"
IPERF_PORT, ECHO_PORT = 5201, 7000
HOST_IPERF, HOST_ECHO = 15201, 17000
PATHS = ("veth", "corral", "docker", "podman")
TEST_LOCK = "/run/corral-tests.lock"

#: The container's program: iperf3 -s beside a TCP echo server.
SERVER = f"""
import socket, subprocess, threading
def iperf_server():  # one test per server: a fresh one each time (iperf3 -s can exit on errors)
    while True:
        subprocess.run(["iperf3", "-s", "-1", "-p", "{IPERF_PORT}"], stdout=subprocess.DEVNULL)
threading.Thread(target=iperf_server, daemon=True).start()
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", {ECHO_PORT}))
srv.listen(16)
def echo(conn):
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while data := conn.recv(4096):
        conn.sendall(data)
    conn.close()
while True:  # a thread per connection: a proxy may keep its last one open a while
    threading.Thread(target=echo, args=(srv.accept()[0],), daemon=True).start()
"""


@dataclass
class Result:
    path: str
    carrier: str  # what carries the traffic: the kernel (DNAT, veth) or a proxy process
    gbits: float
    rtt_median_us: float
    rtt_p99_us: float


# -- the client side (run inside a namespace: ``network.py --latency ADDR PORT N``) ---------------


def latency(addr: str, port: int, round_trips: int) -> tuple[float, float]:
    """Median and p99 (us) of ``round_trips`` 1-byte TCP round trips to an echo server (a
    connection a proxy drops before the container answers is tried again, 5 times)."""
    for attempt in range(5):
        try:
            return _latency(addr, port, round_trips)
        except OSError:
            if attempt == 4:
                raise
            time.sleep(1)
    raise AssertionError("unreachable")


def _latency(addr: str, port: int, round_trips: int) -> tuple[float, float]:
    deadline = time.monotonic() + 20
    while True:
        try:
            sock = socket.create_connection((addr, port), timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    samples = []
    clock = time.perf_counter_ns
    with sock:
        for _ in range(round_trips):
            start = clock()
            sock.sendall(b"x")
            if sock.recv(1) != b"x":
                raise OSError("the echo server closed the connection")
            samples.append(clock() - start)
    samples.sort()
    return statistics.median(samples) / 1000, samples[int(len(samples) * 0.99)] / 1000


def measure(enter: list[str], addr: str, iperf_port: int, echo_port: int,
            seconds: int, round_trips: int) -> tuple[float, float, float]:
    """(Gbit/s, RTT median us, RTT p99 us) from inside the namespace ``enter`` enters."""
    report: dict[str, Any] = {}
    for _ in range(100):  # the server may still be starting (iperf3 -J exits 0 even then)
        done = subprocess.run([*enter, "iperf3", "-J", "-c", addr, "-p", str(iperf_port),
                               "-t", str(seconds)], capture_output=True, text=True)  # fmt: skip
        try:
            report = json.loads(done.stdout)
        except ValueError:
            report = {"error": done.stderr.strip()}
        if "sum_received" in report.get("end", {}):
            break
        time.sleep(0.2)
    else:
        raise RuntimeError(f"iperf3 -c {addr}:{iperf_port}: {report.get('error')}")
    gbits = report["end"]["sum_received"]["bits_per_second"] / 1e9
    client = [sys.executable, __file__, "--latency", addr, str(echo_port), str(round_trips)]
    out = subprocess.run([*enter, *client], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"latency to {addr}:{echo_port}: {out.stderr.strip()[-500:]}")
    median, p99 = json.loads(out.stdout)
    return gbits, median, p99


def listener(enter: list[str], port: int) -> str:
    """The process listening on ``port`` in the namespace (``ss -tlnp``), or "kernel"."""
    out = subprocess.run([*enter, "ss", "-Htlnp", f"sport = :{port}"], capture_output=True,
                         text=True).stdout  # fmt: skip
    if 'users:(("' in out:
        return out.split('users:(("', 1)[1].split('"', 1)[0]
    return ""


# -- the paths -----------------------------------------------------------------------------------


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


@contextmanager
def veth_path(clients: Any) -> Iterator[tuple[list[str], str, int, int, str]]:
    """Two namespaces joined by a veth pair (10.254.0.1/30 -- 10.254.0.2/30); servers in B."""
    a, b = clients.NetNS(), clients.NetNS()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        va, vb = f"vb{secrets.token_hex(3)}a", f"vb{secrets.token_hex(3)}b"
        _run(*a.enter, "ip", "link", "add", va, "type", "veth", "peer", "name", vb,
             "netns", b.path)  # fmt: skip
        _run(*a.enter, "ip", "addr", "add", "10.254.0.1/30", "dev", va)
        _run(*a.enter, "ip", "link", "set", va, "up")
        _run(*b.enter, "ip", "addr", "add", "10.254.0.2/30", "dev", vb)
        _run(*b.enter, "ip", "link", "set", vb, "up")
        # in a session of its own: its iperf3 -s child goes with it
        procs.append(subprocess.Popen([*b.enter, sys.executable, "-c", SERVER],
                                      start_new_session=True))  # fmt: skip
        yield a.enter, "10.254.0.2", IPERF_PORT, ECHO_PORT, "kernel (veth, no NAT)"
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        a.close()
        b.close()


def server_args() -> list[str]:
    return ["python3", "-c", SERVER]


def publish(ip: str = "127.0.0.1:") -> list[str]:
    return ["-p", f"{ip}{HOST_IPERF}:{IPERF_PORT}", "-p", f"{ip}{HOST_ECHO}:{ECHO_PORT}"]


# -- main ------------------------------------------------------------------------------------------


def format_table(results: list[Result]) -> str:
    base = next((r for r in results if r.path == "veth"), None)

    def rel(value: float, ref: float | None) -> str:
        return f"{value / ref:.2f}" if ref else "-"

    header = (f"{'path':<20} {'Gbit/s':>7} {'x veth':>6} {'RTT p50 us':>10} {'x veth':>6} "
              f"{'p99 us':>7}  carried by")  # fmt: skip
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(
            f"{r.path:<20} {r.gbits:>7.2f} {rel(r.gbits, base and base.gbits):>6} "
            f"{r.rtt_median_us:>10.1f} {rel(r.rtt_median_us, base and base.rtt_median_us):>6} "
            f"{r.rtt_p99_us:>7.1f}  {r.carrier}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/network.py", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="iperf3 seconds per path")
    parser.add_argument("--round-trips", type=int, default=20000, help="1-byte round trips")
    parser.add_argument("--paths", default=",".join(PATHS), help="which paths (comma-separated)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--latency", nargs=3, metavar=("ADDR", "PORT", "N"), help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)
    if ns.latency:
        print(json.dumps(latency(ns.latency[0], int(ns.latency[1]), int(ns.latency[2]))))
        return 0
    wanted = [p.strip() for p in ns.paths.split(",") if p.strip()]
    sys.path[:0] = [str(REPO / "tests"), str(REPO / "src")]
    from helpers import clients

    tmp = Path(tempfile.mkdtemp(prefix="corral-bench-network-"))
    results: list[Result] = []
    # the tests' lock (tests/conftest.py): a concurrent test's leak check kills containers it
    # did not make, ours included; runs take turns with the tests
    lock = os.open(TEST_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)

    def record(path: str, enter: list[str], addr: str, ports: tuple[int, int], how: str) -> None:
        gbits, median, p99 = measure(enter, addr, *ports, ns.seconds, ns.round_trips)
        results.append(Result(path, how, gbits, median, p99))
        print(f"  {path}: {gbits:.2f} Gbit/s, RTT {median:.1f} us (p99 {p99:.1f})",
              file=sys.stderr)  # fmt: skip

    def carrier(enter: list[str]) -> str:
        who = listener(enter, HOST_IPERF)
        return f"userspace proxy ({who})" if who and who not in ("conmon",) else (
            f"kernel DNAT ({who} holds the port)" if who else "kernel DNAT")

    try:
        root = tmp / "corral"
        _run(CORRAL, "--root", str(root), "image", "from-host", IMAGE, "iperf3", "python3")
        archive = tmp / "netbench.tar"
        _run(CORRAL, "--root", str(root), "save", "-o", str(archive), IMAGE)
        if "veth" in wanted:
            with veth_path(clients) as (enter, addr, p1, p2, how):
                record("veth", enter, addr, (p1, p2), how)
        if "corral" in wanted:
            netns = clients.NetNS()
            corral = [*netns.enter, CORRAL, "--root", str(root)]
            try:
                _run(*corral, "run", "-d", "--name", "srv", *publish(), IMAGE, *server_args())
                try:
                    record("corral 127.0.0.1", netns.enter, "127.0.0.1",
                           (HOST_IPERF, HOST_ECHO), carrier(netns.enter))  # fmt: skip
                except RuntimeError:
                    for what in (["ps", "-a"], ["logs", "srv"], ["port", "srv"]):
                        done = subprocess.run([*corral, *what], capture_output=True, text=True)
                        print(done.stdout + done.stderr, file=sys.stderr)
                    raise
            finally:
                subprocess.run([*corral, "rm", "-f", "srv"], capture_output=True)
                netns.close()
        if "docker" in wanted:
            with clients.dockerd(tmp / "docker") as d:
                d.docker.ok("load", "--input", archive)
                # every address of its namespace (lo, docker0): 127.0.0.1 reaches docker-proxy,
                # docker0's address the iptables DNAT
                d.docker.ok("run", "-d", "--name", "srv", *publish(""), f"{IMAGE}:latest",
                            *server_args())  # fmt: skip
                enter = d.netns.enter
                record("docker 127.0.0.1", enter, "127.0.0.1", (HOST_IPERF, HOST_ECHO),
                       carrier(enter))  # fmt: skip
                bridge = _run(*enter, "ip", "-4", "-o", "addr", "show", "docker0").split()[3]
                record("docker bridge-ip", enter, bridge.split("/")[0], (HOST_IPERF, HOST_ECHO),
                       "kernel DNAT (iptables, docker0's address)")  # fmt: skip
        if "podman" in wanted:
            with clients.podman(tmp / "podman") as pm:
                cli = pm.cli(clients.runtime_named("runc"))
                cli.ok("load", "--input", archive)
                cli.ok("run", "-d", "--name", "srv", "--network", "bridge", "--cgroup-parent",
                       pm.cgroup_parent, *publish(), f"localhost/{IMAGE}:latest",
                       *server_args())  # fmt: skip
                record("podman 127.0.0.1", pm.netns.enter, "127.0.0.1",
                       (HOST_IPERF, HOST_ECHO), carrier(pm.netns.enter))  # fmt: skip
    finally:
        if (tmp / "corral" / "corral.db").exists():
            ids = subprocess.run([CORRAL, "--root", str(tmp / "corral"), "ps", "-aq"],
                                 capture_output=True, text=True).stdout.split()  # fmt: skip
            if ids:
                subprocess.run([CORRAL, "--root", str(tmp / "corral"), "rm", "-f", *ids],
                               capture_output=True)  # fmt: skip
        shutil.rmtree(tmp, ignore_errors=True)
        os.close(lock)
    if ns.json:
        print(json.dumps([asdict(r) for r in results], indent=1))
    else:
        print(f"one TCP stream for {ns.seconds} s; {ns.round_trips} 1-byte round trips")
        print(format_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
