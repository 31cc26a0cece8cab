"""Throughput and latency through a published port: corral, docker and podman, against a plain
veth pair without NAT.

    .venv/bin/python bench/network.py [--rounds 7] [--seconds 3] [--round-trips 10000] [--json]
        [--paths veth,bridge,corral,corral-ip,corral-nft,docker,podman]  (default: the first five)

Run as root, with what scripts/install.sh installs (iperf3, docker.io, podman). Nothing leaves
this machine: every engine runs in a network namespace the bench makes (tests/helpers/clients.py:
``NetNS``; dockerd and podman on private roots exactly as the client tests start them), and the
"host" side of each measurement is that namespace's own loopback or bridge address.

One image serves everything: ``corral image from-host netbench iperf3 python3`` (Debian's
iperf3 and the host's python3 with its stdlib), saved with ``corral save`` and loaded into
docker's and podman's stores. Its container runs ``iperf3 -s`` (port 5201) and a Python TCP echo
server (port 7000), both published on the host side. Every path is set up first; then ROUNDS
rounds, each measuring every path once, in turn (each round starts one path further along). A
round of a path:

- throughput: ``iperf3 -c ADDR -p PORT -t SECONDS`` (one TCP stream, host -> container);
  the receiver's bits per second;
- latency: one TCP connection (TCP_NODELAY), ROUND-TRIPS times 1 byte out and 1 byte back,
  each timed with perf_counter_ns; the median (and p99) in microseconds.

The table gives, per path, the median of its rounds' throughputs and of its rounds' RTT medians,
their spread (min-max under 10 rounds, p10-p90 from 10), and the ratio of the medians to veth's.

Paths:

- ``veth``: the baseline. A veth pair between the bench's namespace and a second one holding
  the servers (no bridge, no NAT, no netfilter rule: no conntrack);
- ``bridge``: the same with a Linux bridge on the client's side (the client talks to the
  bridge's address), still no netfilter rule: what the bridge itself costs;
- ``corral``: ``corral run -p 127.0.0.1:H:C`` as it is by default: the socket shortcut
  (corral.engine.network.shortcut: connect() goes to the container's address, and established
  connections move bytes socket to socket, in the kernel, no proxy process);
- ``corral-ip``: the same container by its own address on corral0 (which the shortcut also
  serves, both ends being placed by its map);
- ``corral-nft``: another engine with ``CORRAL_SOCKET_SHORTCUT=0``: nftables DNAT, the bridge
  and conntrack, which corral's nat chains switch on for the namespace;
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
import math
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
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CORRAL = str(REPO / ".venv" / "bin" / "corral")
IMAGE = "netbench"
IPERF_PORT, ECHO_PORT = 5201, 7000
HOST_IPERF, HOST_ECHO = 15201, 17000
PATHS = ("veth", "bridge", "corral", "corral-ip", "corral-nft", "docker", "podman")
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
class Target:
    """One path to measure: where its client runs (``enter``) and what it connects to."""

    path: str
    carrier: str  # what carries the traffic: the kernel (DNAT, veth) or a proxy process
    enter: list[str]
    addr: str
    iperf_port: int
    echo_port: int


@dataclass
class Sample:
    gbits: float
    rtt_median_us: float
    rtt_p99_us: float


@dataclass
class Result:
    path: str
    carrier: str
    samples: list[Sample] = field(default_factory=list)

    def gbits(self) -> list[float]:
        return [s.gbits for s in self.samples]

    def rtts(self) -> list[float]:
        return [s.rtt_median_us for s in self.samples]


def spread(values: list[float]) -> tuple[float, float, float]:
    """(median, p10, p90) of ``values``; p10/p90 by nearest rank (min and max below 10 values)."""
    ordered = sorted(values)
    n = len(ordered)
    low = ordered[max(0, math.ceil(0.1 * n) - 1)]
    high = ordered[min(n - 1, math.ceil(0.9 * n) - 1)]
    return statistics.median(ordered), low, high


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


def measure(t: Target, seconds: int, round_trips: int) -> Sample:
    """One round of ``t``: an iperf3 stream, then the round trips."""
    report: dict[str, Any] = {}
    for _ in range(100):  # the server may still be starting (iperf3 -J exits 0 even then)
        done = subprocess.run([*t.enter, "iperf3", "-J", "-c", t.addr, "-p", str(t.iperf_port),
                               "-t", str(seconds)], capture_output=True, text=True)  # fmt: skip
        try:
            report = json.loads(done.stdout)
        except ValueError:
            report = {"error": done.stderr.strip()}
        if "sum_received" in report.get("end", {}):
            break
        time.sleep(0.2)
    else:
        raise RuntimeError(f"iperf3 -c {t.addr}:{t.iperf_port}: {report.get('error')}")
    gbits = report["end"]["sum_received"]["bits_per_second"] / 1e9
    client = [sys.executable, __file__, "--latency", t.addr, str(t.echo_port), str(round_trips)]
    out = subprocess.run([*t.enter, *client], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"latency to {t.addr}:{t.echo_port}: {out.stderr.strip()[-500:]}")
    median, p99 = json.loads(out.stdout)
    return Sample(gbits, median, p99)


def listener(enter: list[str], port: int) -> str:
    """The process listening on ``port`` in the namespace (``ss -tlnp``), or "kernel"."""
    out = subprocess.run([*enter, "ss", "-Htlnp", f"sport = :{port}"], capture_output=True,
                         text=True).stdout  # fmt: skip
    if 'users:(("' in out:
        return out.split('users:(("', 1)[1].split('"', 1)[0]
    return ""


def carrier(enter: list[str]) -> str:
    who = listener(enter, HOST_IPERF)
    if who and who != "conmon":
        return f"userspace proxy ({who})"
    return f"kernel DNAT ({who} holds the port)" if who else "kernel DNAT"


# -- the paths (each a context that yields its targets and removes what it made) -----------------


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def server_args() -> list[str]:
    return ["python3", "-c", SERVER]


def publish(ip: str = "127.0.0.1:") -> list[str]:
    return ["-p", f"{ip}{HOST_IPERF}:{IPERF_PORT}", "-p", f"{ip}{HOST_ECHO}:{ECHO_PORT}"]


@contextmanager
def _namespace_pair(clients: Any) -> Iterator[tuple[Any, Any, Callable[[], None]]]:
    """Two network namespaces A and B, and a function that starts the servers in B (once B's
    link is up); the servers and both namespaces are gone after."""
    a, b = clients.NetNS(), clients.NetNS()
    procs: list[subprocess.Popen[bytes]] = []

    def serve() -> None:  # in a session of its own: its iperf3 -s child goes with it
        procs.append(subprocess.Popen([*b.enter, sys.executable, "-c", SERVER],
                                      start_new_session=True))  # fmt: skip

    try:
        yield a, b, serve
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        a.close()
        b.close()


@contextmanager
def veth_path(clients: Any) -> Iterator[list[Target]]:
    """Two namespaces joined by a veth pair (10.254.0.1/30 -- 10.254.0.2/30); servers in B."""
    with _namespace_pair(clients) as (a, b, serve):
        va, vb = f"vb{secrets.token_hex(3)}a", f"vb{secrets.token_hex(3)}b"
        _run(*a.enter, "ip", "link", "add", va, "type", "veth", "peer", "name", vb,
             "netns", b.path)  # fmt: skip
        _run(*a.enter, "ip", "addr", "add", "10.254.0.1/30", "dev", va)
        _run(*a.enter, "ip", "link", "set", va, "up")
        _run(*b.enter, "ip", "addr", "add", "10.254.0.2/30", "dev", vb)
        _run(*b.enter, "ip", "link", "set", vb, "up")
        serve()
        yield [Target("veth", "kernel (veth, no NAT)", a.enter, "10.254.0.2", IPERF_PORT,
                      ECHO_PORT)]  # fmt: skip


@contextmanager
def bridge_path(clients: Any) -> Iterator[list[Target]]:
    """The veth pair of ``veth_path`` with a Linux bridge on A's side (10.254.1.1/24 on the
    bridge, 10.254.1.2/24 in B), and no netfilter rule in either namespace: what a bridged
    container's path costs before any conntrack or NAT."""
    with _namespace_pair(clients) as (a, b, serve):
        br, va, vb = (f"vb{secrets.token_hex(3)}{x}" for x in "rab")
        _run(*a.enter, "ip", "link", "add", br, "type", "bridge")
        _run(*a.enter, "ip", "link", "add", va, "type", "veth", "peer", "name", vb,
             "netns", b.path)  # fmt: skip
        _run(*a.enter, "ip", "link", "set", va, "master", br)
        _run(*a.enter, "ip", "addr", "add", "10.254.1.1/24", "dev", br)
        for dev in (br, va):
            _run(*a.enter, "ip", "link", "set", dev, "up")
        _run(*b.enter, "ip", "addr", "add", "10.254.1.2/24", "dev", vb)
        _run(*b.enter, "ip", "link", "set", vb, "up")
        serve()
        yield [Target("bridge", "kernel (bridge, no netfilter)", a.enter, "10.254.1.2",
                      IPERF_PORT, ECHO_PORT)]  # fmt: skip


def shortcut_carrier(enter: list[str]) -> str:
    """What carries corral's 127.0.0.1 path: the socket shortcut where its programs serve the
    namespace, else nftables' DNAT."""
    probe = "from corral.engine.network import shortcut as s; print(bool(s.Shortcut().find()[0]))"
    done = subprocess.run([*enter, sys.executable, "-c", probe], capture_output=True, text=True)
    if done.stdout.strip() == "True":
        return "kernel: socket shortcut (connect4 + sockmap)"
    return carrier(enter)


@contextmanager
def corral_path(
    clients: Any, root: Path, wanted: list[str], shortcut: bool = True
) -> Iterator[list[Target]]:
    """``corral run -p 127.0.0.1:H:C`` in a namespace of its own (its corral0 and nft table are
    that namespace's); ``corral-ip`` is the same container by its bridge address (no DNAT).
    ``shortcut=False``: the engine runs with CORRAL_SOCKET_SHORTCUT=0 (path ``corral-nft``)."""
    netns = clients.NetNS()
    corral = [*netns.enter, CORRAL, "--root", str(root)]
    env = {**os.environ, "CORRAL_SOCKET_SHORTCUT": "1" if shortcut else "0"}
    try:
        subprocess.run([*corral, "run", "-d", "--name", "srv", *publish(), IMAGE, *server_args()],
                       check=True, capture_output=True, text=True, env=env)  # fmt: skip
        targets = []
        if "corral" in wanted:
            name = "corral 127.0.0.1" if shortcut else "corral-nft 127.0.0.1"
            targets.append(Target(name, shortcut_carrier(netns.enter), netns.enter,
                                  "127.0.0.1", HOST_IPERF, HOST_ECHO))  # fmt: skip
        if "corral-ip" in wanted:
            pid = _run(*corral, "inspect", "-f", "{{.State.Pid}}", "srv").strip()
            addrs = _run("nsenter", "-t", pid, "-n", "ip", "-4", "-o", "addr", "show",
                         "scope", "global").split()  # fmt: skip
            ip = addrs[addrs.index("inet") + 1].split("/")[0]
            how = "kernel (bridge, no NAT)"
            if "shortcut" in shortcut_carrier(netns.enter):
                how = "kernel: socket shortcut (sockmap)"
            targets.append(Target("corral container-ip", how, netns.enter, ip, IPERF_PORT,
                                  ECHO_PORT))  # fmt: skip
        yield targets
    except (RuntimeError, subprocess.CalledProcessError):
        for what in (["ps", "-a"], ["logs", "srv"], ["port", "srv"]):
            done = subprocess.run([*corral, *what], capture_output=True, text=True)
            print(done.stdout + done.stderr, file=sys.stderr)
        raise
    finally:
        subprocess.run([*corral, "rm", "-f", "srv"], capture_output=True)
        netns.close()


@contextmanager
def docker_path(clients: Any, base: Path, archive: Path) -> Iterator[list[Target]]:
    with clients.dockerd(base) as d:
        d.docker.ok("load", "--input", archive)
        # every address of its namespace (lo, docker0): 127.0.0.1 reaches docker-proxy,
        # docker0's address the iptables DNAT
        d.docker.ok("run", "-d", "--name", "srv", *publish(""), f"{IMAGE}:latest",
                    *server_args())  # fmt: skip
        enter = d.netns.enter
        bridge = _run(*enter, "ip", "-4", "-o", "addr", "show", "docker0").split()[3]
        yield [
            Target("docker 127.0.0.1", carrier(enter), enter, "127.0.0.1", HOST_IPERF, HOST_ECHO),
            Target("docker bridge-ip", "kernel DNAT (iptables, docker0's address)", enter,
                   bridge.split("/")[0], HOST_IPERF, HOST_ECHO),
        ]  # fmt: skip


@contextmanager
def podman_path(clients: Any, base: Path, archive: Path) -> Iterator[list[Target]]:
    with clients.podman(base) as pm:
        cli = pm.cli(clients.runtime_named("runc"))
        cli.ok("load", "--input", archive)
        cli.ok("run", "-d", "--name", "srv", "--network", "bridge", "--cgroup-parent",
               pm.cgroup_parent, *publish(), f"localhost/{IMAGE}:latest",
               *server_args())  # fmt: skip
        enter = pm.netns.enter
        yield [Target("podman 127.0.0.1", carrier(enter), enter, "127.0.0.1", HOST_IPERF,
                      HOST_ECHO)]  # fmt: skip


def _stop_monitor(root: Path) -> None:
    """End the root's monitor (it lingers idle a while, then reopens corral.db on its way out:
    after the rmtree, that left the root's database behind)."""
    try:
        pid = int((root / "monitor.pid").read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if b"corral.engine.monitor" not in cmdline or str(root).encode() not in cmdline:
            return  # gone, and the pid reused
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return
    for _ in range(50):
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.1)


# -- main ------------------------------------------------------------------------------------------


def format_table(results: list[Result]) -> str:
    """Medians (min-max or p10-p90) of each path's rounds, and the ratio of medians to veth's."""
    base = next((r for r in results if r.path == "veth"), None)
    base_g = statistics.median(base.gbits()) if base else None
    base_r = statistics.median(base.rtts()) if base else None

    def rel(value: float, ref: float | None) -> str:
        return f"{value / ref:.2f}" if ref else "-"

    header = (f"{'path':<20} {'Gbit/s':>6} {'(spread)':<13} {'x veth':>6}  {'RTT us':>6} "
              f"{'(spread)':<13} {'x veth':>6} {'p99 us':>6}  carried by")  # fmt: skip
    lines = [header, "-" * len(header)]
    for r in results:
        g, g_lo, g_hi = spread(r.gbits())
        t, t_lo, t_hi = spread(r.rtts())
        p99 = statistics.median(s.rtt_p99_us for s in r.samples)
        lines.append(
            f"{r.path:<20} {g:>6.2f} {f'({g_lo:.2f}-{g_hi:.2f})':<13} {rel(g, base_g):>6}  "
            f"{t:>6.1f} {f'({t_lo:.1f}-{t_hi:.1f})':<13} {rel(t, base_r):>6} {p99:>6.1f}  "
            f"{r.carrier}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    title = __doc__.split("\n\n")[0].replace("\n", " ")
    parser = argparse.ArgumentParser(prog="bench/network.py", description=title)
    parser.add_argument("--seconds", type=int, default=3, help="iperf3 seconds per round")
    parser.add_argument("--rounds", type=int, default=7, help="rounds per path (alternated)")
    parser.add_argument("--round-trips", type=int, default=10000,
                        help="1-byte round trips per round")  # fmt: skip
    parser.add_argument("--paths", default="veth,bridge,corral,corral-ip,corral-nft",
                        help=f"comma-separated, of {', '.join(PATHS)}")
    parser.add_argument("--json", action="store_true", help="every sample, as JSON")
    parser.add_argument("--latency", nargs=3, metavar=("ADDR", "PORT", "N"), help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)
    if ns.latency:
        print(json.dumps(latency(ns.latency[0], int(ns.latency[1]), int(ns.latency[2]))))
        return 0
    wanted = [p.strip() for p in ns.paths.split(",") if p.strip()]
    unknown = [p for p in wanted if p not in PATHS]
    if unknown or not wanted:
        parser.error(f"--paths: unknown path {','.join(unknown)!r} (known: {','.join(PATHS)})")
    if ns.rounds < 1 or ns.seconds < 1 or ns.round_trips < 1:
        parser.error("--rounds, --seconds and --round-trips: at least 1")
    sys.path[:0] = [str(REPO / "tests"), str(REPO / "src")]
    from helpers import clients

    tmp = Path(tempfile.mkdtemp(prefix="corral-bench-network-"))
    results: dict[str, Result] = {}
    # the tests' lock (tests/conftest.py): a concurrent test's leak check kills containers it
    # did not make, ours included; runs take turns with the tests
    lock = os.open(TEST_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    load = os.getloadavg()
    try:
        root = tmp / "corral"
        _run(CORRAL, "--root", str(root), "image", "from-host", IMAGE, "iperf3", "python3")
        archive = tmp / "netbench.tar"
        _run(CORRAL, "--root", str(root), "save", "-o", str(archive), IMAGE)
        with ExitStack() as stack:  # every path is set up at once: the rounds alternate them
            targets: list[Target] = []
            if "veth" in wanted:
                targets += stack.enter_context(veth_path(clients))
            if "bridge" in wanted:
                targets += stack.enter_context(bridge_path(clients))
            if "corral" in wanted or "corral-ip" in wanted:
                targets += stack.enter_context(corral_path(clients, root, wanted))
            if "corral-nft" in wanted:
                nft_root = tmp / "corral-nft"
                _run(CORRAL, "--root", str(nft_root), "load", "-i", str(archive))
                targets += stack.enter_context(
                    corral_path(clients, nft_root, ["corral"], shortcut=False)
                )
            if "docker" in wanted:
                targets += stack.enter_context(docker_path(clients, tmp / "docker", archive))
            if "podman" in wanted:
                targets += stack.enter_context(podman_path(clients, tmp / "podman", archive))
            for t in targets:
                results[t.path] = Result(t.path, t.carrier)
            for n in range(ns.rounds):
                # alternate path by path; each round starts one further along (no path always
                # runs right after the same one)
                order = targets[n % len(targets):] + targets[:n % len(targets)]
                for t in order:
                    sample = measure(t, ns.seconds, ns.round_trips)
                    results[t.path].samples.append(sample)
                    print(f"  round {n + 1} {t.path}: {sample.gbits:.2f} Gbit/s, RTT "
                          f"{sample.rtt_median_us:.1f} us (p99 {sample.rtt_p99_us:.1f})",
                          file=sys.stderr)  # fmt: skip
    finally:
        for engine_root in (tmp / "corral", tmp / "corral-nft"):
            if (engine_root / "corral.db").exists():
                ids = subprocess.run([CORRAL, "--root", str(engine_root), "ps", "-aq"],
                                     capture_output=True, text=True).stdout.split()  # fmt: skip
                if ids:
                    subprocess.run([CORRAL, "--root", str(engine_root), "rm", "-f", *ids],
                                   capture_output=True)  # fmt: skip
            _stop_monitor(engine_root)
        shutil.rmtree(tmp, ignore_errors=True)
        os.close(lock)
    ordered = [results[t] for t in results]
    if ns.json:
        print(json.dumps({"seconds": ns.seconds, "rounds": ns.rounds,
                          "round_trips": ns.round_trips, "loadavg_before": load,
                          "loadavg_after": os.getloadavg(),
                          "paths": [asdict(r) for r in ordered]}, indent=1))  # fmt: skip
    else:
        after = os.getloadavg()
        print(f"{ns.rounds} rounds per path, alternated; each: one TCP stream for {ns.seconds} s, "
              f"{ns.round_trips} 1-byte round trips (RTT: median of the rounds' medians)")
        print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} before, "
              f"{after[0]:.2f} {after[1]:.2f} {after[2]:.2f} after; spread: "
              + ("min-max" if ns.rounds < 10 else "p10-p90"))
        print(format_table(ordered))
    return 0


if __name__ == "__main__":
    sys.exit(main())
