"""The verbs on a container that exists: start, kill, delete (runtime.md "Operations").

containerd calls ``corral-runc`` four times per container, and three of those calls land here
(with ``state``, which is corral.runtime.state's). Each is a few system calls, so what they
cost is mostly the interpreter's start and the imports; this module keeps that small:

- no ``os`` (``posix`` is the C module under it, loaded with the interpreter; corral._posix
  has the path helpers) and no ``from __future__ import annotations``: 1.2 ms together;
- nothing of ``create``'s machinery (corral.runtime.lifecycle, the spec, the init): that is
  lifecycle.py, which imports this module for the clean-up of a failed create;
- the cgroup managers only when there is a cgroup to act on, hooks only when there are hooks.

corral.runtime.api.Runtime is the one way in; cli/runc.py calls it.
"""

import posix

from corral import _posix
from corral.errors import CorralError, HookError, NotFoundError, StateError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from corral.runtime.state import Container, StateStore

# -- start ---------------------------------------------------------------------------------


def start(store: "StateStore", container_id: str) -> "Container":
    """Let a created container's launcher exec the program, then run poststart hooks.

    The launcher waits on a pipe (corral.runtime.init.start_pipe); we open it through
    /proc/<init>/fd/N and write to it. The init is held by a pidfd from before that, so a
    program that exits at once (and is reaped by whoever inherited it) cannot make its pid
    vanish under us, and a pid reused meanwhile is told apart. Removing the ``created`` marker
    is the claim: of two racing starts, one wins.
    """
    container = store.load(container_id)
    container.require("start")
    try:
        pidfd = posix.pidfd_open(container.pid)
    except ProcessLookupError:
        raise StateError("cannot start a container that has stopped") from None
    try:
        if not container.init_alive():
            raise StateError("cannot start a container that has stopped")
        hooks = container.config.get("hooks") or {}
        if hooks.get("startContainer"):
            from corral.runtime.exec import run_start_hooks

            run_start_hooks(container, hooks["startContainer"], container.hook_state("created"))
        try:
            posix.unlink(container.created_marker)
        except FileNotFoundError:
            raise StateError("cannot start an already running container") from None
        _release(pidfd, container.pid, int(container.data["start_fd"]))
    finally:
        posix.close(pidfd)
    from corral.runtime import log

    log.debug(f"started container {container_id} pid {container.pid}")
    poststart = hooks.get("poststart") or []
    if poststart:
        warn_hooks(poststart, container.hook_state("running"), "poststart")
    return container


def _release(pidfd: int, pid: int, start_fd: int) -> None:
    """Write 8 bytes to the pipe the init's launcher waits on (its fd ``start_fd``)."""
    import select

    stopped = "cannot start a container that has stopped"
    try:  # non-blocking: with no reader left (the init died) a FIFO open fails at once
        flags = posix.O_WRONLY | posix.O_NONBLOCK | posix.O_CLOEXEC
        fd = posix.open(f"/proc/{pid}/fd/{start_fd}", flags)
    except OSError:  # ENOENT: gone, or no such fd; ENXIO: nobody reads
        raise StateError(stopped) from None
    try:
        poller = select.poll()  # the pid is our init's only while our init lives
        poller.register(pidfd, select.POLLIN)
        if poller.poll(0) or not _posix.is_fifo(posix.fstat(fd).st_mode):
            raise StateError(stopped)
        posix.write(fd, bytes(8))
    finally:
        posix.close(fd)


def warn_hooks(hooks: "list[dict[str, Any]]", state: "dict[str, Any]", kind: str) -> None:
    """poststart and poststop failures are warnings (runtime.md): log and go on."""
    from corral import _json
    from corral.runtime.hooks import run_hook

    payload = _json.dumps(state).encode()
    for index, hook in enumerate(hooks):  # the remaining hooks run after a failed one
        try:
            run_hook(hook, payload, f"hooks.{kind}[{index}]")
        except HookError as err:
            from corral.runtime import log

            log.warning(str(err))


# -- kill ------------------------------------------------------------------------------------


def kill(store: "StateStore", container_id: str, sig: int, all_processes: bool = False) -> None:
    """Signal the init, or with ``all_processes`` every process of the container's cgroup.

    ``--all`` also succeeds on a stopped container, as runc's does (containerd's shim calls it
    after the init died, to reach what the init left behind).
    """
    container = store.load(container_id)
    status = container.require("kill --all" if all_processes else "kill")
    if all_processes and container.data.get("cgroup"):
        from corral import cgroups

        manager = cgroups.from_state(container.data["cgroup"])
        if status != "stopped" or manager.exists():
            manager.kill(sig)
        return
    if status == "stopped":
        return
    try:
        pidfd = posix.pidfd_open(container.pid)
    except ProcessLookupError:
        raise StateError("container not running") from None
    try:
        # A pidfd cannot hit a recycled pid; check it is still our init, then signal.
        if not container.init_alive():
            raise StateError("container not running")
        import _signal

        _signal.pidfd_send_signal(pidfd, sig)
    finally:
        posix.close(pidfd)


# -- delete ----------------------------------------------------------------------------------


def delete(store: "StateStore", container_id: str, force: bool = False) -> None:
    try:
        container = store.load(container_id)
    except NotFoundError:
        path = store.dir(container_id)
        if _posix.isdir(path):  # a create killed before it wrote its state
            _rmtree(path)
            if force:
                return
        if force:
            return
        raise
    except StateError:  # a state file this runtime cannot read
        if not force:
            raise
        _rmtree(store.dir(container_id))
        return
    status = container.status() if force else container.require("delete")
    # A stopped container may still have processes: without a pid namespace of its own the
    # init's children outlive it. They go too (as in runc), before the cgroup is removed.
    _stop_everything(container, init_alive=status != "stopped")
    hooks = (container.config.get("hooks") or {}).get("poststop") or []
    if hooks:
        warn_hooks(hooks, container.hook_state("stopped"), "poststop")
    destroy(container)


def _stop_everything(container: "Container", init_alive: bool = True) -> None:
    """SIGKILL every process of the container and wait until they are gone."""
    cg = container.data.get("cgroup")
    if cg:
        from corral import cgroups

        if not init_alive and cgroups.has_processes(cg) is False:
            return  # the common case: nothing left to kill, and no manager to load
        manager = cgroups.from_state(cg)
        if manager.exists() and (init_alive or manager.pids()):
            manager.kill(9)
    pid = container.pid
    if init_alive and pid and container.init_alive():
        kill_and_reap(pid)


def kill_and_reap(pid: int) -> None:
    """SIGKILL ``pid`` and wait for it to die (reaping it if it is our child)."""
    import select

    try:
        pidfd = posix.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        import _signal

        try:
            _signal.pidfd_send_signal(pidfd, 9)
        except ProcessLookupError:
            return
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        poller.poll(10_000)
        try:
            posix.waitpid(pid, posix.WNOHANG)
        except ChildProcessError:
            pass
    finally:
        posix.close(pidfd)


def destroy(container: "Container") -> None:
    """Remove what the container left on the host: its mounts in a mount namespace it shared,
    its cgroups and its state directory."""
    if container.data.get("rootfs_stack") is not None:
        _detach_rootfs(container)
    cg = container.data.get("cgroup")
    if cg:
        from corral import cgroups

        _leave_last_words(container, cg)
        if cgroups.remove_if_empty(cg, "/" + cgroups.DEFAULT_PARENT):
            _rmtree(container.dir)
            return
        manager = cgroups.from_state(cg)
        try:
            manager.destroy()
        except CorralError:
            pids = manager.pids() if manager.exists() else []
            if pids:
                manager.kill(9)
            manager.destroy()
        manager.prune_parent("/" + cgroups.DEFAULT_PARENT)
    _rmtree(container.dir)


def _leave_last_words(container: "Container", cg: "dict[str, Any]") -> None:
    """Before the cgroup goes, hand its final OOM count to any ``events`` watching it.

    On cgroup v2, the count lives in the cgroup's memory.events, which dies with the rmdir; a
    watcher woken by the OOM but not yet scheduled (the init is reaped and its cgroup removed
    within a millisecond) would find nothing left to read. v1's eventfd keeps its count."""
    if cg.get("mode") not in ("v2", "systemd"):
        return
    from corral.cgroups._base import LAST_WORDS_PREFIX

    try:
        names = [n for n in posix.listdir(container.dir) if n.startswith(LAST_WORDS_PREFIX)]
    except FileNotFoundError:
        return
    if not names:
        return
    from corral import cgroups
    from corral.cgroups._base import leave_last_words

    try:
        memory_dir = cgroups.from_state(cg).memory_dir()
    except CorralError:
        return  # no memory controller: nothing for an OOM watcher
    leave_last_words(memory_dir, container.dir, names)


def _detach_rootfs(container: "Container") -> None:
    """A container without a mount namespace of its own made its mounts in the caller's or in
    one it joined by path: detach them there (runc leaves them behind)."""
    from corral.runtime.rootfs import detach_above

    rootfs, keep = container.data["rootfs"], int(container.data["rootfs_stack"])
    namespaces = (container.config.get("linux") or {}).get("namespaces") or []
    joined = next((ns["path"] for ns in namespaces if ns["type"] == "mount"), None)
    if joined is None:
        detach_above(rootfs, keep)
        return
    try:
        fd = posix.open(joined, posix.O_RDONLY | posix.O_CLOEXEC)
    except OSError:
        return  # the namespace is gone, and its mounts with it
    from corral import sys as k

    try:
        pid = posix.fork()
        if pid == 0:
            try:
                k.setns(fd, k.CLONE_NEWNS)
                detach_above(rootfs, keep)
                posix._exit(0)
            except BaseException:
                posix._exit(1)
        _, status = posix.waitpid(pid, 0)
    finally:
        posix.close(fd)
    if status != 0:
        from corral.runtime import log

        log.warning(f"could not unmount the rootfs {rootfs} in {joined}")


def _rmtree(path: str) -> None:
    try:
        names = posix.listdir(path)
    except FileNotFoundError:
        return
    for name in names:
        try:
            posix.unlink(f"{path}/{name}")
        except FileNotFoundError:
            pass
    try:
        posix.rmdir(path)
    except FileNotFoundError:
        pass
