"""What the runtime and the processes it forks say to each other, all of it.

``create`` and ``exec`` fork a child that builds the container process; the two talk over a
SOCK_SEQPACKET socketpair (one message per send, never merged or split). The child's end is
close-on-exec, so the parent reads end-of-file once the child has exec'd.

=======================  ==================  ====================================================
message                  direction           meaning
=======================  ==================  ====================================================
``USERNS``               stage -> runtime    a new user namespace exists: write its id maps
``MAPPED``               runtime -> stage    the maps are written
``PID`` + b"N"           stage -> runtime    the init (or exec'd process) forked by the
                                             user-namespace stage is pid N (host's view)
``CGROUPS``              runtime -> init     the container's cgroup exists now (v1 and hybrid
                                             hosts: the runtime makes it while the init makes
                                             its namespaces; the init waits for this before it
                                             mounts or opens anything of it)
``JOINED``               runtime -> init     the runtime moved the init into its background
                                             cgroups (only sent to an init that asks: one making
                                             a cgroup namespace)
``MOUNTS`` + b"N"        init -> runtime     no mount namespace of its own: the rootfs has N
                                             mounts stacked before the init's (delete detaches
                                             the ones above)
``HOOKS``                init -> runtime     mounts are done: run prestart/createRuntime now
``GO`` / ``STOP``        runtime -> init     the hooks passed / one failed (the init exits)
``PTY`` + fd             child -> runtime    the terminal's master side (SCM_RIGHTS)
``SECCOMP`` + fd         child -> runtime    the seccomp notify listener fd (SCM_RIGHTS), for
                                             linux.seccomp.listenerPath
``FILTERING``            child -> runtime    the seccomp filter goes on now: if the child dies
                                             without a word from here on, the filter stopped it
``READY`` + b"N"         init -> runtime     all set up; the init now execs the launcher, which
                                             waits on its pipe N for ``start``
``ERROR`` + text         child -> runtime    setup failed: ``text`` is the one-line message;
                                             the child exits
(end of file)            child -> runtime    the child exec'd (the launcher, or the program)
=======================  ==================  ====================================================

What the init is told before fork is an :class:`InitConfig`, made by the runtime: it lives here,
with the messages, so that the runtime need not load corral.runtime.init (the init's own code,
imported by the child after fork, in parallel with the runtime's work on the cgroup).
"""

from corral import sys as k

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from corral.plan.rootfs import RootfsPlan

USERNS = b"userns"
MAPPED = b"mapped"
PID = b"pid:"
JOINED = b"joined"
CGROUPS = b"cgroups"
MOUNTS = b"mounts:"
HOOKS = b"hooks"
GO = b"go"
STOP = b"stop"
PTY = b"pty"
SECCOMP = b"seccomp"
FILTERING = b"filtering"
READY = b"ready:"
ERROR = b"error:"

MAX_CONTROL = 64  # the longest message the child waits for (USERNS, JOINED, GO ...)


def error(text: str) -> bytes:
    """The ERROR message for ``text``."""
    return ERROR + text.encode(errors="replace")


def number(message: bytes, prefix: bytes) -> int:
    """N from ``prefix + b"N"`` (PID, MOUNTS, READY)."""
    return int(message[len(prefix) :])


class InitConfig:
    """Everything the init needs, prepared by the parent before fork (fds stay open across it)."""

    __slots__ = (
        "bundle",
        "cgroup_deferred",
        "cgroup_early",
        "cgroup_fd",
        "cgroup_join_paths",
        "cgroup_procs_fds",
        "cgroup_sources",
        "container_id",
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
        "stdio",
        "time_offsets",
        "unshare_cgroup",
        "user_fd",
        "userns",
    )

    def __init__(self, spec: "dict[str, Any]", plan: "RootfsPlan") -> None:
        self.spec = spec
        self.container_id = ""
        self.bundle = ""
        self.process: dict[str, Any] = spec["process"]
        self.plan = plan
        self.sock: Any = None
        self.parent_sock: Any = None  # the runtime's end: closed at once in the child
        self.cgroup_procs_fds: list[int] = []  # joined by the init itself, just before exec
        # Deferred (v1 and hybrid hosts): the parent makes the cgroup while the init makes its
        # namespaces, says CGROUPS, and the init opens these (the files of cgroup_procs_fds).
        self.cgroup_join_paths: list[str] = []
        self.cgroup_deferred = False  # wait for CGROUPS before touching the cgroup
        self.cgroup_early: list[str] = []  # cgroup.procs files the parent moves the init into
        self.cgroup_fd = -1  # the parent's: a v2 cgroup the init is born in (clone3), or -1
        self.joined = False  # the parent said JOINED (it may say so before we ask anything)
        self.cgroup_sources: list[tuple[str, str]] = []
        self.join_fds: list[tuple[str, int]] = []  # (namespace type, fd) to setns into
        self.new_namespaces = 0  # CLONE_NEW* flags the init unshares itself
        self.unshare_cgroup = False  # cgroup ns is unshared after joining the cgroup
        self.userns = False  # the container has a user namespace (new, or user_fd to join)
        self.user_fd = -1
        self.pid_flags: list[tuple[int, int]] = []  # (CLONE_NEWPID or CLONE_NEWTIME, fd or -1)
        self.time_offsets = ""
        self.preserve_fds = 0  # fds 3 .. 3+preserve_fds-1 go to the program, on purpose
        self.no_new_keyring = False
        self.stdio: tuple[int, int, int] | None = None  # to dup2 onto 0-2 (a foreground run)

    def own_fds(self) -> set[int]:
        """The fds the init itself needs until it execs (all close-on-exec)."""
        fds = {self.sock.fileno(), self.user_fd, *self.cgroup_procs_fds}
        fds.update(fd for _kind, fd in self.join_fds)
        fds.update(fd for _flag, fd in self.pid_flags)
        fds.discard(-1)
        return fds


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
