"""OCI hooks: programs the runtime runs at fixed points of a container's life.

See the runtime-spec, config.md#posix-platform-hooks.

=================  ===========================  ==================================================
hook               who runs it, where           when
=================  ===========================  ==================================================
prestart           runtime, runtime namespaces  after the container's namespaces and mounts exist
createRuntime      runtime, runtime namespaces  right after prestart (its modern name)
createContainer    init, container namespaces   after mounts, before pivot_root
startContainer     init, container namespaces   on ``start``, just before the user's program
poststart          runtime, runtime namespaces  after ``start`` let the program run
poststop           runtime, runtime namespaces  on ``delete``
=================  ===========================  ==================================================

Each hook gets the container's state JSON on stdin, runs with exactly its ``args`` and ``env``
and must finish within ``timeout`` seconds. A failing prestart/createRuntime/createContainer/
startContainer hook fails the operation; a failing poststart or poststop hook is only a warning.

Hooks are started with ``os.posix_spawn`` rather than ``subprocess``: that module costs more to
import than the whole runtime needs otherwise.
"""

from __future__ import annotations

import os
import select

from corral import _json
from corral.errors import HookError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_OUTPUT_LIMIT = 4096


def run_hooks(hooks: list[dict[str, Any]], state: dict[str, Any], kind: str) -> None:
    """Run each hook of ``kind`` in order; the first failure raises HookError."""
    payload = _json.dumps(state).encode()
    for index, hook in enumerate(hooks):
        run_hook(hook, payload, f"hooks.{kind}[{index}]")


def run_hook(hook: dict[str, Any], stdin: bytes, where: str) -> None:
    path = hook["path"]
    args = hook.get("args") or [path]
    env = dict(item.split("=", 1) for item in hook.get("env") or [] if "=" in item)
    timeout = hook.get("timeout")
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    try:
        pid = os.posix_spawn(
            path,
            args,
            env,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, in_r, 0),
                (os.POSIX_SPAWN_DUP2, out_w, 1),
                (os.POSIX_SPAWN_DUP2, out_w, 2),
            ],
        )
    except OSError as err:
        for fd in (in_r, in_w, out_r, out_w):
            os.close(fd)
        raise HookError(f"{where}: cannot run {path}: {err.strerror}") from None
    os.close(in_r)
    os.close(out_w)
    try:
        os.write(in_w, stdin)
    except BrokenPipeError:
        pass  # a hook need not read its stdin
    finally:
        os.close(in_w)
    output, timed_out = _collect(pid, out_r, timeout)
    if timed_out:
        raise HookError(f"{where}: {path} timed out after {timeout}s")
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        said = output.decode(errors="replace").strip().replace("\n", " | ")
        raise HookError(f"{where}: {path} failed ({how})" + (f": {said}" if said else ""))


def _collect(pid: int, out_r: int, timeout: int | None) -> tuple[bytes, bool]:
    """Read the hook's output until it exits; kill it if the timeout passes first.

    The hook's exit (seen through a pidfd) ends the wait, not the end of its output: a hook
    that leaves a background child holding the pipe must not hold the runtime up.
    """
    deadline = None if timeout is None else _now() + timeout
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    poller.register(out_r, select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    chunks: list[bytes] = []
    os.set_blocking(out_r, False)
    try:
        while True:
            wait_ms = None if deadline is None else max(0, int((deadline - _now()) * 1000))
            ready = {fd for fd, _ in poller.poll(wait_ms)}
            if not ready:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                return b"".join(chunks)[:_OUTPUT_LIMIT], True
            if out_r in ready and not _drain(out_r, chunks):
                poller.unregister(out_r)
            if pidfd in ready:
                _drain(out_r, chunks)
                return b"".join(chunks)[:_OUTPUT_LIMIT], False
    finally:
        os.close(out_r)
        os.close(pidfd)


def _drain(fd: int, chunks: list[bytes]) -> bool:
    """Read what is there now; False once the writer side is closed."""
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return True
        if not data:
            return False
        if sum(map(len, chunks)) < _OUTPUT_LIMIT:
            chunks.append(data)


def _now() -> float:
    import time

    return time.monotonic()
