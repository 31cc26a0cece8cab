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
"""

USERNS = b"userns"
MAPPED = b"mapped"
PID = b"pid:"
JOINED = b"joined"
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
