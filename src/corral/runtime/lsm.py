"""AppArmor profiles and SELinux labels (process.apparmorProfile, process.selinuxLabel,
linux.mountLabel).

A security module the host does not run cannot confine anything, so a config that asks for one
on such a host is refused with a one-line error, before anything is created, instead of running
the container unconfined without a word. Where the module runs, the profile or label is set for
the next execve through /proc/self/attr, as runc does: the container's program starts confined,
the runtime never is.
"""

import posix

from corral import _posix
from corral.errors import KernelError, SpecError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

APPARMOR_ENABLED = "/sys/module/apparmor/parameters/enabled"
SELINUX_FS = "/sys/fs/selinux"


def apparmor_enabled() -> bool:
    try:
        with open(APPARMOR_ENABLED) as f:
            return f.read().strip() == "Y"
    except OSError:
        return False


def selinux_enabled() -> bool:
    return _posix.isfile(f"{SELINUX_FS}/enforce")


def check(process: "dict[str, Any]", linux: "dict[str, Any]", where: str = "process") -> None:
    """Refuse a profile or label this host cannot apply (called before anything is made)."""
    if process.get("apparmorProfile") and not apparmor_enabled():
        raise SpecError(f"{where}.apparmorProfile", "AppArmor is not enabled on this host")
    if process.get("selinuxLabel") and not selinux_enabled():
        raise SpecError(f"{where}.selinuxLabel", "SELinux is not enabled on this host")
    if linux.get("mountLabel") and not selinux_enabled():
        raise SpecError("linux.mountLabel", "SELinux is not enabled on this host")


def apply(process: "dict[str, Any]") -> None:
    """Set the profile/label for our next execve (in the init or an exec'd process)."""
    profile = process.get("apparmorProfile")
    if profile:
        path = "/proc/self/attr/apparmor/exec"
        _write(path if _posix.exists(path) else "/proc/self/attr/exec", f"exec {profile}")
    label = process.get("selinuxLabel")
    if label:
        _write("/proc/self/attr/exec", label)


def _write(path: str, value: str) -> None:
    try:
        fd = posix.open(path, posix.O_WRONLY | posix.O_CLOEXEC)
        try:
            posix.write(fd, value.encode())
        finally:
            posix.close(fd)
    except OSError as err:
        raise KernelError(f"setting {value!r}", err.errno or 0, err.strerror or "", path) from None
