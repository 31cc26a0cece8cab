"""The flags of ``corral run`` / ``create`` that shape a container, with docker's names and
value grammars, turned into a typed :class:`corral.engine.containers.spec.RunOptions`.

``add_run_flags(parser)`` declares them on an argparse parser; ``run_options(ns)`` converts the
parsed strings, checking each value as docker does and failing with docker's words::

    -m 12q            invalid argument "12q" for "-m, --memory" flag: invalid size: '12q'
    --cpus -1         Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available
    -v relative:path  invalid volume specification: 'relative:path': invalid mount config for
                      type "volume": invalid mount path: 'path' mount path must be absolute

Value grammars (docker's ``opts`` package and ``docker run --help``)::

    size       512m, 1g, 1.5GiB, 100000 (bytes); binary multiples; b k m g t p, any case
    -v         [SOURCE:]TARGET[:OPTIONS]   SOURCE absolute: a bind; a name: a named volume;
               none: an anonymous volume. OPTIONS, comma-separated: ro rw z Z nocopy and the
               propagation modes (shared slave private rshared rslave rprivate)
    --mount    type=bind|volume|tmpfs,source|src=S,target|destination|dst=T,readonly|ro[=true],
               volume-nocopy, bind-propagation=P, tmpfs-size=SIZE, tmpfs-mode=OCTAL
    --tmpfs    TARGET[:size=64m,mode=1777,noexec,...]
    --ulimit   NAME=SOFT[:HARD]        (nofile=1024:2048)
    --device   HOST[:CONTAINER[:rwm]]
    --device-cgroup-rule  'c 1:3 mr' | 'a *:* rwm'
    --add-host NAME:IP | NAME=IP
    --dns IP   --dns-search DOMAIN (. for none)   --dns-option OPT (ndots:2)   (resolv.conf)
    --security-opt  no-new-privileges[:true|false], seccomp=unconfined, seccomp=PROFILE.json,
               label=disable, apparmor=unconfined (no SELinux/AppArmor labels are applied)
    --userns   host | keep-id[:uid=U,gid=G] | auto[:size=N]  (podman's; docker knows host)
    --uidmap / --gidmap  CONTAINER:HOST:SIZE, repeatable (engine/containers/userns.py)
"""

from __future__ import annotations

import os
import re

from corral.engine.containers.spec import DeviceOption, MountOption, RunOptions, Ulimit
from corral.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any, Literal

_SIZE = re.compile(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
#: docker's smallest memory limit (and reservation): 6 MiB.
MIN_MEMORY = 6 * 1024 * 1024
_PROPAGATION = ("shared", "slave", "private", "rshared", "rslave", "rprivate")
#: --ulimit names docker knows (the RLIMIT_ ones, lower case and without the prefix).
ULIMITS = (
    "as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
    "nproc", "rss", "rtprio", "rttime", "sigpending", "stack",
)  # fmt: skip
#: Namespaced sysctls docker lets a container set (opts.ValidateSysctl).
_SYSCTL_NAMES = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                 "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")  # fmt: skip
_SYSCTL_PREFIXES = ("fs.mqueue.", "net.")


def _bad(value: str, flag: str, why: str) -> UsageError:
    return UsageError(f'invalid argument "{value}" for "{flag}" flag: {why}')


def parse_size(value: str, flag: str) -> int:
    """docker's RAMInBytes: ``512m`` -> 536870912."""
    match = _SIZE.match(value.strip())
    if match is None:
        raise _bad(value, flag, f"invalid size: '{value}'")
    number = float(match.group(1)) if match.group(1).count(".") <= 1 else None
    if number is None:
        raise _bad(value, flag, f"invalid size: '{value}'")
    return int(number * _UNITS[(match.group(2) or "").lower()])


def parse_int(value: str, flag: str) -> int:
    try:
        return int(value, 10)
    except ValueError:
        raise _bad(value, flag, f'strconv.ParseInt: parsing "{value}": invalid syntax') from None


def parse_cpus(value: str) -> float:
    """``--cpus 1.5``; checked against this host's CPUs as docker's daemon does."""
    try:
        cpus = float(value)
    except ValueError:
        raise _bad(value, "--cpus", f"failed to parse {value} as a rational number") from None
    if len(value.partition(".")[2]) > 9:
        raise _bad(value, "--cpus", "value is too precise")
    count = os.cpu_count() or 1
    if cpus < 0 or cpus > count:
        raise UsageError(
            f"Range of CPUs is from 0.01 to {count}.00, as there are only {count} CPUs available"
        )
    return cpus


def _absolute(path: str) -> str:
    return os.path.normpath(path) if path.startswith("/") else path


def parse_volume(value: str) -> MountOption:
    """``-v [SOURCE:]TARGET[:OPTIONS]``."""
    parts = value.split(":")
    if not value or len(parts) > 3 or any(p == "" for p in parts[:2]):
        raise UsageError(f"invalid volume specification: '{value}'")
    options: list[str] = []
    if len(parts) == 3:
        source, target, opts = parts
        options = [o for o in opts.split(",") if o]
    elif len(parts) == 2:
        # "/src:/dst" or "/dst:ro"
        if parts[0].startswith("/") and not parts[1].startswith("/") and _all_modes(parts[1]):
            source, target, options = "", parts[0], parts[1].split(",")
        else:
            source, target = parts
    else:
        source, target = "", parts[0]
    kind: Literal["bind", "volume"] = "bind" if source.startswith(("/", ".")) else "volume"
    if not target.startswith("/"):
        raise UsageError(
            f"invalid volume specification: '{value}': invalid mount config for type "
            f"\"{kind}\": invalid mount path: '{target}' mount path must be absolute"
        )
    if source.startswith("."):
        source = os.path.abspath(source)  # docker's CLI makes ./dir absolute
    if kind == "volume" and source:
        from corral.engine.volumes import check_name

        check_name(source)
    readonly, nocopy, extra = False, False, []
    for option in options:
        if option == "ro":
            readonly = True
        elif option == "rw":
            readonly = False
        elif option in ("z", "Z"):
            continue  # SELinux relabeling: nothing to do without SELinux
        elif option == "nocopy":
            nocopy = True
        elif option in _PROPAGATION and kind == "bind":
            extra.append(option)
        else:
            raise UsageError(f"invalid mode: {option}")
    return MountOption(
        kind, _absolute(target), _absolute(source), readonly, nocopy=nocopy,
        options=tuple(extra), create=kind == "bind",
    )  # fmt: skip


def _all_modes(text: str) -> bool:
    known = ("ro", "rw", "z", "Z", "nocopy", *_PROPAGATION)
    return all(o in known for o in text.split(","))


def parse_mount(value: str) -> MountOption:
    """``--mount type=...,source=...,target=...`` (docker's CSV grammar)."""
    fields: dict[str, str] = {}
    for item in value.split(","):
        key, eq, val = item.partition("=")
        key = key.strip().lower()
        if not key:
            continue
        fields[key] = val if eq else "true"
    kind_text = fields.pop("type", "volume")
    if kind_text not in ("bind", "volume", "tmpfs"):
        raise UsageError(
            f'invalid argument "{value}" for "--mount" flag: unknown type {kind_text!r}'
        )
    kind: Literal["bind", "volume", "tmpfs"] = kind_text  # type: ignore[assignment]
    source = fields.pop("source", fields.pop("src", ""))
    target = fields.pop("target", fields.pop("destination", fields.pop("dst", "")))
    readonly = fields.pop("readonly", fields.pop("ro", "false")) in ("true", "1")
    if not target:
        raise UsageError(f'invalid argument "{value}" for "--mount" flag: target is required')
    if not target.startswith("/"):
        raise UsageError(
            f"invalid mount config for type \"{kind}\": invalid mount path: '{target}' mount "
            "path must be absolute"
        )
    size = mode = None
    nocopy = fields.pop("volume-nocopy", "false") in ("true", "1")
    extra: list[str] = []
    if kind == "bind":
        if not source:
            raise UsageError('invalid mount config for type "bind": field Source must not be empty')
        if not source.startswith("/"):
            raise UsageError(
                f"invalid mount config for type \"bind\": invalid mount path: '{source}' mount "
                "path must be absolute"
            )
        propagation = fields.pop("bind-propagation", "")
        if propagation:
            if propagation not in _PROPAGATION:
                raise UsageError(f"invalid bind-propagation: {propagation}")
            extra.append(propagation)
    elif kind == "volume":
        if source:
            from corral.engine.volumes import check_name

            check_name(source)
    else:
        if source:
            raise UsageError('invalid mount config for type "tmpfs": field Source must be empty')
        if "tmpfs-size" in fields:
            size = parse_size(fields.pop("tmpfs-size"), "--mount tmpfs-size")
        if "tmpfs-mode" in fields:
            mode = _octal(fields.pop("tmpfs-mode"), "--mount tmpfs-mode")
    for key in ("consistency", "volume-driver", "bind-nonrecursive"):
        fields.pop(key, None)
    if fields:
        raise UsageError(f"unexpected key '{next(iter(fields))}' in '{value}'")
    return MountOption(
        kind, _absolute(target), _absolute(source), readonly, size, mode, nocopy, tuple(extra)
    )


def _octal(value: str, flag: str) -> int:
    try:
        return int(value, 8)
    except ValueError:
        raise _bad(value, flag, "expected an octal mode such as 1777") from None


def parse_tmpfs(value: str) -> MountOption:
    """``--tmpfs /run[:size=64m,mode=1777,noexec]``."""
    target, _, options = value.partition(":")
    if not target.startswith("/"):
        raise UsageError(f"invalid mount path: '{target}' mount path must be absolute")
    size = mode = None
    extra: list[str] = []
    readonly = False
    for option in (o for o in options.split(",") if o):
        key, _, val = option.partition("=")
        if key == "size":
            size = _tmpfs_size(val)
        elif key == "mode":
            mode = _octal(val, "--tmpfs mode")
        elif option == "ro":
            readonly = True
        elif option == "rw":
            readonly = False
        else:
            extra.append(option)
    return MountOption("tmpfs", _absolute(target), "", readonly, size, mode, options=tuple(extra))


def _tmpfs_size(value: str) -> int:
    """tmpfs' own size grammar: a number with k, m, g (or a percentage, kept as bytes of RAM)."""
    if value.endswith("%"):
        try:
            pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            return int(pages * float(value[:-1]) / 100)
        except ValueError:
            raise _bad(value, "--tmpfs size", "invalid size") from None
    return parse_size(value, "--tmpfs size")


def parse_ulimit(value: str) -> Ulimit:
    name, eq, limits = value.partition("=")
    if not eq:
        raise _bad(value, "--ulimit", f"invalid ulimit argument: {value}")
    if name not in ULIMITS:
        raise _bad(value, "--ulimit", f"invalid ulimit type: {name}")
    soft_text, _, hard_text = limits.partition(":")
    soft = _limit(soft_text, value)
    hard = _limit(hard_text, value) if hard_text else soft
    if soft > hard:
        raise _bad(
            value, "--ulimit", f"ulimit soft limit must be less than or equal to hard limit: "
            f"{soft} > {hard}"
        )  # fmt: skip
    return Ulimit(name, soft, hard)


def _limit(text: str, value: str) -> int:
    if text in ("-1", "unlimited"):
        return 2**64 - 1
    try:
        number = int(text)
    except ValueError:
        raise _bad(value, "--ulimit", f"invalid ulimit argument: {value}") from None
    if number < 0:
        raise _bad(value, "--ulimit", f"invalid ulimit argument: {value}")
    return number


def parse_device(value: str) -> DeviceOption:
    parts = value.split(":")
    if len(parts) > 3 or not parts[0]:
        raise _bad(value, "--device", f"bad format for path: {value}")
    host = parts[0]
    container = host
    perms = "rwm"
    if len(parts) == 2:
        if set(parts[1]) <= set("rwm") and parts[1]:
            perms = parts[1]
        else:
            container = parts[1]
    elif len(parts) == 3:
        container, perms = parts[1], parts[2]
    if not set(perms) <= set("rwm") or not perms:
        raise _bad(value, "--device", f"bad mode specified: {perms}")
    if not host.startswith("/") or not container.startswith("/"):
        raise _bad(value, "--device", f"{value} is not an absolute path")
    return DeviceOption(host, container, perms)


_RULE = re.compile(r"^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$")


def parse_device_cgroup_rule(value: str) -> dict[str, Any]:
    match = _RULE.match(value.strip())
    if match is None:
        raise _bad(value, "--device-cgroup-rule", f"invalid device cgroup format '{value}'")
    kind, major, minor, access = match.groups()
    rule: dict[str, Any] = {"allow": True, "type": kind, "access": access}
    if major != "*":
        rule["major"] = int(major)
    if minor != "*":
        rule["minor"] = int(minor)
    return rule


def parse_add_host(value: str) -> tuple[str, str]:
    sep = "=" if "=" in value else ":"
    name, _, address = value.partition(sep)
    if not name or not address:
        raise _bad(value, "--add-host", f'bad format for add-host: "{value}"')
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    import ipaddress

    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise _bad(value, "--add-host", f'invalid IP address in add-host: "{address}"') from None
    return name, address


def parse_dns(value: str) -> str:
    """``--dns``: a nameserver's address (docker's opts.ValidateIPAddress)."""
    import ipaddress

    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise _bad(value, "--dns", f"{value} is not an ip address") from None


#: docker's opts.validateDomain: labels of letters, digits and inner dashes, at least a letter.
_DOMAIN = re.compile(
    r"^((?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
    r"(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*)\.?$"
)


def parse_dns_search(value: str) -> str:
    """``--dns-search``: a domain, or ``.`` for no search line (opts.ValidateDNSSearch)."""
    text = value.strip(" ")
    if text == ".":
        return text
    match = _DOMAIN.match(text)
    if match is None or not re.search("[a-zA-Z]", text) or len(match.group(1)) >= 255:
        raise _bad(value, "--dns-search", f"{value} is not a valid domain")
    return match.group(1)


def parse_dns_option(value: str) -> str:
    """``--dns-option``: one resolver option (``ndots:2``, ``rotate``): a word on its line."""
    if not value or any(c.isspace() for c in value):
        raise _bad(value, "--dns-option", "a resolver option is one word (ndots:2, rotate)")
    return value


def parse_sysctl(value: str) -> tuple[str, str]:
    key, eq, val = value.partition("=")
    if not eq or not key:
        raise _bad(value, "--sysctl", f"sysctl '{value}' is not allowed")
    if key not in _SYSCTL_NAMES and not key.startswith(_SYSCTL_PREFIXES):
        raise _bad(value, "--sysctl", f"sysctl '{value}' is not allowed")
    return key, val


def parse_capability(value: str, flag: str) -> str:
    from corral.spec.tables import CAPABILITIES

    name = value.strip().upper()
    if name == "ALL":
        return name
    if not name.startswith("CAP_"):
        name = "CAP_" + name
    if name not in CAPABILITIES:
        raise UsageError(f'{flag} {value}: unknown capability: "{name}"')
    return name


def parse_label(value: str) -> tuple[str, str]:
    key, _, val = value.partition("=")
    if not key:
        raise _bad(value, "--label", "invalid label: empty key")
    return key, val


def read_env_file(path: str) -> list[str]:
    """``--env-file``: one ``K=V`` (or ``K``: the caller's value) per line; # comments."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as err:
        raise UsageError(f"--env-file {path}: {err.strerror or err}") from None
    out = []
    for number, line in enumerate(lines, start=1):
        text = line.lstrip()
        if not text or text.startswith("#"):
            continue
        key, eq, _ = text.partition("=")
        if not key or any(c.isspace() for c in key):
            raise UsageError(f"--env-file {path}:{number}: variable '{key}' contains whitespaces")
        out.append(text if eq else key)
    return out


def parse_security_opt(options: list[str], opts: RunOptions) -> None:
    import json

    for option in options:
        key, sep, value = option.partition("=")
        if not sep:
            key, sep, value = option.partition(":")
        if key == "no-new-privileges":
            if value not in ("", "true", "false"):
                raise UsageError(f"--security-opt {option}: invalid no-new-privileges value")
            opts.no_new_privileges = value != "false"
        elif key == "seccomp":
            if value == "unconfined":
                opts.seccomp = False
            elif value:
                try:
                    with open(value, encoding="utf-8") as f:
                        profile = json.load(f)
                except OSError as err:
                    raise UsageError(
                        f"--security-opt seccomp={value}: opening seccomp profile failed: "
                        f"{err.strerror or err}"
                    ) from None
                except ValueError as err:
                    raise UsageError(
                        f"--security-opt seccomp={value}: decoding seccomp profile failed: {err}"
                    ) from None
                if not isinstance(profile, dict) or "defaultAction" not in profile:
                    raise UsageError(
                        f"--security-opt seccomp={value}: not a seccomp profile (no defaultAction)"
                    )
                opts.seccomp_profile = profile
            else:
                raise UsageError(f"--security-opt {option}: seccomp needs a value")
        elif (key, value) in (("label", "disable"), ("apparmor", "unconfined")):
            continue  # nothing to turn off: this engine applies no SELinux/AppArmor labels
        elif key in ("label", "apparmor"):
            raise UsageError(
                f"--security-opt {option}: not supported (corral applies no SELinux or AppArmor "
                "labels; label=disable and apparmor=unconfined are accepted)"
            )
        else:
            raise UsageError(f"Invalid --security-opt: {option!r}")


# -- argparse ------------------------------------------------------------------------------------


def add_run_flags(p: argparse.ArgumentParser) -> None:
    """Declare the flags on ``p`` (values stay strings; :func:`run_options` checks them)."""
    p.add_argument(
        "-v", "--volume", metavar="[SRC:]DST[:OPTS]", help="bind or volume", action="append"
    )
    p.add_argument("--mount", metavar="type=...,src=...,dst=...", help="a mount", action="append")
    p.add_argument("--tmpfs", metavar="DST[:OPTS]", help="a tmpfs mount", action="append")
    p.add_argument("--read-only", action="store_true", help="read-only root filesystem")
    p.add_argument("-m", "--memory", metavar="BYTES", help="memory limit (512m)")
    p.add_argument("--memory-swap", metavar="BYTES", help="memory+swap limit; -1 unlimited")
    p.add_argument("--memory-reservation", metavar="BYTES", help="memory soft limit")
    p.add_argument("--oom-kill-disable", action="store_true", help="no OOM killer")
    p.add_argument("--cpus", metavar="N", help="CPUs (1.5)")
    p.add_argument("-c", "--cpu-shares", metavar="N", help="relative CPU weight")
    p.add_argument("--cpuset-cpus", metavar="LIST", help="CPUs allowed (0-1,3)")
    p.add_argument("--cpuset-mems", metavar="LIST", help="memory nodes allowed")
    p.add_argument("--pids-limit", metavar="N", help="most processes (-1 unlimited)")
    p.add_argument("--blkio-weight", metavar="N", help="block I/O weight 10-1000")
    p.add_argument("--ulimit", metavar="NAME=SOFT[:HARD]", help="a resource limit", action="append")
    p.add_argument("--shm-size", metavar="BYTES", help="size of /dev/shm (64m)")
    p.add_argument("--device", metavar="HOST[:CTR[:rwm]]", help="a host device", action="append")
    p.add_argument("--device-cgroup-rule", metavar="RULE", help="'c 1:3 mr'", action="append")
    p.add_argument("--group-add", metavar="GROUP", help="an additional group", action="append")
    p.add_argument("--cap-add", metavar="CAP", help="add a capability", action="append")
    p.add_argument("--cap-drop", metavar="CAP", help="drop a capability", action="append")
    p.add_argument("--privileged", action="store_true", help="all capabilities and devices")
    p.add_argument("--sysctl", metavar="K=V", help="a namespaced sysctl", action="append")
    p.add_argument("--init", action="store_true", help="tini as PID 1 (reaps, forwards signals)")
    p.add_argument("--stop-signal", metavar="SIGNAL", help="signal to stop (default SIGTERM)")
    p.add_argument("--stop-timeout", metavar="SECONDS", help="seconds before SIGKILL on stop")
    p.add_argument("--env-file", metavar="FILE", help="read K=V lines", action="append")
    p.add_argument("-l", "--label", metavar="K=V", help="a label", action="append")
    p.add_argument("--add-host", metavar="NAME:IP", help="a line in /etc/hosts", action="append")
    p.add_argument("--dns", metavar="IP", help="a nameserver in resolv.conf", action="append")
    p.add_argument("--dns-search", metavar="DOMAIN", help="a search domain", action="append")
    p.add_argument("--dns-option", "--dns-opt", metavar="OPT", dest="dns_option",
                   help="a resolver option (ndots:2)", action="append")  # fmt: skip
    p.add_argument("--userns", metavar="MODE", help="host, keep-id, auto[:size=N] (podman's)")
    p.add_argument("--uidmap", metavar="CTR:HOST:N", help="a userns uid range", action="append")
    p.add_argument("--gidmap", metavar="CTR:HOST:N", help="a userns gid range", action="append")


def run_options(ns: argparse.Namespace) -> RunOptions:
    """The typed options from a parsed ``run``/``create`` command line (docker's checks)."""
    env: list[str] = []
    for path in ns.env_file or []:
        env += read_env_file(path)
    env += list(ns.env or [])
    opts = RunOptions(
        command=list(ns.command),
        env=env,
        workdir=ns.workdir,
        user=ns.user,
        hostname=ns.hostname,
        entrypoint=ns.entrypoint,
        read_only=ns.read_only,
        oom_kill_disable=ns.oom_kill_disable,
        privileged=ns.privileged,
        init=ns.init,
        cpuset_cpus=ns.cpuset_cpus,
        cpuset_mems=ns.cpuset_mems,
        group_add=list(ns.group_add or []),
    )
    opts.mounts = [parse_volume(v) for v in ns.volume or []]
    opts.mounts += [parse_mount(v) for v in ns.mount or []]
    opts.mounts += [parse_tmpfs(v) for v in ns.tmpfs or []]
    targets = [m.target for m in opts.mounts]
    for target in targets:
        if targets.count(target) > 1:
            raise UsageError(f"Duplicate mount point: {target}")
    if ns.memory is not None:
        opts.memory = parse_size(ns.memory, "-m, --memory")
    if ns.memory_swap is not None:
        opts.memory_swap = (
            -1 if ns.memory_swap == "-1" else parse_size(ns.memory_swap, "--memory-swap")
        )
    if ns.memory_reservation is not None:
        opts.memory_reservation = parse_size(ns.memory_reservation, "--memory-reservation")
    if ns.cpus is not None:
        opts.cpus = parse_cpus(ns.cpus)
    if ns.cpu_shares is not None:
        opts.cpu_shares = parse_int(ns.cpu_shares, "-c, --cpu-shares")
    if ns.pids_limit is not None:
        opts.pids_limit = parse_int(ns.pids_limit, "--pids-limit")
    if ns.blkio_weight is not None:
        opts.blkio_weight = parse_int(ns.blkio_weight, "--blkio-weight")
    if ns.shm_size is not None:
        opts.shm_size = parse_size(ns.shm_size, "--shm-size")
    opts.ulimits = [parse_ulimit(v) for v in ns.ulimit or []]
    opts.devices = [parse_device(v) for v in ns.device or []]
    opts.device_cgroup_rules = [parse_device_cgroup_rule(v) for v in ns.device_cgroup_rule or []]
    opts.cap_add = [parse_capability(v, "--cap-add") for v in ns.cap_add or []]
    opts.cap_drop = [parse_capability(v, "--cap-drop") for v in ns.cap_drop or []]
    opts.sysctls = dict(parse_sysctl(v) for v in ns.sysctl or [])
    opts.labels = dict(parse_label(v) for v in ns.label or [])
    opts.add_hosts = [parse_add_host(v) for v in ns.add_host or []]
    opts.dns = [parse_dns(v) for v in ns.dns or []]
    opts.dns_search = [parse_dns_search(v) for v in ns.dns_search or []]
    opts.dns_options = [parse_dns_option(v) for v in ns.dns_option or []]
    parse_security_opt(list(ns.security_opt or []), opts)
    if ns.userns is not None or ns.uidmap or ns.gidmap:
        from corral.engine.containers.userns import parse_request

        opts.userns = parse_request(ns.userns, ns.uidmap or [], ns.gidmap or [])
    if ns.stop_signal is not None:
        from corral.spec.signals import parse_signal

        parse_signal(ns.stop_signal)
        opts.stop_signal = ns.stop_signal
    if ns.stop_timeout is not None:
        opts.stop_timeout = parse_int(ns.stop_timeout, "--stop-timeout")
    check(opts)
    return opts


def check(opts: RunOptions) -> None:
    """The daemon's checks between values (docker's messages)."""
    if opts.memory is not None and 0 < opts.memory < MIN_MEMORY:
        raise UsageError("Minimum memory limit allowed is 6MB")
    if opts.memory_swap is not None and opts.memory_swap > 0:
        if not opts.memory:
            raise UsageError(
                "You should always set the Memory limit when using Memoryswap limit, see usage"
            )
        if opts.memory_swap < opts.memory:
            raise UsageError(
                "Minimum memoryswap limit should be larger than memory limit, see usage"
            )
    if opts.memory_reservation is not None:
        if 0 < opts.memory_reservation < MIN_MEMORY:
            raise UsageError("Minimum memory reservation allowed is 6MB")
        if opts.memory and opts.memory < opts.memory_reservation:
            raise UsageError(
                "Minimum memory limit can not be less than memory reservation limit, see usage"
            )
    if opts.blkio_weight and not 10 <= opts.blkio_weight <= 1000:
        raise UsageError("Range of blkio weight is from 10 to 1000")
    if opts.cpu_shares is not None and opts.cpu_shares < 0:
        raise UsageError("shares: invalid argument")
    if opts.shm_size is not None and opts.shm_size <= 0:
        raise UsageError("SHM size can not be less than 0")
    if opts.stop_timeout is not None and opts.stop_timeout < -1:
        raise UsageError("--stop-timeout: must be -1 (wait forever) or more")
