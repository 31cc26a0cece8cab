"""A container's OCI config from its image's config and the ``run`` flags: pure, no kernel.

::

    default_spec()                      runc's config.json: namespaces, mounts, masked paths
      + image config  Env, Entrypoint, Cmd, WorkingDir, User, StopSignal
      + RunOptions    what ``corral run`` was told (corral.cli.run_flags parses the flags)
      + Resolved      what the engine looked up: the user in the image's /etc/passwd and
                      /etc/group (users.py), volumes' host paths (volumes.py), the generated
                      /etc/hosts, /etc/hostname, /etc/resolv.conf (etc_files.py)
      = config.json   process.{args, env, cwd, user, rlimits, capabilities}, mounts,
                      linux.{resources, devices, sysctl, seccomp, namespaces}

The rules follow docker:

- CMD... replaces the image's Cmd, never its Entrypoint; ``-e`` wins over the image's Env for
  the same name; HOSTNAME and HOME (the user's home from /etc/passwd) are added when missing.
- Capabilities: docker's 14, then ``--cap-drop`` (``ALL`` drops them all) and ``--cap-add``
  (``ALL`` adds every one); ``--privileged`` gives every capability, every host device, no
  seccomp filter, and leaves /proc and /sys unmasked and writable.
- Limits map onto linux.resources one to one: ``-m`` memory.limit, ``--memory-swap``
  memory.swap (memory plus swap; -1 unlimited; unset: twice the memory, as docker),
  ``--cpus`` a CFS quota per 100 ms period, ``--pids-limit`` pids.limit (0 or -1: none).
- ``--read-only`` makes the root read-only; docker keeps /dev/shm, /etc/hosts... writable
  because they are mounts of their own, and so does this.
- ``--userns``/``--uidmap``/``--gidmap`` add a user namespace with the mapping userns.py
  chose (linux.uidMappings, gidMappings); the runtime makes it and writes the maps.
- ``--init`` bind-mounts the host's static tini at /sbin/docker-init and runs it as PID 1 in
  front of the command (``tini -- CMD``): it reaps orphans and forwards signals.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence

from corral._record import datarecord, field
from corral.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Literal

    from corral.engine.containers.userns import Mapping, UsernsRequest
    from corral.engine.network.model import NetworkRequest

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: docker's default capability set (moby's oci/caps/defaults.go).
DOCKER_CAPS = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]

#: Where ``--init`` puts the init in the container (docker's path), and the host files tried.
INIT_PATH = "/sbin/docker-init"
INIT_BINARIES = ("/usr/bin/tini-static", "/usr/bin/catatonit", "/usr/libexec/podman/catatonit")

#: Annotations that keep ``--stop-signal`` / the image's StopSignal and ``--stop-timeout``.
STOP_SIGNAL = "io.corral.stop-signal"
STOP_TIMEOUT = "io.corral.stop-timeout"

#: docker's /dev/shm: a 64 MiB tmpfs unless ``--shm-size`` says otherwise.
DEFAULT_SHM_SIZE = 64 * 1024 * 1024
#: The CFS period docker uses with ``--cpus``: 100 ms.
CPU_PERIOD = 100_000
#: ``RunOptions.network`` for ``--network none`` alone (no -p, -P, --network-alias): the engine
#: keeps nothing of engine.network for such a container, and neither it nor the CLI imports it.
NO_NETWORK = "none"


@datarecord(frozen=True)
class MountOption:
    """One ``-v``, ``--mount`` or ``--tmpfs``: a bind, a (named or anonymous) volume, a tmpfs.

    ``source`` is the host path of a bind, the volume's name (empty: anonymous), unused for a
    tmpfs. ``size`` and ``mode`` are a tmpfs' own; ``nocopy`` keeps a new volume empty instead
    of seeding it from the image.
    """

    type: Literal["bind", "volume", "tmpfs"]
    target: str
    source: str = ""
    readonly: bool = False
    size: int | None = None
    mode: int | None = None
    nocopy: bool = False
    options: tuple[str, ...] = ()  # more mount options (tmpfs: exec, noexec; bind: propagation)
    create: bool = False  # a missing bind source is made (-v does that; --mount refuses)


@datarecord(frozen=True)
class Ulimit:
    """``--ulimit NAME=SOFT[:HARD]``, NAME as docker spells it (``nofile``, ``nproc``)."""

    name: str
    soft: int
    hard: int


@datarecord(frozen=True)
class DeviceOption:
    """``--device HOST[:CONTAINER[:PERMS]]``."""

    host: str
    container: str
    perms: str = "rwm"


@datarecord
class RunOptions:
    """The ``corral run`` / ``create`` flags that shape the container (docker's meanings)."""

    command: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    workdir: str | None = None
    user: str | None = None
    group_add: list[str] = field(default_factory=list)
    hostname: str | None = None
    entrypoint: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    add_hosts: list[tuple[str, str]] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)  # --dns: nameservers (replace the host's)
    dns_search: list[str] = field(default_factory=list)  # --dns-search: search domains
    dns_options: list[str] = field(default_factory=list)  # --dns-option: resolver options
    # storage
    mounts: list[MountOption] = field(default_factory=list)
    read_only: bool = False
    # limits (bytes; None: not set)
    memory: int | None = None
    memory_swap: int | None = None  # -1: unlimited swap
    memory_reservation: int | None = None
    oom_kill_disable: bool = False
    cpus: float | None = None
    cpu_shares: int | None = None
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    pids_limit: int | None = None
    blkio_weight: int | None = None
    ulimits: list[Ulimit] = field(default_factory=list)
    shm_size: int | None = None
    devices: list[DeviceOption] = field(default_factory=list)
    device_cgroup_rules: list[dict[str, Any]] = field(default_factory=list)
    # security
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    privileged: bool = False
    no_new_privileges: bool = False
    seccomp: bool = True  # podman's/docker's default profile; --security-opt seccomp=unconfined
    network: NetworkRequest | str | None = None  # --network, -p, -P (None: the default
    # bridge; NO_NETWORK: none alone)
    seccomp_profile: dict[str, Any] | None = None  # --security-opt seccomp=PROFILE.json
    sysctls: dict[str, str] = field(default_factory=dict)
    userns: UsernsRequest | None = None  # --userns, --uidmap, --gidmap (None: the host's)
    # process
    init: bool = False
    tty: bool = False  # -t: the process's stdio is a pty (and TERM=xterm, as docker)
    stop_signal: str | None = None
    stop_timeout: int | None = None


@datarecord(frozen=True)
class Identity:
    """Who the container's process is: ``-u`` (or the image's User) looked up in the image."""

    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()
    home: str = "/root"


@datarecord
class Resolved:
    """What the engine looked up for ``build_spec``: the user and the mounts' host side."""

    identity: Identity = field(default_factory=Identity)
    #: OCI mounts for -v/--mount/--tmpfs (sources resolved) and the generated /etc files.
    mounts: list[dict[str, Any]] = field(default_factory=list)
    #: host devices for --device / --privileged, as OCI linux.devices entries.
    devices: list[dict[str, Any]] = field(default_factory=list)
    init_binary: str | None = None
    #: the container's user namespace (userns.py); None: the host's
    mapping: Mapping | None = None


def merge_env(image_env: Sequence[str], overrides: Sequence[str]) -> list[str]:
    """The image's Env with ``-e`` applied: ``K=V`` sets, ``K`` alone passes the caller's value."""
    out: dict[str, str] = {}
    for item in image_env:
        key, _, value = item.partition("=")
        out[key] = value
    for item in overrides:
        key, eq, value = item.partition("=")
        if not key:
            raise UsageError(f"-e {item!r}: the variable name is empty")
        if not eq:
            if key in os.environ:  # docker: -e NAME passes the caller's value through
                out[key] = os.environ[key]
            continue
        out[key] = value
    return [f"{k}={v}" for k, v in out.items()]


def command_args(image_config: dict[str, Any], opts: RunOptions) -> list[str]:
    """Entrypoint + Cmd after ``--entrypoint`` and CMD... as docker combines them."""
    cfg = image_config.get("config") or {}
    entrypoint = list(cfg.get("Entrypoint") or [])
    if opts.entrypoint is not None:
        entrypoint = [opts.entrypoint] if opts.entrypoint else []
    cmd = list(opts.command) if opts.command else list(cfg.get("Cmd") or [])
    if opts.entrypoint is not None and not opts.command:
        cmd = []
    args = entrypoint + cmd
    if not args:
        raise UsageError("no command specified (the image has no Cmd or Entrypoint; give one)")
    return args


def image_user(image_config: dict[str, Any], opts: RunOptions) -> tuple[str, str]:
    """The user spec to resolve and what to call it in errors: ``-u`` or the image's User."""
    if opts.user is not None:
        return opts.user, "-u"
    return str((image_config.get("config") or {}).get("User") or ""), "the image's User"


def working_dir(image_config: dict[str, Any], opts: RunOptions) -> str:
    cwd = opts.workdir or (image_config.get("config") or {}).get("WorkingDir") or "/"
    if not str(cwd).startswith("/"):
        raise UsageError(f"-w {cwd!r}: the working directory must be an absolute path")
    return os.path.normpath(str(cwd))


def capabilities(opts: RunOptions) -> list[str]:
    """docker's default set with ``--cap-drop`` then ``--cap-add``; everything if privileged."""
    every = host_capabilities()
    if opts.privileged:
        return every
    caps = list(DOCKER_CAPS)
    for name in opts.cap_drop:
        caps = [] if name == "ALL" else [c for c in caps if c != name]
    for name in opts.cap_add:
        if name == "ALL":
            caps = list(every)
        elif name not in caps:
            caps.append(name)
    return caps


def host_capabilities() -> list[str]:
    """The capabilities this process may hand on: its bounding set (podman's rule for
    ``--privileged``; a sandboxed host may lack some, such as CAP_SYS_RESOURCE)."""
    from corral.spec.tables import CAPABILITIES

    mask = (1 << 64) - 1
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("CapBnd:"):
                    mask = int(line.split()[1], 16)
    except OSError:
        pass
    return sorted(name for name, bit in CAPABILITIES.items() if mask >> bit & 1)


def resources(opts: RunOptions) -> dict[str, Any]:
    """linux.resources for the limits that were given (nothing for those that were not)."""
    out: dict[str, Any] = {}
    memory: dict[str, Any] = {}
    if opts.memory is not None:
        memory["limit"] = opts.memory
        if opts.memory_swap is not None:
            memory["swap"] = opts.memory_swap
        elif _swap_accounting():
            memory["swap"] = 2 * opts.memory  # docker: as much swap as memory
    if opts.memory_reservation is not None:
        memory["reservation"] = opts.memory_reservation
    if opts.oom_kill_disable:
        memory["disableOOMKiller"] = True
    if memory:
        out["memory"] = memory
    cpu: dict[str, Any] = {}
    if opts.cpus is not None and opts.cpus > 0:
        cpu["period"] = CPU_PERIOD
        cpu["quota"] = round(opts.cpus * CPU_PERIOD)
    if opts.cpu_shares is not None:
        cpu["shares"] = opts.cpu_shares
    if opts.cpuset_cpus is not None:
        cpu["cpus"] = opts.cpuset_cpus
    if opts.cpuset_mems is not None:
        cpu["mems"] = opts.cpuset_mems
    if cpu:
        out["cpu"] = cpu
    if opts.pids_limit is not None and opts.pids_limit > 0:
        out["pids"] = {"limit": opts.pids_limit}
    if opts.blkio_weight:
        out["blockIO"] = {"weight": opts.blkio_weight}
    return out


def _swap_accounting() -> bool:
    """Can this host limit memory+swap? (docker leaves swap alone where it cannot.)"""
    return os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes") or os.path.exists(
        "/sys/fs/cgroup/user.slice/memory.swap.max"
    )


def build_spec(
    image_config: dict[str, Any],
    opts: RunOptions,
    *,
    container_id: str,
    netns: str | None,
    resolved: Resolved | None = None,
) -> dict[str, Any]:
    """The OCI config.json for a container of an image whose config is ``image_config``."""
    from corral.spec.defaults import default_spec

    resolved = resolved or Resolved()
    who = resolved.identity
    cfg = image_config.get("config") or {}
    args = command_args(image_config, opts)
    if opts.init:
        args = [INIT_PATH, "--", *args]
    hostname = opts.hostname or container_id[:12]
    env = merge_env(list(cfg.get("Env") or [DEFAULT_PATH]), opts.env)
    names = {item.partition("=")[0] for item in env}
    if "PATH" not in names:
        env.insert(0, DEFAULT_PATH)
    if "HOSTNAME" not in names:
        env.append(f"HOSTNAME={hostname}")
    if "HOME" not in names:
        env.append(f"HOME={who.home}")
    if opts.tty and "TERM" not in names:
        env.append("TERM=xterm")

    spec: dict[str, Any] = copy.deepcopy(default_spec())
    process = spec["process"]
    user: dict[str, Any] = {"uid": who.uid, "gid": who.gid}
    if who.additional_gids:
        user["additionalGids"] = list(who.additional_gids)
    process.update(
        terminal=opts.tty,
        user=user,
        args=args,
        env=env,
        cwd=working_dir(image_config, opts),
        noNewPrivileges=opts.no_new_privileges,
    )
    caps = capabilities(opts)
    process["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps}
    if opts.ulimits:
        given = {"RLIMIT_" + u.name.upper(): u for u in opts.ulimits}
        rlimits = [r for r in process.get("rlimits") or [] if r["type"] not in given]
        rlimits += [{"type": t, "soft": u.soft, "hard": u.hard} for t, u in given.items()]
        process["rlimits"] = rlimits
    spec["root"] = {"path": "rootfs", "readonly": opts.read_only}
    spec["hostname"] = hostname

    mounts: list[dict[str, Any]] = []
    for mount in spec["mounts"]:
        if mount["destination"] == "/dev/shm":
            size = opts.shm_size or DEFAULT_SHM_SIZE
            kept = [o for o in mount["options"] if not o.startswith("size=")]
            mount = {**mount, "options": [*kept, f"size={size}"]}
        if opts.privileged and mount["destination"] in ("/sys", "/sys/fs/cgroup"):
            mount = {**mount, "options": [o for o in mount["options"] if o != "ro"] + ["rw"]}
        if resolved.mapping is not None and mount["type"] == "devpts":
            # the tty group (gid=5) only where the namespace maps it: the kernel refuses it
            mapped = resolved.mapping.host_gid(5) is not None
            mount = {**mount, "options": [o for o in mount["options"] if mapped or o != "gid=5"]}
        if resolved.mapping is not None and mount["type"] == "sysfs":
            # sysfs wants the network namespace's owner, the host's user namespace here (the
            # engine made it): bind the host's /sys read-only instead, as runc falls back to
            options = ["rbind", *(o for o in mount["options"] if o not in ("ro", "rw"))]
            mount = {**mount, "type": "bind", "source": "/sys",
                     "options": [*options, "rw" if opts.privileged else "ro"]}  # fmt: skip
        mounts.append(mount)
    mounts += resolved.mounts
    if opts.init and resolved.init_binary:
        mounts.append(
            {
                "destination": INIT_PATH,
                "type": "bind",
                "source": resolved.init_binary,
                "options": ["rbind", "ro", "nosuid", "nodev"],
            }
        )
    spec["mounts"] = mounts

    linux = spec["linux"]
    namespaces = []
    for ns in linux["namespaces"]:
        if ns["type"] == "network" and netns is not None:
            namespaces.append({"type": "network", "path": netns})
        else:
            namespaces.append(ns)
    if resolved.mapping is not None:
        namespaces.append({"type": "user"})
        linux["uidMappings"] = [m.oci() for m in resolved.mapping.uids]
        linux["gidMappings"] = [m.oci() for m in resolved.mapping.gids]
    linux["namespaces"] = namespaces
    linux["cgroupsPath"] = f"/corral/{container_id}"
    res = linux.setdefault("resources", {})
    res.update(resources(opts))
    rules = list(res.get("devices") or [{"allow": False, "access": "rwm"}])
    if opts.privileged:
        rules = [{"allow": True, "access": "rwm"}]
        linux["maskedPaths"] = []
        linux["readonlyPaths"] = []
    for device in resolved.devices:
        rules.append(
            {
                "allow": True,
                "type": device["type"],
                "major": device["major"],
                "minor": device["minor"],
                "access": device.pop("access", "rwm"),
            }
        )
    rules += opts.device_cgroup_rules
    res["devices"] = rules
    if resolved.devices:
        linux["devices"] = resolved.devices
    if opts.sysctls:
        linux["sysctl"] = dict(opts.sysctls)
    if opts.seccomp and not opts.privileged:
        from corral.engine.seccomp_default import default_seccomp, to_oci

        if opts.seccomp_profile is not None:
            linux["seccomp"] = to_oci(opts.seccomp_profile, caps)
        else:
            linux["seccomp"] = default_seccomp(caps)
    annotations = {"io.corral.engine": "1"}
    stop_signal = opts.stop_signal or cfg.get("StopSignal")
    if stop_signal:
        annotations[STOP_SIGNAL] = str(stop_signal)
    if opts.stop_timeout is not None:
        annotations[STOP_TIMEOUT] = str(opts.stop_timeout)
    annotations.update({f"io.corral.label.{k}": v for k, v in opts.labels.items()})
    spec["annotations"] = annotations
    return spec
