"""The container's init: the forked child that builds the container around itself, then execs.

It runs between ``fork`` and ``execve``, single-threaded, with the parent (``corral-runc create``)
on the other end of a SOCK_SEQPACKET socket. Messages are small byte strings:

    init -> parent   b"hooks"          mounts are done: run prestart/createRuntime hooks now
    parent -> init   b"go"             hooks passed, carry on
    parent -> init   b"joined"         the parent has moved us into its cgroups (when any)
    init -> parent   b"pty" + fd       the terminal's master side (SCM_RIGHTS)
    init -> parent   b"ready"          all set up; about to block on the exec fifo
    init -> parent   b"error:" + text  setup failed (text is the one-line message); init exits

Order matters and is runc's: namespaces, hostname, mounts (with the host still visible),
createContainer hooks, pivot_root, sysctls and masks, terminal, rlimits, cgroup join, user and
capabilities, no_new_privs, then the exec fifo and execve.

The cgroup is joined as late as possible: pages this Python process dirties before it (copy-on-
write faults of the interpreter's heap) are then charged to the runtime, not to the container,
so a container can run under a memory limit far smaller than a Python interpreter.
"""

from __future__ import annotations

import os

from corral import sys as k
from corral.errors import CorralError, KernelError, SpecError
from corral.runtime import lsm, trampoline
from corral.runtime import rootfs as fs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from corral.plan.rootfs import RootfsPlan

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

PERSONALITIES = {"LINUX": 0x0000, "LINUX32": 0x0008}

# ioctls for the terminal (asm-generic/ioctls.h).
TIOCSCTTY = 0x540E
TIOCSWINSZ = 0x5414
TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431


class InitConfig:
    """Everything the init needs, prepared by the parent before fork (fds stay open across it)."""

    __slots__ = (
        "bundle",
        "cgroup_early",
        "cgroup_procs_fds",
        "cgroup_sources",
        "container_id",
        "fifo_fd",
        "join_fds",
        "joined",
        "new_namespaces",
        "no_new_keyring",
        "parent_sock",
        "pid_flags",
        "plan",
        "preserve_fds",
        "process",
        "sock",
        "spec",
        "time_offsets",
        "unshare_cgroup",
        "user_fd",
        "userns",
    )

    def __init__(self, spec: dict[str, Any], plan: RootfsPlan) -> None:
        self.spec = spec
        self.container_id = ""
        self.bundle = ""
        self.process: dict[str, Any] = spec["process"]
        self.plan = plan
        self.sock: Any = None
        self.parent_sock: Any = None  # the runtime's end: closed at once in the child
        self.fifo_fd = -1
        self.cgroup_procs_fds: list[int] = []  # joined by the init itself, just before exec
        self.cgroup_early: list[str] = []  # cgroup.procs files the parent moves the init into
        self.joined = False  # the parent said b"joined" (it may say so before we ask anything)
        self.cgroup_sources: list[tuple[str, str]] = []
        self.join_fds: list[tuple[str, int]] = []  # (namespace type, fd) to setns into
        self.new_namespaces = 0  # CLONE_NEW* flags the init unshares itself
        self.unshare_cgroup = False  # cgroup ns is unshared after joining the cgroup
        self.userns = False  # the container has a user namespace (new, or user_fd to join)
        self.user_fd = -1
        self.pid_flags: list[tuple[int, int]] = []  # (CLONE_NEWPID or CLONE_NEWTIME, fd or -1)
        self.time_offsets = ""
        self.preserve_fds = 0
        self.no_new_keyring = False


def run(cfg: InitConfig) -> NoReturn:
    """Entry point in the child after fork. Never returns: execs the program or exits 1."""
    _drop_parent_end(cfg)
    try:
        _setup_and_exec(cfg)
    except CorralError as err:
        _report(cfg, str(err))
    except OSError as err:
        _report(cfg, f"{err.strerror or err}" + (f": {err.filename}" if err.filename else ""))
    except BaseException as err:  # pragma: no cover - a bug; still never a traceback
        _report(cfg, f"internal error in container init: {type(err).__name__}: {err}")
    os._exit(1)


def run_userns_stage(cfg: InitConfig) -> NoReturn:
    """First child, when the container has a user namespace: enter it, then fork the init.

    A new user namespace starts unmapped; only a process outside it may write its uid_map and
    gid_map, so we ask the parent and wait. Then we become root of the namespace and make (or
    join) the pid namespace from inside it, so the init's pid namespace belongs to it.
    """
    _drop_parent_end(cfg)
    try:
        if cfg.user_fd >= 0:
            k.setns(cfg.user_fd, k.CLONE_NEWUSER)
        else:
            k.unshare(k.CLONE_NEWUSER)
            cfg.sock.send(b"userns")
            if cfg.sock.recv(64) != b"mapped":
                os._exit(1)
        try:
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        except OSError:
            raise SpecError("linux.uidMappings", "container uid/gid 0 must be mapped") from None
        enter_for_children(cfg.pid_flags, cfg.time_offsets)
        pid = os.fork()
        if pid == 0:
            run(cfg)
        cfg.sock.send(b"pid:%d" % pid)
        os._exit(0)
    except CorralError as err:
        _report(cfg, str(err))
    except OSError as err:
        _report(cfg, f"{err.strerror or err}" + (f": {err.filename}" if err.filename else ""))
    os._exit(1)


def _drop_parent_end(cfg: InitConfig) -> None:
    """Close our copy of the runtime's socket end, so its death reads as EOF here."""
    if cfg.parent_sock is not None:
        cfg.parent_sock.close()
        cfg.parent_sock = None


def enter_for_children(pid_flags: list[tuple[int, int]], time_offsets: str) -> None:
    """Make or join the pid and time namespaces our next child will be born in."""
    for flag, fd in pid_flags:
        if fd >= 0:
            k.setns(fd, flag)
            continue
        k.unshare(flag)
        if flag == k.CLONE_NEWTIME and time_offsets:
            with open("/proc/self/timens_offsets", "w") as f:
                f.write(time_offsets)


def receive(cfg: InitConfig, want: bytes) -> bool:
    """Wait for ``want`` from the parent, noting a b"joined" that may arrive first."""
    while True:
        msg = cfg.sock.recv(64)
        if msg == b"joined":
            cfg.joined = True
            if want == b"joined":
                return True
            continue
        return bool(msg == want)


def _report(cfg: InitConfig, message: str) -> None:
    try:
        cfg.sock.send(b"error:" + message.encode(errors="replace"))
    except OSError:
        pass


def _preload(spec: dict[str, Any], process: dict[str, Any]) -> None:
    """Import now what the steps after pivot_root will need.

    After pivot_root the host's files, our own Python modules included, are out of reach: an
    import there would fail. Built-in modules (time, fcntl, _socket, _signal) need no file.
    """
    import corral.spec.tables

    if process.get("terminal"):
        import struct  # noqa: F401
    if spec.get("hooks"):
        import corral.runtime.hooks  # noqa: F401


def _setup_and_exec(cfg: InitConfig) -> None:
    spec, process = cfg.spec, cfg.process
    _preload(spec, process)
    # The program is exec'd through a sealed in-memory launcher, never with the host's Python
    # as /proc/self/exe (CVE-2019-5736; see corral.runtime.trampoline). Made now, while fcntl
    # can still be imported and before seccomp, which may not allow memfd_create.
    launcher = trampoline.sealed_launcher()
    os.chdir(cfg.bundle)  # as runc: the init starts in the bundle (the caller's cwd is theirs)
    # 1. Namespaces: join the given ones (user first, so the others are owned by it), then make
    #    the new ones. pid and time were arranged by the parent: they apply from our birth.
    for _kind, fd in cfg.join_fds:
        k.setns(fd)
    if cfg.new_namespaces:
        k.unshare(cfg.new_namespaces)
    os.setsid()
    if spec.get("hostname") is not None:
        k.sethostname(spec["hostname"])
    if spec.get("domainname") is not None:
        k.setdomainname(spec["domainname"])
    if not cfg.no_new_keyring:
        k.join_session_keyring()

    # 2. The filesystem, while the host's paths are still reachable for bind sources.
    plan = cfg.plan
    fs.prepare_root(plan)
    # Opened after the rootfs is bound onto itself: mounts must go on top of that bind mount.
    root_fd = os.open(plan.rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    fs.mount_all(plan, root_fd, cfg.cgroup_sources)
    if plan.setup_dev:
        fs.create_devices(plan, root_fd, cfg.userns)
    os.close(root_fd)
    hooks = spec.get("hooks") or {}
    if hooks.get("prestart") or hooks.get("createRuntime"):
        cfg.sock.send(b"hooks")
        if not receive(cfg, b"go"):
            os._exit(1)  # the parent reported the hook's failure itself
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
    if needs_all and not receive(cfg, b"joined"):
        os._exit(1)
    # The late cgroups (memory) are joined as late as possible, so that the pages this
    # interpreter dirties until execve are not charged to the container: right before execve,
    # unless a cgroup namespace (whose root is taken at unshare) or startContainer hooks need
    # the init inside first, or the process drops root (kernels before 5.16 check a v2
    # migration against the writer's current credentials, not the fd opener's).
    late_join = not (
        cfg.unshare_cgroup
        or (spec.get("hooks") or {}).get("startContainer")
        or (process.get("user") or {}).get("uid", 0) != 0
    )
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
    close_fds_from(3 + cfg.preserve_fds)
    restore_signals()
    if seccomp is not None and nnp:
        from corral.runtime.seccomp import install

        install(cfg.sock, seccomp)

    # 4. Tell the parent we are ready, wait for `start`, run the user's program.
    cfg.sock.send(b"ready")
    cfg.sock.close()
    fifo = os.open(k.fd_path(cfg.fifo_fd), os.O_WRONLY | os.O_CLOEXEC)
    os.write(fifo, b"0")
    os.close(cfg.fifo_fd)
    if hooks.get("startContainer"):
        from corral.runtime.hooks import run_hooks

        run_hooks(hooks["startContainer"], _hook_state(cfg, "created"), "startContainer")
    args, env_map = process["args"], dict(_env_pairs(env))
    if late_join:
        join_late_cgroups(cfg)
    trampoline.execve(launcher, path, args, env_map)


def join_late_cgroups(cfg: InitConfig) -> None:
    """Join the cgroups of Manager.join_plan's late list through the fds opened before fork.

    Called after become_user when the process stays uid 0 (see _setup_and_exec); "0" moves
    the writing process itself, which v1 always allows.
    """
    for fd in cfg.cgroup_procs_fds:
        os.write(fd, b"0")  # "0" means "the writing process"
        os.close(fd)
    cfg.cgroup_procs_fds = []


def _hook_state(cfg: InitConfig, status: str) -> dict[str, Any]:
    """The state JSON for hooks the init runs itself (pid as the host sees it is the parent's
    business; inside, the init is pid 1 of its namespace)."""
    ann = cfg.spec.get("annotations")
    state: dict[str, Any] = {
        "ociVersion": cfg.spec.get("ociVersion", ""), "id": cfg.container_id,
        "status": status, "pid": os.getpid(), "bundle": cfg.bundle,
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
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    if "/" in name and os.path.exists(name):
        raise SpecError("process.args[0]", f'exec: "{name}": permission denied')
    raise SpecError("process.args[0]", f'exec: "{name}": executable file not found in $PATH')


def setup_terminal(process: dict[str, Any], sock: Any, console: bool) -> None:
    """Make a pty inside the container's devpts; its slave becomes our stdio (and, for the
    init, /dev/console). The master goes to the runtime over ``sock``."""
    import fcntl
    import struct

    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0\0\0\0"))[0]
    slave_path = f"/dev/pts/{number}"
    slave = os.open(slave_path, os.O_RDWR | os.O_NOCTTY)
    size = process.get("consoleSize")
    if size:
        fcntl.ioctl(slave, TIOCSWINSZ, struct.pack("HHHH", size["height"], size["width"], 0, 0))
    if console:
        if not os.path.exists("/dev/console"):
            os.close(os.open("/dev/console", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        k.mount(slave_path, "/dev/console", None, k.MS_BIND)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    os.close(slave)
    fcntl.ioctl(0, TIOCSCTTY, 0)
    import _socket

    sock.sendmsg([b"pty"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack("i", master))])
    os.close(master)


def apply_process_limits(process: dict[str, Any]) -> None:
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


def become_user(process: dict[str, Any]) -> None:
    """Switch to the configured user, keeping exactly the configured capabilities.

    The bounding set is cut first (that needs CAP_SETPCAP, which we still have); KEEPCAPS lets
    the permitted set survive setuid away from 0; then capset installs the final sets and the
    ambient ones are raised (they must be permitted and inheritable).
    """
    caps = process.get("capabilities")
    user = process.get("user") or {}
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    if caps is not None:
        from corral.spec.tables import cap_mask

        bounding = cap_mask(caps.get("bounding") or [])
        last = _last_cap()
        for cap in range(last + 1):
            if not bounding >> cap & 1:
                k.prctl(k.PR_CAPBSET_DROP, cap)
        k.prctl(k.PR_SET_KEEPCAPS, 1)
    if "additionalGids" in user or uid != 0 or gid != 0:
        try:
            os.setgroups(list(user.get("additionalGids") or []))
        except PermissionError:
            pass  # a user namespace with setgroups denied keeps the (empty) list it has
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if caps is not None:
        k.prctl(k.PR_SET_KEEPCAPS, 0)
        k.capset(
            cap_mask(caps.get("effective") or []),
            cap_mask(caps.get("permitted") or []),
            cap_mask(caps.get("inheritable") or []),
        )
        # Ambient needs the capability permitted and inheritable; runc 1.1 skips (with a
        # warning) those that are not, and `runc spec` writes ambient without inheritable.
        raisable = cap_mask(caps.get("permitted") or []) & cap_mask(caps.get("inheritable") or [])
        for name in caps.get("ambient") or []:
            from corral.spec.tables import CAPABILITIES

            if raisable >> CAPABILITIES[name] & 1:
                k.prctl(k.PR_CAP_AMBIENT, k.PR_CAP_AMBIENT_RAISE, CAPABILITIES[name])
    if process.get("noNewPrivileges"):
        k.prctl(k.PR_SET_NO_NEW_PRIVS, 1)
    if user.get("umask") is not None:
        os.umask(user["umask"])
    else:
        os.umask(0o022)
    cwd = process.get("cwd") or "/"
    try:
        os.chdir(cwd)
    except OSError as err:
        raise SpecError("process.cwd", f"chdir to {cwd}: {err.strerror}") from None


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return 40


def close_fds_from(first: int) -> None:
    """Every fd from ``first`` up is closed at exec (the first 3 + preserved ones stay)."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd >= first:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass


def restore_signals() -> None:
    """Python ignores SIGPIPE and SIGXFSZ; ignored signals survive exec, so undo that."""
    import _signal

    for sig in (13, 25):  # SIGPIPE, SIGXFSZ
        _signal.signal(sig, _signal.SIG_DFL)
