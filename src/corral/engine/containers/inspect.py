"""``corral inspect CONTAINER``: docker's container JSON from the record, the run state and
the OCI config (pure).

The fields docker users script against are there with docker's names and types: ``State``
(Status, Running, Paused, Restarting, OOMKilled, Dead, Pid, ExitCode, Error, StartedAt,
FinishedAt, Health), ``RestartCount``, ``Config`` (Cmd, Env, Image, Labels, StopSignal,
Healthcheck...), ``HostConfig`` (RestartPolicy, AutoRemove, Memory...), ``Mounts``. Times
are RFC 3339 with nanoseconds, ``0001-01-01T00:00:00Z`` for never (as docker).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corral.engine.containers.manager import Record
    from corral.engine.monitor.state import RunState

NEVER = "0001-01-01T00:00:00Z"
#: The mounts every container gets from the default spec: not shown, as docker does not.
_STANDARD = {"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"}


def _time(value: float) -> str:
    from corral.engine.monitor.logfile import timestamp

    return timestamp(value) if value else NEVER


def container_json(
    record: Record, row: RunState, spec: dict[str, Any], directory: str,
    network: dict[str, Any] | None = None, network_mode: str = "none",
) -> dict[str, Any]:  # fmt: skip
    """``network``: NetworkSettings (engine.network.settings), ``network_mode`` the --network
    mode."""
    process = spec.get("process") or {}
    linux = spec.get("linux") or {}
    memory = ((linux.get("resources") or {}).get("memory") or {}).get("limit") or 0
    args = list(process.get("args") or record.args)
    config = row.config
    status = row.status
    state: dict[str, Any] = {
        "Status": status,
        "Running": status in ("running", "paused"),
        "Paused": status == "paused",
        "Restarting": status == "restarting",
        "OOMKilled": row.oom_killed,
        "Dead": False,
        "Pid": row.pid if row.live else 0,
        "ExitCode": row.exit_code,
        "Error": row.error,
        "StartedAt": _time(row.started_at),
        "FinishedAt": _time(row.finished_at),
    }
    if config.healthcheck is not None:
        state["Health"] = row.health or {"Status": "starting", "FailingStreak": 0, "Log": []}
    mounts = [
        {
            "Type": "bind",
            "Source": m.get("source", ""),
            "Destination": m.get("destination", ""),
            "Mode": "",
            "RW": "ro" not in (m.get("options") or []),
            "Propagation": "rprivate",
        }
        for m in spec.get("mounts") or []
        if m.get("type") == "bind" or "bind" in (m.get("options") or []) or "rbind" in (
            m.get("options") or [])
        if m.get("destination") not in _STANDARD
    ]  # fmt: skip
    return {
        "Id": record.id,
        "Created": _time(record.created),
        "Path": args[0] if args else "",
        "Args": args[1:],
        "State": state,
        "Image": record.image_id,
        "ResolvConfPath": _etc_file(spec, "/etc/resolv.conf"),
        "HostnamePath": _etc_file(spec, "/etc/hostname"),
        "HostsPath": _etc_file(spec, "/etc/hosts"),
        "LogPath": f"{directory}/container.log",
        "Name": "/" + record.name,
        "RestartCount": row.restart_count,
        "Driver": "overlay",
        "Platform": "linux",
        "HostConfig": {
            "RestartPolicy": config.restart_policy(),
            "AutoRemove": record.auto_remove,
            "LogConfig": {
                "Type": "json-file",
                "Config": {
                    "max-size": str(config.log_max_size),
                    "max-file": str(config.log_max_file),
                },
            },
            "NetworkMode": network_mode,
            "Memory": int(memory),
        },
        "Mounts": mounts,
        "Config": {
            "Hostname": spec.get("hostname", ""),
            "User": _user(process),
            "Env": list(process.get("env") or []),
            "Cmd": args,
            "Image": record.image,
            "WorkingDir": process.get("cwd", ""),
            "Entrypoint": None,
            "Labels": {},
            "StopSignal": config.stop_signal or "SIGTERM",
            "StopTimeout": config.stop_timeout,
            **({"Healthcheck": config.healthcheck.to_docker()} if config.healthcheck else {}),
        },
        "NetworkSettings": network if network is not None else {"Networks": {}},
    }


def _etc_file(spec: dict[str, Any], destination: str) -> str:
    """The host file the engine bind-mounts over ``destination`` (docker's *Path fields)."""
    for m in spec.get("mounts") or []:
        if m.get("destination") == destination and m.get("type") == "bind":
            return str(m.get("source", ""))
    return ""


def _user(process: dict[str, Any]) -> str:
    user = process.get("user") or {}
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    return "" if uid == 0 and gid == 0 else f"{uid}:{gid}"
