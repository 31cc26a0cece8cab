"""The verbs that work through the container's cgroup: ps, pause, resume, events, update."""

from __future__ import annotations

import os
import sys
import time

from corral import _json
from corral.errors import CgroupError, StateError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from corral.cgroups import Manager
    from corral.runtime.state import Container, StateStore


def _manager(container: Container) -> Manager:
    cg = container.data.get("cgroup")
    if not cg:
        raise CgroupError(
            f"container {container.id} has no cgroup (created with --cgroup-manager disabled)"
        )
    from corral import cgroups

    return cgroups.from_state(cg)


def container_pids(store: StateStore, container_id: str) -> list[int]:
    """Every process of the container (host pids), from its cgroup."""
    container = store.load(container_id)
    container.require("ps")
    if not container.data.get("cgroup"):
        return [container.pid]
    return sorted(_manager(container).pids())


def ps_table(pids: list[int], ps_args: list[str]) -> str:
    """Run ``ps`` with the given options and keep the header and the container's rows.

    ``ps`` cuts its lines to ``$COLUMNS`` when that is set (pytest and some shells export it):
    not here, where the output goes to a pipe and the whole command line is wanted.
    """
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    try:
        out = subprocess.run(
            ["ps", *ps_args], capture_output=True, text=True, check=True, env=env
        ).stdout
    except FileNotFoundError:
        raise UsageError("ps: the ps program is not installed (Debian package procps)") from None
    except subprocess.CalledProcessError as err:
        raise UsageError(f"ps {' '.join(ps_args)}: {err.stderr.strip()}") from None
    lines = out.splitlines()
    if not lines:
        return ""
    header = lines[0].split()
    if "PID" not in header:
        raise UsageError("ps: the ps options must keep the PID column")
    column = header.index("PID")
    wanted = {str(p) for p in pids}
    rows = [line for line in lines[1:] if line.split()[column : column + 1][0] in wanted]
    return "\n".join([lines[0], *rows]) + "\n"


def stats(store: StateStore, container_id: str) -> dict[str, Any]:
    """The container's cgroup counters (``events --stats``'s data)."""
    container = store.load(container_id)
    container.require("events")
    return _manager(container).stats()


def pause(store: StateStore, container_id: str) -> None:
    container = store.load(container_id)
    container.require("pause")
    _manager(container).freeze()


def resume(store: StateStore, container_id: str) -> None:
    container = store.load(container_id)
    container.require("resume")
    _manager(container).thaw()


def events(store: StateStore, container_id: str, stats_once: bool, interval: float) -> int:
    """``events``: one stats event with --stats; else runc's stream, until the container is gone.

    The stream has a stats event every ``interval`` seconds (the first after one interval, as
    runc's ticker) and an ``{"type": "oom", "id": ...}`` event as soon as the kernel reports an
    OOM in the container's memory cgroup. It ends when the container's init has exited, after a
    last look for OOM events (an OOM that killed the init is reported before the end).
    """
    container = store.load(container_id)
    container.require("events")
    manager = _manager(container)
    if stats_once:
        _emit({"type": "stats", "id": container_id, "data": manager.stats()})
        return 0
    import select

    try:
        pidfd = os.pidfd_open(container.pid)
    except ProcessLookupError:
        raise StateError("container not running") from None
    watch = None
    last_words, last_words_path = -1, ""
    try:
        if not container.init_alive():
            raise StateError("container not running")
        if manager.mode in ("v2", "systemd"):
            # Where the container's remover leaves the cgroup's last memory.events (see
            # OomWatch): a file in the state directory, kept open so it can be read after the
            # directory is gone. v1's eventfd keeps its count by itself.
            from corral.cgroups._base import LAST_WORDS_PREFIX

            last_words_path = f"{container.dir}/{LAST_WORDS_PREFIX}{os.getpid()}"
            last_words = os.open(last_words_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        try:
            watch = manager.oom_watch(last_words)
            poller.register(watch.fd, watch.mask)
        except (CgroupError, NotImplementedError):
            watch = None  # no memory controller here: stats only
        deadline = time.monotonic() + interval
        while True:
            wait_ms = max(deadline - time.monotonic(), 0.0) * 1000
            ready = {fd for fd, _ in poller.poll(wait_ms)}
            if watch is not None:
                for _ in range(watch.take() if watch.fd in ready or pidfd in ready else 0):
                    _emit({"type": "oom", "id": container_id})
            if pidfd in ready:
                return 0
            if time.monotonic() >= deadline:
                deadline += interval
                try:
                    data = manager.stats()
                except CgroupError:
                    continue  # the cgroup is being removed; the pidfd ends the loop
                _emit({"type": "stats", "id": container_id, "data": data})
    finally:
        if watch is not None:
            watch.close()
        os.close(pidfd)
        if last_words >= 0:
            os.close(last_words)
            try:
                os.unlink(last_words_path)
            except FileNotFoundError:
                pass  # the container's state went first


def _emit(event: dict[str, Any]) -> None:
    sys.stdout.write(_json.dumps(event) + "\n")
    sys.stdout.flush()


def update(store: StateStore, container_id: str, resources: dict[str, Any]) -> None:
    """Apply new linux.resources to a live container and record them in its state."""
    from corral.spec.validate import validate_resources

    container = store.load(container_id)
    container.require("update")
    linux = container.config.setdefault("linux", {})
    merged = {
        key: dict(value) if isinstance(value, dict) else value
        for key, value in (linux.get("resources") or {}).items()
    }
    for key, value in resources.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key].update(value)
        else:
            merged[key] = value
    # The new values are checked as a config's are, together with the ones they join (a new
    # swap limit against the memory limit the container has), before anything is written.
    validate_resources(merged)
    memory = resources.get("memory") or {}
    if memory.get("swap") and "limit" not in memory and merged["memory"].get("limit"):
        # swap is memory+swap: the managers work out the swap alone (v2) and the order of the
        # writes (v1) from the memory limit, which is the container's when not given here.
        resources = {**resources, "memory": {**memory, "limit": merged["memory"]["limit"]}}
    _manager(container).set(resources)
    linux["resources"] = merged
    container.save()


def pid_exists(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")
