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
against any write (F_SEAL_WRITE | SHRINK | GROW | SEAL). The launcher does one thing,
``execve(argv[0], argv + 1, envp)`` (it is started with argv = [path, arg0, arg1, ...]); when
the container's program is then executed, /proc/self/exe is the sealed launcher, never a file
of the host:

- ``#!/proc/self/exe`` now names the launcher: started as the script's interpreter it execs the
  script again with one argument fewer each round, and exits 127 (a one-line message on stderr)
  when they run out. Nothing of the host runs.
- the launcher's /proc/<pid>/exe, which other container processes may open (it is dumpable), is
  the memfd: the seals refuse every write.

Cost: memfd_create + one 200-byte write + fcntl, and one extra execve of a static program with no
loader and no libraries: ~0.1-0.2 ms (bench: ``python -m corral.runtime.trampoline``).

The memfd is made early (the caller does it before seccomp is loaded, which might not allow
memfd_create, and before pivot_root, while ``fcntl`` can still be imported) and is close-on-exec;
the exec goes through ``/proc/self/fd/N`` with the execve syscall (a seccomp profile that allows the
container's program to start allows that), or fexecve where the container has no /proc.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

# The launcher's code, position-independent; assembled from (x86_64, Intel syntax):
#   mov rax,[rsp]; cmp rax,2; jb fail          argc < 2: nothing to run
#   mov rdi,[rsp+8]; lea rsi,[rsp+16]          rdi = argv[0], rsi = &argv[1]
#   lea rdx,[rsp+rax*8+16]; mov eax,59; syscall   rdx = envp; execve(argv[0], &argv[1], envp)
#   fail: write(2, msg, 45); exit_group(127)
# and the same for aarch64 (ldr/cmp/b.lo, add x2, sp, x2, lsl #3; svc #0 with x8 = 221).
# The kernel's argv for it is [path, arg0, arg1, ...]: it runs execve(path, [arg0, ...], envp).
_MESSAGE = b"corral: cannot execute the container process\n".hex()  # 45 bytes, as in the code
_CODE = {
    "x86_64": (
        62,
        "488b04244883f8027216488b7c2408488d742410488d54c410b83b0000000f05bf02000000488d3518000000"
        "ba2d000000b8010000000f05bf7f000000b8e70000000f05" + _MESSAGE,
    ),
    "aarch64": (
        183,
        "e20340f95f0800f1e3000054e00740f9e1430091e26f228b42400091a81b80d2010000d4400080d2e1000010"
        "a20580d2080880d2010000d4e00f80d2c80b80d2010000d4" + _MESSAGE,
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
    entry = _CODE.get(machine or os.uname().machine)
    if entry is None:
        return None
    e_machine, hexcode = entry
    code = bytes.fromhex(hexcode)
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
        fd = os.memfd_create("corral-exec", _MFD_CLOEXEC | _MFD_ALLOW_SEALING | _MFD_EXEC)
    except OSError as err:
        if err.errno != 22:  # EINVAL: a kernel before 6.3 does not know MFD_EXEC
            raise
        fd = os.memfd_create("corral-exec", _MFD_CLOEXEC | _MFD_ALLOW_SEALING)
    try:
        os.write(fd, elf)
        fcntl.fcntl(fd, _F_ADD_SEALS, _SEALS)
    except BaseException:
        os.close(fd)
        raise
    return fd


def execve(launcher: int | None, path: str, args: list[str], env: dict[str, str]) -> NoReturn:
    """Exec ``path`` with ``args`` through the sealed launcher (or directly without one)."""
    if launcher is None:
        os.execve(path, args, env)
    try:
        os.execve(f"/proc/self/fd/{launcher}", [path, *args], env)
    except FileNotFoundError:  # no /proc in the container: fexecve (execveat) instead
        os.execve(launcher, [path, *args], env)


def _bench(rounds: int = 200) -> None:  # pragma: no cover - a measurement, not a test
    """Time fork + exec of /bin/true, directly and through the launcher."""
    import time

    def run(through: bool) -> float:
        start = time.perf_counter()
        for _ in range(rounds):
            pid = os.fork()
            if pid == 0:
                try:
                    fd = sealed_launcher() if through else None
                    execve(fd, "/bin/true", ["true"], {})
                finally:
                    os._exit(127)
            os.waitpid(pid, 0)
        return (time.perf_counter() - start) / rounds * 1000

    direct, launched = run(False), run(True)
    print(f"fork+exec /bin/true: direct {direct:.3f} ms, through the launcher {launched:.3f} ms")


if __name__ == "__main__":  # pragma: no cover
    _bench()
