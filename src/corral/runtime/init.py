"""The container's init: the forked child that builds the container around itself, then execs.

It runs between ``fork`` and ``execve``, single-threaded, with the parent (``corral-runc create``)
on the other end of a SOCK_SEQPACKET socket; the messages are listed in
corral.runtime.messages.

Order matters and is runc's: namespaces, hostname, mounts (with the host still visible),
createContainer hooks, pivot_root, sysctls and masks, terminal, rlimits, cgroup join, user and
capabilities, no_new_privs; then the init execs the sealed launcher (corral.runtime.trampoline),
which waits for ``start`` and execs the program.

What a process of the container can reach through /proc/<init>/, at every moment:

- from fork to the end of ``create`` the init is the host's Python, but non-dumpable from its
  first instruction (the parent clears its own dumpable flag around the fork): /proc/<init>/exe,
  environ, fd, mem and the rest are refused to every process without CAP_SYS_PTRACE over the
  host's user namespace. Its first step closes every fd the caller had open except stdio and
  the ones passed on purpose (--preserve-fds), so none can reach the container (CVE-2024-21626).
- from the end of ``create`` the init is the launcher: a sealed memfd, the container's own
  environment, and no fd but stdio, the preserved ones and the pipe ``start`` writes to.

The cgroups are all joined by the end of ``create`` (the spec, and containerd's shim, which
reads the init's cgroup then). The memory cgroup is joined last, right before the exec of the
launcher: pages this Python process dirtied before it stay charged to the runtime, and the exec
then drops them, so a container can run under a memory limit far smaller than an interpreter.
On cgroup v2, unless such a limit is set, the init is instead born in its cgroup (clone3 with
CLONE_INTO_CGROUP; corral.runtime.lifecycle.born_in_cgroup) and has nothing left to join.
"""

import posix

from corral import _posix
from corral import sys as k
from corral.errors import ContainerInitError, CorralError, KernelError, SpecError
from corral.runtime import lsm, trampoline
from corral.runtime import messages as msg
from corral.runtime import rootfs as fs
from corral.runtime.messages import InitConfig, enter_for_children

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn


DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

PERSONALITIES = {"LINUX": 0x0000, "LINUX32": 0x0008}

# ioctls for the terminal (asm-generic/ioctls.h).
TIOCSCTTY = 0x540E
TIOCSWINSZ = 0x5414
TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431


def run(cfg: "InitConfig") -> "NoReturn":
    """Entry point in the child after fork. Never returns: execs the program or exits 1."""
    _drop_parent_end(cfg)
    try:
        _take_stdio(cfg)
        close_stray_fds(3 + cfg.preserve_fds, cfg.own_fds())
        _setup_and_exec(cfg)
    except CorralError as err:
        _report(cfg, str(err))
    except OSError as err:
        _report(cfg, f"{err.strerror or err}" + (f": {err.filename}" if err.filename else ""))
    except BaseException as err:  # pragma: no cover - a bug; still never a traceback
        _report(cfg, f"internal error in container init: {type(err).__name__}: {err}")
    posix._exit(1)


def run_userns_stage(cfg: "InitConfig") -> "NoReturn":
    """First child, when the container has a user namespace: enter it, then fork the init.

    A new user namespace starts unmapped; only a process outside it may write its uid_map and
    gid_map, so we ask the parent and wait. Then we become root of the namespace and make (or
    join) the pid namespace from inside it, so the init's pid namespace belongs to it.
    """
    _drop_parent_end(cfg)
    try:
        _take_stdio(cfg)
        close_stray_fds(3 + cfg.preserve_fds, cfg.own_fds())
        if cfg.user_fd >= 0:
            k.setns(cfg.user_fd, k.CLONE_NEWUSER)
        else:
            rootless = posix.geteuid() != 0
            if not rootless:
                # As runc's nsexec: namespaces given by path (an engine's network namespace)
                # belong to the host's user namespace; only the host's root may join them, so
                # join them now, before the new user namespace takes that power away.
                for _kind, fd in cfg.join_fds:
                    k.setns(fd)
                cfg.join_fds = []
            k.unshare(k.CLONE_NEWUSER)
            # The runtime writes our maps, and /proc/<pid>/uid_map of a non-dumpable process
            # belongs to root, which a rootless runtime is not: dumpable for that moment
            # (nothing of the container exists yet), to its own user only; a root runtime
            # needs no such moment.
            if rootless:
                k.prctl(k.PR_SET_DUMPABLE, 1)
            cfg.sock.send(msg.USERNS)
            if cfg.sock.recv(msg.MAX_CONTROL) != msg.MAPPED:
                posix._exit(1)
            k.prctl(k.PR_SET_DUMPABLE, 0)
        try:
            posix.setresgid(0, 0, 0)
            posix.setresuid(0, 0, 0)
        except OSError:
            raise SpecError("linux.uidMappings", "container uid/gid 0 must be mapped") from None
        enter_for_children(cfg.pid_flags, cfg.time_offsets)
        pid = posix.fork()
        if pid == 0:
            run(cfg)
        cfg.sock.send(msg.PID + b"%d" % pid)
        posix._exit(0)
    except CorralError as err:
        _report(cfg, str(err))
    except OSError as err:
        _report(cfg, f"{err.strerror or err}" + (f": {err.filename}" if err.filename else ""))
    posix._exit(1)


def _take_stdio(cfg: "InitConfig") -> None:
    """Make the pipes of a foreground run our fds 0-2 (numbered above them: no clobbering);
    close_stray_fds then closes the originals, and the init a user-namespace stage forks
    inherits the result."""
    if cfg.stdio is not None:
        for target, fd in enumerate(cfg.stdio):
            posix.dup2(fd, target)
        cfg.stdio = None


def _drop_parent_end(cfg: "InitConfig") -> None:
    """Close our copy of the runtime's socket end, so its death reads as EOF here."""
    if cfg.parent_sock is not None:
        cfg.parent_sock.close()
        cfg.parent_sock = None


def receive(cfg: "InitConfig", want: bytes) -> bool:
    """Wait for ``want`` from the parent, noting a JOINED that may arrive first."""
    while True:
        said = cfg.sock.recv(msg.MAX_CONTROL)
        if said == msg.JOINED:
            cfg.joined = True
            if want == msg.JOINED:
                return True
            continue
        return bool(said == want)


def _report(cfg: "InitConfig", message: str) -> None:
    try:
        cfg.sock.send(msg.error(message))
    except OSError:
        pass


def _preload(spec: "dict[str, Any]", process: "dict[str, Any]") -> None:
    """Import now what the steps after pivot_root will need.

    After pivot_root the host's files, our own Python modules included, are out of reach: an
    import there would fail. Built-in modules (time, fcntl, _socket, _signal) need no file.
    """
    import corral.spec.tables

    if process.get("terminal"):
        import struct  # noqa: F401
    if spec.get("hooks"):
        import corral.runtime.hooks  # noqa: F401


def _setup_and_exec(cfg: "InitConfig") -> None:
    spec, process = cfg.spec, cfg.process
    _preload(spec, process)
    # The program is exec'd through a sealed in-memory launcher, never with the host's Python
    # as /proc/self/exe (CVE-2019-5736; see corral.runtime.trampoline), and the launcher is
    # what waits for `start`, on a pipe. Both made now, while fcntl and the host's /proc can
    # still be reached, and before seccomp, which may not allow memfd_create or pipe2. The pipe
    # stays open across the exec of the launcher (not close-on-exec); the launcher closes it.
    launcher = trampoline.sealed_launcher()
    if launcher is None:
        raise ContainerInitError(f"corral has no sealed launcher for {posix.uname().machine}")
    start_fd = start_pipe()
    posix.chdir(cfg.bundle)  # as runc: the init starts in the bundle (the caller's cwd is theirs)
    # 1. Namespaces: join the given ones (user first, so the others are owned by it), then make
    #    the new ones. pid and time were arranged by the parent: they apply from our birth.
    for _kind, fd in cfg.join_fds:
        k.setns(fd)
    if cfg.new_namespaces:
        k.unshare(cfg.new_namespaces)
    posix.setsid()
    if spec.get("hostname") is not None:
        k.sethostname(spec["hostname"])
    if spec.get("domainname") is not None:
        k.setdomainname(spec["domainname"])
    if not cfg.no_new_keyring:
        k.join_session_keyring()

    # 2. The filesystem, while the host's paths are still reachable for bind sources.
    plan = cfg.plan
    if not plan.own_mount_ns:
        cfg.sock.send(msg.MOUNTS + b"%d" % fs.mounts_at(plan.rootfs))
    fs.prepare_root(plan)
    # Opened after the rootfs is bound onto itself: mounts must go on top of that bind mount.
    root_fd = posix.open(plan.rootfs, posix.O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC)
    if cfg.cgroup_deferred:  # the runtime made the cgroup meanwhile: wait until it is there
        if not receive(cfg, msg.CGROUPS):
            posix._exit(1)  # the runtime failed (and kills us) or died
        cfg.cgroup_procs_fds = [
            posix.open(path, posix.O_WRONLY | posix.O_CLOEXEC) for path in cfg.cgroup_join_paths
        ]
    fs.mount_all(plan, root_fd, cfg.cgroup_sources)
    if plan.setup_dev:
        fs.create_devices(plan, root_fd, cfg.userns)
    posix.close(root_fd)
    hooks = spec.get("hooks") or {}
    if hooks.get("prestart") or hooks.get("createRuntime"):
        cfg.sock.send(msg.HOOKS)
        if not receive(cfg, msg.GO):
            posix._exit(1)  # the parent reported the hook's failure itself
    if hooks.get("createContainer"):
        from corral.runtime.hooks import run_hooks

        run_hooks(hooks["createContainer"], _hook_state(cfg, "creating"), "createContainer")
    fs.enter_root(plan)
    fs.finish(plan)

    # 3. The process's surroundings.
    if process.get("terminal"):
        setup_terminal(process, cfg.sock, console=True)
    apply_process_limits(process)
    personality = (spec.get("linux") or {}).get("personality")
    if personality:
        k.personality(PERSONALITIES[personality.get("domain", "LINUX")])
    # A cgroup namespace's root is where we are when we unshare it: be in every cgroup first.
    needs_all = cfg.cgroup_early and cfg.unshare_cgroup and not cfg.joined
    if needs_all and not receive(cfg, msg.JOINED):
        posix._exit(1)
    # The late cgroups (memory) are joined as late as possible, so that the pages this
    # interpreter dirties until it execs the launcher are not charged to the container: right
    # before that exec, unless a cgroup namespace (whose root is taken at unshare) needs the
    # init inside first, or the process drops root (kernels before 5.16 check a v2 migration
    # against the writer's current credentials, not the fd opener's).
    late_join = not (cfg.unshare_cgroup or (process.get("user") or {}).get("uid", 0) != 0)
    if not late_join:
        join_late_cgroups(cfg)
    if cfg.unshare_cgroup:
        k.unshare(k.CLONE_NEWCGROUP)  # after the join: the container sees its cgroup as "/"
    env = list(process.get("env") or [])
    path = find_program(process["args"][0], env)
    # seccomp, as runc: without no_new_privs loading needs CAP_SYS_ADMIN, so before the caps go;
    # with it, as late as possible. corral.runtime.seccomp.prepare() ran before fork.
    seccomp, nnp = (spec.get("linux") or {}).get("seccomp"), bool(process.get("noNewPrivileges"))
    if seccomp is not None and not nnp:
        from corral.runtime.seccomp import install

        install(cfg.sock, seccomp)
    lsm.apply(process)
    become_user(process)
    unreadable_launcher()
    close_fds_from(3 + cfg.preserve_fds, keep=start_fd)
    restore_signals()
    if late_join:
        join_late_cgroups(cfg)
    if seccomp is not None and nnp:
        from corral.runtime.seccomp import install

        install(cfg.sock, seccomp)

    # 4. Become the launcher, which waits for `start` on start_fd, then runs the program. The
    #    socket closes with the exec: the parent reads end-of-file and create is done.
    cfg.sock.send(msg.READY + b"%d" % start_fd)
    trampoline.execve_waiting(launcher, start_fd, path, process["args"], dict(_env_pairs(env)))


def start_pipe() -> int:
    """One fd that is both ends of a pipe: its read end reopened read-write through /proc.

    The launcher blocks reading it (never at end-of-file: it is a writer too). ``start`` opens
    /proc/<init>/fd/N for writing, which a pipe allows (an eventfd cannot be reopened), and
    writes 8 bytes: one open(2) and one write(2), no pidfd_getfd, so no libc loaded on
    ``start``'s path. Not close-on-exec: it must survive the exec of the launcher.
    """
    r, w = posix.pipe()
    try:
        both = posix.open(f"/proc/self/fd/{r}", posix.O_RDWR)
    finally:
        posix.close(r)
        posix.close(w)
    posix.set_inheritable(both, True)
    return both


def join_late_cgroups(cfg: "InitConfig") -> None:
    """Join the cgroups of Manager.join_plan's late list through the fds opened before fork.

    Called right before the launcher's exec when the process stays uid 0 (see
    _setup_and_exec); "0" moves the writing process itself, which v1 always allows.
    """
    for fd in cfg.cgroup_procs_fds:
        posix.write(fd, b"0")  # "0" means "the writing process"
        posix.close(fd)
    cfg.cgroup_procs_fds = []


def _hook_state(cfg: "InitConfig", status: str) -> "dict[str, Any]":
    """The state JSON for hooks the init runs itself (pid as the host sees it is the parent's
    business; inside, the init is pid 1 of its namespace)."""
    ann = cfg.spec.get("annotations")
    state: dict[str, Any] = {
        "ociVersion": cfg.spec.get("ociVersion", ""), "id": cfg.container_id,
        "status": status, "pid": posix.getpid(), "bundle": cfg.bundle,
    }
    if ann:
        state["annotations"] = ann
    return state


def _env_pairs(env: list[str]) -> list[tuple[str, str]]:
    return [(e.split("=", 1)[0], e.split("=", 1)[1]) for e in env if "=" in e]


def find_program(name: str, env: list[str]) -> str:
    """Resolve args[0] in the container as execvp would, so a missing program fails create."""
    if "/" in name:
        candidates = [name]
    else:
        path = next((v for key, v in _env_pairs(env) if key == "PATH"), DEFAULT_PATH)
        candidates = [f"{d or '.'}/{name}" for d in path.split(":")]
    for candidate in candidates:
        if _posix.isfile(candidate) and posix.access(candidate, posix.X_OK):
            return candidate
    if "/" in name and _posix.exists(name):
        raise SpecError("process.args[0]", f"exec: {_quoted(name)}: permission denied")
    raise SpecError("process.args[0]", f"exec: {_quoted(name)}: executable file not found in $PATH")


def _quoted(name: str) -> str:
    """``name`` in double quotes, on one line whatever it holds (an error is one line)."""
    escaped = name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + escaped.replace("\r", "\\r") + '"'


def setup_terminal(process: "dict[str, Any]", sock: "Any", console: bool) -> None:
    """Make a pty inside the container's devpts; its slave becomes our stdio (and, for the
    init, /dev/console). The master goes to the runtime over ``sock``."""
    import fcntl
    import struct

    master = posix.open("/dev/ptmx", posix.O_RDWR | posix.O_NOCTTY | posix.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0\0\0\0"))[0]
    slave_path = f"/dev/pts/{number}"
    slave = posix.open(slave_path, posix.O_RDWR | posix.O_NOCTTY)
    size = process.get("consoleSize")
    if size:
        fcntl.ioctl(slave, TIOCSWINSZ, struct.pack("HHHH", size["height"], size["width"], 0, 0))
    if console:
        _bind_console(slave)
    for fd in (0, 1, 2):
        posix.dup2(slave, fd)
    posix.close(slave)
    fcntl.ioctl(0, TIOCSCTTY, 0)
    import _socket

    sock.sendmsg([b"pty"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack("i", master))])
    posix.close(master)


def _bind_console(slave: int) -> None:
    """Bind the pty's slave over /dev/console, a plain file we made or checked.

    The container's /dev may come from the image or a shared volume; a /dev/console that is a
    symlink (to /proc/sysrq-trigger, say) would make the bind land on its target (the shape of
    CVE-2025-52565). So a symlink or anything but a file or character device there is replaced,
    and the bind goes from the slave's fd to an fd of the checked node.
    """
    import stat

    try:
        mode = posix.lstat("/dev/console").st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISCHR(mode)):
            posix.unlink("/dev/console")
            raise FileNotFoundError
    except FileNotFoundError:
        flags = posix.O_CREAT | posix.O_EXCL | posix.O_WRONLY | posix.O_NOFOLLOW | posix.O_CLOEXEC
        posix.close(posix.open("/dev/console", flags, 0o600))
    target = posix.open("/dev/console", posix.O_PATH | posix.O_NOFOLLOW | posix.O_CLOEXEC)
    try:
        k.mount(k.fd_path(slave), k.fd_path(target), None, k.MS_BIND)
    finally:
        posix.close(target)


def apply_process_limits(process: "dict[str, Any]") -> None:
    for i, rl in enumerate(process.get("rlimits") or []):
        from corral.spec.tables import RLIMITS

        try:
            k.setrlimit(RLIMITS[rl["type"]], rl["soft"], rl["hard"])
        except KernelError as err:
            if err.errno == 1:  # EPERM
                raise SpecError(
                    f"process.rlimits[{i}]",
                    f"{rl['type']} hard limit {rl['hard']} is above the current hard limit"
                    " and the runtime lacks CAP_SYS_RESOURCE to raise it",
                ) from None
            raise SpecError(f"process.rlimits[{i}]", f"{rl['type']}: {err.strerror}") from None
    if process.get("oomScoreAdj") is not None:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(process["oomScoreAdj"]))


def become_user(process: "dict[str, Any]") -> None:
    """Switch to the configured user, keeping exactly the configured capabilities.

    No ``capabilities`` means none at all, as in runc (the field is optional; a process must
    not get the runtime's full set by leaving it out). The bounding set is cut first (that
    needs CAP_SETPCAP, which we still have); KEEPCAPS lets the permitted set survive setuid
    away from 0; then capset installs the final sets and the ambient ones are raised (they must
    be permitted and inheritable).
    """
    from corral.spec.tables import CAPABILITIES, cap_mask

    caps = process.get("capabilities") or {}
    user = process.get("user") or {}
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    bounding = cap_mask(caps.get("bounding") or [])
    last = _last_cap()
    for cap in range(last + 1):
        if not bounding >> cap & 1:
            k.prctl(k.PR_CAPBSET_DROP, cap)
    k.prctl(k.PR_SET_KEEPCAPS, 1)
    if "additionalGids" in user or uid != 0 or gid != 0:
        try:
            posix.setgroups(list(user.get("additionalGids") or []))
        except PermissionError:
            pass  # a user namespace with setgroups denied keeps the (empty) list it has
    posix.setresgid(gid, gid, gid)
    posix.setresuid(uid, uid, uid)
    k.prctl(k.PR_SET_KEEPCAPS, 0)
    permitted = cap_mask(caps.get("permitted") or [])
    inheritable = cap_mask(caps.get("inheritable") or [])
    k.capset(cap_mask(caps.get("effective") or []), permitted, inheritable)
    # Ambient needs the capability permitted and inheritable; runc 1.1 skips (with a
    # warning) those that are not, and `runc spec` writes ambient without inheritable.
    for name in caps.get("ambient") or []:
        if (permitted & inheritable) >> CAPABILITIES[name] & 1:
            k.prctl(k.PR_CAP_AMBIENT, k.PR_CAP_AMBIENT_RAISE, CAPABILITIES[name])
    if process.get("noNewPrivileges"):
        k.prctl(k.PR_SET_NO_NEW_PRIVS, 1)
    if user.get("umask") is not None:
        posix.umask(user["umask"])
    else:
        posix.umask(0o022)
    enter_cwd(process.get("cwd") or "/")


def unreadable_launcher() -> None:
    """Leave CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH out of the effective set until the exec.

    The launcher's memfd is execute-only: a process that cannot read the file it execs is made
    non-dumpable by the kernel at that exec, so the launcher never has a dumpable moment (it
    makes itself non-dumpable only with its first instruction). Those two capabilities would let
    it read the file anyway. The exec computes the effective set anew from the permitted and
    ambient ones, so the program gets exactly the configured capabilities all the same. A
    seccomp filter that refuses capset only leaves that moment open.
    """
    dac = 1 << 1 | 1 << 2  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
    try:
        effective, permitted, inheritable = k.capget()
        if effective & dac:
            k.capset(effective & ~dac, permitted, inheritable)
    except KernelError:
        pass


def enter_cwd(cwd: str) -> None:
    """chdir to the process's cwd, which must be a directory inside the container's root.

    A path through an fd the runtime leaked (``/proc/self/fd/7`` naming the host's "/") would
    put the program outside the container (CVE-2024-21626). The runtime closes such fds, and
    this checks the result: the kernel's getcwd says "(unreachable)" for a directory outside
    our root, which Python reports as FileNotFoundError.
    """
    try:
        posix.chdir(cwd)
    except OSError as err:
        raise SpecError("process.cwd", f"chdir to {cwd}: {err.strerror}") from None
    try:
        here = posix.getcwd()
    except FileNotFoundError:
        here = ""
    if not here.startswith("/"):
        raise SpecError("process.cwd", f"{cwd} is outside the container's root filesystem")


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return 40


def close_stray_fds(first: int, keep: set[int]) -> None:
    """Close every fd from ``first`` up except ``keep``: the first thing a forked child does.

    Whatever the caller had open (a directory of the host, a socket, the console socket) must
    never reach the container; stdio and the fds passed on purpose (--preserve-fds, below
    ``first``) stay. close_range(2) makes each gap one system call.
    """
    low = first
    for fd in sorted(f for f in keep if f >= first):
        if fd > low:
            posix.closerange(low, fd)
        low = fd + 1
    posix.closerange(low, 1 << 20)


def close_fds_from(first: int, keep: int = -1) -> None:
    """Every fd from ``first`` up, but ``keep``, is closed at exec (the first 3 + preserved ones
    stay)."""
    for name in posix.listdir("/proc/self/fd"):
        fd = int(name)
        if fd >= first and fd != keep:
            try:
                posix.set_inheritable(fd, False)
            except OSError:
                pass


def restore_signals() -> None:
    """Python ignores SIGPIPE and SIGXFSZ; ignored signals survive exec, so undo that."""
    import _signal

    for sig in (13, 25):  # SIGPIPE, SIGXFSZ
        _signal.signal(sig, _signal.SIG_DFL)
