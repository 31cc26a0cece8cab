"""Find what a test left behind in the kernel: mounts, cgroups, netns, links, processes.

``Snapshot.take(markers)`` before a test, again after; ``find_leaks(before, after)`` lists what is
new. Only objects that look like ours are looked at, so the rest of the machine (systemd, a
shell) does not make the check flaky:

- mounts in /proc/self/mountinfo whose mount point or source mentions ``corral``, ``/tmp`` or a
  marker (the test's tmp path);
- cgroup directories under /sys/fs/cgroup (depth <= 4) named ``corral*`` or like a test's
  container id (``t-<hex>``, see helpers.runc.new_cid);
- network namespaces (``ip netns list``, that is /run/netns) and links named ``veth*``/``corral*``;
- corral's socket-shortcut eBPF programs on the cgroup2 root (corral.engine.network.shortcut);
- processes that descend from this (pytest's) process, whose command line mentions a
  marker, that live in a PID namespace other than this one (a container's), or that sit in a
  cgroup named like above.

``remove_leaks`` then tears them down as well as it can, so one leaking test does not make the
next ones fail too.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

CGROUP_ROOT = "/sys/fs/cgroup"
CGROUP_DEPTH = 4
NETNS_DIR = "/run/netns"
CONTAINER_NAME = re.compile(r"^(corral.*|t-[0-9a-f]{6,})$")


@dataclass(frozen=True)
class Process:
    pid: int
    cmdline: str
    why: str

    def __str__(self) -> str:
        return f"pid {self.pid} ({self.why}): {self.cmdline or '[no command line]'}"


@dataclass(frozen=True)
class Snapshot:
    mounts: frozenset[str] = frozenset()
    cgroups: frozenset[str] = frozenset()
    netns: frozenset[str] = frozenset()
    links: frozenset[str] = frozenset()
    processes: frozenset[Process] = frozenset()
    programs: frozenset[str] = frozenset()

    @classmethod
    def take(cls, markers: Sequence[str] = ()) -> Snapshot:
        """Look at the machine now. ``markers`` are strings (paths) that identify the test."""
        return cls(
            mounts=frozenset(_mounts(markers)),
            cgroups=frozenset(_cgroups()),
            netns=frozenset(_netns()),
            links=frozenset(_links()),
            processes=frozenset(_processes(markers)),
            programs=frozenset(_programs()),
        )


def find_leaks(before: Snapshot, after: Snapshot) -> list[str]:
    """One line per object present in ``after`` but not in ``before``."""
    out = [f"mount: {m}" for m in sorted(after.mounts - before.mounts)]
    out += [f"cgroup: {c}" for c in sorted(after.cgroups - before.cgroups)]
    out += [f"netns: {n}" for n in sorted(after.netns - before.netns)]
    out += [f"link: {n}" for n in sorted(after.links - before.links)]
    old = {p.pid for p in before.processes}
    out += [f"process: {p}" for p in sorted(after.processes, key=lambda p: p.pid)
            if p.pid not in old]
    out += [f"bpf program: {p}" for p in sorted(after.programs - before.programs)]
    return out


def wait_for_leaks(
    before: Snapshot, markers: Sequence[str], grace: float = 2.0
) -> tuple[Snapshot, list[str]]:
    """Snapshot until nothing leaks or ``grace`` seconds pass (exits and reaping take a moment)."""
    deadline = time.monotonic() + grace
    while True:
        after = Snapshot.take(markers)
        leaks = find_leaks(before, after)
        if not leaks or time.monotonic() >= deadline:
            return after, leaks
        time.sleep(0.05)


def remove_leaks(before: Snapshot, after: Snapshot) -> list[str]:
    """Best effort: kill, unmount, rmdir and delete what leaked; return what could not be."""
    problems: list[str] = []
    old = {p.pid for p in before.processes}
    for proc in after.processes:
        if proc.pid not in old:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            except OSError as err:
                problems.append(f"kill {proc.pid}: {err}")
    if after.processes:
        time.sleep(0.1)
    for mount in sorted(after.mounts - before.mounts, key=len, reverse=True):
        target = mount.split(" ", 1)[0]
        done = _run("umount", "-l", target)
        if done:
            problems.append(f"umount -l {target}: {done}")
    for cgroup in sorted(after.cgroups - before.cgroups, key=len, reverse=True):
        problems += _rmdir_tree(cgroup)
    for name in sorted(after.netns - before.netns):
        done = _run("ip", "netns", "delete", name)
        if done:
            problems.append(f"ip netns delete {name}: {done}")
    for name in sorted(after.links - before.links):
        done = _run("ip", "link", "delete", name)
        if done and "Cannot find device" not in done:
            problems.append(f"ip link delete {name}: {done}")
    for program in sorted(after.programs - before.programs):
        problems += _detach(program)
    return problems


# -- what is looked at ---------------------------------------------------------------------------


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _mounts(markers: Sequence[str]) -> Iterable[str]:
    needles = ("corral", *markers)
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            fields, _, rest = line.partition(" - ")
            target = _unescape(fields.split()[4])
            fstype, source = ([*rest.split(), "", ""])[:2]
            source = _unescape(source)
            if target.startswith("/tmp") or any(n in target or n in source for n in needles):
                yield f"{target} ({fstype} from {source})"


def _cgroups() -> Iterable[str]:
    def walk(path: str, depth: int) -> Iterable[str]:
        try:
            entries = list(os.scandir(path))
        except OSError:
            return
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False):
                continue
            if CONTAINER_NAME.match(entry.name):
                yield entry.path
            if depth < CGROUP_DEPTH:
                yield from walk(entry.path, depth + 1)

    return walk(CGROUP_ROOT, 1)


def _netns() -> Iterable[str]:
    try:
        return os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []


def _links() -> Iterable[str]:
    return [n for n in os.listdir("/sys/class/net") if n.startswith(("veth", "corral"))]


def _programs() -> Iterable[str]:
    """corral's socket-shortcut programs attached to the cgroup2 root ("name id")."""
    from corral.engine.network import shortcut

    root = shortcut.cgroup2_root()
    if root is None:
        return []
    return [f"{name} {prog_id}" for name, prog_id, _ in shortcut.attached(root)]


def _detach(program: str) -> list[str]:
    from corral.engine.network import shortcut
    from corral.errors import CorralError

    name, prog_id = program.split()
    root = shortcut.cgroup2_root()
    if root is None:
        return []
    try:
        shortcut.detach_program(root, name, int(prog_id))
    except CorralError as err:
        return [f"detach {program}: {err}"]
    return []


def _pids() -> list[int]:
    return [int(n) for n in os.listdir("/proc") if n.isdigit()]


def _processes(markers: Sequence[str]) -> Iterable[Process]:
    me = os.getpid()
    own_pidns = os.readlink("/proc/self/ns/pid")
    table = {}
    for pid in _pids():
        if pid == me:
            continue
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                state, ppid = f.read().rpartition(b")")[2].split()[:2]
            if state == b"Z":  # a zombie holds nothing; its parent reaps it
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
            pidns = os.readlink(f"/proc/{pid}/ns/pid")
            with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="replace") as text:
                cgroups = text.read()
        except (OSError, ValueError):  # gone, or a kernel thread
            continue
        table[pid] = (int(ppid), cmdline, pidns, cgroups)

    def descends_from_me(pid: int) -> bool:
        seen = set()
        while pid in table and pid not in seen:
            seen.add(pid)
            pid = table[pid][0]
        return pid == me

    for pid, (_ppid, cmdline, pidns, cgroups) in table.items():
        why = None
        if descends_from_me(pid):
            why = "started by the test, still running"
        elif any(m in cmdline for m in markers):
            why = "mentions the test's files"
        elif pidns != own_pidns:
            why = f"in PID namespace {pidns}"
        else:
            for line in cgroups.splitlines():
                path = line.split(":", 2)[-1]
                if any(CONTAINER_NAME.match(part) for part in path.split("/")):
                    why = f"in cgroup {path}"
                    break
        if why:
            yield Process(pid, cmdline, why)


def _rmdir_tree(path: str) -> list[str]:
    problems = []
    for dirpath, _dirs, _files in sorted(os.walk(path, topdown=False), key=lambda w: -len(w[0])):
        try:
            os.rmdir(dirpath)
        except FileNotFoundError:
            pass
        except OSError as err:
            problems.append(f"rmdir {dirpath}: {err.strerror}")
    return problems


def _run(*argv: str) -> str:
    """Run a command; '' when it worked, else its error output."""
    done = subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, check=False
    )
    return "" if done.returncode == 0 else (done.stderr.strip() or f"exit {done.returncode}")
