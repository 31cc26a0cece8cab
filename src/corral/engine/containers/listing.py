"""``ps``'s rows: the containers a ``--filter`` selects, as docker's fields.

The fields are docker's ``--format`` names (``{{.ID}}``, ``{{.Names}}``, ``{{.Status}}``...),
so one row serves the default table, a Go template and, later, the API's JSON.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import time
from typing import TYPE_CHECKING

from corral.engine.filters import Filters, label_matches
from corral.errors import CorralError

if TYPE_CHECKING:
    from corral.engine.containers.manager import Containers, Status

#: ``ps``'s columns: header -> field, in docker's order.
PS_COLUMNS = {
    "CONTAINER ID": "ID",
    "IMAGE": "Image",
    "COMMAND": "Command",
    "CREATED": "RunningFor",
    "STATUS": "Status",
    "PORTS": "Ports",
    "NAMES": "Names",
}
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


#: What ``ps`` shows without ``-a``: docker counts paused and restarting containers as running.
LIVE = frozenset({"running", "paused", "restarting"})


def select(containers: Containers, filters: Filters, all_containers: bool) -> list[Status]:
    """The containers ``ps`` shows: running ones (or all), narrowed by ``filters``."""
    everything = containers.list(all_containers=True)
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


def status_text(s: Status, now: float) -> str:
    """docker's STATUS column: ``Up 5 minutes (healthy)``, ``Exited (3) 2 hours ago``..."""
    from corral.engine.format import ago, human_duration, rfc3339
    from corral.engine.monitor.health import ps_suffix

    if s.state == "running":
        return f"Up {human_duration(now - (s.started or now))}{ps_suffix(s.health)}"
    if s.state == "paused":
        return f"Up {human_duration(now - (s.started or now))} (Paused)"
    code = "?" if s.exit_code is None else str(s.exit_code)
    if s.state == "restarting":
        return f"Restarting ({code}) {ago(rfc3339(s.finished or now))}"
    if s.state == "exited":
        return f"Exited ({code}) {ago(rfc3339(s.finished or now))}"
    return "Created"


def row(s: Status, no_trunc: bool) -> dict[str, str]:
    """docker's ``ps`` fields of one container."""
    from corral.engine.format import ago, rfc3339, truncate

    r = s.record
    now = time.time()
    status = status_text(s, now)
    command = " ".join(shlex.quote(a) for a in r.args)
    labels: dict[str, str] = getattr(r, "labels", None) or {}
    return {
        "ID": r.id if no_trunc else r.id[:12],
        "Image": r.image,
        "Command": json.dumps(command if no_trunc else truncate(command, 20), ensure_ascii=False),
        "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(r.created)),
        "RunningFor": ago(rfc3339(r.created)),
        "Ports": str(s.extra.get("ports") or ""),
        "State": s.state,
        "Status": status,
        "Size": "",
        "Names": r.name,
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "Mounts": "",
        "Networks": str(s.extra.get("networks") or ""),
    }
