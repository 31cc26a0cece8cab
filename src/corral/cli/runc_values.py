"""runc's flag values, turned into the library's data: what ``corral-runc`` parses and the
library never sees (``update``'s resource flags, ``exec``'s process flags, sizes, durations).

Only cli/runc.py imports this, lazily, for the verbs that need it.
"""

from __future__ import annotations

import sys

from corral import _json
from corral.errors import SpecError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def update_resources(o: dict[str, Any]) -> dict[str, Any]:
    """The resources of ``update``: --resources FILE|- (JSON as dockerd sends) or the flags."""
    if o.get("resources"):
        source = o["resources"]
        try:
            if source == "-":
                raw = sys.stdin.read()
            else:
                with open(source) as f:
                    raw = f.read()
        except OSError as err:
            raise UsageError(f"--resources {source}: {err.strerror}") from None
        try:
            data = _json.loads(raw)
        except ValueError as err:
            raise UsageError(f"--resources {source}: invalid JSON: {err}") from None
        if not isinstance(data, dict):
            raise SpecError("", "must be a JSON object (linux.resources)", source)
        resources: dict[str, Any] = data
        return resources
    out: dict[str, Any] = {}

    def put(section: str, key: str, flag: str, conv: Any) -> None:
        if o.get(flag) is not None:
            out.setdefault(section, {})[key] = conv(o[flag], f"--{flag}")
            FLAG_OF[f"linux.resources.{section}.{key}"] = f"--{flag}"

    put("blockIO", "weight", "blkio-weight", _int)
    put("cpu", "period", "cpu-period", _int)
    put("cpu", "quota", "cpu-quota", _int)
    put("cpu", "shares", "cpu-share", _int)
    put("cpu", "realtimePeriod", "cpu-rt-period", _int)
    put("cpu", "realtimeRuntime", "cpu-rt-runtime", _int)
    put("cpu", "cpus", "cpuset-cpus", _str)
    put("cpu", "mems", "cpuset-mems", _str)
    put("memory", "kernel", "kernel-memory", parse_bytes)
    put("memory", "kernelTCP", "kernel-memory-tcp", parse_bytes)
    put("memory", "limit", "memory", parse_bytes)
    put("memory", "reservation", "memory-reservation", parse_bytes)
    put("memory", "swap", "memory-swap", parse_bytes)
    put("pids", "limit", "pids-limit", _int)
    for flag in ("l3-cache-schema", "mem-bw-schema"):
        if o.get(flag) is not None:
            raise UsageError(f"--{flag}: Intel RDT (resctrl) is not supported by corral")
    if not out:
        raise UsageError("update: nothing to update (give --resources or a resource flag)")
    return out


#: The flag that gave each field of the resources (filled by update_resources), so that an
#: error about a value (corral.spec.validate names the field) names what the user typed.
FLAG_OF: dict[str, str] = {}


def _int(value: str, flag: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise UsageError(f'{flag}: "{value}" is not an integer') from None


def _str(value: str, flag: str) -> str:
    return value


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_bytes(value: str, flag: str) -> int:
    """RAM sizes as docker and runc read them: 512, 512k, 64m, 1g (powers of 1024); -1 = none."""
    text = value.strip().lower()
    if text == "-1":
        return -1
    number = text.rstrip("bkmgtpi")
    unit = text[len(number) :].replace("i", "").rstrip("b") if text[len(number) :] else ""
    try:
        return int(float(number) * _UNITS[unit or ""])
    except (ValueError, KeyError):
        raise UsageError(f'{flag}: invalid size "{value}" (e.g. 512m, 1g)') from None


def parse_duration(value: str, flag: str) -> float:
    """Go durations as runc takes them: 5s, 500ms, 1m, 1h30m."""
    units = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    total, number, i = 0.0, "", 0
    text = value.strip()
    if not text:
        raise UsageError(f'{flag}: invalid duration "{value}"')
    while i < len(text):
        ch = text[i]
        if ch.isdigit() or ch == ".":
            number += ch
            i += 1
            continue
        unit = text[i : i + 2] if text[i : i + 2] in units else ch
        if unit not in units or not number:
            raise UsageError(f'{flag}: invalid duration "{value}" (e.g. 5s, 500ms)')
        total += float(number) * units[unit]
        number, i = "", i + len(unit)
    if number:
        raise UsageError(f'{flag}: missing unit in duration "{value}" (e.g. 5s)')
    if total <= 0:
        raise UsageError(f'{flag}: duration must be positive, got "{value}"')
    return total


def exec_process(base: dict[str, Any], args: list[str], o: dict[str, Any]) -> dict[str, Any]:
    """runc's rule: start from the container's process, then apply the exec flags."""
    from corral.runtime.exec import process_like

    user = None
    if o.get("user"):
        uid, _, gid = o["user"].partition(":")
        try:
            user = (int(uid), int(gid or 0))
        except ValueError:
            raise UsageError(f'--user: "{o["user"]}" is not UID[:GID] (numbers)') from None
    process = process_like(
        base, args, env=list(o.get("env") or []), cwd=o.get("cwd"), user=user,
        terminal=bool(o.get("tty")), no_new_privs=bool(o.get("no-new-privs")),
    )
    if o.get("additional-gids"):
        try:
            process["user"]["additionalGids"] = [int(g) for g in o["additional-gids"]]
        except ValueError:
            raise UsageError("--additional-gids: must be numbers") from None
    if o.get("apparmor"):
        process["apparmorProfile"] = o["apparmor"]
    if o.get("process-label"):
        process["selinuxLabel"] = o["process-label"]
    if o.get("cap"):
        from corral.spec.tables import CAPABILITIES

        caps = {key: list(v) for key, v in (process.get("capabilities") or {}).items()}
        for cap in o["cap"]:
            if cap not in CAPABILITIES:
                raise UsageError(f'--cap: unknown capability "{cap}"')
            # runc 1.1's sets for --cap (not inheritable: a non-root user gets it only through
            # ambient, which needs inheritable, so as in runc it stays with root).
            for key in ("bounding", "effective", "permitted", "ambient"):
                caps.setdefault(key, [])
                if cap not in caps[key]:
                    caps[key].append(cap)
        process["capabilities"] = caps
    return process


