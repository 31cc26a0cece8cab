"""The last execve of a container process goes through a sealed in-memory launcher.

Why (CVE-2019-5736): the process that execs the container's program is the runtime, so its
/proc/self/exe is the host's Python interpreter. If the program is a script whose first line is
``#!/proc/self/exe`` (an image can ship one as /bin/sh), the kernel resolves that interpreter
during the execve, in our context: it runs the *host's interpreter* inside the container, as the
container's root, and the attacker's code (the rest of the "script") in it. From there the host's
binary is one ``open("/proc/self/exe", O_WRONLY)`` away, which only ETXTBSY stops, and only while
some other process still runs that interpreter.

The fix is runc's idea (runc 1.1 re-execs itself from a sealed memfd copy, nsenter/
cloned_binary.c) at a fraction of its cost: instead of copying the 6 MB interpreter, the runtime
execs a launcher of a few hundred bytes, built here as a static ELF, held in a memfd sealed
against any write (F_SEAL_WRITE | SHRINK | GROW | SEAL). Its first argument is a control word:
``["-", path, arg0, arg1, ...]`` makes it ``execve(path, [arg0, ...], envp)``; when the
container's program is then executed, /proc/self/exe is the sealed launcher, never a file of the
host:

- ``#!/proc/self/exe`` now names the launcher, started with the script's interpreter path as its
  control word: not a "-" word, so it exits 127 with a one-line message on stderr. Nothing of
  the host runs.
- the launcher's /proc/<pid>/exe, which other container processes may open, is the memfd: the
  seals refuse every write.

The launcher is non-dumpable from its exec, not only from its first instruction's prctl: the
memfd is execute-only, and the caller execs it without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH
in its effective set (corral.runtime.init.unreadable_launcher), so the kernel, which cannot let
it read the file, makes the new image non-dumpable at exec. Otherwise a process of the container
racing for those few instructions could open its /proc/<pid>/ files (seen in a test: it found
the sealed memfd, harmless, and the pipe, which would let it start the program early). Only a
seccomp filter that refuses capset leaves that moment open.

The created window. Between ``create`` and ``start`` the container's init waits for the word to
go. If the host's Python did that waiting, the container's PID 1 would be the host interpreter
for as long as the container stays created, with the caller's environment and the runtime's
files in /proc/1/. So the init ends ``create`` by exec'ing the launcher with ``["-N", path,
arg0, ...]``: it makes itself non-dumpable, blocks reading 8 bytes from fd N (a pipe that
``start`` opens through /proc/<pid>/fd/N and writes to), closes it and execs the program. From
the end of ``create`` PID 1 is 250 bytes of sealed code with the container's environment, stdio,
the preserved fds and one pipe: nothing of the host to reach, not even a path.

Cost: memfd_create + one 200-byte write + fcntl, and one extra execve of a static program with no
loader and no libraries: ~0.1-0.2 ms (bench: ``python -m corral.runtime.trampoline``).

The memfd is made early (the caller does it before seccomp is loaded, which might not allow
memfd_create, and before pivot_root, while ``fcntl`` can still be imported) and is close-on-exec;
the exec goes through ``/proc/self/fd/N`` with the execve syscall (a seccomp profile that allows the
container's program to start allows that), or fexecve where the container has no /proc.
"""

import posix

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

# The launcher's code, position-independent, assembled from launcher-x86_64.s and
# launcher-aarch64.s beside this file (GNU as; tests/unit/test_security_trampoline.py assembles
# them again and compares). What it does with its argv:
#   ["-", PATH, ARG0, ...]    execve(PATH, [ARG0, ...], envp)
#   ["-N", PATH, ARG0, ...]   a created container's init: prctl(PR_SET_DUMPABLE, 0), wait for
#                             8 bytes on fd N (a pipe `start` writes to), close N, execve
#   anything else             "corral: cannot execute the container process", exit 127
_MESSAGE = b"corral: cannot execute the container process\n".hex()  # 45 bytes, as in the code
_CODE = {
    "x86_64": (
        62,
        "4889e5488b5d004883fb02727a488b7508803e2d757148ffc6803e0074554531e40fb60685c0741483e83083"
        "f80977574d6be40a4901c448ffc6ebe5bf0400000031f6b89d0000000f054883ec104c89e74889e6ba080000"
        "0031c00f054883f8fc74eb4883f808751e4c89e7b8030000000f05488b7d10488d7518488d54dd10b83b0000"
        "000f05bf02000000488d3518000000ba2d000000b8010000000f05bf7f000000b8e70000000f05"
        + _MESSAGE,
    ),
    "aarch64": (
        183,
        "f5030091b30240f97f0a00f1e3040054a10640f9221440385fb40071610400542200403962030034140080d2"
        "430180d222144038c200003442c000515f24007148030054940a039bfaffff17800080d2010080d2e81480d2"
        "010000d4ff4300d1e00314aae1030091020180d2e80780d2010000d41f1000b140ffff541f2000f141010054"
        "e00314aa280780d2010000d4a00a40f9a1620091a20e138b42400091a81b80d2010000d4400080d2e1000010"
        "a20580d2080880d2010000d4e00f80d2c80b80d2010000d4"
        + _MESSAGE,
    ),
}
_BASE = 0x400000
_MFD_CLOEXEC = 0x1
_MFD_ALLOW_SEALING = 0x2
_MFD_EXEC = 0x10  # Linux 6.3: executable even where vm.memfd_noexec makes memfds noexec
_F_ADD_SEALS = 1033
_SEALS = 0x1 | 0x2 | 0x4 | 0x8  # F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE


def launcher_elf(machine: str | None = None) -> bytes | None:
    """The launcher as a static ELF executable for ``machine`` (uname -m); None if unknown."""
    entry = _CODE.get(machine or posix.uname().machine)
    if entry is None:
        return None
    e_machine, hexcode = entry
    return static_elf(e_machine, bytes.fromhex(hexcode))


def static_elf(e_machine: int, code: bytes) -> bytes:
    """The smallest static ELF executable around ``code`` (position-dependent, entered at its
    first byte): a 64-byte header, one PT_LOAD program header mapping the whole file read and
    execute at ``_BASE``, then the code. The engine's waiter is built the same way."""
    size = 64 + 56 + len(code)

    def u(value: int, width: int) -> bytes:
        return value.to_bytes(width, "little")

    header = (
        b"\x7fELF\x02\x01\x01" + bytes(9)  # 64-bit, little-endian, version 1, System V ABI
        + u(2, 2) + u(e_machine, 2) + u(1, 4)  # ET_EXEC
        + u(_BASE + 120, 8) + u(64, 8) + u(0, 8)  # entry, program headers at 64, no sections
        + u(0, 4) + u(64, 2) + u(56, 2) + u(1, 2) + u(0, 2) + u(0, 2) + u(0, 2)
    )
    program = (
        u(1, 4) + u(5, 4)  # PT_LOAD, PF_R | PF_X
        + u(0, 8) + u(_BASE, 8) + u(_BASE, 8)  # the whole file, mapped at _BASE
        + u(size, 8) + u(size, 8) + u(0x10000, 8)
    )
    return header + program + code


def sealed_launcher() -> int | None:
    """A close-on-exec memfd holding the launcher, sealed against writes; None when this
    architecture has no launcher (the caller then execs directly, as before)."""
    elf = launcher_elf()
    if elf is None:
        return None
    import fcntl

    try:
        fd = posix.memfd_create("corral-exec", _MFD_CLOEXEC | _MFD_ALLOW_SEALING | _MFD_EXEC)
    except OSError as err:
        if err.errno != 22:  # EINVAL: a kernel before 6.3 does not know MFD_EXEC
            raise
        fd = posix.memfd_create("corral-exec", _MFD_CLOEXEC | _MFD_ALLOW_SEALING)
    try:
        posix.write(fd, elf)
        # Execute-only: a process without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH (the runtime
        # spec's default capabilities) cannot read it, so the kernel makes it non-dumpable from
        # its exec (would_dump) instead of from its first instruction's prctl.
        posix.fchmod(fd, 0o111)
        fcntl.fcntl(fd, _F_ADD_SEALS, _SEALS)
    except BaseException:
        posix.close(fd)
        raise
    return fd


def execve(launcher: int | None, path: str, args: list[str], env: dict[str, str]) -> "NoReturn":
    """Exec ``path`` with ``args`` through the sealed launcher (or directly without one)."""
    if launcher is None:
        posix.execve(path, args, env)
    _exec_launcher(launcher, ["-", path, *args], env)


def execve_waiting(
    launcher: int, wait_fd: int, path: str, args: list[str], env: dict[str, str]
) -> "NoReturn":
    """Become the launcher now; it waits for 8 bytes on ``wait_fd`` (a pipe that `start`
    writes to), then execs ``path``. ``wait_fd`` must not be close-on-exec; the launcher closes
    it before the program runs."""
    _exec_launcher(launcher, [f"-{wait_fd}", path, *args], env)


def _exec_launcher(launcher: int, argv: list[str], env: dict[str, str]) -> "NoReturn":
    try:
        posix.execve(f"/proc/self/fd/{launcher}", argv, env)
    except FileNotFoundError:  # no /proc in the container: fexecve (execveat) instead
        posix.execve(launcher, argv, env)


def _bench(rounds: int = 200) -> None:  # pragma: no cover - a measurement, not a test
    """Time fork + exec of /bin/true, directly and through the launcher."""
    import time

    def run(through: bool) -> float:
        start = time.perf_counter()
        for _ in range(rounds):
            pid = posix.fork()
            if pid == 0:
                try:
                    fd = sealed_launcher() if through else None
                    execve(fd, "/bin/true", ["true"], {})
                finally:
                    posix._exit(127)
            posix.waitpid(pid, 0)
        return (time.perf_counter() - start) / rounds * 1000

    direct, launched = run(False), run(True)
    print(f"fork+exec /bin/true: direct {direct:.3f} ms, through the launcher {launched:.3f} ms")


if __name__ == "__main__":  # pragma: no cover
    _bench()
