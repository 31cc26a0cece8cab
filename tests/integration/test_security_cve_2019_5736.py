"""CVE-2019-5736: a container must never get a writable handle on a host binary.

The attack: the image's /bin/sh is a script whose first line is ``#!/proc/self/exe``. When the
runtime execs it, the kernel resolves that interpreter in the runtime's context. A runtime whose
/proc/self/exe is still its own binary at that moment (for corral: the host's Python) runs
*itself* inside the container, as the container's root, with the rest of the "script" as its
program: Python reads the file as Python source (the ``#!`` line is a comment). From there the
host's interpreter is one ``open("/proc/self/exe", O_WRONLY)`` away.

The image here carries what the host's Python needs to start (the loader and libraries copied,
the standard library bound read-only), so on a broken runtime the payload really runs. The
payload reports who it is (the device and inode of its /proc/self/exe) and whether it could
open it for writing, directly and, through an O_PATH handle, after it exited; it never writes a
byte. The test asserts the payload never ran as the host's interpreter, and that the
interpreter's file (the venv's python, resolved) is unchanged. Passes against runc 1.1, which
runs from a sealed memfd copy of itself.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

PAYLOAD = """#!/proc/self/exe
import os
st = os.stat("/proc/self/exe")
print("EXE", st.st_dev, st.st_ino, flush=True)
try:
    fd = os.open("/proc/self/exe", os.O_WRONLY | os.O_APPEND)
except OSError as err:
    print("DENIED", err.errno, flush=True)
else:
    print("WRITABLE", flush=True)
    os.close(fd)
held = os.open("/proc/self/exe", os.O_PATH)
os.set_inheritable(held, True)
if os.fork() == 0:  # try again once this interpreter has exited
    script = (
        "(for i in 1 2 3 4 5 6 7 8 9 10; do sleep 0.1;"
        f" if true 4>>/proc/self/fd/{held}; then echo WRITABLE-LATER; exit; fi; done;"
        " echo DENIED-LATER) > /dev/shm/later 2>&1"
    )
    os.execv("/bin/busybox", ["sh", "-c", script])
"""

HOST_PYTHON = Path(os.path.realpath(sys.executable))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def host_interpreters() -> dict[str, tuple[int, int]]:
    out = {}
    for p in {HOST_PYTHON, Path(os.path.realpath(Path(sys.prefix) / "bin" / "python"))}:
        st = p.stat()
        out[str(p)] = (st.st_dev, st.st_ino)
    return out


def arm(bundle: Any) -> None:
    """Make the image able to run the host's Python (what an attacker's image would ship)."""
    rootfs = bundle.rootfs
    libs = subprocess.run(["ldd", str(HOST_PYTHON)], capture_output=True, text=True, check=True)
    for line in libs.stdout.splitlines():
        path = line.split("=>")[-1].split("(")[0].strip()
        if path.startswith("/"):
            dest = rootfs / path.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(os.path.realpath(path), dest)
    sh = rootfs / "bin" / "sh"
    sh.unlink()
    sh.write_text(PAYLOAD)
    sh.chmod(0o755)
    stdlib = Path(os.__file__).parent  # /usr/lib/python3.11
    with bundle.edit() as config:
        config["mounts"].append(
            {
                "destination": str(stdlib),
                "type": "bind",
                "source": str(stdlib),
                "options": ["rbind", "ro"],
            }
        )
        config["process"]["env"].append(f"PYTHONHOME={sys.base_prefix}")


def check(output: str, before: dict[str, str]) -> None:
    hosts = host_interpreters()
    for line in output.splitlines():
        if line.startswith("EXE"):
            _, dev, ino = line.split()
            assert (int(dev), int(ino)) not in hosts.values(), (
                f"the container ran the host's interpreter: {output}"
            )
        assert "WRITABLE" not in line, output
    assert {p: sha256(Path(p)) for p in hosts} == before


@pytest.mark.parametrize("program", ["/bin/sh", "sh"])
def test_exec_of_a_proc_self_exe_script_never_runs_the_host_interpreter(
    corral_runc: Any, bundle: Any, cid: str, program: str
) -> None:
    before = {p: sha256(Path(p)) for p in host_interpreters()}
    arm(bundle)
    bundle.set(args=["sleep", "30"])
    corral_runc("run", "-d", "--bundle", bundle, cid, check=True)
    done = corral_runc("exec", "--env", f"PYTHONHOME={sys.base_prefix}", cid, program)
    time.sleep(1.3)  # the payload's child tries again after its parent exited
    later = corral_runc("exec", cid, "cat", "/dev/shm/later")  # absent: the payload never ran
    check(done.stdout + done.stderr + later.stdout, before)
    assert done.returncode != 0  # the script cannot run at all: its interpreter is no program


def test_run_of_a_proc_self_exe_script_never_runs_the_host_interpreter(
    corral_runc: Any, bundle: Any, cid: str
) -> None:
    before = {p: sha256(Path(p)) for p in host_interpreters()}
    arm(bundle)
    bundle.set(args=["/bin/sh"])
    done = corral_runc("run", "--bundle", bundle, cid)
    check(done.stdout + done.stderr, before)
    assert done.returncode != 0
