"""The waiter: a 100-byte static program that is each running container's parent.

Only a process's parent learns how it ended, so whoever is the init's parent holds its exit
code. conmon is that parent for podman (2 MB of C per container); a Python process per
container would cost 10-20 MB. corral splits the job in two:

- the **waiter** (this module), one per container: the process that created the container
  execs it, so the container's init stays its child. It reaps its children, writes ``(pid,
  wait status)`` records to fd 3 (the container's ``exit`` file) and exits when none is left.
  It also holds, without ever reading them, the read ends of the container's stdout and stderr
  pipes: while it lives the container never gets EPIPE, whoever reads its logs. Once its
  children are gone it waits (at most 5 s) for the monitor to say, through a pipe, that it has
  read those pipes to the end: a container that exits before the monitor looked at it still
  has its output logged.
- the **monitor** (corral.engine.monitor.server), one per engine root, a Python process that
  reopens those pipes through ``/proc/<waiter>/fd/4`` and ``/5``, writes the json-file logs,
  notices the waiter's exit through a pidfd, records the exit code, OOM kill and times, tears
  down, restarts and runs healthchecks.

So a crash of the monitor loses no container and no exit code: the waiters go on, the pipes
fill up and wait, and the next ``corral`` command starts a monitor that adopts them all.

The program is assembled from waiter-x86_64.s and waiter-aarch64.s beside this file (GNU as;
tests/unit/test_engine_monitor_waiter.py assembles them again and compares) and executed from
a sealed memfd, like the runtime's launcher (corral.runtime.trampoline). Its PSS is a few KiB:
a code page and a stack page. On another architecture a ``python -I -S`` loop does the same
(slower to start and ~5 MB, but the same protocol).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import NoReturn

#: The fds of a waiter: 3 its exit file, 4 and 5 the read ends of stdout's and stderr's pipes,
#: 6 and 7 the release pipe (the monitor writes to 7 when it has read 4 and 5 to the end); from
#: 8 on, what it holds for the container's life without ever using it: a published port's
#: reserved host socket (nothing else can bind the port), the socket shortcut's map
#: (corral.engine.network.shortcut).
EXIT_FD, STDOUT_FD, STDERR_FD, RELEASE_R, RELEASE_W, HELD_FD = 3, 4, 5, 6, 7, 8
#: How long a waiter whose container has exited waits for the monitor's release.
RELEASE_WAIT = 5

_CODE = {
    "x86_64": (
        62,
        "4883ec2048c7c7ffffffff488d742404ba000000404531d2b83d0000000f054883f8fc74df4885c0781f89"
        "0424bf030000004889e6ba08000000b8010000000f054883f8fc74e6ebbbc7042406000000c74424040100"
        "000048c74424100500000048c7442418000000004889e7be01000000488d5424104531d24531c0b80f0100"
        "000f0531ffb8e70000000f05",
    ),
    "aarch64": (
        183,
        "ff8300d100008092e11300910200a8d2030080d2882080d2010000d41f1000b120ffff544001f8b7e00300"
        "b9600080d2e1030091020180d2080880d2010000d41f1000b140ffff54efffff17c00080d2e00300b92000"
        "80d2e00700b9a00080d2e00b00f9ff0f00f9e0030091210080d2e2430091030080d2040080d2280980d201"
        "0000d4000080d2c80b80d2010000d4",
    ),
}
_MFD_EXEC = 0x10

# The same loop in Python, for an architecture without the assembled one.
_PYTHON = """
import os
while True:
    try:
        pid, status, _ = os.wait4(-1, os.__dict__.get("WALL", 0x40000000))
    except InterruptedError:
        continue
    except ChildProcessError:
        break
    os.write(3, pid.to_bytes(4, "little") + status.to_bytes(4, "little"))
import select
select.select([6], [], [], 5)
"""


def waiter_elf(machine: str | None = None) -> bytes | None:
    """The waiter as a static ELF executable for ``machine`` (uname -m); None if unknown."""
    from corral.runtime.trampoline import static_elf

    entry = _CODE.get(machine or os.uname().machine)
    if entry is None:
        return None
    e_machine, hexcode = entry
    return static_elf(e_machine, bytes.fromhex(hexcode))


def become_waiter(
    exit_fd: int, stdout_r: int, stderr_r: int, hold: Sequence[int] = ()
) -> NoReturn:
    """Exec the waiter in this process (whose child is the container's init): ``exit_fd``
    becomes fd 3, the pipes' read ends 4 and 5, a new release pipe 6 and 7, the fds of
    ``hold`` 8, 9, ..., fds 0-2 /dev/null; every other fd closes."""
    import sys

    # Everything is first moved above the last target, then onto 3, 4, ...: no dup2 clobbers
    # one of them (nor the program's memfd).
    above = max(9, HELD_FD + len(hold) + 1)
    elf = waiter_elf()
    program = -1
    if elf is not None:
        try:  # MFD_EXEC (Linux 6.3): executable even where vm.memfd_noexec says otherwise
            program = os.memfd_create("corral-waiter", os.MFD_CLOEXEC | _MFD_EXEC)
        except OSError:
            program = os.memfd_create("corral-waiter", os.MFD_CLOEXEC)
        os.write(program, elf)
    if program >= 0:
        program = _dup_above(program, above)
    release = os.pipe()
    high = [_dup_above(fd, above) for fd in (exit_fd, stdout_r, stderr_r, *release, *hold)]
    null = os.open("/dev/null", os.O_RDWR)
    for target in (0, 1, 2):
        os.dup2(null, target)
    targets = range(EXIT_FD, EXIT_FD + len(high))
    for target, fd in zip(targets, high, strict=True):
        os.dup2(fd, target)  # dup2 leaves the copy inheritable
    keep = {0, 1, 2, *targets, program}
    for fd in _open_fds():
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
    if program >= 0:
        os.execve(program, ["corral-waiter"], {})
    os.execve(sys.executable, [sys.executable, "-I", "-S", "-c", _PYTHON], {})


def _dup_above(fd: int, low: int) -> int:
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, low)


def _open_fds() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return list(range(3, 1024))


def exit_status(data: bytes, pid: int) -> int | None:
    """The wait status the waiter recorded for ``pid`` in its exit file's ``data``, if any."""
    for offset in range(0, len(data) - 7, 8):
        if int.from_bytes(data[offset : offset + 4], "little", signed=True) == pid:
            return int.from_bytes(data[offset + 4 : offset + 8], "little")
    return None


def exit_code(status: int) -> int:
    """A wait status as docker reports it: the exit status, or 128+N if killed by signal N."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code
