"""Where a container's runtime state lives, and how its status is worked out.

Each container has a directory ``<root>/<id>/`` (root defaults to /run/corral) holding:

- ``state.marshal``: what ``create`` recorded: the OCI state fields, the config, the init's pid
  and its kernel start time, the cgroup manager's paths. Written atomically (write a temp file,
  rename), so a reader never sees half a file. No fsync: the root lives on a tmpfs (/run) that
  a reboot empties anyway, and an fsync there costs a millisecond per call on a disk.
  The format is Python's ``marshal`` (plain dicts, lists, strings, numbers), not JSON: every
  verb reads this file, and ``marshal`` is built into the interpreter and loaded with it,
  where the JSON parser is a shared library whose loading costs 0.3 ms of each call. The file
  is the runtime's private record (``corral-runc state`` prints the OCI state as JSON), and
  only root (or, rootless, the owner) can write the directory; ``marshal`` reads data that it
  wrote itself, never anything a container controls.
- ``created``: an empty file, present from ``create`` until ``start``, which removes it (the
  removal is how one of two racing starts wins). Meanwhile the container's init is the sealed
  launcher (corral.runtime.trampoline), waiting on a pipe whose number the state keeps
  as ``start_fd``.

The status is never stored, it is derived each time from the kernel, as runc does:
``stopped`` if the init process is gone (or its pid now belongs to another process: the start
time recorded at create tells them apart), ``created`` while the ``created`` file exists, ``paused``
while the cgroup is frozen, ``running`` otherwise. A directory whose create is still under way is
``creating``; if the process doing that create died, it reads ``stopped`` so that
``delete --force`` can remove what it left.
"""

import marshal
import posix
import time

from corral import _posix
from corral.errors import ExistsError, NotFoundError, StateError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_ROOT = "/run/corral"
STATE_FILE = "state.marshal"
CREATED_FILE = "created"
OCI_VERSION = "1.0.2-dev"


def validate_id(container_id: str) -> None:
    """Container IDs become directory names: allow what runc allows, nothing that walks paths."""
    ok = container_id and container_id not in (".", "..") and len(container_id) <= 1024
    if ok:
        ok = all((c.isalnum() and c.isascii()) or c in "_+-." for c in container_id)
    if not ok:
        raise UsageError(f'invalid container id "{container_id}": use letters, digits, _+-.')


class StateStore:
    """The runtime's ``--root`` directory: one sub-directory per container."""

    __slots__ = ("root",)
    # No lock file: every transition is one atomic rename of state.json, the ID is reserved by
    # an atomic mkdir, and the status is read from the kernel, so there is nothing to serialize.

    def __init__(self, root: str = DEFAULT_ROOT) -> None:
        self.root = _posix.abspath(root)

    def dir(self, container_id: str) -> str:
        validate_id(container_id)
        return f"{self.root}/{container_id}"

    def ids(self) -> list[str]:
        try:
            names = posix.listdir(self.root)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if _posix.isfile(f"{self.root}/{n}/{STATE_FILE}"))

    def reserve(self, container_id: str) -> str:
        """Make the container's directory; fail as runc does when the ID is taken."""
        path = self.dir(container_id)
        _posix.makedirs(self.root, 0o711)
        try:
            posix.mkdir(path, 0o711)
        except FileExistsError:
            raise ExistsError(f"container with id exists: {container_id}") from None
        return path

    def load(self, container_id: str) -> "Container":
        path = self.dir(container_id)
        try:
            with open(f"{path}/{STATE_FILE}", "rb") as f:
                data = marshal.loads(f.read())
        except FileNotFoundError:
            raise NotFoundError("container does not exist") from None
        except (EOFError, ValueError, TypeError):
            data = None
        if not isinstance(data, dict):
            raise StateError(f"{path}/{STATE_FILE}: unreadable (delete --force removes it)")
        return Container(path, data)


# What each verb refuses, by the container's status, in runc's words (containerd, podman and
# dockerd match some of them). A status not listed for a verb is allowed. "creating": another
# create of this container is still under way.
_NOT_RUNNING = "container not running"
REFUSALS: dict[str, dict[str, str]] = {
    "start": {
        "stopped": "cannot start a container that has stopped",
        "running": "cannot start an already running container",
        "paused": "cannot start a container in the paused state",
        "creating": "cannot start a container in the creating state",
    },
    "kill": {"stopped": _NOT_RUNNING, "creating": _NOT_RUNNING},
    "kill --all": {"creating": _NOT_RUNNING},  # a stopped one: what the init left, if anything
    "delete": dict.fromkeys(
        ("running", "paused", "creating"),
        "cannot delete container {id} that is not stopped: {status}",
    ),
    "exec": {
        "stopped": "cannot exec in a stopped container",
        "creating": "cannot exec in a stopped container",
        "paused": "cannot exec in a paused container",
    },
    "exec --ignore-paused": {
        "stopped": "cannot exec in a stopped container",
        "creating": "cannot exec in a stopped container",
    },
    "pause": dict.fromkeys(("stopped", "paused", "creating"), _NOT_RUNNING),
    "resume": dict.fromkeys(("running", "created", "stopped", "creating"), "container not paused"),
    "ps": {"stopped": _NOT_RUNNING},
    "events": {"stopped": _NOT_RUNNING},
    "update": {"stopped": _NOT_RUNNING},
}


class Container:
    """A container's recorded state, plus the live status read from the kernel."""

    __slots__ = ("data", "dir")

    def __init__(self, path: str, data: "dict[str, Any]") -> None:
        self.dir = path
        self.data = data

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def pid(self) -> int:
        return int(self.data.get("pid") or 0)

    @property
    def config(self) -> "dict[str, Any]":
        config: dict[str, Any] = self.data["config"]
        return config

    @property
    def created_marker(self) -> str:
        return f"{self.dir}/{CREATED_FILE}"

    def save(self) -> None:
        write_atomic(f"{self.dir}/{STATE_FILE}", marshal.dumps(self.data))

    def init_alive(self) -> bool:
        """Is the init we started still there (not a zombie, and not a recycled pid)?"""
        pid = self.pid
        return pid > 0 and process_start_time(pid) == self.data.get("init_start")

    def status(self) -> str:
        if self.data.get("status") == "creating":
            creator = self.data.get("creator") or [0, None]
            return "creating" if process_start_time(creator[0]) == creator[1] else "stopped"
        if not self.init_alive():
            return "stopped"
        if _posix.exists(self.created_marker):
            return "created"
        if self.cgroup_frozen():
            return "paused"
        return "running"

    def require(self, verb: str) -> str:
        """The live status, if ``verb`` may act on it (REFUSALS); else StateError."""
        status = self.status()
        refusal = REFUSALS[verb].get(status)
        if refusal is not None:
            raise StateError(refusal.format(id=self.id, status=status))
        return status

    def cgroup_frozen(self) -> bool:
        cg = self.data.get("cgroup")
        if not cg:
            return False
        from corral import cgroups

        return cgroups.frozen(cg)

    def oci_state(self) -> "dict[str, Any]":
        """The state as ``runc state`` prints it (runtime-spec state.md plus runc's extras)."""
        status = self.status()
        out: dict[str, Any] = {
            "ociVersion": self.data.get("ociVersion", OCI_VERSION),
            "id": self.id,
            "pid": self.pid if status != "stopped" else 0,
            "status": status,
            "bundle": self.data.get("bundle", ""),
            "rootfs": self.data.get("rootfs", ""),
            "created": self.data.get("created", ""),
            "owner": self.data.get("owner", ""),
        }
        if self.data.get("annotations"):
            out["annotations"] = self.data["annotations"]
        return out

    def hook_state(self, status: str) -> "dict[str, Any]":
        """The state JSON handed to hooks on stdin (runtime-spec state.md)."""
        state: dict[str, Any] = {
            "ociVersion": self.data.get("ociVersion", OCI_VERSION),
            "id": self.id,
            "status": status,
            "pid": self.pid,
            "bundle": self.data.get("bundle", ""),
        }
        if self.data.get("annotations"):
            state["annotations"] = self.data["annotations"]
        return state


def write_atomic(path: str, payload: bytes) -> None:
    """Write a temp file, rename it over: readers see the old file or the new one, never a torn
    one."""
    tmp = f"{path}.tmp{posix.getpid()}"
    fd = posix.open(tmp, posix.O_WRONLY | posix.O_CREAT | posix.O_TRUNC | posix.O_CLOEXEC, 0o600)
    try:
        posix.write(fd, payload)
    finally:
        posix.close(fd)
    posix.rename(tmp, path)


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (clock ticks since boot); None if gone or a zombie.

    A pid can be reused by an unrelated process after the container exits; the pair (pid,
    start time) cannot.
    """
    if pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = raw[raw.rfind(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def rfc3339_now() -> str:
    """UTC time with nanoseconds, as runc writes ``created``."""
    ns = time.time_ns()
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"
