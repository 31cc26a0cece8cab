"""corral.runtime.trampoline: the sealed launcher the container's program is exec'd through."""

from __future__ import annotations

import os
import subprocess
import sys

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
