"""The created window: between ``create`` and ``start`` nothing of the host is reachable.

CVE-2019-5736 in the shape issue 8 found it: while a container was ``created`` its PID 1 was
the host's Python, dumpable. A process in the container (one ``exec``'d into it, or one in a
second container sharing its pid namespace) opened ``/proc/<init>/exe``, held the handle, and
after ``start`` (once no process ran that interpreter any more, so no ETXTBSY) reopened it for
writing: the host's interpreter was overwritten, and the next runtime call ran the attacker's
code as root. In the same window ``/proc/<init>/environ`` showed the caller's environment and
``/proc/<init>/fd`` the runtime's files.

These tests run the whole chain against a *copy* of the interpreter that the runtime under
test is started with (the real one is never at risk): the attacker appends to it if it ever
gets a handle. They pass when the copy is unchanged, which needs the init to be non-dumpable
from its first instruction and to be the sealed launcher, not Python, once ``create`` returns.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import Runc
from helpers.paths import REPO

SECRET = "CORRAL_TEST_SECRET=the-callers-environment"

# Runs inside the container. $TARGET is "dev:ino" of the interpreter copy, $PIDS the /proc
# entries to try. Any handle on the copy is held, and after `start` reopened for appending.
ATTACK = r"""
found=""
end=$(( $(date +%s) + ${SCAN:-1} ))
while [ -z "$found" ] && [ "$(date +%s)" -le "$end" ]; do
  for p in $PIDS; do
    [ "$p" = "/proc/$$" ] && continue
    # (`command`: a failed redirection of a bare `exec` would end the shell)
    if command exec 3<"$p/exe" 2>/dev/null; then
      if [ "$(stat -L -c %d:%i /proc/self/fd/3)" = "$TARGET" ]; then found=$p; break; fi
      exec 3<&-
    fi
  done
done
# HOLD: the attacker's container is the pid namespace the victim joined; it must outlive the
# victim's start, or the namespace's end would kill the victim.
if [ -z "$found" ]; then echo NO-HANDLE > /result; sleep "${HOLD:-0}"; exit 0; fi
echo "HANDLE $found" > /result
cat "$found/environ" 2>/dev/null | tr '\0' '\n' | grep CORRAL_TEST_SECRET >> /result
i=0
while [ $i -lt 40 ]; do
  i=$((i + 1)); sleep 0.1
  if echo '#pwned' 2>/dev/null >>/proc/self/fd/3; then echo WROTE >> /result; exit 0; fi
done
echo NOT-WRITTEN >> /result
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def interpreter_copy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy of the host's Python, and a corral-runc launcher script that runs on it."""
    where = tmp_path_factory.mktemp("python-copy")
    python = where / "python3"
    shutil.copy2(os.path.realpath(sys.executable), python)
    script = where / "corral-runc"
    script.write_text(
        f"#!{python} -IS\nimport sys\nsys.path.insert(0, {str(REPO / 'src')!r})\n"
        "from corral.cli.runc import run\nrun()\n"
    )
    script.chmod(0o755)
    yield python


def runtime_on(copy: Path, root: Path) -> Runc:
    return Runc(root, command=[str(copy.parent / "corral-runc")])


def writable(config: dict[str, Any]) -> None:
    config["root"]["readonly"] = False  # the attacker writes its findings to /result


def secret_env() -> dict[str, str]:
    env = dict(os.environ)
    key, _, value = SECRET.partition("=")
    env[key] = value
    return env


def dev_ino(path: Path) -> str:
    st = path.stat()
    return f"{st.st_dev}:{st.st_ino}"


def wait_for_result(path: Path, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            text = path.read_text()
            if "NO-HANDLE" in text or "WROTE" in text or "NOT-WRITTEN" in text:
                return text
        time.sleep(0.1)
    seen = path.read_text() if path.exists() else ""
    raise AssertionError(f"the attacker never finished: {seen}")


def start_and_check(runtime: Runc, cid: str, result: Path, copy: Path, before: str) -> None:
    """Start the victim (the interpreter copy now runs nowhere), then check what the attacker
    got: no handle on the copy, and the copy unchanged."""
    runtime("start", cid, check=True)
    found = wait_for_result(result)
    assert found.startswith("NO-HANDLE"), found
    assert sha256(copy) == before


def test_exec_into_a_created_container_cannot_reach_the_interpreter(
    interpreter_copy: Path, runc_root: Path, make_bundle: Any, cid: str
) -> None:
    before = sha256(interpreter_copy)
    runtime = runtime_on(interpreter_copy, runc_root)
    bundle = make_bundle(["sleep", "5"], edit=writable)
    runtime("create", "--bundle", bundle, cid, env=secret_env(), check=True)
    attacker = [
        "exec", "-d", "--env", f"TARGET={dev_ino(interpreter_copy)}", "--env", "PIDS=/proc/1",
        cid, "sh", "-c", ATTACK,
    ]
    runtime(*attacker, env=secret_env(), check=True)
    time.sleep(1.2)  # the attacker has looked at PID 1 for a second of the created window
    start_and_check(runtime, cid, bundle.rootfs / "result", interpreter_copy, before)


def test_a_second_container_sharing_the_pid_namespace_cannot_reach_it(
    interpreter_copy: Path, runc_root: Path, make_bundle: Any, cid: str
) -> None:
    before = sha256(interpreter_copy)
    runtime = runtime_on(interpreter_copy, runc_root)
    attacker = make_bundle(["sh", "-c", ATTACK], edit=writable, env=[
        "PATH=/bin", f"TARGET={dev_ino(interpreter_copy)}", "PIDS=/proc/[0-9]*", "SCAN=4",
        "HOLD=60",
    ])
    runtime("run", "-d", "--bundle", attacker, f"{cid}-a", check=True)
    attacker_pid = runtime("state", f"{cid}-a", check=True).stdout.split('"pid": ')[1]
    victim = make_bundle(["true"])
    with victim.edit() as config:
        for ns in config["linux"]["namespaces"]:
            if ns["type"] == "pid":
                ns["path"] = f"/proc/{int(attacker_pid.split(',')[0])}/ns/pid"
    runtime("create", "--bundle", victim, cid, env=secret_env(), check=True)
    time.sleep(1.5)
    start_and_check(runtime, cid, attacker.rootfs / "result", interpreter_copy, before)


def test_the_created_init_holds_nothing_of_the_host(
    corral_runc: Runc, runc_root: Path, make_bundle: Any, cid: str
) -> None:
    """Seen from the host: exe, environ and fds of a created container's PID 1, with a caller
    that had a directory of the host open as fd 7 and a secret in its environment."""
    bundle = make_bundle(["true"], env=["PATH=/bin", "ONLY=this"])
    with _dir_fd("/") as fd7, tempfile.TemporaryFile() as err:
        done = subprocess.run(
            corral_runc.argv("create", "--bundle", bundle, cid), env=secret_env(),
            pass_fds=(fd7,), stdin=subprocess.DEVNULL, stdout=err, stderr=err, check=False,
        )
        err.seek(0)
        assert done.returncode == 0, err.read()
    pid = int(corral_runc("state", cid, check=True).stdout.split('"pid": ')[1].split(",")[0])
    assert os.readlink(f"/proc/{pid}/exe").startswith("/memfd:corral-exec")
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert sorted(e for e in environ if e) == [b"ONLY=this", b"PATH=/bin"]
    fds = {int(n): os.readlink(f"/proc/{pid}/fd/{n}") for n in os.listdir(f"/proc/{pid}/fd")}
    extra = {n: target for n, target in fds.items() if n > 2}
    assert len(extra) == 1 and next(iter(extra.values())).startswith("pipe:["), fds
    status = Path(f"/proc/{pid}/status").read_text()
    assert "CapEff:\t0000000020000420" in status  # the container's capabilities, not ours
    # Inside, the init refuses to be looked at (non-dumpable), even by the container's root.
    seen = corral_runc("exec", cid, "sh", "-c", "cat /proc/1/environ; ls /proc/1/fd")
    assert "ONLY=this" not in seen.stdout and "Permission denied" in seen.stderr, seen
    corral_runc("start", cid, check=True)


class _dir_fd:
    """An O_RDONLY fd on a directory, inheritable, closed on exit: the caller's `exec 7</`."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)

    def __enter__(self) -> int:
        return self.fd

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)
