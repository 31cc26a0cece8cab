"""Processes started with ``exec`` get the container's isolation too (issue 4).

The container's linux.seccomp filter applies to every process the runtime starts in it, not only
to the init (runc loads it in each "tenant" process). Every test passes against runc 1.1 too
(``CORRAL_RUNC=runc``).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

ENOMEDIUM = 123


def deny_mkdir(action: str = "SCMP_ACT_ERRNO") -> dict[str, Any]:
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": action}],
    }


def start_sleeper(
    corral_runc: Any, bundle: Any, cid: str, seccomp: dict[str, Any], nnp: bool
) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["linux"]["seccomp"] = seccomp
        config["process"]["noNewPrivileges"] = nnp

    bundle.set(args=["sleep", "60"], edit=edit)
    corral_runc("run", "-d", "--bundle", bundle, cid, check=True)


@pytest.mark.parametrize("nnp", [False, True], ids=["caps-first", "no-new-privs"])
def test_exec_gets_the_containers_seccomp_filter(
    corral_runc: Any, bundle: Any, cid: str, nnp: bool
) -> None:
    start_sleeper(corral_runc, bundle, cid, deny_mkdir(), nnp)
    done = corral_runc("exec", cid, "mkdir", "/dev/shm/x")
    assert done.returncode != 0
    assert "Operation not permitted" in done.stderr
    # Only the filter is in the way: touch (openat) works in the same place.
    assert corral_runc("exec", cid, "touch", "/dev/shm/y").returncode == 0
    done = corral_runc("exec", cid, "sh", "-c", "ls -d /dev/shm/x 2>&1; true")
    assert "No such file" in done.stdout


def test_exec_with_a_user_and_no_new_privs_flag_gets_the_filter(
    corral_runc: Any, bundle: Any, cid: str
) -> None:
    start_sleeper(corral_runc, bundle, cid, deny_mkdir(), False)
    done = corral_runc("exec", "--user", "1000:1000", "--no-new-privs", cid, "mkdir", "/dev/shm/x")
    assert done.returncode != 0
    assert "Operation not permitted" in done.stderr


class TwoListener:
    """A seccomp agent that takes two listener fds (the init's, then exec's) and answers
    every notification with ENOMEDIUM."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen(2)
        self.server.settimeout(30)
        self.states: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.fds: list[int] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        import fcntl
        import select
        import struct

        notif = struct.Struct("=QIIiIQ6Q")
        resp = struct.Struct("=QqiI")
        try:
            while len(self.states) < 2:
                conn, _ = self.server.accept()
                with conn:
                    msg, fds, _f, _a = socket.recv_fds(conn, 65536, 4)
                self.states.append(json.loads(msg))
                self.fds.extend(fds)
            poller = select.poll()
            for fd in self.fds:
                poller.register(fd, select.POLLIN)
            while not self.stop.is_set():
                for fd, ev in poller.poll(100):
                    if ev & (select.POLLHUP | select.POLLERR):
                        poller.unregister(fd)
                        continue
                    buf = bytearray(notif.size)
                    try:
                        fcntl.ioctl(fd, 0xC0502100, buf, True)
                        nid = notif.unpack(buf)[0]
                        fcntl.ioctl(fd, 0xC0182101, bytearray(resp.pack(nid, 0, -ENOMEDIUM, 0)))
                    except OSError:
                        continue
        except BaseException as err:
            self.error = err

    def close(self) -> None:
        import os

        self.stop.set()
        self.thread.join(10)
        for fd in self.fds:
            os.close(fd)
        self.server.close()


def test_exec_hands_its_notify_fd_to_the_listener(
    corral_runc: Any, bundle: Any, cid: str, tmp_path: Path
) -> None:
    listener = TwoListener(tmp_path / "agent.sock")
    try:
        seccomp = deny_mkdir("SCMP_ACT_NOTIFY")
        seccomp["listenerPath"] = listener.path
        start_sleeper(corral_runc, bundle, cid, seccomp, False)
        done = corral_runc("exec", cid, "sh", "-c", "mkdir /dev/shm/x 2>&1; echo mkdir=$?")
        corral_runc("kill", cid, "KILL")
    finally:
        listener.close()
    assert listener.error is None, repr(listener.error)
    assert "No medium found" in done.stdout and "mkdir=1" in done.stdout, done
    assert len(listener.states) == 2
    assert listener.states[1]["state"]["id"] == cid
    assert listener.states[1]["pid"] != listener.states[0]["pid"]


WATCHER = r"""
ok=" 1 "; denied=" "; : > /dev/shm/log
while [ ! -e /dev/shm/stop ]; do {
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    case "$ok" in *" $p "*) continue;; esac
    if true 3<"$d/exe"; then
      link=$(readlink "$d/exe")
      case "$link" in
        /bin/busybox) ok="$ok$p ";;
        ""|/memfd:*) ;;  # gone meanwhile, or the sealed launcher (corral.runtime.trampoline)
        *) echo "GOT exe $p $link" >> /dev/shm/log;;
      esac
    elif [ -d "$d" ]; then
      for f in "$d"/fd/*; do
        case "$f" in *"/fd/*"|*/fd/[012]) continue;; esac
        if true 4<"$f"; then echo "GOT fd $f $(readlink "$f")" >> /dev/shm/log; fi
      done
      case "$denied" in *" $p "*) ;; *) denied="$denied$p "; echo "DENIED $p" >> /dev/shm/log;; esac
    fi
  done
} 2>/dev/null; done
echo done >> /dev/shm/log; exec sleep 60
"""


def test_exec_cannot_be_opened_by_the_container_before_it_execs(
    corral_runc: Any, bundle: Any, cid: str
) -> None:
    """A container process watches every new pid and tries to open its /proc/<pid>/exe and
    fds while `exec` runs again and again: before its execve the runtime's process (the host's
    Python) must never be opened, only refused (non-dumpable from birth)."""
    bundle.set(args=["sh", "-c", WATCHER])
    with bundle.edit() as config:  # no default caps that could help (CAP_SYS_PTRACE is not one)
        config["process"]["noNewPrivileges"] = False
    corral_runc("run", "-d", "--bundle", bundle, cid, check=True)
    for _ in range(40):
        corral_runc("exec", cid, "true", check=True)
    corral_runc("exec", cid, "touch", "/dev/shm/stop", check=True)
    log = ""
    for _ in range(50):
        log = corral_runc("exec", cid, "cat", "/dev/shm/log", check=True).stdout
        if "done" in log:
            break
        time.sleep(0.1)
    got = [line for line in log.splitlines() if line.startswith("GOT")]
    assert got == [], log
    # The watcher did look at processes it could not open (the runtime's, before execve).
    assert "DENIED" in log, log
