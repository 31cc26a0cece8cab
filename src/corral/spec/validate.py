"""Check a config.json (or an exec process.json) before anything is done with it.

A runtime that finds a bad field halfway through creating a container has namespaces, mounts
and cgroups to undo; one that finds it first has nothing to undo and can say exactly what is
wrong. So the whole config is walked here, up front, and the first problem raises
``SpecError(path, message)``, where ``path`` is the field's JSON path (``process.user.uid``,
``mounts[2].destination``, ``linux.sysctl["net.ipv4.ip_forward"]``) and ``message`` says what
was expected and what was found::

    process.user.uid: must be a non-negative integer, got "abc"

Three kinds of check; fields are visited in a fixed order (the order of Go's struct, which
is runc's output order), and the rules between fields come last:

1. **Shape**: every field the OCI runtime-spec defines has the JSON type and range its schema
   gives (a ``uint32`` is an integer from 0 to 2**32-1; ``true`` is not an integer). Unknown
   fields are ignored, as Go's encoding/json (and so runc) ignores them, and ``null`` counts as
   absent: such fields are removed from the dict, so later code can rely on ``.get(key, default)``.
2. **Values**: names that must be known (capabilities, rlimits, namespace types, propagation
   modes), absolute paths where the spec requires them, no duplicate namespaces or rlimits,
   no NUL byte in a string the kernel reads as a C string (a path, an argument, a mount
   option, a sysctl): the kernel would stop at it, and ``/etc\0/x`` would mean ``/etc``.
3. **Rules between fields**, the ones runc enforces in libcontainer/configs/validate: a hostname
   needs a UTS namespace, ``net.*`` sysctls need a network namespace, ID mappings need a user
   namespace, and so on. These catch configs that are well-formed but would do something
   different from what they say (set the *host's* hostname, say).

Checks that need the kernel (does the rootfs exist, is a joined network namespace the host's)
are left to the loader and the runtime: this module is pure and runs anywhere.

The check functions share one signature, ``check(value, path)``, and tables map field names to
them, so a section of the config reads as a small schema.
"""

from corral import _json, _posix
from corral.errors import SpecError
from corral.spec.tables import (
    CAPABILITIES,
    CAPABILITY_SETS,
    HOOK_KINDS,
    NAMESPACE_TYPES,
    PROPAGATION,
    RLIMITS,
)

TYPE_CHECKING = False  # typing costs 8 ms to import; mypy still reads these blocks
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn

    from corral.spec.types import Process, Spec

    Check = Callable[[Any, str], object]

U16 = 0xFFFF
U32 = 0xFFFF_FFFF
U64 = 0xFFFF_FFFF_FFFF_FFFF
I64_MIN = -(2**63)
I64_MAX = 2**63 - 1


def validate_config(cfg: object, source: str | None = None, *, need_process: bool = True) -> "Spec":
    """Check a parsed config.json and return it, typed; raise SpecError at the first problem.

    ``source`` (the file's name) prefixes the error message. ``need_process=False`` allows a
    config without ``process``, which only ``create``/``run`` need.
    """
    try:
        checked: Any = _check_config(cfg, need_process)
    except SpecError as err:
        raise _with_source(err, source) from None
    spec: Spec = checked  # the walk above is what makes this claim true
    return spec


def validate_resources(resources: object, source: str | None = None) -> "dict[str, Any]":
    """Check a ``linux.resources`` object on its own, as ``update`` gets it (``--resources``
    JSON or runc's flags, merged with what the container has), by the same rules as in a
    config: the shapes, the values the kernel takes, and the rules between fields (swap and
    memory). The cgroup managers take the result as it is."""
    try:
        checked = _resources(resources, "linux.resources")
        _check_resources(checked, "linux.resources")
    except SpecError as err:
        raise _with_source(err, source) from None
    return checked


def validate_process(proc: object, source: str | None = None, path: str = "process") -> "Process":
    """Check one process object (``process`` of config.json, or ``exec --process`` JSON).

    ``path`` prefixes field paths in errors; pass ``""`` for a file that holds only a process.
    """
    try:
        checked: Any = _process(proc, path)
    except SpecError as err:
        raise _with_source(err, source) from None
    process: Process = checked
    return process


def _with_source(err: "SpecError", source: str | None) -> "SpecError":
    return SpecError(err.path, err.detail, source) if source else err


# --- paths and messages ------------------------------------------------------------------------


def _at(path: str, key: str) -> str:
    """The path of field ``key`` of the object at ``path``."""
    return f"{path}.{key}" if path else key


def _item(path: str, index: int) -> str:
    return f"{path}[{index}]"


def _entry(path: str, key: str) -> str:
    """The path of a map entry: keys like "net.ipv4.ip_forward" hold dots, so quote them."""
    return f"{path}[{_json.dumps(key)}]"


def _show(value: object) -> str:
    """The offending value as JSON, cut short: messages stay one readable line."""
    try:
        text = _json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _fail(path: str, message: str) -> "NoReturn":
    raise SpecError(path, message)


def _expected(path: str, what: str, value: object) -> "NoReturn":
    _fail(path, f"must be {what}, got {_show(value)}")


# --- JSON types --------------------------------------------------------------------------------


def _object(value: object, path: str) -> "dict[str, Any]":
    if not isinstance(value, dict):
        _expected(path, "an object" if path else "a JSON object", value)
    return value


def _list(value: object, path: str) -> "list[Any]":
    if not isinstance(value, list):
        _expected(path, "a list", value)
    return value


def _string(value: object, path: str) -> str:
    if not isinstance(value, str):
        _expected(path, "a string", value)
    return value


def _nonempty(value: object, path: str) -> str:
    if not isinstance(value, str) or not value:
        _expected(path, "a non-empty string", value)
    return _cstring(value, path)


def _cstring(value: object, path: str) -> str:
    """A string that reaches the kernel (a path, an argument, a file's content): no NUL byte,
    where C would end the string and the rest would be silently dropped."""
    text = _string(value, path)
    if "\0" in text:
        _fail(path, f"must not contain a NUL byte, got {_show(text)}")
    return text


def _boolean(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        _expected(path, "true or false", value)
    return value


def _integer(value: object, path: str, low: int, high: int) -> int:
    """An integer in [low, high]. JSON ``true`` and ``1.0`` are not integers (Go agrees)."""
    kind = {0: "a non-negative integer", 1: "a positive integer"}.get(low)
    if type(value) is not int:
        _expected(path, kind or "an integer", value)
    if value < low:
        _expected(path, kind or f"at least {low}", value)
    if value > high:
        _expected(path, f"at most {high}", value)
    return value


def _u16(value: object, path: str) -> int:
    return _integer(value, path, 0, U16)


def _u32(value: object, path: str) -> int:
    return _integer(value, path, 0, U32)


def _u64(value: object, path: str) -> int:
    return _integer(value, path, 0, U64)


def _i64(value: object, path: str) -> int:
    return _integer(value, path, I64_MIN, I64_MAX)


def _limit(value: object, path: str) -> int:
    """A cgroup limit: bytes, counts or microseconds, with -1 meaning "no limit"."""
    return _integer(value, path, -1, I64_MAX)


def _strings(value: object, path: str) -> list[str]:
    """A list of strings, each free of NUL bytes (arguments, options, names: all C strings)."""
    items = _list(value, path)
    for i, item in enumerate(items):
        _cstring(item, _item(path, i))
    return items


def _u32s(value: object, path: str) -> list[int]:
    items = _list(value, path)
    for i, item in enumerate(items):
        _u32(item, _item(path, i))
    return items


def _string_map(value: object, path: str) -> dict[str, str]:
    """A JSON object of strings (annotations: free text, passed on as JSON)."""
    entries = _object(value, path)
    for key, item in entries.items():
        _string(item, _entry(path, key))
    return entries


def _file_map(value: object, path: str) -> dict[str, str]:
    """A JSON object of kernel files and what to write in them (sysctls, unified cgroup
    files): names and contents both free of NUL bytes."""
    entries = _string_map(value, path)
    for key, item in entries.items():
        if "\0" in key:
            _fail(path, f"a name must not contain a NUL byte, got {_show(key)}")
        _cstring(item, _entry(path, key))
    return entries


def _abs_path(value: object, path: str) -> str:
    text = _cstring(value, path)
    if not text.startswith("/"):
        _expected(path, "an absolute path", text)
    return text


def _abs_paths(value: object, path: str) -> list[str]:
    items = _list(value, path)
    for i, item in enumerate(items):
        _abs_path(item, _item(path, i))
    return items


def _one_of(value: object, path: str, choices: "tuple[str, ...] | dict[str, Any]") -> str:
    if not isinstance(value, str) or value not in choices:
        _expected(path, "one of " + ", ".join(choices), value)
    return value


def _fields(
    value: object, path: str, table: "dict[str, Check]", required: dict[str, str] | None = None
) -> "dict[str, Any]":
    """Check an object against a table of ``field -> check``; ``required`` maps the fields
    that must be present to a description of what they should hold.

    ``null`` fields are dropped first: Go's encoding/json treats them as absent, and so do we.
    """
    obj = _object(value, path)
    for key in [key for key, item in obj.items() if item is None]:
        del obj[key]
    for key, what in (required or {}).items():
        if key not in obj:
            _fail(_at(path, key), f"is required ({what})")
    for key, check in table.items():
        if key in obj:
            check(obj[key], _at(path, key))
    return obj


def _list_of(check: "Check") -> "Check":
    """A check for a list whose every item passes ``check``."""

    def check_list(value: object, path: str) -> "list[Any]":
        items = _list(value, path)
        for i, item in enumerate(items):
            check(item, _item(path, i))
        return items

    return check_list


# --- process -----------------------------------------------------------------------------------


def _args(value: object, path: str) -> list[str]:
    if not isinstance(value, list) or not value:
        _expected(path, "a non-empty list of strings", value)
    return _strings(value, path)


def _env(value: object, path: str) -> list[str]:
    """Each entry is "NAME=value": execve(2) takes the environment as such strings."""
    items = _list(value, path)
    for i, entry in enumerate(items):
        name, eq, _ = _string(entry, _item(path, i)).partition("=")
        if not eq or not name or "\0" in entry:
            _expected(_item(path, i), '"NAME=value" (a non-empty name, no NUL)', entry)
    return items


def _console(value: object, path: str) -> "dict[str, Any]":
    """Rows and columns go to the TIOCSWINSZ ioctl, which holds each in 16 bits."""
    table: dict[str, Check] = {"height": _u16, "width": _u16}
    return _fields(value, path, table, {"height": "rows", "width": "columns"})


_USER: "dict[str, Check]" = {
    "uid": _u32,
    "gid": _u32,
    "umask": _u32,
    "additionalGids": _u32s,
    "username": _string,
}


def _user(value: object, path: str) -> "dict[str, Any]":
    return _fields(value, path, _USER)


def _capability_names(value: object, path: str) -> list[str]:
    """A typo must not silently drop (or keep) a privilege, so every name must be known."""
    names = _strings(value, path)
    for i, name in enumerate(names):
        if name not in CAPABILITIES:
            _fail(_item(path, i), f"unknown capability {_show(name)}")
    return names


_CAPABILITIES: "dict[str, Check]" = {name: _capability_names for name in CAPABILITY_SETS}


def _capabilities(value: object, path: str) -> "dict[str, Any]":
    return _fields(value, path, _CAPABILITIES)


_RLIMIT: "dict[str, Check]" = {"type": _string, "hard": _u64, "soft": _u64}
_RLIMIT_REQUIRED = {"type": "an RLIMIT_* name", "hard": "an integer", "soft": "an integer"}


def _rlimits(value: object, path: str) -> "list[Any]":
    """setrlimit(2) calls: known names, soft <= hard, each name once (the spec forbids repeats)."""
    seen: dict[str, str] = {}
    items = _list(value, path)
    for i, item in enumerate(items):
        where = _item(path, i)
        limit = _fields(item, where, _RLIMIT, _RLIMIT_REQUIRED)
        name = limit["type"]
        if name not in RLIMITS:
            _fail(_at(where, "type"), f"unknown rlimit {_show(name)} (see getrlimit(2))")
        if name in seen:
            _fail(_at(where, "type"), f"duplicate rlimit {name} (also in {seen[name]})")
        seen[name] = where
        if limit["soft"] > limit["hard"]:
            _fail(_at(where, "soft"), f"must not exceed hard ({limit['soft']} > {limit['hard']})")
    return items


def _oom_score_adj(value: object, path: str) -> int:
    return _integer(value, path, -1000, 1000)


_PROCESS: "dict[str, Check]" = {
    "terminal": _boolean,
    "consoleSize": _console,
    "user": _user,
    "args": _args,
    "commandLine": _string,
    "env": _env,
    "cwd": _abs_path,
    "capabilities": _capabilities,
    "rlimits": _rlimits,
    "noNewPrivileges": _boolean,
    "apparmorProfile": _cstring,
    "oomScoreAdj": _oom_score_adj,
    "selinuxLabel": _cstring,
}
_PROCESS_REQUIRED = {"args": "a non-empty list of strings", "cwd": "an absolute path"}


def _process(value: object, path: str) -> "dict[str, Any]":
    """runc refuses an empty ``args`` and a relative ``cwd``; so do we, before any work."""
    return _fields(value, path, _PROCESS, _PROCESS_REQUIRED)


# --- root, mounts, hooks -----------------------------------------------------------------------


def _root(value: object, path: str) -> "dict[str, Any]":
    table: dict[str, Check] = {"path": _nonempty, "readonly": _boolean}
    return _fields(value, path, table, {"path": "the rootfs directory, relative to the bundle"})


def _destination(value: object, path: str) -> str:
    """Where a mount goes, inside the container.

    The spec wants an absolute path; runc 1.1 still takes a relative one (from "/"), for old
    configs, and so do we. Either way ``..`` may not climb out of the container's root.
    """
    text = _nonempty(value, path)
    if _posix.normpath(text).startswith(".."):
        _expected(path, "a path inside the container", text)
    return text


def _idmap(value: object, path: str) -> "dict[str, Any]":
    """``size`` IDs from ``containerID`` map to ``hostID`` on (a line of /proc/PID/uid_map)."""
    table: dict[str, Check] = {"containerID": _u32, "hostID": _u32, "size": _map_size}
    what = {"containerID": "an integer", "hostID": "an integer", "size": "a positive integer"}
    return _fields(value, path, table, what)


def _map_size(value: object, path: str) -> int:
    return _integer(value, path, 1, U32)


_idmaps = _list_of(_idmap)

_MOUNT: "dict[str, Check]" = {
    "destination": _destination,
    "type": _cstring,
    "source": _cstring,
    "options": _strings,
    "uidMappings": _idmaps,
    "gidMappings": _idmaps,
}


def _mount(value: object, path: str) -> "dict[str, Any]":
    """Option words are not checked: the unknown ones are the filesystem's own (``mode=755``)."""
    return _fields(value, path, _MOUNT, {"destination": "an absolute path in the container"})


def _hook_timeout(value: object, path: str) -> int:
    return _integer(value, path, 1, I64_MAX)


_HOOK: "dict[str, Check]" = {
    "path": _abs_path,
    "args": _strings,
    "env": _strings,
    "timeout": _hook_timeout,
}


def _hook(value: object, path: str) -> "dict[str, Any]":
    """A hook runs a host program: its path must be absolute, never looked up in $PATH."""
    return _fields(value, path, _HOOK, {"path": "an absolute path"})


_HOOKS: "dict[str, Check]" = {kind: _list_of(_hook) for kind in HOOK_KINDS}


def _hooks(value: object, path: str) -> "dict[str, Any]":
    """The six lifecycle points, each a list of hooks run in order."""
    return _fields(value, path, _HOOKS)


# --- linux: namespaces, devices, odds and ends -------------------------------------------------


def _namespaces(value: object, path: str) -> "list[Any]":
    """Each type once: a process is in exactly one namespace of each kind."""
    seen: dict[str, str] = {}
    items = _list(value, path)
    table: dict[str, Check] = {"type": _namespace_type, "path": _cstring}
    for i, item in enumerate(items):
        where = _item(path, i)
        kind = _fields(item, where, table, {"type": "a namespace type"})["type"]
        if kind in seen:
            _fail(_at(where, "type"), f"duplicate namespace {_show(kind)} (also in {seen[kind]})")
        seen[kind] = where
    return items


def _namespace_type(value: object, path: str) -> str:
    return _one_of(value, path, NAMESPACE_TYPES)


_DEVICE_TYPES = ("c", "b", "u", "p")
_DEVICE: "dict[str, Check]" = {
    "type": lambda value, path: _one_of(value, path, _DEVICE_TYPES),
    "path": _abs_path,
    "major": _i64,
    "minor": _i64,
    # Not the schema's 0..512: containerd sends st_mode with the file type bits (0o20666).
    "fileMode": _u32,
    "uid": _u32,
    "gid": _u32,
}


def _device(value: object, path: str) -> "dict[str, Any]":
    """A node to mknod(2) in /dev: character (c, or u unbuffered), block (b) or a FIFO (p)."""
    device = _fields(value, path, _DEVICE, {"type": "c, b, u or p", "path": "an absolute path"})
    if device["type"] != "p":
        for key in ("major", "minor"):
            if key not in device:
                _fail(_at(path, key), f"is required for a {device['type']!r} device")
    return device


def _propagation(value: object, path: str) -> str:
    """How mounts under the rootfs propagate; "" means the default (rprivate)."""
    return "" if value == "" else _one_of(value, path, PROPAGATION)


def _personality(value: object, path: str) -> "dict[str, Any]":
    table: dict[str, Check] = {
        "domain": lambda value, path: _one_of(value, path, ("LINUX", "LINUX32")),
        "flags": _strings,
    }
    return _fields(value, path, table)


def _nanoseconds(value: object, path: str) -> int:
    return _integer(value, path, 0, 999_999_999)


def _time_offsets(value: object, path: str) -> "dict[str, Any]":
    """Clock offsets for a new time namespace: only CLOCK_MONOTONIC and CLOCK_BOOTTIME move."""
    offsets = _object(value, path)
    table: dict[str, Check] = {"secs": _i64, "nanosecs": _nanoseconds}
    for clock, offset in offsets.items():
        where = _entry(path, clock)
        _one_of(clock, where, ("monotonic", "boottime"))
        _fields(offset, where, table)
    return offsets


_INTEL_RDT: "dict[str, Check]" = {
    "closID": _cstring,
    "l3CacheSchema": _cstring,
    "memBwSchema": _cstring,
    "enableCMT": _boolean,
    "enableMBM": _boolean,
}


def _intel_rdt(value: object, path: str) -> "dict[str, Any]":
    return _fields(value, path, _INTEL_RDT)


# --- linux.resources (cgroups) -----------------------------------------------------------------


def _device_rule(value: object, path: str) -> "dict[str, Any]":
    """A device-cgroup rule: type a (all), c or b; access a subset of "rwm"; -1 = any number."""
    table: dict[str, Check] = {
        "allow": _boolean,
        "type": lambda value, path: value == "" or _one_of(value, path, ("a", "c", "b")),
        "major": _limit,
        "minor": _limit,
        "access": _access,
    }
    rule = _fields(value, path, table, {"allow": "true or false"})
    if rule.get("type") == "a" and set(rule.get("access") or "rwm") != set("rwm"):
        # The v1 kernel reads type "a" as "all devices, all access" whatever follows; refuse
        # rather than silently widen (v2 emulates v1, so the same holds there).
        _fail(_at(path, "access"), 'a rule for all devices (type "a") needs "rwm"')
    return rule


def _access(value: object, path: str) -> str:
    text = _string(value, path)
    if any(char not in "rwm" for char in text):
        _expected(path, 'letters of "rwm"', text)
    return text


_MEMORY: "dict[str, Check]" = {
    "limit": _limit,
    "reservation": _limit,
    "swap": _limit,
    "kernel": _limit,
    "kernelTCP": _limit,
    "swappiness": lambda value, path: _integer(value, path, 0, 100),
    "disableOOMKiller": _boolean,
    "useHierarchy": _boolean,
    "checkBeforeUpdate": _boolean,
}
_CPU: "dict[str, Check]" = {
    "shares": lambda value, path: _zero_or(value, path, 2, 262144),
    "quota": _limit,
    "burst": _u64,
    "period": _u64,
    "realtimeRuntime": _limit,
    "realtimePeriod": _u64,
    "cpus": lambda value, path: _cpu_list(value, path),
    "mems": lambda value, path: _cpu_list(value, path),
    "idle": lambda value, path: _integer(value, path, 0, 1),
}


def _zero_or(value: object, path: str, low: int, high: int) -> int:
    """0 ("not set", as in runc) or an integer in [low, high]."""
    if type(value) is not int or (value != 0 and not low <= value <= high):
        _expected(path, f"0 (not set) or {low} to {high}", value)
    return value


def _cpu_list(value: object, path: str) -> str:
    """A kernel CPU or NUMA node list such as "0-3,8"; "" means not set."""
    text = _cstring(value, path)
    for part in text.split(",") if text else ():
        low, dash, high = part.partition("-")
        ok = low.isascii() and low.isdigit()
        if dash:
            ok = ok and high.isascii() and high.isdigit() and int(low) <= int(high)
        if not ok:
            _expected(path, 'a list such as "0-3,8"', text)
    return text


def _memory(value: object, path: str) -> "dict[str, Any]":
    return _fields(value, path, _MEMORY)


def _cpu(value: object, path: str) -> "dict[str, Any]":
    return _fields(value, path, _CPU)


def _pids(value: object, path: str) -> "dict[str, Any]":
    """pids.max: 0 or less means no limit."""
    return _fields(value, path, {"limit": _i64}, {"limit": "an integer"})


_BLOCK_DEVICE = {"major": "an integer", "minor": "an integer"}


def _weight_device(value: object, path: str) -> "dict[str, Any]":
    table: dict[str, Check] = {
        "major": _u32,
        "minor": _u32,
        "weight": _blkio_weight,
        "leafWeight": _blkio_weight,
    }
    return _fields(value, path, table, _BLOCK_DEVICE)


def _blkio_weight(value: object, path: str) -> int:
    """A block I/O weight: 10..1000, 0 meaning not set."""
    return _zero_or(value, path, 10, 1000)


def _throttle_device(value: object, path: str) -> "dict[str, Any]":
    table: dict[str, Check] = {"major": _u32, "minor": _u32, "rate": _u64}
    return _fields(value, path, table, _BLOCK_DEVICE)


_throttles = _list_of(_throttle_device)
_BLOCK_IO: "dict[str, Check]" = {
    "weight": _blkio_weight,
    "leafWeight": _blkio_weight,
    "weightDevice": _list_of(_weight_device),
    "throttleReadBpsDevice": _throttles,
    "throttleWriteBpsDevice": _throttles,
    "throttleReadIOPSDevice": _throttles,
    "throttleWriteIOPSDevice": _throttles,
}


def _block_io(value: object, path: str) -> "dict[str, Any]":
    return _fields(value, path, _BLOCK_IO)


def _page_size(value: object, path: str) -> str:
    """A huge page size as the hugetlb files name it: digits, then KB, MB or GB ("2MB")."""
    text = _string(value, path)
    digits, unit = text[:-2], text[-2:]
    if unit not in ("KB", "MB", "GB") or not digits.isdigit() or not digits.isascii():
        _expected(path, 'a page size like "2MB"', text)
    if digits.startswith("0"):
        _expected(path, 'a page size like "2MB"', text)
    return text


def _hugepage_limit(value: object, path: str) -> "dict[str, Any]":
    table: dict[str, Check] = {"pageSize": _page_size, "limit": _u64}
    return _fields(value, path, table, {"pageSize": 'a size like "2MB"', "limit": "bytes"})


def _priority(value: object, path: str) -> "dict[str, Any]":
    table: dict[str, Check] = {"name": _interface_name, "priority": _u32}
    return _fields(value, path, table, {"name": "an interface name", "priority": "an integer"})


def _interface_name(value: object, path: str) -> str:
    text = _cstring(value, path)
    if not text or any(char.isspace() or char == "/" for char in text):
        _expected(path, "a network interface name", text)
    return text


def _network(value: object, path: str) -> "dict[str, Any]":
    table: dict[str, Check] = {"classID": _u32, "priorities": _list_of(_priority)}
    return _fields(value, path, table)


def _rdma(value: object, path: str) -> "dict[str, Any]":
    """RDMA limits per device name: ``{"mlx5_1": {"hcaHandles": 3}}``."""
    devices = _object(value, path)
    table: dict[str, Check] = {"hcaHandles": _u32, "hcaObjects": _u32}
    for name, limits in devices.items():
        if not name or any(char.isspace() for char in name) or "\0" in name:
            _fail(_entry(path, name), "must be an RDMA device name")
        _fields(limits, _entry(path, name), table)
    return devices


_RESOURCES: "dict[str, Check]" = {
    "devices": _list_of(_device_rule),
    "memory": _memory,
    "cpu": _cpu,
    "pids": _pids,
    "blockIO": _block_io,
    "hugepageLimits": _list_of(_hugepage_limit),
    "network": _network,
    "rdma": _rdma,
    "unified": lambda value, path: _unified(value, path),
}


def _unified(value: object, path: str) -> dict[str, str]:
    """cgroup v2 files by name (``memory.high``), each written as given."""
    files = _file_map(value, path)
    for name in files:
        if "/" in name or name in (".", "..") or "." not in name:
            _fail(_entry(path, name), "must name a file of the cgroup, such as memory.high")
    return files


def _resources(value: object, path: str) -> "dict[str, Any]":
    return _fields(value, path, _RESOURCES)


# --- linux.seccomp: shape only (the seccomp compiler checks names and actions) -----------------


def _syscall_arg(value: object, path: str) -> "dict[str, Any]":
    table: dict[str, Check] = {"index": _u32, "value": _u64, "valueTwo": _u64, "op": _string}
    what = {"index": "an argument number", "value": "an integer", "op": "an SCMP_CMP_* name"}
    return _fields(value, path, table, what)


def _syscall_names(value: object, path: str) -> list[str]:
    if not isinstance(value, list) or not value:
        _expected(path, "a non-empty list of syscall names", value)
    return _strings(value, path)


_SYSCALL: "dict[str, Check]" = {
    "names": _syscall_names,
    "action": _string,
    "errnoRet": _u32,
    "args": _list_of(_syscall_arg),
}
_SECCOMP: "dict[str, Check]" = {
    "defaultAction": _string,
    "defaultErrnoRet": _u32,
    "architectures": _strings,
    "flags": _strings,
    "listenerPath": _cstring,
    "listenerMetadata": _string,
    "syscalls": _list_of(
        lambda value, path: _fields(
            value, path, _SYSCALL, {"names": "syscall names", "action": "an SCMP_ACT_* name"}
        )
    ),
}


def _seccomp(value: object, path: str) -> "dict[str, Any]":
    return _fields(value, path, _SECCOMP, {"defaultAction": "an SCMP_ACT_* name"})


_LINUX: "dict[str, Check]" = {
    "uidMappings": _idmaps,
    "gidMappings": _idmaps,
    "timeOffsets": _time_offsets,
    "sysctl": _file_map,
    "resources": _resources,
    "cgroupsPath": _cstring,
    "namespaces": _namespaces,
    "devices": _list_of(_device),
    "seccomp": _seccomp,
    "rootfsPropagation": _propagation,
    "maskedPaths": _abs_paths,
    "readonlyPaths": _abs_paths,
    "mountLabel": _cstring,
    "intelRdt": _intel_rdt,
    "personality": _personality,
}


def _linux(value: object, path: str) -> "dict[str, Any]":
    return _fields(value, path, _LINUX)


# --- the whole config --------------------------------------------------------------------------

_SPEC: "dict[str, Check]" = {
    "ociVersion": _string,
    "process": _process,
    "root": _root,
    "hostname": _cstring,
    "domainname": _cstring,
    "mounts": _list_of(_mount),
    "hooks": _hooks,
    "annotations": _string_map,
    "linux": _linux,
}
_SPEC_REQUIRED = {"ociVersion": 'a version string like "1.0.2"', "root": 'an object with "path"'}


def _check_config(cfg: object, need_process: bool) -> "dict[str, Any]":
    required = dict(_SPEC_REQUIRED)
    if need_process:
        required["process"] = "an object with args and cwd"
    spec = _fields(cfg, "", _SPEC, required)
    _check_rules(spec)
    return spec


# --- rules between fields (runc's libcontainer/configs/validate) -------------------------------

_NS_LABELS = {
    "uts": "UTS",
    "ipc": "IPC",
    "network": "network",
    "mount": "mount",
    "user": "user",
    "time": "time",
}

# The sysctls that belong to an IPC namespace (and fs.mqueue.*): setting them in a container
# that shares the host's IPC namespace would change them for the host.
_IPC_SYSCTLS = frozenset(
    (
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    )
)
_ALLOWED_SYSCTLS = "net.*, fs.mqueue.*, kernel.domainname, " + ", ".join(sorted(_IPC_SYSCTLS))


def _needs(path: str, namespaces: dict[str, str], kind: str) -> None:
    """Fail unless ``kind`` is among the container's namespaces (created or joined)."""
    if kind not in namespaces:
        label = _NS_LABELS[kind]
        _fail(path, f'requires a new {label} namespace (linux.namespaces type "{kind}")')


def _check_rules(spec: "dict[str, Any]") -> None:
    """The rules runc applies to a whole config, in the order runc applies them."""
    linux: dict[str, Any] = spec.get("linux", {})
    namespaces = {ns["type"]: ns.get("path", "") for ns in linux.get("namespaces", [])}
    for field in ("hostname", "domainname"):
        if spec.get(field):  # the host's own name would change otherwise
            _needs(field, namespaces, "uts")
    for field in ("maskedPaths", "readonlyPaths"):
        if linux.get(field):  # masking /proc/kcore must not mask it for the host
            _needs(_at("linux", field), namespaces, "mount")
    _check_id_mappings(linux, namespaces)
    if namespaces.get("user") == "" and "process" in spec:
        _check_user_mapped(spec["process"].get("user", {}), linux)
    _check_time_offsets(linux, namespaces)
    for name in linux.get("sysctl", {}):
        _check_sysctl(name, namespaces)
    if "resources" in linux:
        _check_resources(linux["resources"], "linux.resources")


def _check_resources(resources: "dict[str, Any]", path: str) -> None:
    """linux.resources' rule between fields: ``memory.swap`` is memory+swap (runc's and v1's
    meaning), so it needs a memory limit and must not be below it. 0 means "not set" and -1
    "unlimited", for both."""
    memory = resources.get("memory") or {}
    limit, swap = memory.get("limit", 0), memory.get("swap", 0)
    if swap in (0, -1):
        return
    where = _at(_at(path, "memory"), "swap")
    if limit in (0, -1):
        _fail(where, "a swap limit (memory+swap) needs a memory limit (memory.limit)")
    if swap < limit:
        _fail(where, f"is memory+swap and must not be below memory.limit ({limit}), got {swap}")


def _check_id_mappings(linux: "dict[str, Any]", namespaces: dict[str, str]) -> None:
    """Mappings are written for a *new* user namespace; one without them leaves root unmapped.

    What the kernel would refuse when the parent writes uid_map (EINVAL, long after the
    namespaces and mounts were made) is refused here, naming the line: ranges past 2**32,
    ranges that overlap inside or outside, and a map that leaves container ID 0 (the ID the
    init becomes before it sets up the container) unmapped.
    """
    for field in ("uidMappings", "gidMappings"):
        where = _at("linux", field)
        if linux.get(field):
            _needs(where, namespaces, "user")
            _check_id_ranges(linux[field], where)
        elif namespaces.get("user") == "":
            _fail(where, 'is required when linux.namespaces creates a "user" namespace')


def _check_user_mapped(user: "dict[str, Any]", linux: "dict[str, Any]") -> None:
    """The process's uid and gid must exist in the new user namespace, or setuid fails."""
    for key, field in (("uid", "uidMappings"), ("gid", "gidMappings")):
        value = user.get(key, 0)
        maps = linux.get(field, [])
        if not any(m["containerID"] <= value < m["containerID"] + m["size"] for m in maps):
            _fail(_at("process.user", key), f"{value} is not mapped by linux.{field}")


def _check_id_ranges(maps: "list[dict[str, Any]]", where: str) -> None:
    if len(maps) > 340:  # the kernel's limit on lines in uid_map (Linux 4.15+)
        _fail(where, f"has {len(maps)} entries; the kernel takes at most 340")
    for i, m in enumerate(maps):
        path = _item(where, i)
        for key in ("containerID", "hostID"):
            if m[key] + m["size"] > U32:  # the last ID, 2**32-1, is never valid (it is -1)
                _fail(
                    path,
                    f"{key} {m[key]} + size {m['size']} runs past the last ID ({U32 - 1})",
                )
        for j in range(i):
            o = maps[j]
            for key, side in (("containerID", "container"), ("hostID", "host")):
                if m[key] < o[key] + o["size"] and o[key] < m[key] + m["size"]:
                    _fail(
                        path,
                        f"{side} IDs {m[key]}-{m[key] + m['size'] - 1} overlap"
                        f" {_item(where, j)} ({o[key]}-{o[key] + o['size'] - 1})",
                    )
    if not any(m["containerID"] == 0 for m in maps):
        _fail(where, "must map container ID 0 (the container's root), none of its ranges does")


def _check_time_offsets(linux: "dict[str, Any]", namespaces: dict[str, str]) -> None:
    """Offsets can only be written into a time namespace that nothing has entered yet."""
    if not linux.get("timeOffsets"):
        return
    where = _at("linux", "timeOffsets")
    _needs(where, namespaces, "time")
    if namespaces["time"]:
        _fail(where, 'cannot be set when joining an existing time namespace (it has a "path")')


def _check_sysctl(name: str, namespaces: dict[str, str]) -> None:
    """Only namespaced sysctls: anything else would be set for the whole host."""
    where = _entry("linux.sysctl", name)
    if name in _IPC_SYSCTLS or name.startswith("fs.mqueue."):
        _needs(where, namespaces, "ipc")
    elif name.startswith("net."):
        _needs(where, namespaces, "network")
    elif name == "kernel.domainname":
        _needs(where, namespaces, "uts")
    elif name == "kernel.hostname":
        _fail(where, 'conflicts with the "hostname" field; set that instead')
    else:
        _fail(where, f"is not namespaced, so a container may not set it ({_ALLOWED_SYSCTLS})")
