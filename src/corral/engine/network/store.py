"""The networks' bookkeeping in the engine's SQLite database, IPAM included.

::

    net_networks   name -> id, subnet, gateway, bridge, internal   (the default one included)
    net_requests   container -> --network mode, -p mappings        (from create, for every start)
    net_attach     container, network -> aliases, ipv4            (the mode's network + connect;
                                                                    ipv4: --ip, "" for any)
    net_endpoints  network, address -> container, veth, name       (the IPAM leases: one per
                                                                    running container per network)
    net_ports      proto, host_ip, host_port -> container's address and port   (while running)
    net_state      key -> value   (ip_forward as it was before corral set it)

Tables are made on first use (``CREATE TABLE IF NOT EXISTS``). An address is handed out inside
one ``BEGIN IMMEDIATE`` transaction that reads the leases and inserts the new one: SQLite lets
one writer in at a time (the others wait on the busy timeout), and ``PRIMARY KEY (network,
address)`` would refuse a duplicate anyway, so concurrent ``run``s never get the same address.
"""

from __future__ import annotations

import ipaddress
import json
import sqlite3
import time
from collections.abc import Callable, Iterable

from corral.engine.db import transaction, watch
from corral.engine.network.model import Endpoint, Network, NetworkRequest, PortMapping
from corral.errors import ExistsError, RuntimeFailure, UserError

SCHEMA = """
CREATE TABLE IF NOT EXISTS net_networks (
    name TEXT PRIMARY KEY,
    id TEXT UNIQUE NOT NULL,
    subnet TEXT UNIQUE NOT NULL,
    gateway TEXT NOT NULL,
    bridge TEXT UNIQUE NOT NULL,
    internal INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS net_requests (
    container_id TEXT PRIMARY KEY,
    mode TEXT NOT NULL,
    publish TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS net_attach (
    container_id TEXT NOT NULL,
    network TEXT NOT NULL REFERENCES net_networks(name),
    aliases TEXT NOT NULL DEFAULT '[]',
    ipv4 TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (container_id, network)
);
CREATE TABLE IF NOT EXISTS net_endpoints (
    network TEXT NOT NULL REFERENCES net_networks(name),
    address TEXT NOT NULL,
    container_id TEXT NOT NULL,
    veth TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    aliases TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (network, address),
    UNIQUE (network, container_id)
);
CREATE TABLE IF NOT EXISTS net_ports (
    proto TEXT NOT NULL,
    host_ip TEXT NOT NULL,
    host_port INTEGER NOT NULL,
    container_id TEXT NOT NULL,
    network TEXT NOT NULL,
    container_ip TEXT NOT NULL,
    container_port INTEGER NOT NULL,
    PRIMARY KEY (proto, host_ip, host_port)
);
CREATE TABLE IF NOT EXISTS net_state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


class NetworkStore:
    """The network tables of one engine database: ``db`` is a connection (corral.engine.db's
    connect) or a function returning the current one (the engine reopens its connection after a
    fork, so the store must not keep a closed one)."""

    def __init__(self, db: sqlite3.Connection | Callable[[], sqlite3.Connection]) -> None:
        if isinstance(db, sqlite3.Connection):  # (a Connection is callable too)
            conn = db
            self._get: Callable[[], sqlite3.Connection] = lambda: conn
        else:
            self._get = db
        self._ready: sqlite3.Connection | None = None

    @property
    def db(self) -> sqlite3.Connection:
        db = self._get()
        if db is not self._ready:
            # net_ports is watched: ``ps`` shows the published ports (engine.views)
            db.executescript(SCHEMA + "".join(f"{t};" for t in watch("net_ports")))
            _add_column(db, "net_attach", "ipv4 TEXT NOT NULL DEFAULT ''")
            self._ready = db
        return db

    # -- networks -----------------------------------------------------------------------------

    def networks(self) -> list[Network]:
        rows = self.db.execute("SELECT * FROM net_networks ORDER BY created, name")
        return [_network(r) for r in rows]

    def network(self, ref: str) -> Network | None:
        """By name, id or unique id prefix."""
        row = self.db.execute(
            "SELECT * FROM net_networks WHERE name = ? OR id = ?", (ref, ref)
        ).fetchone()
        if row is not None:
            return _network(row)
        rows = self.db.execute(
            "SELECT * FROM net_networks WHERE id LIKE ? || '%'", (ref,)
        ).fetchall()
        if len(rows) > 1:
            raise UserError(f"network {ref!r}: ambiguous id prefix ({len(rows)} match)")
        return _network(rows[0]) if rows else None

    def add_network(self, net: Network) -> Network:
        """Insert ``net``; refused when the name is taken or the subnet overlaps another's."""
        subnet = ipaddress.ip_network(net.subnet)
        with transaction(self.db) as db:
            if db.execute("SELECT 1 FROM net_networks WHERE name = ?", (net.name,)).fetchone():
                raise ExistsError(f"network with name {net.name} already exists")
            for other in db.execute("SELECT name, subnet FROM net_networks"):
                if subnet.overlaps(ipaddress.ip_network(other["subnet"])):
                    raise UserError(
                        f"--subnet {net.subnet}: overlaps network {other['name']!r} "
                        f"({other['subnet']})"
                    )
            db.execute(
                "INSERT INTO net_networks VALUES (?, ?, ?, ?, ?, ?, ?)",
                (net.name, net.id, net.subnet, net.gateway, net.bridge, int(net.internal),
                 net.created or time.time()),
            )  # fmt: skip
        return net

    def free_subnet(self, pool: str, prefix: int) -> str:
        """The first /``prefix`` of ``pool`` that overlaps no network's subnet."""
        taken = [ipaddress.ip_network(n.subnet) for n in self.networks()]
        for candidate in ipaddress.ip_network(pool).subnets(new_prefix=prefix):
            if not any(candidate.overlaps(t) for t in taken):
                return str(candidate)
        raise RuntimeFailure(f"no free /{prefix} left in {pool}: give --subnet")

    def remove_network(self, name: str) -> None:
        with transaction(self.db) as db:
            users = db.execute(
                "SELECT container_id FROM net_attach WHERE network = ?", (name,)
            ).fetchall()
            if users:
                raise UserError(
                    f"network {name!r} has {len(users)} container(s) attached "
                    f"({users[0]['container_id'][:12]}...): remove or disconnect them first"
                )
            db.execute("DELETE FROM net_networks WHERE name = ?", (name,))

    def attached_networks(self) -> set[str]:
        return {str(r[0]) for r in self.db.execute("SELECT DISTINCT network FROM net_attach")}

    # -- what containers asked for ------------------------------------------------------------

    def set_request(self, container_id: str, request: NetworkRequest, networks: list[str]) -> None:
        publish = json.dumps([_port_json(p) for p in request.publish])
        with transaction(self.db) as db:
            db.execute(
                "INSERT OR REPLACE INTO net_requests VALUES (?, ?, ?)",
                (container_id, request.mode, publish),
            )
            db.execute("DELETE FROM net_attach WHERE container_id = ?", (container_id,))
            for i, name in enumerate(networks):  # --ip is for the mode's network, the first
                db.execute(
                    "INSERT INTO net_attach (container_id, network, aliases, ipv4) "
                    "VALUES (?, ?, ?, ?)",
                    (container_id, name, json.dumps(request.aliases), request.ip if i == 0 else ""),
                )

    def request(self, container_id: str) -> NetworkRequest | None:
        row = self.db.execute(
            "SELECT * FROM net_requests WHERE container_id = ?", (container_id,)
        ).fetchone()
        if row is None:
            return None
        return NetworkRequest(
            str(row["mode"]), [], [_port_from(p) for p in json.loads(row["publish"])]
        )

    def attachments(self, container_id: str) -> list[tuple[str, list[str]]]:
        rows = self.db.execute(
            "SELECT network, aliases FROM net_attach WHERE container_id = ? ORDER BY rowid",
            (container_id,),
        )
        return [(str(r["network"]), list(json.loads(r["aliases"]))) for r in rows]

    def static_addresses(self, container_id: str) -> dict[str, str]:
        """network -> the address ``--ip`` asked for there (networks without one left out)."""
        rows = self.db.execute(
            "SELECT network, ipv4 FROM net_attach WHERE container_id = ? AND ipv4 != ''",
            (container_id,),
        )
        return {str(r["network"]): str(r["ipv4"]) for r in rows}

    def holder(self, network: str, address: str) -> str:
        """`` (container NAME)`` when a container holds ``address`` on ``network`` now, else
        ""."""
        return _held_by(self.db, network, address)

    def attach(self, container_id: str, network: str, aliases: list[str], ipv4: str = "") -> None:
        with transaction(self.db) as db:
            if db.execute(
                "SELECT 1 FROM net_attach WHERE container_id = ? AND network = ?",
                (container_id, network),
            ).fetchone():
                raise ExistsError(f"container {container_id[:12]} is already on network {network}")
            db.execute(
                "INSERT INTO net_attach (container_id, network, aliases, ipv4) VALUES (?, ?, ?, ?)",
                (container_id, network, json.dumps(aliases), ipv4),
            )

    def detach(self, container_id: str, network: str) -> None:
        with transaction(self.db) as db:
            db.execute(
                "DELETE FROM net_attach WHERE container_id = ? AND network = ?",
                (container_id, network),
            )

    def forget(self, container_id: str) -> None:
        """The container is removed: its request and attachments go (leases already have)."""
        with transaction(self.db) as db:
            for table in ("net_requests", "net_attach", "net_endpoints", "net_ports"):
                db.execute(f"DELETE FROM {table} WHERE container_id = ?", (container_id,))

    # -- leases (IPAM) ------------------------------------------------------------------------

    def lease(
        self, net: Network, container_id: str, veth: str, name: str, aliases: Iterable[str]
    ) -> Endpoint:
        """Hand ``container_id`` the address it asked for with ``--ip`` (refused if another
        container holds it), else the lowest free address of ``net`` that no other container
        asked for; the one it holds if it has one."""
        subnet = ipaddress.ip_network(net.subnet)
        with transaction(self.db) as db:
            row = db.execute(
                "SELECT * FROM net_endpoints WHERE network = ? AND container_id = ?",
                (net.name, container_id),
            ).fetchone()
            if row is not None:
                return _endpoint(row)
            used = {
                str(r[0])
                for r in db.execute(
                    "SELECT address FROM net_endpoints WHERE network = ?", (net.name,)
                )
            }
            used.add(net.gateway)
            static = {
                str(r["container_id"]): str(r["ipv4"])
                for r in db.execute(
                    "SELECT container_id, ipv4 FROM net_attach WHERE network = ? AND ipv4 != ''",
                    (net.name,),
                )
            }
            address = static.pop(container_id, "")
            if address and address in used:
                raise UserError(
                    f"--ip {address}: Address already in use on network {net.name}"
                    f"{_held_by(db, net.name, address)}"
                )
            if not address:
                used |= set(static.values())  # kept for containers that asked for them
                for host in subnet.hosts():
                    if str(host) not in used:
                        address = str(host)
                        break
                else:
                    raise RuntimeFailure(
                        f"network {net.name}: no free address left in {net.subnet}"
                    )
            endpoint = Endpoint(net.name, container_id, address, veth, name, tuple(aliases))
            db.execute(
                "INSERT INTO net_endpoints VALUES (?, ?, ?, ?, ?, ?)",
                (net.name, address, container_id, veth, name, json.dumps(list(aliases))),
            )
        return endpoint

    def endpoints(
        self, network: str | None = None, container_id: str | None = None
    ) -> list[Endpoint]:
        sql, args = "SELECT * FROM net_endpoints WHERE 1", list[str]()
        if network is not None:
            sql, args = sql + " AND network = ?", [*args, network]
        if container_id is not None:
            sql, args = sql + " AND container_id = ?", [*args, container_id]
        return [_endpoint(r) for r in self.db.execute(sql + " ORDER BY rowid", args)]

    def release(self, container_id: str, network: str | None = None) -> list[Endpoint]:
        """Drop the container's leases (on ``network`` only, if given) and its ports; the
        endpoints that were released."""
        with transaction(self.db) as db:
            sql, args = "SELECT * FROM net_endpoints WHERE container_id = ?", [container_id]
            if network is not None:
                sql, args = sql + " AND network = ?", [*args, network]
            gone = [_endpoint(r) for r in db.execute(sql, args)]
            db.execute(sql.replace("SELECT *", "DELETE"), args)
            sql = "DELETE FROM net_ports WHERE container_id = ?"
            db.execute(sql if network is None else sql + " AND network = ?", args)
        return gone

    # -- published ports ----------------------------------------------------------------------

    def reserve_ports(
        self, container_id: str, network: str, container_ip: str, ports: list[PortMapping]
    ) -> None:
        """Record the mappings; refused if another container has the port (any address
        overlaps a specific one)."""
        with transaction(self.db) as db:
            for p in ports:
                clash = db.execute(
                    "SELECT container_id FROM net_ports WHERE proto = ? AND host_port = ? AND "
                    "(host_ip = ? OR host_ip = '' OR ? = '') AND container_id != ?",
                    (p.proto, p.host_port, p.host_ip, p.host_ip, container_id),
                ).fetchone()
                if clash is not None:
                    raise UserError(
                        f"-p {p.host_ip + ':' if p.host_ip else ''}{p.host_port}:"
                        f"{p.container_port}/{p.proto}: host port {p.host_port} is already "
                        f"published by container {clash[0][:12]}"
                    )
                db.execute(
                    "INSERT OR REPLACE INTO net_ports VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (p.proto, p.host_ip, p.host_port, container_id, network, container_ip,
                     p.container_port),
                )  # fmt: skip

    def ports(self, container_id: str) -> list[PortMapping]:
        rows = self.db.execute(
            "SELECT * FROM net_ports WHERE container_id = ? ORDER BY container_port, proto",
            (container_id,),
        )
        return [
            PortMapping(int(r["container_port"]), int(r["host_port"]), str(r["host_ip"]),
                        str(r["proto"]))
            for r in rows
        ]  # fmt: skip

    def port_targets(self, container_id: str) -> list[tuple[PortMapping, str]]:
        """(mapping, container address) of each published port of the container."""
        rows = self.db.execute("SELECT * FROM net_ports WHERE container_id = ?", (container_id,))
        return [
            (PortMapping(int(r["container_port"]), int(r["host_port"]), str(r["host_ip"]),
                         str(r["proto"])), str(r["container_ip"]))
            for r in rows
        ]  # fmt: skip

    # -- saved host state ---------------------------------------------------------------------

    def get_state(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM net_state WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_state(self, key: str, value: str | None) -> None:
        with transaction(self.db) as db:
            if value is None:
                db.execute("DELETE FROM net_state WHERE key = ?", (key,))
            else:
                db.execute("INSERT OR REPLACE INTO net_state VALUES (?, ?)", (key, value))


def _add_column(db: sqlite3.Connection, table: str, column: str) -> None:
    """A column a database made by an older corral lacks (a concurrent command may add it
    first)."""
    have = {str(r[1]) for r in db.execute(f"PRAGMA table_info({table})")}
    if column.split()[0] not in have:
        try:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
        except sqlite3.OperationalError as err:
            if "duplicate column" not in str(err):
                raise


def _held_by(db: sqlite3.Connection, network: str, address: str) -> str:
    row = db.execute(
        "SELECT container_id, name FROM net_endpoints WHERE network = ? AND address = ?",
        (network, address),
    ).fetchone()
    if row is None:
        return ""
    return f" (container {row['name'] or row['container_id'][:12]})"


def _network(row: sqlite3.Row) -> Network:
    return Network(
        str(row["name"]), str(row["id"]), str(row["subnet"]), str(row["gateway"]),
        str(row["bridge"]), bool(row["internal"]), float(row["created"]),
    )  # fmt: skip


def _endpoint(row: sqlite3.Row) -> Endpoint:
    return Endpoint(
        str(row["network"]), str(row["container_id"]), str(row["address"]), str(row["veth"]),
        str(row["name"]), tuple(json.loads(row["aliases"])),
    )  # fmt: skip


def _port_json(p: PortMapping) -> dict[str, str | int]:
    return {"c": p.container_port, "h": p.host_port, "ip": p.host_ip, "proto": p.proto}


def _port_from(data: dict[str, str | int]) -> PortMapping:
    return PortMapping(int(data["c"]), int(data["h"]), str(data["ip"]), str(data["proto"]))
