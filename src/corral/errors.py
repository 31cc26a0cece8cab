"""Every error corral raises on purpose, in one tree.

::

    CorralError                   anything corral reports; str() is the one-line message
    ├── UserError                 the caller asked for something wrong; fix the input
    │   ├── UsageError            a command-line flag or argument (names the flag)
    │   ├── SpecError             a config.json / process.json field (names its JSON path)
    │   ├── NotFoundError         "container does not exist" and friends
    │   ├── ExistsError           "container with id exists: ID"
    │   └── StateError            the verb is not allowed in the container's current state
    │                             ("container not running", "cannot start ... stopped")
    └── RuntimeFailure            the request was fine but doing it failed
        ├── KernelError           a syscall or kernel file failed (carries errno and path)
        ├── CgroupError           a cgroup could not be made, written, frozen or removed
        ├── HookError             an OCI hook exited non-zero or timed out
        └── ContainerInitError    the container's init reported an error before exec

Clients of ``corral-runc`` (containerd, podman, dockerd) match a few of runc's texts, so the
messages of NotFoundError, ExistsError and StateError use runc's words on purpose.

This module is imported on the runtime's start-up path: standard library only, nothing heavy,
and no ``from __future__ import annotations`` (importing ``__future__`` costs 0.2 ms there).
"""


class CorralError(Exception):
    """Root of corral's errors. ``str(err)`` is a complete one-line message for a user."""

    exit_code = 1


class UserError(CorralError):
    """The input was wrong: a flag, a field, an ID, a state. Retrying the same call fails again."""


class UsageError(UserError):
    """A command-line mistake; the message names the flag or argument."""


class SpecError(UserError):
    """A field of config.json (or an exec process.json) is missing, malformed or unsupported.

    ``path`` is the field as a JSON path (``process.user.uid``, ``mounts[2].destination``);
    ``source`` names the file when known.
    """

    def __init__(self, path: str, message: str, source: str | None = None) -> None:
        self.path = path
        self.detail = message
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{path}: {message}" if path else f"{where}{message}")


class NotFoundError(UserError):
    """A container (or other named object) does not exist."""


class ExistsError(UserError):
    """A container with that ID already exists."""


class StateError(UserError):
    """The verb is not allowed in the container's current state."""


class RuntimeFailure(CorralError):
    """The request was valid but carrying it out failed."""


class KernelError(RuntimeFailure):
    """A system call or a kernel file operation failed.

    ``op`` is what was being done (``mount``, ``pivot_root``, ``write``), ``errno`` the kernel's
    error number (0 when unknown) and ``path`` the file it concerned, if any.
    """

    def __init__(self, op: str, errno: int, strerror: str, path: str | None = None) -> None:
        self.op = op
        self.errno = errno
        self.strerror = strerror
        self.path = path
        at = f" {path}" if path else ""
        super().__init__(f"{op}{at}: {strerror}")

    @classmethod
    def from_oserror(cls, op: str, err: OSError, path: str | None = None) -> "KernelError":
        return cls(op, err.errno or 0, err.strerror or str(err), path or err.filename)


class CgroupError(RuntimeFailure):
    """A cgroup could not be created, configured, frozen, read or removed."""


class HookError(RuntimeFailure):
    """An OCI hook failed (non-zero exit, signal, timeout, or could not be started)."""


class ContainerInitError(RuntimeFailure):
    """The container's init process reported a failure while setting the container up."""


__all__ = [
    "CgroupError",
    "ContainerInitError",
    "CorralError",
    "ExistsError",
    "HookError",
    "KernelError",
    "NotFoundError",
    "RuntimeFailure",
    "SpecError",
    "StateError",
    "UsageError",
    "UserError",
]
