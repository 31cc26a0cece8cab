"""``import corral``: run a command in a container from Python, with limits and a timeout.

::

    import corral

    result = corral.run("py", ["python3", "-c", untrusted_code],
                        memory="64m", pids=64, cpus=0.5, timeout=5, read_only=True)
    result.exit_code, result.stdout, result.stderr, result.oom_killed, result.timed_out

``run`` is the whole life of a container in one call, in this process: create it from the image
(the same engine and store as the ``corral`` CLI: ``root=``, else ``$CORRAL_ROOT``, else
/var/lib/corral), start it with its stdio on pipes of ours, feed ``stdin``, collect stdout and
stderr, SIGKILL everything in it when ``timeout`` passes, wait, and remove the container and
its anonymous volumes, whatever happened. No other interpreter starts: the runtime is a
library here (corral.runtime), so a warm Python process pays only for the container itself.

``create`` gives a :class:`Container` for longer lives (``start``, ``wait``, ``logs``,
``exec``, ``stop``, ``remove``); used as a context manager it is removed on the way out, even
when the block raises. Errors are those of :mod:`corral.errors` (a bad option is a
``UsageError`` naming it, with the CLI's words).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from corral.errors import UsageError

if TYPE_CHECKING:
    from types import TracebackType

    from corral.engine.containers.manager import Record
    from corral.engine.containers.spec import RunOptions
    from corral.engine.engine import Engine

Volumes = Sequence[str] | Mapping[str, str]


@dataclass(frozen=True)
class Result:
    """What :func:`run` saw: the exit code (128+N if killed by signal N) and the output."""

    exit_code: int
    stdout: bytes
    stderr: bytes
    oom_killed: bool
    timed_out: bool
    duration: float


def options(
    cmd: Sequence[str],
    *,
    memory: str | int | None = None,
    pids: int | None = None,
    cpus: float | None = None,
    network: str | None = None,
    env: Mapping[str, str] | None = None,
    volumes: Volumes | None = None,
    read_only: bool = False,
    user: str | None = None,
    workdir: str | None = None,
) -> RunOptions:
    """The RunOptions for these keywords, checked with the CLI's rules and messages."""
    from corral.cli import run_flags
    from corral.engine.containers.spec import MountOption, RunOptions
    from corral.engine.network.model import NetworkRequest

    if network is not None and (not isinstance(network, str) or not network):
        raise UsageError(f"network={network!r}: None (loopback only), 'bridge' or a network name")
    if isinstance(cmd, str):
        raise UsageError("cmd: give a list of arguments, e.g. ['sh', '-c', 'echo hi']")
    opts = RunOptions(
        command=list(cmd),
        env=[f"{k}={v}" for k, v in (env or {}).items()],
        user=user,
        workdir=workdir,
        read_only=read_only,
        # A sandbox has no way out unless asked: loopback only (the CLI defaults to bridge).
        network=NetworkRequest(network or "none"),
    )
    if memory is not None:
        opts.memory = memory if isinstance(memory, int) else run_flags.parse_size(memory, "memory")
    if pids is not None:
        opts.pids_limit = int(pids)
    if cpus is not None:
        opts.cpus = run_flags.parse_cpus(str(cpus))
    specs = [f"{k}:{v}" for k, v in volumes.items()] if isinstance(volumes, Mapping) else volumes
    opts.mounts = [run_flags.parse_volume(v) for v in specs or []]
    if read_only and not any(m.target == "/tmp" for m in opts.mounts):
        opts.mounts.append(MountOption("tmpfs", "/tmp", mode=0o1777, options=("exec",)))
    run_flags.check(opts)
    return opts


def run(
    image: str,
    cmd: Sequence[str],
    *,
    memory: str | int | None = None,
    pids: int | None = None,
    cpus: float | None = None,
    timeout: float | None = None,
    network: str | None = None,
    stdin: bytes = b"",
    env: Mapping[str, str] | None = None,
    volumes: Volumes | None = None,
    read_only: bool = False,
    user: str | None = None,
    workdir: str | None = None,
    root: str | os.PathLike[str] | None = None,
    engine: Engine | None = None,
) -> Result:
    """Run ``cmd`` in a new container of ``image``; its Result. The container is gone after."""
    from corral.engine.engine import Engine

    opts = options(cmd, memory=memory, pids=pids, cpus=cpus, network=network, env=env,
                   volumes=volumes, read_only=read_only, user=user, workdir=workdir)  # fmt: skip
    engine = engine or Engine(root)
    containers = engine.containers
    began = time.monotonic()
    record = containers.create(image, opts)
    try:
        return _run_captured(engine, record, stdin, timeout, began)
    finally:
        containers.remove(record.id, force=True, volumes=True)


def _run_captured(
    engine: Engine, record: Record, stdin: bytes, timeout: float | None, began: float
) -> Result:
    """Start the created container with pipes for stdio; pump them; wait; tear down."""
    from corral.runtime import control, lifecycle
    from corral.runtime.ops import _manager
    from corral.runtime.stdio import Pipes, close

    containers = engine.containers
    store = containers.runtime()
    path = containers._prepare(record)  # rootfs mounted, netns made, volumes seeded
    code: int | None = None
    timed_out = oom = False
    out = err = b""
    try:
        pipes = Pipes()
        copts = lifecycle.CreateOptions()
        copts.stdio = pipes.inner
        try:
            created = lifecycle.create(store, record.id, str(path), copts)
        except BaseException:
            pipes.close()
            raise
        finally:
            pipes.handed_over()
        pid = created.container.pid
        try:
            control.start(store, record.id)
        except BaseException:
            close(pipes.ours)
            raise
        deadline = None if timeout is None else began + timeout
        out, err, timed_out = _pump(pipes.ours, stdin, deadline)
        if timed_out:
            import contextlib

            from corral.errors import CorralError

            with contextlib.suppress(CorralError):
                control.kill(store, record.id, 9, True)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code
        try:
            oom = _manager(store.load(record.id)).oom_kill_count() > 0
        except Exception:  # the cgroup is gone or has no memory controller
            oom = False
    finally:
        containers.release(record.id)  # runtime state, mounts, network: the row goes in rm
    return Result(code, out, err, oom, timed_out, time.monotonic() - began)


def _pump(
    fds: tuple[int, int, int], stdin: bytes, deadline: float | None
) -> tuple[bytes, bytes, bool]:
    """Write ``stdin`` and read stdout/stderr until both close or ``deadline`` passes."""
    import selectors

    in_w, out_r, err_r = fds
    chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
    sel = selectors.DefaultSelector()
    sel.register(out_r, selectors.EVENT_READ)
    sel.register(err_r, selectors.EVENT_READ)
    pending = memoryview(stdin)
    if pending:
        os.set_blocking(in_w, False)
        sel.register(in_w, selectors.EVENT_WRITE)
    else:
        os.close(in_w)
        in_w = -1
    timed_out = False
    try:
        while len(sel.get_map()) > (1 if in_w >= 0 else 0) or (in_w >= 0 and pending):
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                timed_out = True
                break
            for key, _ in sel.select(wait):
                fd = int(key.fd)
                if fd == in_w:
                    try:
                        pending = pending[os.write(in_w, pending[:65536]) :]
                    except (BrokenPipeError, BlockingIOError) as error:
                        if isinstance(error, BlockingIOError):
                            continue
                        pending = memoryview(b"")
                    if not pending:
                        sel.unregister(in_w)
                        os.close(in_w)
                        in_w = -1
                    continue
                data = os.read(fd, 65536)
                if data:
                    chunks[fd].append(data)
                else:
                    sel.unregister(fd)
            if len(sel.get_map()) == 0:
                break
    finally:
        sel.close()
        for fd in (in_w, out_r, err_r):
            if fd >= 0:
                os.close(fd)
    return b"".join(chunks[out_r]), b"".join(chunks[err_r]), timed_out


class Container:
    """A container of the engine, for more than one call: see :func:`create`."""

    def __init__(self, engine: Engine, record: Record) -> None:
        self.engine = engine
        self.id = record.id
        self.name = record.name

    def __repr__(self) -> str:
        return f"<Container {self.name} {self.id[:12]}>"

    @property
    def status(self) -> str:
        """created, running or exited."""
        containers = self.engine.containers
        return containers.status(containers.record(self.id)).state

    def start(self) -> None:
        """Start it in the background (its output goes to its log)."""
        containers = self.engine.containers
        containers.start_detached(containers.record(self.id))

    def wait(self, timeout: float | None = None) -> int:
        """Wait for it to exit; its exit code. TimeoutError after ``timeout`` seconds."""
        containers = self.engine.containers
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = containers.status(containers.record(self.id))
            if status.state == "exited":
                return status.exit_code if status.exit_code is not None else 255
            if status.state == "created":
                raise UsageError(f"container {self.name}: not started")
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"container {self.name} still running after {timeout} s")
            time.sleep(0.02)

    def logs(self) -> bytes:
        """What it wrote to stdout and stderr so far."""
        return b"".join(entry.data for entry in self.engine.containers.read_logs(self.id))

    def exec(self, cmd: Sequence[str]) -> int:
        """Run ``cmd`` inside the running container (our stdio); its exit code."""
        return self.engine.containers.runtime_api().exec(self.id, list(cmd))

    def stop(self, timeout: float = 10.0) -> None:
        self.engine.containers.stop(self.id, timeout=timeout)

    def remove(self, force: bool = True) -> None:
        """Remove it and its anonymous volumes (``force``: even while it runs)."""
        self.engine.containers.remove(self.id, force=force, volumes=True)

    def __enter__(self) -> Container:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        from corral.errors import NotFoundError

        try:
            self.remove(force=True)
        except NotFoundError:
            pass


def create(
    image: str,
    cmd: Sequence[str],
    *,
    name: str | None = None,
    root: str | os.PathLike[str] | None = None,
    engine: Engine | None = None,
    **kwargs: object,
) -> Container:
    """A created (not started) container; keywords as :func:`run` (memory, pids, cpus...)."""
    from corral.engine.engine import Engine

    opts = options(cmd, **kwargs)  # type: ignore[arg-type]
    engine = engine or Engine(root)
    return Container(engine, engine.containers.create(image, opts, name=name))
