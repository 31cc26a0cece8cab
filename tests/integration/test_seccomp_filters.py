"""linux.seccomp for real (runtime-spec config-linux.md "Seccomp"), in busybox containers.

The evidence is what the container's own programs see (an errno, a signal) and, for
SCMP_ACT_NOTIFY, what a listener on linux.seccomp.listenerPath receives. Every test passes
against runc 1.1 too (``CORRAL_RUNC=runc``).
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

AGAINST_RUNC = os.path.basename(os.environ.get("CORRAL_RUNC", "").split(" ")[0]) == "runc"
SIGSYS = 31
ENOMEDIUM = 123  # "No medium found": an errno no program here would hit on its own
AF_INET, AF_INET6 = 2, 10

# linux/seccomp.h: the listener's ioctls and structs, written out (not taken from corral).
SECCOMP_IOCTL_NOTIF_RECV = 0xC0502100  # _IOWR('!', 0, struct seccomp_notif), 80 bytes
SECCOMP_IOCTL_NOTIF_SEND = 0xC0182101  # _IOWR('!', 1, struct seccomp_notif_resp), 24 bytes
NOTIF = struct.Struct("=QIIiIQ6Q")  # id, pid, flags, data.nr, data.arch, data.ip, data.args
NOTIF_RESP = struct.Struct("=QqiI")  # id, val, error, flags


def with_seccomp(seccomp: dict[str, Any], **process: Any) -> Callable[[dict[str, Any]], None]:
    def edit(config: dict[str, Any]) -> None:
        config["linux"]["seccomp"] = seccomp
        config["process"].update(process)

    return edit


def deny(names: list[str], action: str = "SCMP_ACT_ERRNO", **rule: Any) -> dict[str, Any]:
    """A profile that allows everything except ``names``."""
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": names, "action": action, **rule}],
    }


def run_sh(
    corral_runc: Any, bundle: Any, cid: str, script: str, edit: Callable[[dict[str, Any]], None]
) -> Any:
    bundle.set(args=["sh", "-c", script], edit=edit)
    return corral_runc("run", "--bundle", bundle, cid)


def test_errno_denies_mkdir_but_not_touch(corral_runc: Any, bundle: Any, cid: str) -> None:
    done = run_sh(
        corral_runc,
        bundle,
        cid,
        "mkdir /dev/shm/x 2>&1; echo mkdir=$?; touch /dev/shm/y && echo touch=ok",
        with_seccomp(deny(["mkdir", "mkdirat"], errnoRet=1)),
    )
    assert done.returncode == 0, done.stderr
    assert "Operation not permitted" in done.stdout
    assert "mkdir=1" in done.stdout and "touch=ok" in done.stdout


def test_errno_default_is_eperm(corral_runc: Any, bundle: Any, cid: str) -> None:
    done = run_sh(
        corral_runc,
        bundle,
        cid,
        "mkdir /dev/shm/x 2>&1; true",
        with_seccomp(deny(["mkdir", "mkdirat"])),
    )
    assert done.returncode == 0, done.stderr
    assert "Operation not permitted" in done.stdout


def test_errno_with_a_custom_errno(corral_runc: Any, bundle: Any, cid: str) -> None:
    done = run_sh(
        corral_runc,
        bundle,
        cid,
        "mkdir /dev/shm/x 2>&1; echo mkdir=$?",
        with_seccomp(deny(["mkdir", "mkdirat"], errnoRet=38)),
    )
    assert done.returncode == 0, done.stderr
    assert "Function not implemented" in done.stdout and "mkdir=1" in done.stdout


def test_default_action_with_default_errno(corral_runc: Any, bundle: Any, cid: str) -> None:
    """defaultAction ERRNO with defaultErrnoRet, and an allow-list: the shell can run (its
    allowed calls) but mkdir, not listed, fails with the default errno."""
    allowed = [  # what busybox sh and mkdir, and the runtime after loading, use; not mkdir
        "access",
        "arch_prctl",
        "brk",
        "capget",
        "capset",
        "chdir",
        "clock_gettime",
        "clock_nanosleep",
        "clone",
        "clone3",
        "close",
        "close_range",
        "dup",
        "dup2",
        "dup3",
        "epoll_create1",
        "epoll_ctl",
        "epoll_pwait",
        "epoll_wait",
        "execve",
        "execveat",
        "exit",
        "exit_group",
        "faccessat",
        "faccessat2",
        "fchdir",
        "fcntl",
        "fork",
        "fstat",
        "fstatfs",
        "futex",
        "getcwd",
        "getdents64",
        "getegid",
        "geteuid",
        "getgid",
        "getgroups",
        "getpgrp",
        "getpid",
        "getppid",
        "getrandom",
        "getrlimit",
        "gettid",
        "getuid",
        "ioctl",
        "kill",
        "lseek",
        "lstat",
        "madvise",
        "mmap",
        "mprotect",
        "munmap",
        "nanosleep",
        "newfstatat",
        "open",
        "openat",
        "pipe",
        "pipe2",
        "poll",
        "ppoll",
        "prctl",
        "pread64",
        "prlimit64",
        "pselect6",
        "read",
        "readlink",
        "readlinkat",
        "recvfrom",
        "recvmsg",
        "rseq",
        "rt_sigaction",
        "rt_sigprocmask",
        "rt_sigreturn",
        "sched_getaffinity",
        "sched_yield",
        "select",
        "sendmsg",
        "sendto",
        "set_robust_list",
        "set_tid_address",
        "setgid",
        "setgroups",
        "setpgid",
        "setresgid",
        "setresuid",
        "setsid",
        "setuid",
        "sigaltstack",
        "stat",
        "statfs",
        "statx",
        "sysinfo",
        "tgkill",
        "umask",
        "uname",
        "vfork",
        "wait4",
        "waitid",
        "write",
        "writev",
    ]
    seccomp = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": ENOMEDIUM,
        "syscalls": [{"names": allowed, "action": "SCMP_ACT_ALLOW"}],
    }
    done = run_sh(
        corral_runc,
        bundle,
        cid,
        "mkdir /dev/shm/x 2>&1; echo mkdir=$?",
        with_seccomp(seccomp, noNewPrivileges=True),
    )
    assert done.returncode == 0, done.stderr
    assert "No medium found" in done.stdout and "mkdir=1" in done.stdout


def test_kill_process_kills_with_sigsys(corral_runc: Any, bundle: Any, cid: str) -> None:
    bundle.set(
        args=["mkdir", "/dev/shm/x"],
        edit=with_seccomp(deny(["mkdir", "mkdirat"], "SCMP_ACT_KILL_PROCESS")),
    )
    done = corral_runc("run", "--bundle", bundle, cid)
    assert done.returncode == 128 + SIGSYS, (done.stdout, done.stderr)
    assert done.stdout == ""


def test_kill_process_in_a_child_leaves_the_shell(corral_runc: Any, bundle: Any, cid: str) -> None:
    done = run_sh(
        corral_runc,
        bundle,
        cid,
        "(mkdir /dev/shm/x); echo status=$?",
        with_seccomp(deny(["mkdir", "mkdirat"], "SCMP_ACT_KILL_PROCESS")),
    )
    assert done.returncode == 0, done.stderr
    assert f"status={128 + SIGSYS}" in done.stdout


def test_trap_sends_sigsys(corral_runc: Any, bundle: Any, cid: str) -> None:
    bundle.set(
        args=["mkdir", "/dev/shm/x"], edit=with_seccomp(deny(["mkdir", "mkdirat"], "SCMP_ACT_TRAP"))
    )
    done = corral_runc("run", "--bundle", bundle, cid)
    assert done.returncode == 128 + SIGSYS, (done.stdout, done.stderr)


def test_args_filter_denies_inet_sockets_only(corral_runc: Any, bundle: Any, cid: str) -> None:
    """socket(AF_INET, ...) is denied; socket(AF_NETLINK, ...) (``ip``) is not."""
    rule: dict[str, Any] = {
        "args": [{"index": 0, "value": AF_INET, "op": "SCMP_CMP_EQ"}],
        "errnoRet": ENOMEDIUM,
    }
    done = run_sh(
        corral_runc,
        bundle,
        cid,
        "nc 127.0.0.1 1 2>&1; ip link show lo >/dev/shm/ip && echo netlink=ok",
        with_seccomp(deny(["socket"], **rule)),
    )
    assert done.returncode == 0, done.stderr
    assert "No medium found" in done.stdout and "netlink=ok" in done.stdout


def test_same_index_twice_matches_either(corral_runc: Any, bundle: Any, cid: str) -> None:
    """Two conditions on arg 0 cannot both hold: runc makes them one rule each (OR)."""
    rule: dict[str, Any] = {
        "args": [
            {"index": 0, "value": AF_INET, "op": "SCMP_CMP_EQ"},
            {"index": 0, "value": AF_INET6, "op": "SCMP_CMP_EQ"},
        ],
        "errnoRet": ENOMEDIUM,
    }
    done = run_sh(
        corral_runc,
        bundle,
        cid,
        "nc 127.0.0.1 1 2>&1; nc ::1 1 2>&1; ip link show lo >/dev/shm/ip && echo netlink=ok",
        with_seccomp(deny(["socket"], **rule)),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("No medium found") == 2, done.stdout
    assert "netlink=ok" in done.stdout


def test_masked_eq(corral_runc: Any, bundle: Any, cid: str) -> None:
    """socket's type argument with SOCK_CLOEXEC masked off: (type & 0xf) == SOCK_STREAM(1)
    denies TCP (nc) but not the netlink raw socket of ``ip``."""
    rule: dict[str, Any] = {
        "args": [{"index": 1, "value": 0xF, "valueTwo": 1, "op": "SCMP_CMP_MASKED_EQ"}],
        "errnoRet": ENOMEDIUM,
    }
    done = run_sh(
        corral_runc,
        bundle,
        cid,
        "nc 127.0.0.1 1 2>&1; ip link show lo >/dev/shm/ip && echo netlink=ok",
        with_seccomp(deny(["socket"], **rule)),
    )
    assert done.returncode == 0, done.stderr
    assert "No medium found" in done.stdout and "netlink=ok" in done.stdout


@pytest.mark.parametrize("nnp", [False, True])
def test_an_unprivileged_user_gets_the_filter(
    corral_runc: Any, bundle: Any, cid: str, nnp: bool
) -> None:
    """Without no_new_privs the filter must be loaded before the capabilities are dropped
    (loading needs CAP_SYS_ADMIN then); with it, just before exec. Both work as uid 1000
    with no capabilities at all."""
    caps: dict[str, list[str]] = {
        k: [] for k in ("bounding", "effective", "permitted", "inheritable", "ambient")
    }
    done = run_sh(
        corral_runc,
        bundle,
        cid,
        "id -u; mkdir /dev/shm/x 2>&1; grep -E '^(Seccomp|NoNewPrivs|CapEff):' /proc/self/status",
        with_seccomp(
            deny(["mkdir", "mkdirat"]),
            noNewPrivileges=nnp,
            user={"uid": 1000, "gid": 1000},
            capabilities=caps,
        ),
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split()
    assert lines[0] == "1000"
    assert "Operation not permitted" in done.stdout
    status = dict(zip(lines[-6::2], lines[-5::2], strict=True))
    assert status == {
        "NoNewPrivs:": str(int(nnp)),
        "Seccomp:": "2",
        "CapEff:": "0000000000000000",
    }, done.stdout


def test_log_flag_and_log_action_allow(corral_runc: Any, bundle: Any, cid: str) -> None:
    """The flags runc 1.2 takes (1.1 refuses any flag); SCMP_ACT_LOG lets the call through."""
    if AGAINST_RUNC:
        pytest.skip("runc 1.1 refuses every seccomp flag; corral takes them as runc 1.2 does")
    seccomp = deny(["uname"], "SCMP_ACT_LOG")
    seccomp["flags"] = [
        "SECCOMP_FILTER_FLAG_LOG",
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        "SECCOMP_FILTER_FLAG_TSYNC",
    ]
    done = run_sh(corral_runc, bundle, cid, "uname -s", with_seccomp(seccomp))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Linux"


def test_unknown_syscall_names_are_skipped(corral_runc: Any, bundle: Any, cid: str) -> None:
    done = run_sh(
        corral_runc,
        bundle,
        cid,
        "mkdir /dev/shm/x 2>&1; echo mkdir=$?",
        with_seccomp(deny(["no_such_syscall", "mkdir", "mkdirat"])),
    )
    assert done.returncode == 0, done.stderr
    assert "Operation not permitted" in done.stdout


def test_a_bad_profile_fails_create_naming_the_field(
    corral_runc: Any, bundle: Any, cid: str
) -> None:
    seccomp = deny(["mkdir"])
    seccomp["syscalls"].append({"names": ["uname"], "action": "SCMP_ACT_FOO"})
    bundle.set(args=["true"], edit=with_seccomp(seccomp))
    done = corral_runc("create", "--bundle", bundle, cid)
    assert done.returncode != 0
    if not AGAINST_RUNC:
        assert 'linux.seccomp.syscalls[1].action: unknown action "SCMP_ACT_FOO"' in done.stderr
    assert corral_runc("state", cid).returncode != 0  # nothing was left behind


class Listener:
    """A seccomp agent: takes the fd and state from the runtime, then answers every trapped
    syscall with ENOMEDIUM, recording (pid, syscall number) of each."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen(1)
        self.server.settimeout(30)
        self.state: dict[str, Any] = {}
        self.fds: list[int] = []
        self.calls: list[tuple[int, int]] = []
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        import fcntl

        try:
            conn, _ = self.server.accept()
            with conn:
                msg, self.fds, _flags, _addr = socket.recv_fds(conn, 65536, 4)
            self.state = json.loads(msg)
            fd = self.fds[0]
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            while not self.stop.is_set():
                events = poller.poll(100)
                if not events:
                    continue
                if events[0][1] & (select.POLLHUP | select.POLLERR):
                    return  # every process under the filter is gone
                buf = bytearray(NOTIF.size)
                try:
                    fcntl.ioctl(fd, SECCOMP_IOCTL_NOTIF_RECV, buf, True)
                except OSError:
                    continue  # the caller went away meanwhile (ENOENT)
                nid, pid, _f, nr, _arch, _ip, *_args = NOTIF.unpack(buf)
                self.calls.append((pid, nr))
                resp = bytearray(NOTIF_RESP.pack(nid, 0, -ENOMEDIUM, 0))
                try:
                    fcntl.ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, resp, True)
                except OSError:
                    pass
        except BaseException as err:  # shown by the test
            self.error = err

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        for fd in self.fds:
            os.close(fd)
        self.server.close()


def test_notify_hands_the_listener_fd_and_state(
    corral_runc: Any, bundle: Any, cid: str, tmp_path: Path
) -> None:
    listener = Listener(tmp_path / "agent.sock")
    try:
        seccomp = deny(["mkdir", "mkdirat"], "SCMP_ACT_NOTIFY")
        seccomp["listenerPath"] = listener.path
        seccomp["listenerMetadata"] = "MKDIR=deny"
        done = run_sh(
            corral_runc,
            bundle,
            cid,
            "mkdir /dev/shm/x 2>&1; echo mkdir=$?; touch /dev/shm/y",
            with_seccomp(seccomp),
        )
    finally:
        listener.close()
    assert listener.error is None, repr(listener.error)
    assert done.returncode == 0, done.stderr
    # The agent decided: its errno came back to the container's mkdir.
    assert "No medium found" in done.stdout and "mkdir=1" in done.stdout
    assert len(listener.fds) == 1
    doc = listener.state
    assert doc["fds"] == ["seccompFd"]
    assert doc["metadata"] == "MKDIR=deny"
    assert isinstance(doc["pid"], int) and doc["pid"] > 0
    assert doc["state"]["id"] == cid
    assert doc["state"]["status"] == "creating"
    assert doc["state"]["pid"] == doc["pid"]
    assert os.path.realpath(doc["state"]["bundle"]) == os.path.realpath(bundle)
    assert "ociVersion" in doc
    assert [nr for _pid, nr in listener.calls] in ([83], [258])  # mkdir or mkdirat (x86_64)


def test_notify_without_a_listener_fails_create(
    corral_runc: Any, bundle: Any, cid: str, tmp_path: Path
) -> None:
    seccomp = deny(["mkdir", "mkdirat"], "SCMP_ACT_NOTIFY")
    seccomp["listenerPath"] = str(tmp_path / "nobody.sock")
    bundle.set(args=["true"], edit=with_seccomp(seccomp))
    done = corral_runc("create", "--bundle", bundle, cid)
    assert done.returncode != 0
    assert "nobody.sock" in done.stderr
    assert corral_runc("state", cid).returncode != 0
