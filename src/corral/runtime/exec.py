"""``exec``: start another process inside a running container (runc's "tenant" process).

The new process joins what the container's init already has: its cgroup, then each of its
namespaces through /proc/<init>/ns/*, the mount namespace last (joining it moves our root into
the container's). The pid namespace is joined by the parent just before fork, as in create.

Against the CVE-2019-5736 family: the child is non-dumpable from birth (the parent clears its
own dumpable flag around the fork, and the child inherits it), so other processes of the
container can neither ptrace it nor open its /proc/<pid>/exe (the host's Python) or its fds
while it is still the runtime; and its last execve goes through a sealed in-memory launcher
(corral.runtime.trampoline), so the container's program never runs with the host's Python as
/proc/self/exe.
"""

from __future__ import annotations

import os

from corral import sys as k
from corral.errors import ContainerInitError, CorralError, HookError, StateError, UsageError
from corral.runtime import messages as msg

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from corral.runtime.state import Container
    from corral.sys.seccomp import Profile


def process_like(
    base: dict[str, Any],
    args: list[str],
    *,
    env: list[str] | None = None,
    cwd: str | None = None,
    user: tuple[int, int] | None = None,
    terminal: bool = False,
    no_new_privs: bool = False,
) -> dict[str, Any]:
    """The process of an exec, as runc builds it: the container's own (``base``: its user,
    capabilities, rlimits, AppArmor profile, oomScoreAdj) with ``args``, ``env`` added to its
    environment, and the cwd, user, terminal and no_new_privs given."""
    process: dict[str, Any] = {
        "args": list(args),
        "env": list(base.get("env") or []) + list(env or []),
        "cwd": cwd or base.get("cwd") or "/",
        "terminal": terminal,
        "user": dict(base.get("user") or {"uid": 0, "gid": 0}),
        "noNewPrivileges": no_new_privs or bool(base.get("noNewPrivileges")),
    }
    if user is not None:
        process["user"] = {"uid": user[0], "gid": user[1]}
    for key in ("capabilities", "rlimits", "apparmorProfile", "oomScoreAdj"):
        if key in base:
            process[key] = base[key]
    return process


def run_exec(
    container: Container,
    process: dict[str, Any],
    *,
    detach: bool = False,
    console_socket: str | None = None,
    pid_file: str | None = None,
    preserve_fds: int = 0,
    ignore_paused: bool = False,
) -> int:
    """Start ``process`` in ``container``; wait for it unless ``detach``. Returns its exit code.

    ``process`` is a runtime-spec process object (what ``exec --process`` reads); a detached
    one with a terminal needs ``console_socket`` (runc's rules).
    """
    import _socket

    from corral.runtime.lifecycle import _connect_console, _send_fd, wait_and_forward
    from corral.runtime.lsm import check
    from corral.runtime.state import write_atomic

    check(process, {})
    if process.get("terminal") and not detach and not console_socket:
        from corral.runtime.console import terminal_size

        size = terminal_size()  # the pty has our size from the start (runc's consoleSize)
        if size is not None and "consoleSize" not in process:
            process = {**process, "consoleSize": {"height": size[0], "width": size[1]}}
    if process.get("terminal") and detach and not console_socket:
        raise UsageError("cannot allocate tty if runc will detach without setting console socket")
    if console_socket and not (process.get("terminal") and detach):
        raise UsageError("cannot use console socket if runc will not detach or allocate tty")
    container.require("exec --ignore-paused" if ignore_paused else "exec")
    seccomp = (container.config.get("linux") or {}).get("seccomp")
    profile = None
    if seccomp is not None:
        from corral.runtime.seccomp import prepare as prepare_seccomp

        profile = prepare_seccomp(container.config)  # libseccomp loaded while the host is ours
    console = _connect_console(console_socket) if console_socket else None
    fds: list[int] = []
    pipes = None
    if not detach and not process.get("terminal"):  # pipes we copy, as runc in the foreground
        from corral.runtime import stdio

        pipes = stdio.Pipes(3 + preserve_fds)
        stdio.give_to_root(pipes.inner, container.config.get("linux") or {})
    try:
        joins, pid_fd = _namespace_fds(container, fds)
        procs, background = _cgroup_fds(container, fds)
        parent_sock, child_sock = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        # Rootless, joining the pid namespace needs CAP_SYS_ADMIN over its owner: the user
        # namespace must be joined first, so a first child does both and forks the process.
        stage = pid_fd is not None and bool(joins) and _has_userns(container) and os.geteuid() != 0
        if stage and not detach:
            k.prctl(k.PR_SET_CHILD_SUBREAPER, 1)  # to wait for our grandchild
        cgroup_fd = -1 if stage else _cgroup_to_be_born_in(container, fds)
        pid, born = _fork_joined(None if stage else pid_fd, fds, cgroup_fd)
        if pid == 0:
            if born:
                procs = []  # born in the container's cgroup: nothing to join
            parent_sock.close()
            for target, fd in enumerate(pipes.inner if pipes else ()):
                os.dup2(fd, target)  # the originals are above 2, and closed right below
            from corral.runtime.init import close_stray_fds

            keep = {child_sock.fileno(), *joins, *procs, (pid_fd or -1) if stage else -1}
            close_stray_fds(3 + preserve_fds, keep)
            if stage:
                _userns_stage(joins, pid_fd or -1, child_sock)
                joins = joins[1:]
            _child(process, child_sock, joins, procs, preserve_fds, seccomp, profile)
        child_sock.close()
        for path in background:  # a hybrid host's cgroup2 tree; no limits live there
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
                try:
                    os.write(fd, str(pid).encode())
                finally:
                    os.close(fd)
            except OSError:
                pass  # already gone, or a user-namespace stage pid: kill falls back to v1
        if pipes is not None:
            pipes.handed_over()
        pid, pty = _await_exec(parent_sock, pid, container)
    except BaseException:
        if pipes is not None:
            pipes.close()
        raise
    finally:
        for fd in fds:
            os.close(fd)
    if pid_file:
        write_atomic(os.path.abspath(pid_file), str(pid).encode())
    if pty is not None and console is not None:
        _send_fd(console, pty, "/dev/ptmx")
        os.close(pty)
        pty = None
    if console is not None:
        console.close()
    if detach:
        return 0
    return wait_and_forward(pid, pty, pipes.ours if pipes else None)


def run_start_hooks(
    container: Container, hooks: list[dict[str, Any]], state: dict[str, Any]
) -> None:
    """Run the startContainer hooks "in the container namespace" (runtime-spec), for ``start``.

    The init is the sealed launcher by then, so they run in a child made like an exec'd
    process: in the container's cgroups and namespaces (the pid namespace too, when we may join
    it), as the container's process user with its capabilities, non-dumpable; the hook's path
    resolves in the container's root. A failing hook raises HookError and the program never
    starts (``start`` fails, as runc's does).
    """
    import _socket

    fds: list[int] = []
    try:
        joins, pid_fd = _namespace_fds(container, fds)
        procs, _background = _cgroup_fds(container, fds)
        parent_sock, child_sock = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        rootless = _has_userns(container) and os.geteuid() != 0
        pid, _born = _fork_joined(None if rootless else pid_fd, fds)
        if pid == 0:
            parent_sock.close()
            process = container.config.get("process") or {}
            _hook_child(process, child_sock, joins, procs, hooks, state)
        child_sock.close()
        try:
            said = parent_sock.recv(65536)
        finally:
            parent_sock.close()
            _, status = os.waitpid(pid, 0)
        if said.startswith(msg.ERROR):
            raise HookError(said[len(msg.ERROR) :].decode(errors="replace"))
        if status != 0:
            raise HookError(f"hooks.startContainer: the hook runner failed (status {status:#x})")
    finally:
        for fd in fds:
            os.close(fd)


def _hook_child(
    process: dict[str, Any], sock: Any, joins: list[int], procs: list[int],
    hooks: list[dict[str, Any]], state: dict[str, Any],
) -> NoReturn:
    import corral.spec.tables  # noqa: F401  (needed after the mount namespace is joined)
    from corral.runtime import hooks as hook_runner
    from corral.runtime.init import become_user, close_stray_fds

    try:
        close_stray_fds(3, {sock.fileno(), *joins, *procs})
        for fd in procs:
            os.write(fd, b"0")
        for fd in joins:
            k.setns(fd)
        become_user(process)
        hook_runner.run_hooks(hooks, state, "startContainer")
        os._exit(0)
    except CorralError as err:
        _send(sock, str(err))
    except OSError as err:
        _send(sock, f"hooks.startContainer: {err.strerror or err}")
    except BaseException as err:  # pragma: no cover - a bug; still never a traceback
        _send(sock, f"internal error in startContainer hooks: {type(err).__name__}: {err}")
    os._exit(1)


def _fork_joined(pid_fd: int | None, fds: list[int], cgroup_fd: int = -1) -> tuple[int, bool]:
    """fork(), the child born non-dumpable (no window after fork for the container's processes
    to open its /proc/<pid>/exe, the host's Python) and, given ``pid_fd``, in that pid
    namespace. The parent comes back to its own pid namespace and dumpable flag.

    Given ``cgroup_fd`` (a v2 cgroup), clone3 makes the child in that cgroup, where the kernel
    can (lifecycle.fork_born_joined). Returns (pid, whether the child was born there)."""
    mine = -1
    if pid_fd is not None:
        mine = os.open("/proc/self/ns/pid_for_children", os.O_RDONLY | os.O_CLOEXEC)
        fds.append(mine)
        k.setns(pid_fd, k.CLONE_NEWPID)
    dumpable = k.prctl(k.PR_GET_DUMPABLE)
    k.prctl(k.PR_SET_DUMPABLE, 0)
    pid = -1
    born = False
    try:
        if cgroup_fd >= 0:
            from corral.runtime.lifecycle import fork_born_joined

            pid = fork_born_joined(cgroup_fd)
            born = pid >= 0
        if not born:
            pid = os.fork()
    finally:
        if pid != 0:  # the parent (or a failed fork)
            if dumpable:
                k.prctl(k.PR_SET_DUMPABLE, dumpable)
            if mine >= 0:
                k.setns(mine, k.CLONE_NEWPID)
    return pid, born


def _cgroup_to_be_born_in(container: Container, fds: list[int]) -> int:
    """An fd of the container's v2 cgroup for clone3, or -1 (see lifecycle.born_in_cgroup).
    The process joins its cgroups at its first step anyway, so no memory limit stands in the
    way: born there, it is charged for the same pages."""
    cg = container.data.get("cgroup")
    if not cg:
        return -1
    from corral import cgroups
    from corral.runtime.lifecycle import cgroup_to_be_born_in

    return cgroup_to_be_born_in(cgroups.from_state(cg), fds, late_join=False)


def _has_userns(container: Container) -> bool:
    namespaces = (container.config.get("linux") or {}).get("namespaces") or []
    return any(ns["type"] == "user" for ns in namespaces)


def _userns_stage(joins: list[int], pid_fd: int, sock: Any) -> None:
    """First child of a rootless exec: join the user namespace (joins[0]), then the pid
    namespace, and fork; the grandchild returns to become the process, we report its pid."""
    try:
        k.setns(joins[0], k.CLONE_NEWUSER)
        k.setns(pid_fd, k.CLONE_NEWPID)
        pid = os.fork()
        if pid == 0:
            return
        sock.send(msg.PID + b"%d" % pid)
        os._exit(0)
    except CorralError as err:
        _send(sock, str(err))
    except OSError as err:
        _send(sock, f"{err.strerror or err}")
    os._exit(1)


def _namespace_fds(container: Container, fds: list[int]) -> tuple[list[int], int | None]:
    """Open the init's namespaces now, while we know the init is the one we started."""
    from corral.sys import NAMESPACE_FILES

    pid = container.pid
    order = ["user", "ipc", "uts", "network", "cgroup", "time", "mount"]
    if os.geteuid() == 0:
        # root joins the user namespace last: a network namespace the engine made belongs to
        # the host's user namespace, and only the host's root may join it (runc does the same)
        order = [*order[1:], "user"]
    kinds = {ns["type"] for ns in (container.config.get("linux") or {}).get("namespaces") or []}
    joins: list[int] = []
    pid_fd = None
    for kind in ["pid", *order]:
        if kind not in kinds:
            continue
        fd = os.open(f"/proc/{pid}/ns/{NAMESPACE_FILES[kind]}", os.O_RDONLY | os.O_CLOEXEC)
        fds.append(fd)
        if kind == "pid":
            pid_fd = fd
        elif kind == "time":
            continue  # a time namespace is joined for children only; exec'd processes keep ours
        else:
            joins.append(fd)
    if not container.init_alive():
        raise StateError("cannot exec in a stopped container")
    return joins, pid_fd


def _cgroup_fds(container: Container, fds: list[int]) -> tuple[list[int], list[str]]:
    """The files the exec'd process joins itself (opened now) and those we move it into."""
    cg = container.data.get("cgroup")
    if not cg:
        return [], []
    from corral import cgroups

    background, own = cgroups.from_state(cg).join_plan()
    out = []
    for path in own:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        fds.append(fd)
        out.append(fd)
    return out, background


def _child(
    process: dict[str, Any], sock: Any, joins: list[int], procs: list[int], preserve_fds: int,
    seccomp: dict[str, Any] | None = None, profile: Profile | None = None,
) -> NoReturn:
    # What the steps below import lazily must be loaded before the mount namespace is joined:
    # after that our root is the container's, where the host's Python modules are not.
    import _signal  # noqa: F401
    import fcntl  # noqa: F401
    import struct  # noqa: F401

    import corral.spec.tables  # noqa: F401
    from corral.runtime import init, lsm, trampoline

    if seccomp is not None:
        from corral.runtime.seccomp import install as install_seccomp

    try:
        k.prctl(k.PR_SET_DUMPABLE, 0)  # already so (inherited); kept for the library's callers
        launcher = trampoline.sealed_launcher()  # before seccomp, which may forbid memfd_create
        for fd in procs:
            os.write(fd, b"0")
        for fd in joins:
            k.setns(fd)
        os.setsid()
        if process.get("terminal"):
            init.setup_terminal(process, sock, console=False)
        init.apply_process_limits(process)
        env = list(process.get("env") or [])
        path = init.find_program(process["args"][0], env)
        # The container's seccomp filter, in runc's order (as in the init): without
        # no_new_privs loading needs CAP_SYS_ADMIN, so before the capabilities go.
        nnp = bool(process.get("noNewPrivileges"))
        if seccomp is not None and not nnp:
            install_seccomp(sock, seccomp, profile)
        lsm.apply(process)
        init.become_user(process)
        init.unreadable_launcher()
        init.close_fds_from(3 + preserve_fds)
        init.restore_signals()
        if seccomp is not None and nnp:
            install_seccomp(sock, seccomp, profile)
        trampoline.execve(launcher, path, process["args"], dict(init._env_pairs(env)))
    except CorralError as err:
        _send(sock, str(err))
    except OSError as err:
        _send(sock, f"{err.strerror or err}" + (f": {err.filename}" if err.filename else ""))
    except BaseException as err:  # pragma: no cover - a bug; still never a traceback
        _send(sock, f"internal error in exec: {type(err).__name__}: {err}")
    os._exit(1)


def _send(sock: Any, message: str) -> None:
    try:
        sock.send(msg.error(message))
    except OSError:
        pass


def _await_exec(
    sock: Any, pid: int, container: Container | None = None
) -> tuple[int, int | None]:
    """Wait until the child has exec'd (its socket closes at exec) or reported an error.

    Returns the process's pid (a rootless exec's first child reports its child's: b"pid:N")
    and the pty master if one came.

    A seccomp notify listener fd (SECCOMP) goes on to linux.seccomp.listenerPath, with
    the exec'd process's pid, as runc does for every process it starts.
    """
    import _socket

    from corral.runtime.lifecycle import _fd_from, _forward_seccomp_fd

    pty = None
    try:
        while True:
            said, anc, _f, _a = sock.recvmsg(65536, _socket.CMSG_SPACE(4))
            if said == msg.PTY:
                pty = _fd_from(anc)
            elif said.startswith(msg.PID):
                os.waitpid(pid, 0)  # the user-namespace stage, done once it has forked
                pid = msg.number(said, msg.PID)
            elif said == msg.FILTERING:
                pass  # the exec'd process reports its own failures (or execve's) on stderr
            elif said == msg.SECCOMP and container is not None:
                state = container.hook_state("running")
                try:
                    _forward_seccomp_fd(container.config, _fd_from(anc), state, pid)
                except BaseException:
                    from corral.runtime.control import kill_and_reap

                    kill_and_reap(pid)
                    raise
            elif said.startswith(msg.ERROR):
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass  # a grandchild (rootless) that is not ours to reap
                raise ContainerInitError(said[len(msg.ERROR) :].decode(errors="replace"))
            else:
                return pid, pty  # EOF: exec happened
    finally:
        sock.close()
