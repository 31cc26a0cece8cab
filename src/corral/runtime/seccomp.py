"""linux.seccomp in the runtime: check it before fork, load it in the init, hand on the listener.

Three calls, three places (the kernel work is in ``corral.sys.seccomp``):

``prepare(spec)``   the runtime, before fork. Checks linux.seccomp (``SpecError`` naming the
                    field) and loads libseccomp and this module, which the init can no longer
                    import once it has pivoted into the container's root. It also builds the
                    filter as BPF (``Profile.build_program``), and keeps the last few profiles
                    it built: a process that runs many containers (the sandbox API, the
                    engine's monitor) builds podman's default profile (~17 ms) once. As root it
                    also keeps the BPF in CACHE_DIR (as crun does), keyed by the profile,
                    libseccomp's version and API level and the machine: a one-shot command
                    (``corral run``, ``corral-runc create``, ``exec``) reads it back instead.
``install(sock, seccomp)``
                    the init. Builds and loads the filter; with SCMP_ACT_NOTIFY rules sends the
                    listener fd to the runtime (``b"seccomp"`` + SCM_RIGHTS) and closes its copy.
                    Where: runc's order. Without noNewPrivileges loading needs CAP_SYS_ADMIN, so
                    before the capabilities are dropped; with it, as late as possible before exec,
                    so the fewest syscalls of the runtime's own run under the filter.
``send_to_listener(...)``
                    the runtime, on ``b"seccomp"``: connects to linux.seccomp.listenerPath and
                    sends the fd with the container process state (runtime-spec runtime.md).
"""

from __future__ import annotations

import os

from corral.runtime.state import write_atomic
from corral.sys.seccomp import Profile, api_level, compile_profile, library_version

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_BUILT: dict[bytes, Profile] = {}  # marshal.dumps(linux.seccomp) -> its profile, BPF built
_KEEP = 4
#: The built filters on disk, root's only (a tmpfs: gone at boot, as libseccomp may change).
CACHE_DIR = "/run/corral-seccomp"
_CACHE_FILES = 64  # more than this: the directory is emptied before the next is written

SEND_FD_MESSAGE = b"seccomp"  # init -> runtime, with the listener fd attached
SECCOMP_FD_NAME = "seccompFd"  # the fd's name in the container process state
_SOL_SOCKET = 1
_SCM_RIGHTS = 1


def prepare(spec: dict[str, Any]) -> Profile | None:
    """Check the spec's linux.seccomp before fork; None when it has none."""
    seccomp = (spec.get("linux") or {}).get("seccomp")
    if seccomp is None:
        return None
    key = _key(seccomp)
    profile = _BUILT.get(key) if key else None
    if profile is not None:
        return profile
    # Load libseccomp (and with it ctypes) now: the init cannot import ctypes once it has
    # pivoted (a profile with no rule resolves no syscall name, so nothing else would).
    cached = _cache_path(key, api_level()) if key else None
    program = _read_program(cached) if cached else None
    if program is not None:  # it was checked when it was built (the same bytes)
        profile = Profile(0)
        profile.program = program
    else:
        profile = compile_profile(seccomp)
        if not (key and profile.build_program()):
            return profile
        if cached and profile.program:
            _write_program(cached, profile.program)
    while len(_BUILT) >= _KEEP:
        del _BUILT[next(iter(_BUILT))]
    _BUILT[key] = profile
    return profile


def _cache_path(key: bytes, api: int) -> str | None:
    """The file of ``key``'s BPF in CACHE_DIR; None unless root (nobody else may write there)."""
    if os.geteuid() != 0:
        return None
    try:  # the built-in module: hashlib would load OpenSSL (2 ms)
        from _sha256 import sha256  # type: ignore[import-not-found]
    except ImportError:
        from hashlib import sha256
    salt = f"{library_version()} {api} {os.uname().machine}\n".encode()
    return f"{CACHE_DIR}/{sha256(salt + key).hexdigest()}.bpf"


def _read_program(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            program: bytes = f.read()
    except OSError:
        return None
    return program if program and len(program) % 8 == 0 else None  # struct sock_filter[]


def _write_program(path: str, program: bytes) -> None:
    """Keep ``program`` at ``path`` (atomically); a cache: any failure is ignored."""
    try:
        os.mkdir(CACHE_DIR, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return
    try:
        if len(os.listdir(CACHE_DIR)) >= _CACHE_FILES:
            for name in os.listdir(CACHE_DIR):
                os.unlink(f"{CACHE_DIR}/{name}")
        write_atomic(path, program)
    except OSError:
        pass


def _key(seccomp: Any) -> bytes:
    """``linux.seccomp``'s key in _BUILT (empty for what is not plain JSON data)."""
    import marshal

    try:
        return marshal.dumps(seccomp)
    except ValueError:
        return b""


def install(sock: Any, seccomp: dict[str, Any], profile: Profile | None = None) -> None:
    """In the init: load the filter; pass a notify listener fd to the runtime over ``sock``."""
    from corral.runtime import messages

    if profile is None:  # the init is a fork of the runtime: prepare() built it there
        profile = _BUILT.get(_key(seccomp)) or compile_profile(seccomp)
    sock.send(messages.FILTERING)  # a silent death from here on is the filter's doing
    fd = profile.load()
    if fd is None:
        return
    try:
        sock.sendmsg([SEND_FD_MESSAGE], [(_SOL_SOCKET, _SCM_RIGHTS, fd.to_bytes(4, _byteorder()))])
    finally:
        os.close(fd)


def process_state(state: dict[str, Any], pid: int, metadata: str) -> dict[str, Any]:
    """The container process state sent to a seccomp listener (runtime-spec runtime.md)."""
    from corral.spec.defaults import OCI_VERSION

    doc: dict[str, Any] = {"ociVersion": OCI_VERSION, "fds": [SECCOMP_FD_NAME], "pid": pid}
    if metadata:
        doc["metadata"] = metadata
    doc["state"] = state
    return doc


def send_to_listener(
    listener_path: str, notify_fd: int, metadata: str, state: dict[str, Any], pid: int
) -> None:
    """Connect to the listener's unix socket and send it the notify fd with the container
    process state as one message, as runc does. The caller keeps (and closes) ``notify_fd``."""
    import _socket

    from corral import _json
    from corral.errors import KernelError

    payload = _json.dumps(process_state(state, pid, metadata)).encode()
    conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        try:
            conn.connect(listener_path)
        except OSError as err:
            raise KernelError.from_oserror(
                "connect to the seccomp listener (linux.seccomp.listenerPath)", err, listener_path
            ) from None
        try:
            conn.sendmsg(
                [payload], [(_SOL_SOCKET, _SCM_RIGHTS, notify_fd.to_bytes(4, _byteorder()))]
            )
        except OSError as err:
            raise KernelError.from_oserror(
                "send the seccomp fd to the listener", err, listener_path
            ) from None
    finally:
        conn.close()


def fd_from_message(ancdata: list[tuple[int, int, bytes]]) -> int:
    """The fd that came with ``b"seccomp"`` (recvmsg's ancillary data), or -1."""
    for level, kind, data in ancdata:
        if level == _SOL_SOCKET and kind == _SCM_RIGHTS and len(data) >= 4:
            return int.from_bytes(data[:4], _byteorder())
    return -1


def _byteorder() -> Any:
    import sys

    return sys.byteorder
