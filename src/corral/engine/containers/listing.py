"""``ps``'s rows: the containers a ``--filter`` selects, as docker's fields.

The fields are docker's ``--format`` names (``{{.ID}}``, ``{{.Names}}``, ``{{.Status}}``...),
so one row serves the default table, a Go template and, later, the API's JSON.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import sqlite3
import time
from typing import TYPE_CHECKING, Any

from corral.engine.filters import Filters, label_matches
from corral.engine.views import LIVE, PS_COLUMNS, ps_fields, ps_row
from corral.errors import CorralError

if TYPE_CHECKING:
    from corral.engine.containers.manager import Containers, Status

#: Every field ``ps --format`` knows, and its header in ``table`` mode.
PS_FIELDS = {
    "ID": "CONTAINER ID",
    "Image": "IMAGE",
    "Command": "COMMAND",
    "CreatedAt": "CREATED AT",
    "RunningFor": "CREATED",
    "Ports": "PORTS",
    "State": "STATE",
    "Status": "STATUS",
    "Size": "SIZE",
    "Names": "NAMES",
    "Labels": "LABELS",
    "Mounts": "MOUNTS",
    "Networks": "NETWORKS",
}

__all__ = ["PS_COLUMNS", "PS_FIELDS", "command_text", "ports_text", "row", "select", "with_ports"]


def select(containers: Containers, filters: Filters, all_containers: bool) -> list[Status]:
    """The containers ``ps`` shows: running ones (or all), narrowed by ``filters``."""
    everything = with_ports(containers.list(all_containers=True), containers.engine.db)
    # A status/exited filter asks about stopped containers: docker then implies -a.
    wide = all_containers or bool(filters.get("status")) or bool(filters.get("exited"))
    out = [s for s in everything if wide or s.state in LIVE]
    if not filters:
        return out
    created = {s.record.id: s.record.created for s in everything}

    def created_of(ref: str) -> float:
        return created[containers.resolve(ref)]

    image_ids: dict[str, str | None] = {}

    def image_id(ref: str) -> str | None:
        if ref not in image_ids:
            image_ids[ref] = None
            with contextlib.suppress(CorralError):
                image_ids[ref] = containers.images.resolve(ref)
        return image_ids[ref]

    def keep(s: Status) -> bool:
        r = s.record
        labels: dict[str, str] = getattr(r, "labels", None) or {}
        return (
            filters.any_of("id", lambda v: r.id.startswith(v))
            and filters.any_of("name", lambda v: v.lstrip("/") in r.name)
            and filters.any_of("status", lambda v: v == s.state)
            and filters.any_of(
                "exited", lambda v: s.state == "exited" and s.exit_code == int(v)
            )
            and filters.any_of("ancestor", lambda v: v == r.image or image_id(v) == r.image_id)
            and filters.any_of("label", lambda v: label_matches(labels, v))
            and filters.any_of("before", lambda v: r.created < created_of(v))
            and filters.any_of("since", lambda v: r.created > created_of(v))
            and filters.any_of("health", lambda v: v == (s.health or "none"))
        )  # fmt: skip

    return [s for s in out if keep(s)]


def with_ports(statuses: list[Status], db: sqlite3.Connection) -> list[Status]:
    """``statuses``, each with its PORTS column (``extra["ports"]``)."""
    published = ports_text(db)
    for s in statuses:
        s.extra["ports"] = published.get(s.record.id, "")
    return statuses


def ports_text(db: sqlite3.Connection) -> dict[str, str]:
    """docker's PORTS column of each container with published ports (they are published while
    it runs): ``0.0.0.0:8080->80/tcp, 0.0.0.0:9000-9001->90-91/udp``, consecutive ports as one
    range."""
    try:
        rows = db.execute(
            "SELECT container_id, proto, host_ip, container_port, host_port FROM net_ports"
            " ORDER BY container_id, proto, host_ip, container_port"
        ).fetchall()
    except sqlite3.OperationalError:  # no table: no container ever had a network
        return {}
    groups: dict[str, list[list[Any]]] = {}
    for cid, proto, host_ip, port, host_port in (tuple(r) for r in rows):
        runs = groups.setdefault(cid, [])
        last = runs[-1] if runs else None
        next_of_last = last and (port - last[3], host_port - last[5]) == (1, 1)
        if last and last[:2] == [proto, host_ip] and next_of_last:
            last[3], last[5] = port, host_port  # the run goes on
        else:
            runs.append([proto, host_ip, port, port, host_port, host_port])
    return {
        cid: ", ".join(
            f"{ip or '0.0.0.0'}:{_span(h1, h2)}->{_span(c1, c2)}/{proto}"
            for proto, ip, c1, c2, h1, h2 in runs
        )
        for cid, runs in groups.items()
    }


def _span(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


def command_text(args: list[str], no_trunc: bool) -> str:
    """docker's COMMAND column: the command line, shell-quoted, cut to 20 characters unless
    ``no_trunc``, in JSON quotes."""
    from corral.engine.format import truncate

    command = " ".join(shlex.quote(a) for a in args)
    return json.dumps(command if no_trunc else truncate(command, 20), ensure_ascii=False)


def row(s: Status, no_trunc: bool) -> dict[str, str]:
    """docker's ``ps`` fields of one container: the default columns as plain ``ps`` prints
    them (engine.views), and the rest."""
    r = s.record
    now = time.time()
    fields = ps_fields(ps_row(s, None, command_text(r.args, no_trunc)), now)
    if no_trunc:
        fields["ID"] = r.id
    labels: dict[str, str] = getattr(r, "labels", None) or {}
    return {
        "ID": fields["ID"],
        "Image": fields["Image"],
        "Command": fields["Command"],
        "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(r.created)),
        "RunningFor": fields["RunningFor"],
        "Ports": fields["Ports"],
        "State": s.state,
        "Status": fields["Status"],
        "Size": "",
        "Names": fields["Names"],
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "Mounts": "",
        "Networks": str(s.extra.get("networks") or ""),
    }
