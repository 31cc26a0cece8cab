"""What the monitor forks a helper for: finish a run, restart a container, run a probe.

Each runs in a child of the monitor, imports what it needs (the engine, the runtime), opens
its own database connection, does one thing and exits; the monitor's own memory never holds
the runtime.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.engine.containers.manager import Containers


def run(root: str, runtime_root: str, kind: str, container_id: str, arg: str) -> int:
    from corral.engine.engine import Engine

    containers = Engine(root, runtime_root=runtime_root).containers
    if kind == "finish":
        containers.finish(container_id, int(arg), wait_log=0.0)
    elif kind == "restart":
        containers.restart_now(container_id)
    elif kind == "probe":
        probe(containers, container_id, int(arg))
    return 0


def probe(containers: Containers, container_id: str, waiter: int) -> None:
    """Run the container's healthcheck once, in the container, and record the result."""
    from corral.engine.db import transaction
    from corral.engine.monitor import health, state
    from corral.engine.monitor.logfile import timestamp

    row = state.get(containers.db, container_id)
    check = row.config.healthcheck if row is not None else None
    if row is None or check is None or row.waiter != waiter or row.status != "running":
        return
    start = time.time()
    code, output = _exec(containers, container_id, check.argv(), check.timeout)
    result: health.Probe = {
        "Start": timestamp(start), "End": timestamp(), "ExitCode": code, "Output": output,
    }  # fmt: skip
    in_start_period = time.time() - row.started_at < check.start_period
    with transaction(containers.db):
        row = state.get(containers.db, container_id)
        if row is None or row.waiter != waiter or not row.live:
            return
        now = row.health or health.initial()
        state.update(containers.db, container_id,
                     health=health.apply(now, result, check, in_start_period))  # fmt: skip


def _exec(containers: Containers, container_id: str, argv: list[str], timeout: float
          ) -> tuple[int, str]:  # fmt: skip
    """(exit code, output) of ``argv`` run in the container; -1 and docker's message when it
    takes longer than ``timeout`` (the probe is then killed)."""
    import select
    import signal

    out = os.memfd_create("probe", os.MFD_CLOEXEC)
    pid_file = str(containers.dir(container_id) / "probe.pid")
    child = os.fork()
    if child == 0:  # pragma: no cover - the probe's runtime side
        code = 126
        try:
            null = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(out, 1)
            os.dup2(out, 2)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            code = containers.runtime_api().exec(container_id, argv, pid_file=pid_file)
        except BaseException as err:
            os.write(2, f"{err}\n".encode())
        finally:
            os._exit(code & 0xFF)
    pidfd = os.pidfd_open(child)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    timed_out = not poller.poll(int(timeout * 1000))
    if timed_out:
        try:
            with open(pid_file) as f:
                os.kill(int(f.read().strip()), signal.SIGKILL)
        except (OSError, ValueError):
            pass
    os.close(pidfd)
    _, status = os.waitpid(child, 0)
    try:
        os.unlink(pid_file)
    except FileNotFoundError:
        pass
    os.lseek(out, 0, os.SEEK_SET)
    output = os.read(out, 8192).decode(errors="replace")
    os.close(out)
    if timed_out:
        return -1, f"Health check exceeded timeout ({timeout:g}s)"
    return os.waitstatus_to_exitcode(status) & 0xFF, output
