"""The OCI lifecycle as library calls: create, and what run adds to it (runtime.md); start,
kill and delete are corral.runtime.control's, state is corral.runtime.state's.

corral.runtime.api.Runtime is the facade over these, for ``corral-runc`` and the engine.

::

    create ──> created ──start──> running ──(program exits)──> stopped ──delete──> (gone)
                  │                  │ pause/resume: paused
                  └──────── kill / delete --force ─────────────┘

Process model: the parent (this process) prepares everything that must exist before the
container does (state directory, cgroup, exec fifo, namespace fds), then forks once. If the
container gets a new pid namespace the parent unshares CLONE_NEWPID first, so the child is
born as PID 1, and then steps back into its own pid namespace (setns) so that hooks it runs
later are not born inside the container. The child (corral.runtime.init) does the rest.
"""

import posix

from corral import _posix
from corral import sys as k
from corral.errors import (
    ContainerInitError,
    CorralError,
    HookError,
    SpecError,
    UsageError,
)
from corral.runtime import messages as msg
from corral.runtime.state import (
    Container,
    StateStore,
    process_start_time,
    rfc3339_now,
    write_atomic,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from corral.cgroups import Manager
    from corral.plan.rootfs import RootfsPlan
    from corral.runtime.messages import InitConfig


class CreateOptions:
    """The knobs of ``create`` beyond the bundle (runc's create flags, by their names)."""

    __slots__ = (
        "cgroup_manager", "console_socket", "detach", "no_new_keyring", "no_pivot",
        "pid_file", "preserve_fds", "stdio", "systemd_cgroup",
    )

    def __init__(
        self,
        *,
        pid_file: str | None = None,
        console_socket: str | None = None,
        no_pivot: bool = False,
        no_new_keyring: bool = False,
        preserve_fds: int = 0,
        cgroup_manager: str = "cgroupfs",
        systemd_cgroup: bool = False,
    ) -> None:
        self.pid_file = pid_file
        self.console_socket = console_socket
        self.no_pivot = no_pivot
        self.no_new_keyring = no_new_keyring
        self.preserve_fds = preserve_fds
        self.cgroup_manager = cgroup_manager  # "cgroupfs" or "disabled"
        self.systemd_cgroup = systemd_cgroup
        self.detach = True  # False for a foreground `run`, which may proxy a terminal itself
        # The container's ends of the pipes a foreground run copies (corral.runtime.stdio), to
        # be its fds 0-2 unless it has a terminal; None: it inherits ours.
        self.stdio: tuple[int, int, int] | None = None


class Created:
    """What create hands back: the container, and the pty master when the caller keeps it."""

    __slots__ = ("container", "pty_master")

    def __init__(self, container: "Container", pty_master: int | None) -> None:
        self.container = container
        self.pty_master = pty_master


def prepare(bundle: str, opts: "CreateOptions") -> "tuple[dict[str, Any], str, RootfsPlan]":
    """Load and check a bundle and plan its filesystem, touching nothing: (config, rootfs, plan).

    Everything a user can get wrong is found here, before create makes anything.
    ``corral-runc create --dry-run`` prints the plan.
    """
    from corral.plan.rootfs import plan_rootfs
    from corral.spec.load import load_bundle

    bundle = _posix.abspath(bundle)
    # The runtime reads the validated config as plain JSON data (the TypedDicts document it).
    loaded: tuple[dict[str, Any], str] = load_bundle(bundle)  # type: ignore[assignment]
    spec, rootfs = loaded
    process: dict[str, Any] = spec.get("process") or {}
    if process.get("terminal") and opts.detach and not opts.console_socket:
        raise UsageError("cannot allocate tty if runc will detach without setting console socket")
    if opts.console_socket and not (process.get("terminal") and opts.detach):
        raise UsageError("cannot use console socket if runc will not detach or allocate tty")
    linux = spec.get("linux") or {}
    if posix.geteuid() != 0:
        from corral.runtime.rootless import check_spec

        check_spec(spec)
    plan = plan_rootfs(spec, rootfs, bundle, no_pivot=opts.no_pivot)
    if linux.get("seccomp"):
        from corral.runtime.seccomp import prepare as prepare_seccomp

        prepare_seccomp(spec)  # checks linux.seccomp; loads libseccomp while the host is visible
    labels = process.get("apparmorProfile"), process.get("selinuxLabel"), linux.get("mountLabel")
    if any(labels):  # without them there is nothing to check (nor a module to load)
        from corral.runtime.lsm import check

        check(process, linux)
    return spec, rootfs, plan


def create(store: "StateStore", container_id: str, bundle: str, opts: "CreateOptions") -> "Created":
    """Set the container up and leave its init waiting for ``start`` (runtime.md "create")."""
    store.dir(container_id)  # validates the id before anything else
    spec, rootfs, plan = prepare(bundle, opts)
    bundle = _posix.abspath(bundle)
    linux = spec.get("linux") or {}
    cgroup = _open_cgroup(linux, container_id, opts)  # a bad cgroupsPath fails here, before
    path = store.reserve(container_id)  # anything exists
    container = Container(path, {
        "ociVersion": spec.get("ociVersion", ""), "id": container_id, "pid": 0,
        "status": "creating", "creator": [posix.getpid(), process_start_time(posix.getpid())],
        "bundle": bundle, "rootfs": rootfs, "created": rfc3339_now(), "owner": _owner(),
        "annotations": spec.get("annotations") or {}, "config": spec,
        "cgroup": cgroup.to_state() if cgroup else None,
    })
    pid = 0
    fds: list[int] = []
    try:
        container.save()
        pid, pty = _spawn_init(container, spec, plan, opts, fds, cgroup)
        container.data.pop("status")
        container.data.pop("creator")
        container.data["pid"] = pid  # and "init_start", from _serve_init
        container.save()
        if opts.pid_file:
            write_atomic(_posix.abspath(opts.pid_file), str(pid).encode())
        from corral.runtime import log

        log.debug(f"created container {container_id} pid {pid} in {container.dir}")
        return Created(container, pty)
    except BaseException:
        from corral.runtime.control import destroy, kill_and_reap

        if pid:
            kill_and_reap(pid)
        try:
            destroy(container)
        except CorralError as err:  # the create's own error is the one to report
            from corral.runtime import log

            log.debug(f"cleaning up after a failed create: {err}")
        raise
    finally:
        for fd in fds:
            posix.close(fd)


def _spawn_init(
    container: Container, spec: "dict[str, Any]", plan: "Any", opts: CreateOptions, fds: list[int],
    cgroup: "Manager | None",
) -> tuple[int, int | None]:
    """Prepare the init's inputs, fork it, and serve its requests until it is ready."""
    import _socket

    cfg = msg.InitConfig(spec, plan)
    cfg.container_id = container.id
    cfg.bundle = container.data["bundle"]
    cfg.preserve_fds = opts.preserve_fds
    cfg.no_new_keyring = opts.no_new_keyring
    linux = spec.get("linux") or {}
    if opts.stdio is not None and not (spec.get("process") or {}).get("terminal"):
        from corral.runtime.stdio import give_to_root

        give_to_root(opts.stdio, linux)
        cfg.stdio = opts.stdio
    pid_flags = _plan_namespaces(linux, cfg, fds)
    # On v1 and hybrid hosts the cgroup is made after fork, while the init makes its namespaces
    # and mounts (the two run in parallel), unless a user namespace or the systemd driver needs
    # it first; the init waits for CGROUPS before it touches it (corral.runtime.init). Not
    # when the init joins a mount namespace by path: it opens the cgroup files itself, and
    # there another container's processes could mount over /sys/fs/cgroup.
    defer = (
        cgroup is not None and cgroup.mode != "v2" and not cfg.userns
        and getattr(cgroup, "adopt", None) is None
        and not any(kind == "mount" for kind, _ in cfg.join_fds)
    )
    if cgroup is not None and not defer:
        _setup_cgroup(cgroup, linux, cfg, fds)
    elif cgroup is not None:
        cfg.cgroup_deferred = True
        cfg.cgroup_early, cfg.cgroup_join_paths = cgroup.join_plan()
        cfg.cgroup_sources = cgroup.mount_sources()
    flags = posix.O_WRONLY | posix.O_CREAT | posix.O_CLOEXEC
    posix.close(posix.open(container.created_marker, flags, 0o600))
    console = _connect_console(opts.console_socket) if opts.console_socket else None
    if cgroup is not None and not cfg.userns and not defer:
        cfg.cgroup_fd = cgroup_to_be_born_in(cgroup, fds)
    parent_sock, child_sock = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    cfg.sock = child_sock
    cfg.parent_sock = parent_sock
    if not opts.detach:
        # A foreground run waits for the init; with a user namespace the init is our
        # grandchild, so become a subreaper to inherit it when its parent exits.
        k.prctl(k.PR_SET_CHILD_SUBREAPER, 1)
    pid = _fork_into(pid_flags, cfg, fds)
    child_sock.close()
    try:
        if defer and cgroup is not None:
            _make_cgroup(cgroup, linux)
            try:
                parent_sock.send(msg.CGROUPS)
            except BrokenPipeError:
                pass  # the init failed already: its ERROR is waiting to be read
        if not cfg.userns:
            _join_early(cfg, pid, parent_sock, cgroup)
        pid, pty = _serve_init(container, parent_sock, pid, cfg, cgroup)
    except BaseException:
        from corral.runtime.control import kill_and_reap

        kill_and_reap(container.data.get("pid") or pid)  # the init must not outlive us
        raise
    finally:
        parent_sock.close()
    if pty is not None and console is not None:
        _send_fd(console, pty, "/dev/ptmx")
        posix.close(pty)
        pty = None
    if console is not None:
        console.close()
    return pid, pty


def _plan_namespaces(
    linux: "dict[str, Any]", cfg: "InitConfig", fds: list[int]
) -> list[tuple[int, int]]:
    """Decide, per namespace, who makes it: returns the (flag, fd) pairs for the parent to apply
    before fork (pid and time: they take effect for children only); the rest go to the init."""
    before_fork: list[tuple[int, int]] = []
    joins_user: list[tuple[str, int]] = []
    joins: list[tuple[str, int]] = []
    for i, ns in enumerate(linux.get("namespaces") or []):
        kind, path = ns["type"], ns.get("path")
        flag = k.NAMESPACE_FLAGS[kind]
        if path:
            try:
                fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
            except OSError as err:
                raise SpecError(f"linux.namespaces[{i}].path", f"{path}: {err.strerror}") from None
            fds.append(fd)
            _check_namespace_type(fd, flag, f"linux.namespaces[{i}].path", path, kind)
            if kind in ("pid", "time"):
                before_fork.append((flag, fd))
            else:
                (joins_user if kind == "user" else joins).append((kind, fd))
        elif kind in ("pid", "time"):
            before_fork.append((flag, -1))
        elif kind == "cgroup":
            cfg.unshare_cgroup = True
        elif kind == "user":
            cfg.userns = True
        else:
            cfg.new_namespaces |= flag
    cfg.join_fds = joins
    if joins_user:
        cfg.userns = True
        cfg.user_fd = joins_user[0][1]
    return before_fork


def _check_namespace_type(fd: int, flag: int, field: str, path: str, kind: str) -> None:
    """config-linux.md: "The runtime MUST generate an error if path is not associated with a
    namespace of type type" (ioctl NS_GET_NSTYPE on the opened file)."""
    import fcntl

    try:
        actual = fcntl.ioctl(fd, 0xB703)  # NS_GET_NSTYPE
    except OSError:
        raise SpecError(field, f"{path} is not a namespace file") from None
    if actual != flag:
        raise SpecError(field, f"{path} is not a {kind} namespace")


def _time_offsets(linux: "dict[str, Any]") -> str:
    """linux.timeOffsets in the format of /proc/self/timens_offsets ("monotonic 5 0")."""
    offsets = linux.get("timeOffsets") or {}
    return "".join(
        f"{clock} {v.get('secs', 0)} {v.get('nanosecs', 0)}\n" for clock, v in offsets.items()
    )


def _fork_into(pid_flags: list[tuple[int, int]], cfg: "InitConfig", fds: list[int]) -> int:
    """Fork the init inside the container's pid (and time) namespace, then step back out.

    With a user namespace the pid namespace must be owned by it (or the init could not mount
    /proc), so a first child enters the user namespace and forks the init from there; the pid
    returned is that first child's, and the init's own pid arrives as a message.
    """

    cfg.pid_flags = pid_flags
    cfg.time_offsets = _time_offsets(cfg.spec.get("linux") or {})
    # The child is born non-dumpable (it inherits our flag): from its first instruction no
    # process of the container can open its /proc/<pid>/exe (the host's Python), environ or fd.
    dumpable = k.prctl(k.PR_GET_DUMPABLE)
    k.prctl(k.PR_SET_DUMPABLE, 0)
    try:
        return _fork_init(pid_flags, cfg, fds)
    finally:
        if dumpable:
            k.prctl(k.PR_SET_DUMPABLE, dumpable)


def _fork_init(pid_flags: list[tuple[int, int]], cfg: "InitConfig", fds: list[int]) -> int:
    """The init's code (corral.runtime.init and what it imports) is loaded by the child, after
    fork: the runtime never runs it, and the child loads it while we make the cgroup."""
    if cfg.userns:
        pid = posix.fork()
        if pid == 0:
            _no_collector()
            from corral.runtime import init

            init.run_userns_stage(cfg)
        return pid
    own: list[tuple[int, int]] = []
    for flag, _fd in pid_flags:
        name = "pid" if flag == k.CLONE_NEWPID else "time"
        mine = posix.open(f"/proc/self/ns/{name}_for_children", posix.O_RDONLY | posix.O_CLOEXEC)
        fds.append(mine)
        own.append((flag, mine))
    try:
        msg.enter_for_children(pid_flags, cfg.time_offsets)
        pid = fork_born_joined(cfg.cgroup_fd) if cfg.cgroup_fd >= 0 else -1
        if pid == 0:
            cfg.cgroup_procs_fds = []  # born in the cgroup: nothing left to join
        elif pid < 0:
            pid = posix.fork()
        if pid == 0:
            _no_collector()
            from corral.runtime import init

            init.run(cfg)
    finally:
        for flag, mine in own:
            k.setns(mine, flag)
    return pid


def _no_collector() -> None:
    """In the forked child, first: no cyclic garbage collection until it execs. A collection
    writes to every object it visits, so each page the child shares with us would be copied
    for nothing (the child lives for milliseconds)."""
    import gc

    gc.disable()


# Born in its cgroup, the init is charged from its first instruction for every page the forked
# interpreter touches until it execs the launcher; joining late, for none of them (init.py).
# That peak is 1.8 MiB for a busybox bundle in the v2 guest (memory.peak after create;
# tests/integration/test_init_born_in_cgroup.py prints it), more with hooks or seccomp: under a
# memory limit (memory.max or memory.high, the container's or an ancestor's) below 64 MiB,
# far above it, the init is forked outside and joins late, as on v1.
BORN_IN_CGROUP_MIN_MEMORY = 64 << 20

# errnos of a kernel without clone3 (ENOSYS, before 5.3) or CLONE_INTO_CGROUP (E2BIG or
# EINVAL, before 5.7): once seen, this process does not try again.
_CLONE3_MISSING = (38, 7, 22)
_clone3_missing = False


def born_in_cgroup(mode: str, ceiling: int | None) -> bool:
    """Whether an init whose cgroup is ``mode`` ("v1", "v2") and whose memory is limited to
    ``ceiling`` bytes (None: unlimited) should be born in its cgroup (clone3)."""
    if mode != "v2" or _clone3_missing:
        return False
    return ceiling is None or ceiling >= BORN_IN_CGROUP_MIN_MEMORY


def cgroup_to_be_born_in(manager: "Manager", fds: list[int], *, late_join: bool = True) -> int:
    """An fd of the v2 cgroup for clone3, when born_in_cgroup says so; else -1.

    v2 only: on v1 (and hybrid) a process is in one cgroup per hierarchy, and CLONE_INTO_CGROUP
    names one. Nor with the systemd driver, whose scope is made with the init already running.
    ``late_join``: the alternative would join as late as possible, so the memory limit counts
    (an exec'd process joins at its first step: for it, none does).
    """
    if manager.mode != "v2":  # checked first: on v1 and hybrid hosts v2's module stays unloaded
        return -1
    from corral.cgroups.v2 import V2Manager

    if type(manager) is not V2Manager:
        return -1
    if not born_in_cgroup("v2", manager.memory_ceiling() if late_join else None):
        return -1
    fd = manager.open_dir()
    fds.append(fd)
    return fd


def fork_born_joined(cgroup_fd: int) -> int:
    """clone3 into the cgroup ``cgroup_fd``: 0 in the child, its pid here, -1 when the kernel
    (or a seccomp filter, or threads in this process) refused: then fork as usual."""
    global _clone3_missing
    from corral.errors import KernelError

    try:
        return k.fork_into_cgroup(cgroup_fd)
    except KernelError as err:
        if err.errno in _CLONE3_MISSING:
            _clone3_missing = True
        from corral.runtime import log

        log.debug(f"clone3 into the cgroup refused ({err.strerror}): fork, then join")
        return -1


def _write_id_maps(pid: int, linux: "dict[str, Any]") -> None:
    """Write the user namespace's uid_map and gid_map for the init (only a parent may)."""
    for kind in ("uid", "gid"):
        lines = "".join(
            f"{m['containerID']} {m['hostID']} {m['size']}\n"
            for m in linux.get(f"{kind}Mappings") or []
        )
        field = f"linux.{kind}Mappings"
        if not lines:
            raise SpecError(field, "a new user namespace needs mappings")
        if kind == "gid" and posix.geteuid() != 0:
            write_atomic_plain(f"/proc/{pid}/setgroups", "deny")
        try:
            write_atomic_plain(f"/proc/{pid}/{kind}_map", lines)
        except OSError as err:
            raise SpecError(field, f"the kernel refused the mapping: {err.strerror}") from None


def write_atomic_plain(path: str, text: str) -> None:
    """One write(2) call: /proc files such as uid_map take their whole content at once."""
    fd = posix.open(path, posix.O_WRONLY | posix.O_CLOEXEC)
    try:
        posix.write(fd, text.encode())
    finally:
        posix.close(fd)


def _join_early(cfg: "InitConfig", pid: int, sock: "Any", cgroup: "Manager | None" = None) -> None:
    """Move the new init into the background cgroups (see Manager.join_plan).

    Done by us, right after fork, while the init works on its mounts: the kernel's first
    migration through cgroup.procs can wait for an RCU grace period, and this way that wait is
    not on the init's path. Only an init that makes a cgroup namespace waits for JOINED.
    With the systemd driver the cgroup is a scope unit that systemd makes with the init in it
    (``adopt``), and then its files are written.
    """
    if not cfg.cgroup_early:
        return
    adopt = getattr(cgroup, "adopt", None)
    if adopt is not None:
        try:
            adopt(pid)
        except ProcessLookupError:
            return  # the init failed already: its ERROR is waiting to be read
    for path in cfg.cgroup_early if adopt is None else ():
        try:
            write_atomic_plain(path, str(pid))
        except ProcessLookupError:
            return  # the init failed already: its ERROR is waiting to be read
        except OSError as err:
            from corral.errors import CgroupError

            raise CgroupError(f"adding the init ({pid}) to {path}: {err.strerror}") from None
    if not cfg.unshare_cgroup:
        return  # only an init making a cgroup namespace reads it (unread data resets a socket)
    try:
        sock.send(msg.JOINED)
    except BrokenPipeError:
        pass  # the init failed already: its ERROR is waiting to be read


def _serve_init(
    container: Container, sock: "Any", pid: int, cfg: "InitConfig", cgroup: "Manager | None" = None
) -> tuple[int, int | None]:
    """Answer the init until it has exec'd the launcher (or failed).

    Returns the init's pid and the pty master if one came. The init says READY with the
    number of the pipe its launcher waits on (``start`` needs it), then execs: its end of
    the socket closes with that exec, and the end-of-file here means create is done.
    """
    import _socket

    pty: int | None = None
    ready = filtering = False
    while True:
        said, ancdata, _flags, _addr = sock.recvmsg(65536, _socket.CMSG_SPACE(4))
        if said == msg.USERNS:
            _write_id_maps(pid, container.config.get("linux") or {})
            sock.send(msg.MAPPED)
        elif said.startswith(msg.PID):
            posix.waitpid(pid, 0)  # the user-namespace stage, done once it has forked the init
            pid = msg.number(said, msg.PID)
            container.data["pid"] = pid  # known from now on, for the cleanup of a failure
            _join_early(cfg, pid, sock, cgroup)
        elif said.startswith(msg.MOUNTS):
            container.data["rootfs_stack"] = msg.number(said, msg.MOUNTS)
            container.save()  # delete detaches what the init stacks from now on
        elif said == msg.HOOKS:
            container.data["pid"] = pid
            hooks = container.config.get("hooks") or {}
            state = container.hook_state("creating")
            from corral.runtime.hooks import run_hooks

            try:
                run_hooks(hooks.get("prestart") or [], state, "prestart")
                run_hooks(hooks.get("createRuntime") or [], state, "createRuntime")
            except HookError:
                sock.send(msg.STOP)
                raise
            sock.send(msg.GO)
        elif said == msg.PTY:
            pty = _fd_from(ancdata)
        elif said == msg.SECCOMP:
            container.data["pid"] = pid
            state = container.hook_state("creating")
            _forward_seccomp_fd(container.config, _fd_from(ancdata), state, pid)
        elif said == msg.FILTERING:
            filtering = True
        elif said.startswith(msg.READY):
            container.data["start_fd"] = msg.number(said, msg.READY)
            ready = True
        elif said.startswith(msg.ERROR):
            raise ContainerInitError(said[len(msg.ERROR) :].decode(errors="replace"))
        else:
            started = process_start_time(pid) if ready and said == b"" else None
            if started is None:
                raise _died_early(pid, filtering)
            container.data["init_start"] = started
            return pid, pty  # end of file: the init has exec'd the launcher


def _died_early(pid: int, filtering: bool) -> "CorralError":
    """The error for a child that died without saying why (reaping it when it is ours)."""
    try:
        _, status = posix.waitpid(pid, 0)
        how = f" ({_describe(status)})"
    except ChildProcessError:
        how = ""  # a user-namespace stage's child: not ours to reap
    if filtering:
        return SpecError(
            "linux.seccomp",
            f"the filter stopped the container's init{how}: it must allow what starting the "
            f"program needs after it is loaded ({', '.join(NEEDED_AFTER_FILTER)})",
        )
    return ContainerInitError(f"container init exited before it was ready{how}")


def _describe(status: int) -> str:
    if posix.WIFSIGNALED(status):
        return f"killed by signal {posix.WTERMSIG(status)}"
    return f"exit status {posix.waitstatus_to_exitcode(status)}"


# What the init and the launcher call once the filter is on (runc's init needs much the same).
NEEDED_AFTER_FILTER = (
    "sendto", "sendmsg", "execve", "prctl", "read", "close", "write", "exit_group",
)


def _forward_seccomp_fd(
    config: "dict[str, Any]", fd: int, state: "dict[str, Any]", pid: int
) -> None:
    """Hand the seccomp notify fd the init sent us to linux.seccomp.listenerPath."""
    from corral.runtime.seccomp import send_to_listener

    seccomp = (config.get("linux") or {}).get("seccomp") or {}
    try:
        send_to_listener(
            seccomp.get("listenerPath", ""), fd, seccomp.get("listenerMetadata", ""), state, pid
        )
    finally:
        posix.close(fd)


def _fd_from(ancdata: list[tuple[int, int, bytes]]) -> int:
    import struct

    for _level, _type, data in ancdata:
        return int(struct.unpack("i", data[:4])[0])
    raise ContainerInitError("the init sent a terminal without its file descriptor")


def _connect_console(path: str) -> "Any":
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as err:
        sock.close()
        raise UsageError(f"--console-socket {path}: {err.strerror}") from None
    return sock


def _send_fd(sock: "Any", fd: int, name: str) -> None:
    """Send a file descriptor with SCM_RIGHTS, as runc does to --console-socket."""
    import _socket
    import struct

    sock.sendmsg([name.encode()], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack("i", fd))])


def _open_cgroup(
    linux: "dict[str, Any]", container_id: str, opts: CreateOptions
) -> "Manager | None":
    """The container's cgroup manager (nothing is created yet), or None when disabled."""
    if opts.cgroup_manager == "disabled":
        return None
    from corral import cgroups

    systemd = opts.systemd_cgroup
    path = cgroups.resolve_path(linux.get("cgroupsPath"), container_id, systemd=systemd)
    if posix.geteuid() != 0:
        if systemd:
            raise UsageError("--systemd-cgroup: not supported for rootless containers")
        from corral.runtime.rootless import usable_cgroup

        return usable_cgroup(cgroups.open_manager(path), linux)
    return cgroups.open_manager(path, systemd=systemd)


def _setup_cgroup(
    manager: "Manager", linux: "dict[str, Any]", cfg: "InitConfig", fds: list[int]
) -> None:
    """Make the cgroup, apply linux.resources, and open the files the init will join through.

    The state file already names the cgroup, so delete --force can remove it if we die here.
    """
    _make_cgroup(manager, linux)
    early, late = manager.join_plan()
    for procs in late:
        fd = posix.open(procs, posix.O_WRONLY | posix.O_CLOEXEC)
        fds.append(fd)
        cfg.cgroup_procs_fds.append(fd)
    cfg.cgroup_early = early
    cfg.cgroup_sources = manager.mount_sources()


def _make_cgroup(manager: "Manager", linux: "dict[str, Any]") -> None:
    """Make the cgroup and apply linux.resources to it."""
    from corral import cgroups

    manager.create()
    resources = dict(linux.get("resources") or {})
    # runc appends its default allowed devices (/dev/null & co) to the config's rules.
    resources["devices"] = [*(resources.get("devices") or []), *cgroups.DEFAULT_DEVICE_RULES]
    manager.set(resources)


def _owner() -> str:
    return "" if posix.geteuid() == 0 else str(posix.geteuid())


# -- run -------------------------------------------------------------------------------------


FORWARDED_SIGNALS = (1, 2, 3, 10, 12, 14, 15, 18, 28)  # HUP INT QUIT USR1 USR2 ALRM TERM CONT WINCH


def forward_signals(pid: int) -> "dict[int, Any]":
    """From now on, pass the signals a user sends us (FORWARDED_SIGNALS) on to ``pid``; returns
    the handlers they had, for restore_signals. A foreground ``run`` calls this before
    ``start``: a signal that came between the program's start and the wait would otherwise
    kill us instead."""
    import _signal

    def forward(signum: int, _frame: object) -> None:
        try:
            posix.kill(pid, signum)
        except ProcessLookupError:
            pass

    return {sig: _signal.signal(sig, forward) for sig in FORWARDED_SIGNALS}


def restore_signals(handlers: "dict[int, Any]") -> None:
    """Put back the handlers forward_signals replaced (a library caller keeps its own)."""
    import _signal

    for sig, handler in handlers.items():
        if handler is not None:  # None: a handler not set from Python, which we cannot restore
            _signal.signal(sig, handler)


def wait_and_forward(
    pid: int, pty: int | None, stdio: tuple[int, int, int] | None = None
) -> int:
    """Wait for our child ``pid`` (the init), forwarding signals and, with a pty, the terminal,
    or with ``stdio`` (our ends of corral.runtime.stdio's pipes, closed here) our stdio.

    Returns the exit code the way a shell reports it: the status, or 128+N when killed by N.
    """
    previous = forward_signals(pid)
    try:
        return _wait(pid, pty, stdio)
    finally:
        restore_signals(previous)


def _wait(pid: int, pty: int | None, stdio: tuple[int, int, int] | None) -> int:
    if pty is not None:
        from corral.runtime.console import proxy

        proxy(pty, pid)
    elif stdio is not None:
        from corral.runtime.stdio import copy

        copy(stdio, pid)
    while True:
        try:
            _, status = posix.waitpid(pid, 0)
            break
        except ChildProcessError:
            return 255
    code = posix.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code
