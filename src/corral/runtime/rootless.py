"""Rootless containers: what changes when ``corral-runc`` runs as an unprivileged user.

runc's rules (libcontainer/rootless_linux.go, specconv.ToRootless), decided here in one place:

- **Detection.** Rootless means euid != 0. (A root inside a user namespace is not rootless to us:
  it can do what its namespace allows, and the kernel says no where it cannot.)
- **A user namespace is required**: without one, nothing of the container can be set up
  (mount, pivot_root, sethostname all need CAP_SYS_ADMIN in a namespace we own). The config
  made by ``corral-runc spec --rootless`` has one.
- **Mappings.** An unprivileged process may write only a single-ID map of its own euid (and
  its own egid, after "deny" is written to setgroups, which the runtime does): container ID
  0 -> the caller. Anything more needs the setuid helpers newuidmap/newgidmap and ranges from
  /etc/subuid and /etc/subgid; this runtime does not call them, so such maps are refused up
  front, naming the line, with the caller's allowed ranges in the message.
- **Cgroups** are skipped, without error, unless the container's cgroup can be created and
  written by the caller (a delegated subtree): runc's rootless cgroup manager does the same.
  ``--debug`` says so once. A config that asks for limits it cannot get is an error rather
  than a container that silently runs unlimited.
- **State** lives in ``$XDG_RUNTIME_DIR/corral`` when ``--root`` is not given (runc:
  ``$XDG_RUNTIME_DIR/runc``), since /run/corral belongs to root.
"""

from __future__ import annotations

import os

from corral.errors import SpecError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from corral.cgroups import Manager

HINT = "run `corral-runc spec --rootless`"


def is_rootless() -> bool:
    return os.geteuid() != 0


def default_root(system_root: str) -> str:
    """The state directory when --root is not given."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if is_rootless() and xdg:
        return os.path.join(xdg, "corral")
    return system_root


def check_spec(spec: dict[str, Any]) -> None:
    """Refuse, before anything is made, what an unprivileged caller cannot do."""
    linux = spec.get("linux") or {}
    namespaces = {ns["type"]: ns.get("path", "") for ns in linux.get("namespaces") or []}
    if "user" not in namespaces:
        raise SpecError(
            "linux.namespaces",
            f'rootless containers need a user namespace (linux.namespaces type "user"); {HINT}',
        )
    if namespaces["user"]:
        return  # joining one: its maps were written by whoever made it
    for kind, own in (("uid", os.geteuid()), ("gid", os.getegid())):
        check_mappings(linux.get(f"{kind}Mappings") or [], kind, own, _subids(kind, own))


def check_mappings(
    maps: list[dict[str, Any]], kind: str, own: int, sub: list[tuple[int, int]]
) -> None:
    """Only ``0 -> own`` (size 1) can be written without newuidmap; say what else would be
    allowed (the caller's /etc/sub{kind} ranges) when the map asks for more."""
    field = f"linux.{kind}Mappings"
    for i, m in enumerate(maps):
        if m["hostID"] == own and m["size"] == 1:
            continue
        where = f"{field}[{i}]"
        last = m["hostID"] + m["size"] - 1
        if not any(start <= m["hostID"] and last < start + count for start, count in sub):
            ranges = ", ".join(f"{s}-{s + c - 1}" for s, c in sub) or "none"
            raise SpecError(
                where,
                f"host {kind}s {m['hostID']}-{last} are not the caller's to map (an unprivileged"
                f" user maps only its own {kind} {own}; its /etc/sub{kind} ranges: {ranges});"
                f" {HINT} as this user",
            )
        raise SpecError(
            where,
            f"mapping /etc/sub{kind} ranges needs new{kind}map, which corral does not use;"
            f" map only container {kind} 0 to {own} ({HINT} as this user)",
        )
    if len(maps) > 1:
        raise SpecError(field, f"an unprivileged user can write a single line (0 {own} 1)")


def _subids(kind: str, own: int) -> list[tuple[int, int]]:
    """The caller's ranges in /etc/subuid or /etc/subgid (by name or number)."""
    try:
        with open(f"/etc/sub{kind}") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    names = {str(own)}
    try:
        import pwd

        names.add(pwd.getpwuid(os.geteuid()).pw_name)
    except (KeyError, ImportError):
        pass
    out = []
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] in names and parts[1].isdigit() and parts[2].isdigit():
            out.append((int(parts[1]), int(parts[2])))
    return out


def usable_cgroup(manager: Manager, linux: dict[str, Any]) -> Manager | None:
    """The manager when the caller may create and write the container's cgroup, else None."""
    if all(_writable(d) for d in manager._dirs()):
        return manager
    resources = {k: v for k, v in (linux.get("resources") or {}).items() if k != "devices" and v}
    if resources:
        name = sorted(resources)[0]
        raise SpecError(
            f"linux.resources.{name}",
            "rootless containers cannot set cgroup limits here: the cgroup is not writable by"
            f" uid {os.geteuid()} (delegate a cgroup to this user, or remove linux.resources)",
        )
    from corral.runtime import log

    log.debug(f"rootless: cgroups skipped, {manager} is not writable by uid {os.geteuid()}")
    return None


def _writable(directory: str) -> bool:
    """Can we make ``directory`` (its nearest existing ancestor is writable) or write to it?"""
    probe = directory
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            return False
        probe = parent
    return os.access(probe, os.W_OK)
