"""corral.runtime.trampoline: the sealed launcher the container's program is exec'd through."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from corral.runtime import trampoline


@pytest.mark.parametrize(("machine", "e_machine"), [("x86_64", 62), ("aarch64", 183)])
def test_the_launcher_is_a_small_static_elf(machine: str, e_machine: int) -> None:
    elf = trampoline.launcher_elf(machine)
    assert elf is not None and len(elf) < 512
    assert elf[:4] == b"\x7fELF" and elf[4] == 2  # 64-bit
    assert int.from_bytes(elf[18:20], "little") == e_machine
    assert int.from_bytes(elf[56:58], "little") == 1  # one program header: no PT_INTERP


def test_no_launcher_for_an_unknown_machine() -> None:
    assert trampoline.launcher_elf("riscv64") is None


def test_the_memfd_refuses_writes_through_any_path() -> None:
    fd = trampoline.sealed_launcher()
    assert fd is not None
    try:
        with pytest.raises(PermissionError):
            os.write(fd, b"x")
        again = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_APPEND)
        try:
            with pytest.raises(PermissionError):
                os.write(again, b"x")
        finally:
            os.close(again)
        os.lseek(fd, 0, os.SEEK_SET)
        assert os.read(fd, 4) == b"\x7fELF"
    finally:
        os.close(fd)


RUN = """
import os, sys
from corral.runtime import trampoline
fd = trampoline.sealed_launcher()
trampoline.execve(fd, sys.argv[1], sys.argv[2:], {"WHO": "launched"})
"""


def test_it_execs_the_program_with_its_args_and_env() -> None:
    done = subprocess.run(
        [sys.executable, "-c", RUN, "/bin/sh", "sh", "-c", 'echo "$0 $1 $WHO"', "zero", "one"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "zero one launched\n")


def test_a_missing_program_exits_127_with_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-c", RUN, "/nonexistent", "x"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 127
    assert done.stderr == "corral: cannot execute the container process\n"


def test_proc_self_exe_as_an_interpreter_runs_nothing_of_the_host(tmp_path: object) -> None:
    script = os.path.join(str(tmp_path), "evil")
    with open(script, "w") as f:
        f.write("#!/proc/self/exe\nprint('host python ran me')\n")
    os.chmod(script, 0o755)
    done = subprocess.run(
        [sys.executable, "-c", RUN, script, script],
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    assert done.returncode == 127
    assert "host python" not in done.stdout


SOURCES = Path(trampoline.__file__).parent
ASSEMBLERS = {
    "x86_64": ("as", "objcopy"),
    "aarch64": ("aarch64-linux-gnu-as", "aarch64-linux-gnu-objcopy"),
}


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_the_code_is_what_its_source_assembles_to(machine: str, tmp_path: Path) -> None:
    """The hex in trampoline.py is launcher-<machine>.s assembled (scripts/install.sh installs
    binutils for both)."""
    gas, objcopy = ASSEMBLERS[machine]
    if os.uname().machine != "x86_64":
        pytest.skip("the assemblers are named for an x86_64 host")
    obj, raw = tmp_path / "l.o", tmp_path / "l.bin"
    subprocess.run([gas, "-o", obj, SOURCES / f"launcher-{machine}.s"], check=True)
    subprocess.run([objcopy, "-O", "binary", "-j", ".text", obj, raw], check=True)
    elf = trampoline.launcher_elf(machine)
    assert elf is not None and elf[120:] == raw.read_bytes()


WAIT = """
import os, sys
from corral.runtime import trampoline
fd = trampoline.sealed_launcher()
from corral.runtime.init import start_pipe
wait = start_pipe()
if os.fork() == 0:
    trampoline.execve_waiting(fd, wait, "/bin/sh", ["sh", "-c", sys.argv[1]], {"X": "1"})
os.close(wait)
print("launched", flush=True)
sys.stdin.read(1)  # the test looks at the waiting child, then lets it go
"""


def test_the_waiting_launcher_holds_nothing_until_written_to() -> None:
    """The created window: non-dumpable, no host binary, waits for 8 bytes on its pipe."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WAIT, "echo ran $X; ls /proc/self/fd"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        assert proc.stdout.readline() == "launched\n"
        child = _children(proc.pid)[0]
        _wait_for(lambda: os.readlink(f"/proc/{child}/exe").startswith("/memfd:corral-exec"))
        _wait_for(lambda: _state(child) == "S")
        status = Path(f"/proc/{child}/status").read_text()
        assert status.count("\n") > 5
        fds = {n: os.readlink(f"/proc/{child}/fd/{n}") for n in os.listdir(f"/proc/{child}/fd")}
        (wait_fd,) = (n for n, target in fds.items() if int(n) > 2)
        assert fds[wait_fd].startswith("pipe:[")
        got = os.open(f"/proc/{child}/fd/{wait_fd}", os.O_WRONLY | os.O_NONBLOCK)
        os.write(got, struct.pack("=Q", 1))  # what start does
        os.close(got)
        out = proc.stdout.readline() + proc.stdout.readline()
        assert out.startswith("ran 1\n")
        assert wait_fd not in out.split()  # the launcher closed it before the program ran
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


def test_a_bad_control_word_runs_nothing() -> None:
    elf = trampoline.launcher_elf()
    assert elf is not None
    fd = trampoline.sealed_launcher()
    assert fd is not None
    try:
        for argv in (["x", "/bin/true"], ["-1x", "/bin/true"], ["-99", "/bin/true"]):
            done = subprocess.run(
                argv, executable=f"/proc/self/fd/{fd}", pass_fds=(fd,),
                capture_output=True, text=True, check=False, timeout=10,
            )
            assert (done.returncode, done.stderr) == (
                127, "corral: cannot execute the container process\n"
            ), argv
    finally:
        os.close(fd)


@pytest.mark.skipif(shutil.which("qemu-aarch64-static") is None, reason="no qemu-user-static")
def test_the_aarch64_launcher_runs_under_qemu(tmp_path: Path) -> None:
    """aarch64 hosts are rare here: run its launcher under qemu's user-mode emulation (an
    x86_64 program it execs then runs natively)."""
    elf = trampoline.launcher_elf("aarch64")
    assert elf is not None
    path = tmp_path / "launcher"
    path.write_bytes(elf)
    path.chmod(0o755)
    done = subprocess.run(
        ["qemu-aarch64-static", "-0", "-", str(path), "/bin/sh", "sh", "-c", "echo $0 $1",
         "a", "b"],
        capture_output=True, text=True, check=False, timeout=30,
    )
    assert (done.returncode, done.stdout) == (0, "a b\n"), done.stderr
    bad = subprocess.run(
        ["qemu-aarch64-static", "-0", "/proc/self/exe", str(path), "/bin/true"],
        capture_output=True, text=True, check=False, timeout=30,
    )
    assert (bad.returncode, bad.stderr) == (127, "corral: cannot execute the container process\n")


def _children(pid: int) -> list[int]:
    _wait_for(lambda: bool(Path(f"/proc/{pid}/task/{pid}/children").read_text().split()))
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rfind(")") + 2]


def _wait_for(check: object, timeout: float = 5.0) -> None:
    import time

    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_the_launcher_is_execute_only() -> None:
    """Unreadable without CAP_DAC_OVERRIDE, so its exec leaves the process non-dumpable."""
    fd = trampoline.sealed_launcher()
    assert fd is not None
    try:
        assert os.fstat(fd).st_mode & 0o777 == 0o111
    finally:
        os.close(fd)
