"""The socket shortcut: the host's own TCP connections to a published port, without the network.

A connection from the host to ``127.0.0.1:HOST`` normally takes the whole path a packet from
another machine would: nftables DNAT in the output hook, a re-route, the bridge, the veth, the
container's stack, and the same way back, with conntrack looking up every packet. Both ends of
that connection are sockets in one kernel, so four small eBPF programs can join them directly,
as Cilium's socket load balancing and its sockops acceleration do:

1. ``corral_connect`` (cgroup/connect4, on the root cgroup of the cgroup2 hierarchy, so for
   every process): when a TCP socket in the engine's network namespace connects to a published
   ``IP:HOST`` listed in the map ``corral_ports``, the destination becomes the container's
   ``ADDRESS:PORT`` before the kernel routes anything. No NAT happens: the connection goes from
   the bridge's address to the container's, like one made to the container's address by hand.
   Only TCP is translated; UDP and every other address keep the nftables path, which stays in
   place for traffic from outside and from containers. The address and port asked for are kept
   in the socket's storage (``corral_peers``), and ``corral_peername`` (cgroup/getpeername4)
   gives them back: ``getpeername`` says ``127.0.0.1:HOST``, as it would after a DNAT.
2. ``corral_sockops`` (cgroup/sock_ops): when such a connection is established, each end's
   socket goes into the sockhash ``corral_socks``, under (its network namespace, its address
   and port, the peer's address and port). Only ends that the map ``corral_addrs`` places where
   they are qualify: an address of a container with a published port, in that container's
   namespace, talking to a bridge address, in the engine's namespace (or the other way round).
   A process that gives itself such an address in another namespace is not placed there by the
   map, so its sockets are never entered, and no one's data can be redirected to it.
3. ``corral_skmsg`` (sk_msg, on the sockhash): when an entered socket sends, the bytes go
   straight into the peer socket's receive queue (``bpf_msg_redirect_hash`` with
   BPF_F_INGRESS). No packet, no TCP segment, no conntrack lookup: the peer reads them as it
   would read TCP data. Connection set-up and close (SYN, FIN, RST) still travel as packets, so
   nftables decides whether a connection may exist at all.

Order within a stream: data a socket sent as TCP segments and data it sent through the shortcut
must never overtake each other in the peer. A socket's first send can come before its peer is
entered (the peer's end is entered when the handshake's last ACK reaches it): that send goes
as segments, and the program then marks the socket (``corral_order``, per-socket storage) so
that it keeps sending segments for the rest of its life.

What users see: ``getpeername`` is unchanged, but ``getsockname`` on the host's socket gives
the bridge's address (after a DNAT it gives 127.0.0.1), and ``ss`` shows the connection to the
container's address. tcpdump on the bridge sees the handshake and the close, not the data.

The programs and maps live in the kernel, not in a process: the first published TCP port loads
and attaches them, and the last one's teardown detaches them (once no shortcut socket is open:
detaching drops what a reader has not yet read). corral finds them again by asking the kernel
which programs the root cgroup holds (BPF_PROG_QUERY) and which maps those use; the map
``corral_cfg`` says which network namespace a set serves, so engines in different namespaces
keep apart. Nothing is pinned in a file system.

Where the kernel lacks what this needs (no cgroup2 hierarchy, no bpf(2), a kernel before 5.15),
:func:`available` says why and published ports keep the nftables path alone. Set
``CORRAL_SOCKET_SHORTCUT=0`` in the environment to keep that path always.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from typing import NamedTuple

from corral.errors import CorralError, KernelError
from corral.sys import bpf
from corral.sys.bpf import Asm

ENV = "CORRAL_SOCKET_SHORTCUT"

CONNECT, PEERNAME, SOCKOPS, SKMSG = (
    "corral_connect", "corral_peername", "corral_sockops", "corral_skmsg",
)  # fmt: skip
_CFG, _PORTS, _ADDRS, _SOCKS, _ORDER, _PEERS = (
    "corral_cfg", "corral_ports", "corral_addrs", "corral_socks", "corral_order", "corral_peers",
)  # fmt: skip

# linux/bpf.h helper numbers
_MAP_LOOKUP, _SOCK_HASH_UPDATE, _MSG_REDIRECT_HASH = 1, 70, 71
_SK_STORAGE_GET, _GET_NETNS_COOKIE = 107, 122
_ACTIVE_ESTABLISHED, _PASSIVE_ESTABLISHED = 4, 5
_AF_INET, _AF_INET6, _SOCK_STREAM = 2, 10, 1
_V4_MAPPED = 0xFFFF0000  # the third word of ::ffff:a.b.c.d, as a little-endian load reads it
_SO_NETNS_COOKIE = 71

#: Sizes: ports key (address, port, 2 bytes of padding: as the ctx holds them), ports value
#: (address, port), sockhash key (netns cookie; local address, remote address; local port,
#: remote port in host order).
_PORT_KEY, _PORT_VALUE, _SOCK_KEY = 8, 8, 24
_MAX_PORTS, _MAX_ADDRS, _MAX_SOCKS = 4096, 4096, 65536


class Unavailable(CorralError):
    """The kernel cannot run the shortcut here; published ports keep the nftables path."""


class Maps(NamedTuple):
    """The fds of the maps user space writes or reads (``corral_order`` is the programs')."""

    cfg: int
    ports: int
    addrs: int
    socks: int

    def close(self) -> None:
        for fd in self:
            os.close(fd)


# -- where and whether ---------------------------------------------------------------------------


def cgroup2_root() -> str | None:
    """The mount point of the cgroup2 hierarchy's root: /sys/fs/cgroup on a pure v2 host,
    /sys/fs/cgroup/unified on a hybrid one; None without one."""
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1] == "cgroup2" and fields[3] == "/":
                found.append(fields[4])
    for preferred in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        if preferred in found:
            return preferred
    return found[0] if found else None


def available() -> str:
    """"" where the shortcut can run; else why not (for the log and ``corral info``)."""
    if os.environ.get(ENV, "1") in ("0", "false", "no", "off"):
        return f"turned off ({ENV}=0)"
    if cgroup2_root() is None:
        return "no cgroup2 hierarchy is mounted"
    try:
        netns_cookie()
    except OSError:
        return "the kernel has no SO_NETNS_COOKIE (needs Linux 5.15 or later)"
    return ""


def netns_cookie(netns_path: str | None = None) -> int:
    """The kernel's cookie of a network namespace: this process's, or the one at
    ``netns_path`` (read from a socket made there by a short-lived thread that joins it)."""
    if netns_path is None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            return int.from_bytes(s.getsockopt(socket.SOL_SOCKET, _SO_NETNS_COOKIE, 8), "little")
    import threading

    result: list[int | BaseException] = []

    def inside() -> None:
        from corral import sys as k

        try:
            fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                k.setns(fd, k.CLONE_NEWNET, netns_path)  # this thread only; it ends below
            finally:
                os.close(fd)
            result.append(netns_cookie())
        except BaseException as err:  # handed to the caller's thread
            result.append(err)

    thread = threading.Thread(target=inside, name="netns-cookie")
    thread.start()
    thread.join()
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


# -- the programs --------------------------------------------------------------------------------


def _lookup(a: Asm, map_fd: int, key_at: int, otherwise: str) -> None:
    """r0 = the value of the key at r10 + ``key_at`` in the map, or jump to ``otherwise``;
    r1-r5 are clobbered."""
    a.load_map(1, map_fd)
    a.mov(2, 10, reg=True)
    a.alu(2, "+=", key_at)
    a.call(_MAP_LOOKUP)
    a.jump("==", 0, 0, otherwise)


def _remote_port(a: Asm, offset: int, store_at: int) -> None:
    """Store the context's remote port at r10 + ``store_at`` in host order: sock_ops and sk_msg
    give it in network order in the upper 16 bits (the local port is in host order)."""
    a.load(2, 6, offset, 4)
    a.alu(2, ">>=", 16)
    a.swap16(2)
    a.store(10, store_at, 2, 4)


def _host_cookie(a: Asm, cfg: int, dst: int, otherwise: str) -> None:
    """dst = the cookie of the namespace this set serves (``cfg[0]``); r1-r5 are clobbered.
    Every program reads it from ``cfg``, which so stays in use and can be found."""
    a.store_imm(10, -36, 0, 4)
    _lookup(a, cfg, -36, otherwise)
    a.load(dst, 0, 0, 8)


def _addresses(
    a: Asm, ctx: tuple[int, int, int, int, int], local_at: int, remote_at: int, otherwise: str
) -> None:
    """Store the socket's IPv4 addresses at r10 + ``local_at`` and r10 + ``remote_at``.

    ``ctx`` gives the context's offsets of family, local_ip4, remote_ip4, local_ip6,
    remote_ip6 (r6 holds the context). An AF_INET6 socket counts when both its addresses are
    IPv4-mapped (::ffff:a.b.c.d): a server listening on [::] (busybox httpd, iperf3) accepts
    IPv4 connections on such sockets. Anything else jumps to ``otherwise``."""
    family, local4, remote4, local6, remote6 = ctx
    a.load(2, 6, family, 4)
    a.jump("==", 2, _AF_INET, "ipv4")
    a.jump("!=", 2, _AF_INET6, otherwise)
    a.load_imm64(3, _V4_MAPPED)
    for base in (local6, remote6):
        a.load(2, 6, base, 4)
        a.jump("!=", 2, 0, otherwise)
        a.load(2, 6, base + 4, 4)
        a.jump("!=", 2, 0, otherwise)
        a.load(2, 6, base + 8, 4)
        a.jump("!=", 2, 3, otherwise, reg=True)
    a.load(2, 6, local6 + 12, 4)
    a.store(10, local_at, 2, 4)
    a.load(2, 6, remote6 + 12, 4)
    a.store(10, remote_at, 2, 4)
    a.goto("addressed")
    a.label("ipv4")
    a.load(2, 6, local4, 4)
    a.store(10, local_at, 2, 4)
    a.load(2, 6, remote4, 4)
    a.store(10, remote_at, 2, 4)
    a.label("addressed")


def _served_namespace(a: Asm, cfg: int, otherwise: str) -> None:
    """Jump to ``otherwise`` unless the context (r6) is in the namespace this set serves;
    r7 holds that namespace's cookie after."""
    _host_cookie(a, cfg, 7, otherwise)
    a.mov(1, 6, reg=True)
    a.call(_GET_NETNS_COOKIE)
    a.jump("!=", 0, 7, otherwise, reg=True)


def _socket_storage(a: Asm, map_fd: int, sk_at: int, create: bool, otherwise: str) -> None:
    """r0 = the storage in ``map_fd`` of the context's socket (its pointer at r6 +
    ``sk_at``), made if ``create``, or jump to ``otherwise``; r1-r5 are clobbered."""
    a.load(2, 6, sk_at, 8)
    a.jump("==", 2, 0, otherwise)
    a.load_map(1, map_fd)
    a.mov(3, 0)
    a.mov(4, 1 if create else 0)  # BPF_SK_STORAGE_GET_F_CREATE
    a.call(_SK_STORAGE_GET)
    a.jump("==", 0, 0, otherwise)


def connect_program(cfg: int, ports: int, peers: int) -> bytes:
    """cgroup/connect4: a TCP connect() in the namespace this set serves, to an address and
    port that are keys of ``ports``, goes to the value's address and port; the address and
    port asked for are kept in the socket's storage (``peers``) for getpeername."""
    a = Asm()
    a.mov(6, 1, reg=True)  # r6 = ctx (struct bpf_sock_addr)
    a.load(2, 6, 0, 4)  # user_family
    a.jump("!=", 2, _AF_INET, "allow")
    a.load(2, 6, 32, 4)  # type
    a.jump("!=", 2, _SOCK_STREAM, "allow")
    _served_namespace(a, cfg, "allow")
    a.load(2, 6, 4, 4)  # user_ip4
    a.store(10, -8, 2, 4)
    a.load(2, 6, 24, 4)  # user_port (network order, low 16 bits)
    a.store(10, -4, 2, 4)
    _lookup(a, ports, -8, "allow")
    a.load(2, 0, 0, 4)
    a.store(6, 4, 2, 4)  # user_ip4 = the container's address
    a.load(2, 0, 4, 4)
    a.store(6, 24, 2, 4)  # user_port = the container's port
    _socket_storage(a, peers, 64, True, "allow")
    a.load(2, 10, -8, 8)  # the address and port asked for, as the key holds them
    a.store(0, 0, 2, 8)
    a.label("allow")
    a.mov(0, 1)
    a.exit()
    return a.assemble()


def peername_program(cfg: int, peers: int) -> bytes:
    """cgroup/getpeername4: a socket (of the namespace this set serves) that connect4 sent
    elsewhere names the address and port it asked for, as it would after nftables' DNAT."""
    a = Asm()
    a.mov(6, 1, reg=True)  # r6 = ctx (struct bpf_sock_addr)
    _served_namespace(a, cfg, "out")
    _socket_storage(a, peers, 64, False, "out")
    a.load(2, 0, 0, 4)
    a.store(6, 4, 2, 4)  # user_ip4
    a.load(2, 0, 4, 4)
    a.store(6, 24, 2, 4)  # user_port
    a.label("out")
    a.mov(0, 1)
    a.exit()
    return a.assemble()


def sockops_program(cfg: int, addrs: int, socks: int) -> bytes:
    """cgroup/sock_ops: at ACTIVE/PASSIVE_ESTABLISHED, enter the socket into ``socks`` when
    its address lives in its namespace and its peer's in another, one of the two the host's.

    Stack (r10 - 24 .. r10): the sockhash key: u64 netns cookie, u32 local address, u32
    remote address, u32 local port, u32 remote port (ports in host order)."""
    a = Asm()
    a.mov(6, 1, reg=True)  # r6 = ctx (struct bpf_sock_ops)
    a.load(2, 6, 0, 4)  # op
    a.jump("==", 2, _ACTIVE_ESTABLISHED, "established")
    a.jump("!=", 2, _PASSIVE_ESTABLISHED, "out")
    a.label("established")
    _addresses(a, (20, 28, 24, 48, 32), -16, -12, "out")  # struct bpf_sock_ops
    a.mov(1, 6, reg=True)
    a.call(_GET_NETNS_COOKIE)
    a.mov(7, 0, reg=True)  # r7 = this socket's namespace
    a.store(10, -24, 7, 8)
    # its own address must live here
    _lookup(a, addrs, -16, "out")
    a.load(2, 0, 0, 8)
    a.jump("!=", 2, 7, "out", reg=True)
    # the peer's address must live in another namespace
    _lookup(a, addrs, -12, "out")
    a.load(8, 0, 0, 8)  # r8 = the peer's namespace
    a.jump("==", 8, 7, "out", reg=True)
    # one of the two is the host (the engine's namespace): no container-to-container shortcut
    _host_cookie(a, cfg, 9, "out")
    a.jump("==", 7, 9, "enter", reg=True)
    a.jump("!=", 8, 9, "out", reg=True)
    a.label("enter")
    a.load(2, 6, 68, 4)  # local_port, host order
    a.store(10, -8, 2, 4)
    _remote_port(a, 64, -4)
    a.mov(1, 6, reg=True)
    a.load_map(2, socks)
    a.mov(3, 10, reg=True)
    a.alu(3, "+=", -24)
    a.mov(4, bpf.BPF_ANY)
    a.call(_SOCK_HASH_UPDATE)
    a.label("out")
    a.mov(0, 1)
    a.exit()
    return a.assemble()


def skmsg_program(addrs: int, socks: int, order: int) -> bytes:
    """sk_msg: send into the peer's receive queue when the peer is in ``socks``; a socket
    whose first send found no peer keeps sending segments (``order``)."""
    a = Asm()
    a.mov(6, 1, reg=True)  # r6 = ctx (struct sk_msg_md)
    # the peer's key: its namespace (where addrs places its address), its address and ours,
    # its port and ours
    _addresses(a, (16, 24, 20, 44, 28), -12, -16, "pass")
    _lookup(a, addrs, -16, "pass")
    a.load(2, 0, 0, 8)
    a.store(10, -24, 2, 8)
    _remote_port(a, 60, -8)
    a.load(2, 6, 64, 4)  # local_port, host order
    a.store(10, -4, 2, 4)
    # a socket that has sent segments keeps doing so
    _socket_storage(a, order, 72, True, "pass")
    a.mov(7, 0, reg=True)
    a.load(2, 7, 0, 4)
    a.jump("!=", 2, 0, "pass")
    a.mov(1, 6, reg=True)
    a.load_map(2, socks)
    a.mov(3, 10, reg=True)
    a.alu(3, "+=", -24)
    a.mov(4, 1)  # BPF_F_INGRESS
    a.call(_MSG_REDIRECT_HASH)
    a.jump("==", 0, 1, "pass")  # SK_PASS: redirected
    a.store_imm(7, 0, 1, 4)  # no peer yet: these bytes go as segments, and all later ones
    a.label("pass")
    a.mov(0, 1)  # SK_PASS
    a.exit()
    return a.assemble()


# -- keys ---------------------------------------------------------------------------------------


def _ip(address: str) -> bytes:
    return socket.inet_aton(address)


def port_key(host_ip: str, host_port: int) -> bytes:
    return _ip(host_ip) + host_port.to_bytes(2, "big") + b"\0\0"


def port_value(address: str, port: int) -> bytes:
    return _ip(address) + port.to_bytes(2, "big") + b"\0\0"


def translated_addresses(host_ip: str) -> list[str]:
    """The host addresses whose connect() is translated for a port published on ``host_ip``
    ("" or 0.0.0.0: every address; the shortcut takes 127.0.0.1, the others keep nftables)."""
    return ["127.0.0.1"] if host_ip in ("", "0.0.0.0") else [host_ip]


# -- the set of programs and maps in the kernel -------------------------------------------------

#: Where each program is attached on the cgroup2 root.
ATTACH = {
    CONNECT: bpf.BPF_CGROUP_INET4_CONNECT,
    PEERNAME: bpf.BPF_CGROUP_INET4_GETPEERNAME,
    SOCKOPS: bpf.BPF_CGROUP_SOCK_OPS,
}


def attached(root: str) -> list[tuple[str, int, list[int]]]:
    """(name, id, map ids) of every program of :data:`ATTACH` attached to the cgroup ``root``,
    whichever namespace they serve (the tests' leak check lists them too)."""
    out = []
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name, attach in ATTACH.items():
            for prog_id in bpf.program_ids(fd, attach):
                prog = bpf.program_fd(prog_id)
                if prog is None:
                    continue
                try:
                    found, map_ids = bpf.program_info(prog)
                finally:
                    os.close(prog)
                if found == name:
                    out.append((name, prog_id, map_ids))
    finally:
        os.close(fd)
    return out


def detach_program(root: str, name: str, prog_id: int) -> None:
    """Detach one of :func:`attached`'s programs; one already gone is fine."""
    prog = bpf.program_fd(prog_id)
    if prog is None:
        return
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        bpf.detach_program(fd, prog, ATTACH[name])
    except KernelError as err:
        if err.errno != 2:
            raise
    finally:
        os.close(fd)
        os.close(prog)



class Shortcut:
    """The programs and maps that serve the network namespace this process is in."""

    def __init__(self) -> None:
        root = cgroup2_root()
        if root is None:
            raise Unavailable("no cgroup2 hierarchy is mounted")
        self.root = root
        self.host = netns_cookie()

    def _root_fd(self) -> int:
        return os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def find(self) -> tuple[dict[str, int], Maps | None]:
        """The ids of this namespace's attached programs by name, and their maps (or None)."""
        progs: dict[str, int] = {}
        maps: dict[str, int] = {}
        for name, prog_id, map_ids in attached(self.root):
            found = self._maps_of(map_ids)
            if found.get(_CFG) is None or not self._serves(found[_CFG]):
                for fd in found.values():
                    os.close(fd)
                continue
            progs[name] = prog_id
            for key, fd in found.items():
                if key in maps:
                    os.close(fd)
                else:
                    maps[key] = fd
        names = (_CFG, _PORTS, _ADDRS, _SOCKS)
        if all(n in maps for n in names):
            return progs, Maps(*(maps[n] for n in names))
        for fd in maps.values():
            os.close(fd)
        return progs, None

    def _maps_of(self, map_ids: list[int]) -> dict[str, int]:
        out: dict[str, int] = {}
        for map_id in map_ids:
            fd = bpf.map_fd(map_id)
            if fd is None:
                continue
            name = bpf.map_name(fd)
            if name in (_CFG, _PORTS, _ADDRS, _SOCKS) and name not in out:
                out[name] = fd
            else:
                os.close(fd)
        return out

    def _serves(self, cfg: int) -> bool:
        value = bpf.map_lookup(cfg, b"\0\0\0\0", 8)
        return value is not None and int.from_bytes(value, "little") == self.host

    def ensure(self) -> Maps:
        """This namespace's maps, with the programs loaded and attached first if missing.

        The sk_msg program is attached afresh each time. A sockhash keeps its programs only
        while user space holds it (an fd or a pin): when the last holder (a container's
        waiter, see :func:`publish`) has gone, the kernel detached it, though the cgroup
        programs and the maps stayed. Attaching replaces the one that may be there; sockets
        already entered keep the program they were entered with."""
        progs, maps = self.find()
        if maps is None or len(progs) != len(ATTACH):
            if maps is not None:
                maps.close()
            self.detach()  # half a set (a crash between two attaches): start again
            return self._load()
        try:
            self._attach_skmsg(maps)
        except BaseException:
            maps.close()
            raise
        return maps

    def _attach_skmsg(self, maps: Maps) -> None:
        btf = bpf.load_int_btf()  # socket storage must say its key and value are ints
        try:
            order = bpf.create_map(bpf.BPF_MAP_TYPE_SK_STORAGE, 4, 4, 0, _ORDER,
                                   bpf.BPF_F_NO_PREALLOC, btf, 1, 1)  # fmt: skip
        finally:
            os.close(btf)
        try:
            program = skmsg_program(maps.addrs, maps.socks, order)
            skmsg = bpf.load_program(bpf.BPF_PROG_TYPE_SK_MSG, program, SKMSG)
        finally:
            os.close(order)  # the program holds it
        try:
            bpf.attach_program(maps.socks, skmsg, bpf.BPF_SK_MSG_VERDICT)
        finally:
            os.close(skmsg)

    def _load(self) -> Maps:
        made: list[int] = []
        try:
            cfg = bpf.create_map(bpf.BPF_MAP_TYPE_ARRAY, 4, 8, 1, _CFG)
            made.append(cfg)
            bpf.map_update(cfg, b"\0\0\0\0", self.host.to_bytes(8, "little"))
            ports = bpf.create_map(bpf.BPF_MAP_TYPE_HASH, _PORT_KEY, _PORT_VALUE, _MAX_PORTS,
                                   _PORTS)  # fmt: skip
            made.append(ports)
            addrs = bpf.create_map(bpf.BPF_MAP_TYPE_HASH, 4, 8, _MAX_ADDRS, _ADDRS)
            made.append(addrs)
            socks = bpf.create_map(bpf.BPF_MAP_TYPE_SOCKHASH, _SOCK_KEY, 4, _MAX_SOCKS, _SOCKS)
            made.append(socks)
            maps = Maps(cfg, ports, addrs, socks)
            # Every program is loaded (the verifier may refuse one on an older kernel) before
            # the first is attached where it changes anything.
            self._attach_skmsg(maps)
            btf = bpf.load_int_btf()
            try:  # per socket: the address and port connect() asked for (8 bytes: a long)
                peers = bpf.create_map(bpf.BPF_MAP_TYPE_SK_STORAGE, 4, 8, 0, _PEERS,
                                       bpf.BPF_F_NO_PREALLOC, btf, 1, 2)  # fmt: skip
            finally:
                os.close(btf)
            loaded: dict[str, int] = {}
            try:
                programs = (
                    (SOCKOPS, bpf.BPF_PROG_TYPE_SOCK_OPS, sockops_program(cfg, addrs, socks)),
                    (CONNECT, bpf.BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
                     connect_program(cfg, ports, peers)),
                    (PEERNAME, bpf.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, peername_program(cfg, peers)),
                )  # fmt: skip
                for name, kind, code in programs:
                    expected = 0 if name == SOCKOPS else ATTACH[name]
                    loaded[name] = bpf.load_program(kind, code, name, expected)
                self._attach_cgroup(loaded)
            finally:
                os.close(peers)  # the programs hold it
                for fd in loaded.values():
                    os.close(fd)
            return maps
        except BaseException:
            for fd in made:
                os.close(fd)
            raise

    def _attach_cgroup(self, programs: dict[str, int]) -> None:
        """Attach every program, sock_ops first (connect4 would otherwise send connections
        the other way before their ends can be entered); all or none."""
        root = self._root_fd()
        done: list[str] = []
        try:
            for name, fd in programs.items():
                bpf.attach_program(root, fd, ATTACH[name], bpf.BPF_F_ALLOW_MULTI)
                done.append(name)
        except BaseException:
            for name in done:
                bpf.detach_program(root, programs[name], ATTACH[name])
            raise
        finally:
            os.close(root)

    def detach(self) -> None:
        """Detach this namespace's programs (their maps go with the last reference)."""
        progs, maps = self.find()
        if maps is not None:
            maps.close()
        for name, prog_id in progs.items():
            detach_program(self.root, name, prog_id)


# -- what the engine calls ----------------------------------------------------------------------

#: Serializes loading and detaching between engine commands (of every root: the programs are
#: the host's).
LOCK = "/run/corral/shortcut.lock"


@contextlib.contextmanager
def lock() -> Iterator[None]:
    os.makedirs(os.path.dirname(LOCK), mode=0o700, exist_ok=True)
    fd = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)



class Route(NamedTuple):
    """One published TCP port, as the shortcut needs it."""

    host_ip: str
    host_port: int
    address: str  # the container's
    port: int  # the container's
    gateway: str  # the bridge's address, the host's end


def publish(routes: list[Route], netns_path: str) -> int:
    """Let the host's connections to these ports take the shortcut (the container's namespace
    at ``netns_path``). Raises Unavailable or KernelError; the caller keeps nftables anyway.

    Returns an fd of the sockhash for the container's waiter to hold while the container
    lives: what keeps the sk_msg program attached after this process exits."""
    why = available()
    if why:
        raise Unavailable(why)
    shortcut = Shortcut()
    inside = netns_cookie(netns_path)
    maps = shortcut.ensure()
    try:
        for route in routes:
            bpf.map_update(maps.addrs, _ip(route.gateway), shortcut.host.to_bytes(8, "little"))
            bpf.map_update(maps.addrs, _ip(route.address), inside.to_bytes(8, "little"))
            for host_ip in translated_addresses(route.host_ip):
                bpf.map_update(maps.ports, port_key(host_ip, route.host_port),
                               port_value(route.address, route.port))  # fmt: skip
        return os.dup(maps.socks)
    finally:
        maps.close()


def withdraw(routes: list[Route]) -> None:
    """The container's ports are gone: new connections no longer take the shortcut (open ones
    keep it to their end), and with the last port the programs are detached once no shortcut
    socket is open."""
    if not routes or cgroup2_root() is None:
        return
    _forget(routes)


def reset() -> None:
    """Nothing is published any more (``network prune``): detach this namespace's programs,
    unless a shortcut socket is still open (a later withdraw or prune does it then)."""
    if cgroup2_root() is not None:
        _forget([])


def _forget(routes: list[Route]) -> None:
    try:
        shortcut = Shortcut()
        _, maps = shortcut.find()
    except (OSError, CorralError):
        return
    if maps is None:
        return
    try:
        for route in routes:
            bpf.map_delete(maps.addrs, _ip(route.address))
            for host_ip in translated_addresses(route.host_ip):
                bpf.map_delete(maps.ports, port_key(host_ip, route.host_port))
        # Detaching frees the sockhash, and with it what an open socket has not read yet.
        idle = not bpf.map_keys(maps.ports, _PORT_KEY) and not bpf.map_keys(maps.socks, _SOCK_KEY)
    finally:
        maps.close()
    if idle:
        shortcut.detach()
