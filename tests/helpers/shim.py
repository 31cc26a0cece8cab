"""The test session plays containerd-shim's part: a child subreaper that reaps containers.

Processes a container leaves behind when their parent exits (a detached ``exec``'d process,
an init whose ``create`` has returned) are re-parented to the nearest subreaper, as under
containerd, whose shim reaps them at once. Without one they go to the machine's PID 1, which on
the test VMs reaps only now and then; a container's init cannot finish dying until every
process of its pid namespace has been reaped, so ``state`` would say "running" for seconds
after ``kill``.

Only zombies that lived in another pid namespace are reaped here (their /proc/PID/status
"NSpid:" has more than one number): the corral-runc and tool processes the tests start with
``subprocess`` stay in ours, and their Popen objects keep collecting them themselves.
"""

from __future__ import annotations

import os
import threading

PR_SET_CHILD_SUBREAPER = 36


def _container_zombies() -> list[int]:
    me = str(os.getpid())
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                status = f.read()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if (
            fields.get("PPid", "").strip() == me
            and fields.get("State", "").strip().startswith("Z")
            and len(fields.get("NSpid", "").split()) > 1
        ):
            found.append(int(name))
    return found


def start_reaper(interval: float = 0.05) -> threading.Event:
    """Become a subreaper and reap orphaned container processes until the event is set."""
    from corral import sys as k

    k.prctl(PR_SET_CHILD_SUBREAPER, 1)
    stop = threading.Event()

    def loop() -> None:
        # A zombie is reaped only once it has stayed one for a second: our own children in a
        # container's pid namespace (an exec's process, which Runtime.exec waits for itself)
        # are zombies for a moment only, and reaping them first made exec report 255.
        seen: dict[int, int] = {}
        patience = max(1, int(1.0 / interval))
        while not stop.wait(interval):
            zombies = _container_zombies()
            seen = {pid: seen.get(pid, 0) + 1 for pid in zombies}
            for pid, scans in seen.items():
                if scans < patience:
                    continue
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass

    threading.Thread(target=loop, name="corral-test-reaper", daemon=True).start()
    return stop
