"""Read a bundle's config.json (or an exec process.json) into a validated dict.

An OCI bundle is a directory holding ``config.json`` and, usually, the root filesystem it names
in ``root.path`` (relative to the bundle unless absolute). Everything that can be wrong with
one is reported here, once, as a one-line SpecError naming the file and, where there is one,
the field: a missing directory, a missing or unreadable file, malformed JSON (with its line and
column), a field of the wrong type, a rootfs that is not there.
"""

from __future__ import annotations

import os
import posixpath
import stat

from corral import _json
from corral.errors import SpecError
from corral.spec.validate import validate_config, validate_process

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.spec.types import Process, Spec


def load_bundle(bundle: str) -> tuple[Spec, str]:
    """Return the bundle's validated config and the absolute path of its root filesystem.

    Like runc, a relative ``root.path`` is taken from the bundle's real (symlink-free) path,
    and the rootfs itself must be a real directory, not a symlink to one: mounts are made
    relative to it, and a symlink that changed between check and use would move them.
    """
    directory = _bundle_dir(bundle)
    source = posixpath.join(directory, "config.json")
    spec = validate_config(_read_json(source), source)
    return spec, _rootfs(directory, spec["root"]["path"], source)


def load_process(path: str) -> Process:
    """Read the JSON process of ``exec --process FILE``; its fields are named from its top."""
    return validate_process(_read_json(path), path, "")


def _bundle_dir(bundle: str) -> str:
    """The bundle's absolute, symlink-free path; it must be a directory."""
    try:
        mode = os.stat(bundle).st_mode
    except FileNotFoundError:
        raise SpecError("", f"bundle {bundle}: no such directory") from None
    except OSError as err:
        raise SpecError("", f"bundle {bundle}: {err.strerror}") from None
    if not stat.S_ISDIR(mode):
        raise SpecError("", f"bundle {bundle}: not a directory")
    return posixpath.realpath(bundle)


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
    rootfs = posixpath.normpath(posixpath.join(bundle, root))
    try:
        mode = os.stat(rootfs).st_mode
    except FileNotFoundError:
        raise SpecError("root.path", f"rootfs {rootfs} does not exist", source) from None
    except OSError as err:
        raise SpecError("root.path", f"rootfs {rootfs}: {err.strerror}", source) from None
    if not stat.S_ISDIR(mode):
        raise SpecError("root.path", f"rootfs {rootfs} is not a directory", source)
    real = posixpath.realpath(rootfs)
    if real != rootfs:
        message = f"rootfs {rootfs} is or goes through a symlink; use the real path {real}"
        raise SpecError("root.path", message, source)
    return rootfs
