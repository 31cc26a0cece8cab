"""The seccomp filter built once as BPF in the runtime (corral.runtime.seccomp.prepare) and
loaded from those bytes in a forked child, as the init does: the same filter libseccomp's
seccomp_load would install, and built once per profile in a process."""

from __future__ import annotations

import os
from typing import Any

from corral.runtime import seccomp

ENOMEDIUM = 123  # an errno nothing here hits on its own


def _profile() -> dict[str, Any]:
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"],
        "syscalls": [
            {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOMEDIUM},
            {"names": ["chdir"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}]},
        ],
    }  # fmt: skip


def _in_child(seccomp_config: dict[str, Any]) -> str:
    """Fork; the child installs the filter as the init does (install with no profile: it finds
    the one prepare built) and reports getcwd's errno and its Seccomp_filters count."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read)
            seccomp.install(_NoSocket(), seccomp_config)
            try:
                os.getcwd()
                errno = 0
            except OSError as err:
                errno = err.errno or 0
            with open("/proc/self/status") as f:
                filters = [ln.split()[1] for ln in f if ln.startswith("Seccomp_filters:")]
            os.write(write, f"{errno} {filters[0]}".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        answer = f.read().decode()
    os.waitpid(pid, 0)
    return answer


class _NoSocket:
    """The init's socket to the runtime: install() only says FILTERING on it here."""

    def send(self, data: bytes) -> int:
        return len(data)


def test_prepare_builds_the_program_once_and_the_child_loads_it() -> None:
    config = _profile()
    profile = seccomp.prepare({"linux": {"seccomp": config}})
    assert profile is not None and profile.program
    assert len(profile.program) % 8 == 0  # struct sock_filter[]
    again = seccomp.prepare({"linux": {"seccomp": _profile()}})  # equal, not the same object
    assert again is profile
    assert _in_child(config) == f"{ENOMEDIUM} 1"


def test_a_notify_profile_is_left_to_seccomp_load() -> None:
    config = _profile()
    config["syscalls"].append({"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"})
    config["listenerPath"] = "/nonexistent/listener.sock"
    profile = seccomp.prepare({"linux": {"seccomp": config}})
    assert profile is not None and profile.notify and profile.program is None


def test_the_program_is_kept_on_disk_and_read_back(tmp_path: Any, monkeypatch: Any) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setattr(seccomp, "CACHE_DIR", str(cache))
    monkeypatch.setattr(seccomp, "_BUILT", {})
    config = _profile()
    config["syscalls"][0]["errnoRet"] = ENOMEDIUM - 1  # a profile no other test built
    built = seccomp.prepare({"linux": {"seccomp": config}})
    assert built is not None and built.program
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].read_bytes() == built.program

    monkeypatch.setattr(seccomp, "_BUILT", {})  # a fresh process: only the file is left

    def no_compiling(*args: object) -> None:
        raise AssertionError("compiled again")

    monkeypatch.setattr(seccomp, "compile_profile", no_compiling)
    again = seccomp.prepare({"linux": {"seccomp": config}})
    assert again is not None and again is not built and again.program == built.program
    assert _in_child(config) == f"{ENOMEDIUM - 1} 1"


def test_a_bad_cache_file_is_rebuilt(tmp_path: Any, monkeypatch: Any) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setattr(seccomp, "CACHE_DIR", str(cache))
    monkeypatch.setattr(seccomp, "_BUILT", {})
    config = _profile()
    built = seccomp.prepare({"linux": {"seccomp": config}})
    assert built is not None and built.program
    (path,) = cache.iterdir()
    path.write_bytes(b"short")  # not a whole number of sock_filter
    monkeypatch.setattr(seccomp, "_BUILT", {})
    again = seccomp.prepare({"linux": {"seccomp": config}})
    assert again is not None and again.program == built.program
    assert path.read_bytes() == built.program
