"""What runs inside a running container: ``exec``, ``top``, ``stats``.

All three start from the same two facts the runtime keeps for a running container: its init's
host pid, and its cgroup (``corral.Runtime.state`` / ``pids`` / ``stats``).

- ``exec`` asks the runtime to start one more process in the container's namespaces, cgroups,
  user, capabilities and seccomp filter (runc's "tenant" process). In the foreground the caller
  waits for it; with a terminal the caller holds the pty's master and copies the user's
  keystrokes to it, in raw mode, passing on the window size (``stty size`` inside sees ours).
- ``top`` is the host's ``ps`` with only the container's processes kept (docker's way: the
  pids come from the cgroup, so a process that left the pid namespace's view still shows).
- ``stats`` reads the cgroup's counters twice, half a second apart: CPU % is the CPU time
  used in between over the wall time (100% = one CPU, as docker shows it), memory is usage
  less the inactive file cache (docker's "usage"), network is the init's /proc/<pid>/net/dev.
"""

from __future__ import annotations

import contextlib
import gc
import os
import time

from corral._record import datarecord, field
from corral.errors import CorralError, StateError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from corral.engine.containers.manager import Containers, Record

#: The time between the two samples of ``stats``.
SAMPLE_INTERVAL = 0.5


@datarecord(frozen=True)
class ExecRequest:
    """``corral exec [-d] [-i] [-t] [-e K=V] [-u UID[:GID]] [-w DIR] CONTAINER CMD...``."""

    args: list[str]
    env: list[str] = field(default_factory=list)
    user: tuple[int, int] | None = None
    workdir: str | None = None
    tty: bool = False
    detach: bool = False


def running_record(containers: Containers, ref: str) -> Record:
    """The record of ``ref``, which must be running (docker's message otherwise)."""
    record = containers.record(ref)
    if containers.status(record).state != "running":
        raise StateError(f"Container {record.id} is not running")
    return record


def exec_in(containers: Containers, ref: str, request: ExecRequest) -> int:
    """Run ``request`` in the running container ``ref``; its exit status (0 when detached)."""
    if not request.args:
        raise UsageError("exec: give a command to run in the container")
    if request.workdir is not None and not request.workdir.startswith("/"):
        raise UsageError(f"--workdir {request.workdir!r}: must be an absolute path")
    for item in request.env:
        if not item or item.startswith("="):
            raise UsageError(f"--env {item!r}: want KEY=VALUE (or KEY)")
    record = running_record(containers, ref)
    env = [_resolved_env(item) for item in request.env]
    gc.freeze()  # the runtime forks the process, which runs Python: see netns.create
    return containers.runtime_api().exec(
        record.id,
        request.args,
        env=[e for e in env if e is not None],
        cwd=request.workdir,
        user=request.user,
        terminal=request.tty,
        detach=request.detach,
    )


def _resolved_env(item: str) -> str | None:
    """docker's ``-e KEY`` takes KEY's value from our environment (dropped when unset)."""
    if "=" in item:
        return item
    value = os.environ.get(item)
    return None if value is None else f"{item}={value}"


def exec_failure_status(err: BaseException) -> int:
    """docker exec's status when the process could not start: 127 not found, 126 cannot be
    invoked, else the error's own (1: no such container, not running)."""
    from corral.engine.containers.exit_status import ENGINE_FAILED, start_failure_status

    status = start_failure_status(err)
    if status != ENGINE_FAILED:
        return status
    return err.exit_code if isinstance(err, CorralError) else 1


def parse_user(text: str | None) -> tuple[int, int] | None:
    """``-u UID[:GID]`` (numeric; names come with the image's /etc/passwd, issue 11)."""
    if text is None:
        return None
    uid_text, _, gid_text = text.partition(":")
    try:
        uid = int(uid_text)
        gid = int(gid_text) if gid_text else 0
    except ValueError:
        raise UsageError(f"--user {text!r}: want a numeric UID[:GID]") from None
    if not (0 <= uid < 2**32 - 1 and 0 <= gid < 2**32 - 1):
        raise UsageError(f"--user {text!r}: out of range")
    return uid, gid


# -- top ---------------------------------------------------------------------------------------


def top(containers: Containers, ref: str, ps_args: list[str]) -> str:
    """docker's ``top``: the host's ``ps`` (``-ef`` unless told) limited to the container."""
    from corral.runtime.ops import ps_table

    record = running_record(containers, ref)
    pids = containers.runtime_api().pids(record.id)
    return ps_table(pids, ps_args or ["-ef"])


# -- stats -------------------------------------------------------------------------------------


@datarecord(frozen=True)
class Stats:
    """One row of ``corral stats``."""

    id: str
    name: str
    cpu_percent: float
    memory_usage: int
    memory_limit: int
    pids: int
    net_rx: int
    net_tx: int
    block_read: int
    block_write: int

    @property
    def memory_percent(self) -> float:
        return 100.0 * self.memory_usage / self.memory_limit if self.memory_limit else 0.0


@datarecord(frozen=True)
class _Sample:
    when: float
    cpu_ns: int
    raw: dict[str, Any]


def stats(containers: Containers, refs: list[str], all_containers: bool = False) -> list[Stats]:
    """One ``stats --no-stream`` row per running container named (default: every running one)."""
    if refs:
        records = [running_record(containers, ref) for ref in refs]
    else:
        records = [s.record for s in containers.list(all_containers=all_containers)]
        records = [r for r in records if containers.status(r).state == "running"]
    runtime = containers.runtime_api()
    first: dict[str, _Sample] = {}
    for record in records:
        with contextlib.suppress(CorralError):
            first[record.id] = _sample(runtime.stats(record.id))
    if first:
        time.sleep(SAMPLE_INTERVAL)
    rows = []
    for record in records:
        if record.id not in first:
            continue
        try:
            data = runtime.stats(record.id)
            pid = int(runtime.state(record.id).get("pid") or 0)
        except CorralError:
            continue  # it stopped meanwhile
        rows.append(_row(record, first[record.id], _sample(data), pid))
    return rows


def _sample(data: dict[str, Any]) -> _Sample:
    cpu = int(((data.get("cpu") or {}).get("usage") or {}).get("total") or 0)
    return _Sample(time.monotonic(), cpu, data)


def _row(record: Record, before: _Sample, after: _Sample, pid: int) -> Stats:
    wall_ns = max(after.when - before.when, 1e-9) * 1e9
    cpu_percent = 100.0 * max(after.cpu_ns - before.cpu_ns, 0) / wall_ns
    memory = after.raw.get("memory") or {}
    usage = int((memory.get("usage") or {}).get("usage") or 0)
    raw = memory.get("raw") or {}
    inactive = int(raw.get("total_inactive_file", raw.get("inactive_file", 0)) or 0)
    limit = int((memory.get("usage") or {}).get("limit") or 0)
    host = _host_memory()
    if not limit or limit > host:
        limit = host
    read = write = 0
    for entry in (after.raw.get("blkio") or {}).get("ioServiceBytesRecursive") or []:
        op = str(entry.get("op", "")).lower()
        if op == "read":
            read += int(entry.get("value") or 0)
        elif op == "write":
            write += int(entry.get("value") or 0)
    rx, tx = _net_io(pid)
    pids = int((after.raw.get("pids") or {}).get("current") or 0)
    return Stats(
        record.id, record.name, cpu_percent, max(usage - inactive, 0), limit, pids, rx, tx,
        read, write,
    )  # fmt: skip


def _host_memory() -> int:
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def _net_io(pid: int) -> tuple[int, int]:
    """Bytes received and sent on the container's interfaces but loopback."""
    rx = tx = 0
    try:
        with open(f"/proc/{pid}/net/dev", encoding="ascii") as f:
            lines = f.read().splitlines()[2:]
    except OSError:
        return 0, 0
    for line in lines:
        name, _, counters = line.partition(":")
        fields = counters.split()
        if name.strip() == "lo" or len(fields) < 9:
            continue
        rx += int(fields[0])
        tx += int(fields[8])
    return rx, tx
