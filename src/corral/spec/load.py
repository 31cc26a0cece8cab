"""Read a bundle's config.json (or an exec process.json) into a validated dict.

An OCI bundle is a directory holding ``config.json`` and, usually, the root filesystem it names
in ``root.path`` (relative to the bundle unless absolute). Everything that can be wrong with
one is reported here, once, as a one-line SpecError naming the file and, where there is one,
the field: a missing directory, a missing or unreadable file, malformed JSON (with its line and
column), a field of the wrong type, a rootfs that is not there.

The checks that need the filesystem, which ``corral.spec.validate`` (pure) leaves, are here too:
the rootfs's ``/proc``, ``/sys`` and ``/dev`` must be real directories, and ``net.*`` sysctls
may not be set in a network namespace joined by path that is the runtime's own (the host's).
"""

import posix
import stat

from corral import _json, _posix
from corral.errors import SpecError
from corral.spec.validate import validate_config, validate_process

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.spec.types import Process, Spec


def load_bundle(bundle: str) -> "tuple[Spec, str]":
    """Return the bundle's validated config and the absolute path of its root filesystem.

    Like runc, a relative ``root.path`` is taken from the bundle's real (symlink-free) path,
    and the rootfs itself must be a real directory, not a symlink to one: mounts are made
    relative to it, and a symlink that changed between check and use would move them.
    """
    directory = _bundle_dir(bundle)
    source = _posix.join(directory, "config.json")
    spec = validate_config(_read_json(source), source)
    rootfs = _rootfs(directory, spec["root"]["path"], source)
    _check_system_dirs(rootfs, source)
    _check_host_network(spec, source)
    return spec, rootfs


def load_process(path: str) -> "Process":
    """Read the JSON process of ``exec --process FILE``; its fields are named from its top."""
    return validate_process(_read_json(path), path, "")


def _bundle_dir(bundle: str) -> str:
    """The bundle's absolute, symlink-free path; it must be a directory."""
    try:
        mode = posix.stat(bundle).st_mode
    except FileNotFoundError:
        raise SpecError("", f"bundle {bundle}: no such directory") from None
    except OSError as err:
        raise SpecError("", f"bundle {bundle}: {err.strerror}") from None
    if not stat.S_ISDIR(mode):
        raise SpecError("", f"bundle {bundle}: not a directory")
    return _posix.realpath(bundle)


def _read_json(path: str) -> object:
    """Parse one JSON file; errors name the file and say what is wrong with it."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        raise SpecError("", "no such file", path) from None
    except OSError as err:
        raise SpecError("", f"cannot read: {err.strerror}", path) from None
    try:
        return _json.loads(data)
    except _json.JSONError as err:
        raise SpecError("", f"invalid JSON: {err}", path) from None
    except UnicodeDecodeError:
        raise SpecError("", "invalid JSON: not UTF-8 text", path) from None


def _rootfs(bundle: str, root: str, source: str) -> str:
    """``root.path`` made absolute from the bundle; it must be a directory and no symlink."""
    rootfs = _posix.normpath(_posix.join(bundle, root))
    shown = _shown(rootfs)
    try:
        mode = posix.stat(rootfs).st_mode
    except FileNotFoundError:
        raise SpecError("root.path", f"rootfs {shown} does not exist", source) from None
    except OSError as err:
        raise SpecError("root.path", f"rootfs {shown}: {err.strerror}", source) from None
    if not stat.S_ISDIR(mode):
        raise SpecError("root.path", f"rootfs {shown} is not a directory", source)
    real = _posix.realpath(rootfs)
    if real != rootfs:
        message = f"rootfs {shown} is or goes through a symlink; use the real path {_shown(real)}"
        raise SpecError("root.path", message, source)
    return rootfs


def _shown(path: str) -> str:
    """A path for a one-line message: as it is, or JSON-quoted if it holds a newline or such."""
    return path if path.isprintable() else _json.dumps(path)


def _check_system_dirs(rootfs: str, source: str) -> None:
    """``/proc``, ``/sys`` and ``/dev`` of the rootfs must be directories, as runc requires.

    The kernel's filesystems are mounted there; a symlink would be followed (inside the rootfs,
    but to wherever the image points it), so proc could land on the image's ``/tmp``, say, and
    the masked and read-only paths under ``/proc`` and ``/sys`` would miss it.
    """
    for name in ("proc", "sys", "dev"):
        path = _posix.join(rootfs, name)
        try:
            mode = posix.lstat(path).st_mode
        except FileNotFoundError:
            continue  # made as a directory when the container's mounts are set up
        except OSError as err:
            raise SpecError("root.path", f"{_shown(path)}: {err.strerror}", source) from None
        if stat.S_ISLNK(mode):
            message = f"{_shown(path)} cannot be a symlink (/{name} is mounted there)"
            raise SpecError("root.path", message, source)
        if not stat.S_ISDIR(mode):
            message = f"{_shown(path)} must be a directory (/{name} is mounted there)"
            raise SpecError("root.path", message, source)


def _check_host_network(spec: "Spec", source: str) -> None:
    """``net.*`` sysctls in a network namespace joined by path that is our own: refused, as runc
    refuses them (validate has already refused them when there is no network namespace)."""
    linux = spec.get("linux") or {}
    names = [name for name in linux.get("sysctl") or {} if name.startswith("net.")]
    if not names:
        return
    for i, ns in enumerate(linux.get("namespaces") or []):
        path = ns.get("path")
        if ns["type"] != "network" or not path:
            continue
        try:
            joined, own = posix.stat(path), posix.stat("/proc/self/ns/net")
        except OSError:
            return  # joining it fails, and says why, when the container is set up
        if (joined.st_dev, joined.st_ino) == (own.st_dev, own.st_ino):
            field = f"linux.sysctl[{_json.dumps(names[0])}]"
            message = (
                f"sysctl {_json.dumps(names[0])} not allowed in the host network namespace"
                f" (linux.namespaces[{i}].path {_shown(path)} is the host's)"
            )
            raise SpecError(field, message, source)
