"""The shapes of config.json and of the OCI state, as TypedDicts.

These describe the JSON exactly as the OCI runtime-spec writes it (config.md, config-linux.md,
state.md; Go: specs-go/config.go), field names included, so a validated config can be used as a
plain dict with the type checker's help: ``spec["process"]["user"]["uid"]``.

``total=False`` marks the objects whose fields are mostly optional; the fields the spec requires
are wrapped in ``Required[...]``. A TypedDict is a plain ``dict`` at runtime, so nothing here
costs anything after validation.

Only type checkers should import this module (it imports ``typing``, 8 ms at start-up)::

    TYPE_CHECKING = False
    if TYPE_CHECKING:
        from corral.spec.types import Spec
"""

from __future__ import annotations

from typing import Literal, Required, TypedDict

# --- process -----------------------------------------------------------------------------------


class ConsoleSize(TypedDict):
    """The terminal's size in characters, for ``process.terminal: true``."""

    height: int
    width: int


class User(TypedDict, total=False):
    """Who the process runs as. IDs are as seen inside the container's user namespace."""

    uid: int
    gid: int
    umask: int
    additionalGids: list[int]
    username: str  # Windows only


class Capabilities(TypedDict, total=False):
    """Capability names (``CAP_KILL``) for each of the process's five capability sets."""

    bounding: list[str]
    effective: list[str]
    inheritable: list[str]
    permitted: list[str]
    ambient: list[str]


class Rlimit(TypedDict):
    """One setrlimit(2) call: ``type`` is ``RLIMIT_NOFILE`` and friends."""

    type: str
    hard: int
    soft: int


IOPriority = TypedDict(
    "IOPriority",
    {"class": Literal["IOPRIO_CLASS_RT", "IOPRIO_CLASS_BE", "IOPRIO_CLASS_IDLE"], "priority": int},
    total=False,
)


class Scheduler(TypedDict, total=False):
    """sched_setattr(2) parameters (runtime-spec 1.1)."""

    policy: Required[str]
    nice: int
    priority: int
    flags: list[str]
    runtime: int
    deadline: int
    period: int


class Process(TypedDict, total=False):
    """The container's first process (``process`` in config.json), or an exec'd one."""

    terminal: bool
    consoleSize: ConsoleSize
    user: User
    args: list[str]
    commandLine: str  # Windows only
    env: list[str]
    cwd: Required[str]
    capabilities: Capabilities
    rlimits: list[Rlimit]
    noNewPrivileges: bool
    apparmorProfile: str
    oomScoreAdj: int
    selinuxLabel: str
    ioPriority: IOPriority
    scheduler: Scheduler


# --- root, mounts, hooks -----------------------------------------------------------------------


class Root(TypedDict, total=False):
    """The container's root filesystem: ``path`` is relative to the bundle unless absolute."""

    path: Required[str]
    readonly: bool


class IDMapping(TypedDict):
    """``size`` IDs starting at ``containerID`` inside map to ones starting at ``hostID``."""

    containerID: int
    hostID: int
    size: int


class Mount(TypedDict, total=False):
    """One mount made inside the container, on top of the root filesystem."""

    destination: Required[str]
    type: str
    source: str
    options: list[str]
    uidMappings: list[IDMapping]
    gidMappings: list[IDMapping]


class MountExtra(TypedDict):
    """What ``tables.mount_flags`` found beyond plain MS_* flags (see its docstring)."""

    attr_set: int
    attr_clr: int
    tmpcopyup: bool


class Hook(TypedDict, total=False):
    """A program the runtime runs at a point of the lifecycle, with the state on its stdin."""

    path: Required[str]
    args: list[str]
    env: list[str]
    timeout: int


class Hooks(TypedDict, total=False):
    """The hooks for each lifecycle point, run in list order."""

    prestart: list[Hook]
    createRuntime: list[Hook]
    createContainer: list[Hook]
    startContainer: list[Hook]
    poststart: list[Hook]
    poststop: list[Hook]


# --- linux -------------------------------------------------------------------------------------

NamespaceType = Literal["pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"]


class Namespace(TypedDict, total=False):
    """A namespace to create (no ``path``) or to join (``path`` to its /proc/<pid>/ns file)."""

    type: Required[NamespaceType]
    path: str


class Device(TypedDict, total=False):
    """A device node to create in the container's /dev (``type``: c, b, u or p)."""

    type: Required[Literal["c", "b", "u", "p"]]
    path: Required[str]
    major: int
    minor: int
    fileMode: int
    uid: int
    gid: int


class DeviceCgroup(TypedDict, total=False):
    """A device-cgroup rule: allow or deny ``access`` (of "rwm") to matching devices."""

    allow: Required[bool]
    type: str
    major: int
    minor: int
    access: str


class Memory(TypedDict, total=False):
    """Memory limits in bytes; -1 means unlimited."""

    limit: int
    reservation: int
    swap: int
    kernel: int
    kernelTCP: int
    swappiness: int
    disableOOMKiller: bool
    useHierarchy: bool
    checkBeforeUpdate: bool


class CPU(TypedDict, total=False):
    """CPU weight, bandwidth (quota per period, in microseconds) and cpuset."""

    shares: int
    quota: int
    burst: int
    period: int
    realtimeRuntime: int
    realtimePeriod: int
    cpus: str
    mems: str
    idle: int


class Pids(TypedDict):
    """The most tasks the cgroup may hold; 0 or less means no limit."""

    limit: int


class WeightDevice(TypedDict, total=False):
    major: Required[int]
    minor: Required[int]
    weight: int
    leafWeight: int


class ThrottleDevice(TypedDict, total=False):
    major: Required[int]
    minor: Required[int]
    rate: int


class BlockIO(TypedDict, total=False):
    """Block I/O weight and per-device throttles."""

    weight: int
    leafWeight: int
    weightDevice: list[WeightDevice]
    throttleReadBpsDevice: list[ThrottleDevice]
    throttleWriteBpsDevice: list[ThrottleDevice]
    throttleReadIOPSDevice: list[ThrottleDevice]
    throttleWriteIOPSDevice: list[ThrottleDevice]


class HugepageLimit(TypedDict):
    """``pageSize`` is like "2MB"; ``limit`` in bytes."""

    pageSize: str
    limit: int


class InterfacePriority(TypedDict):
    name: str
    priority: int


class Network(TypedDict, total=False):
    classID: int
    priorities: list[InterfacePriority]


class Rdma(TypedDict, total=False):
    hcaHandles: int
    hcaObjects: int


class Resources(TypedDict, total=False):
    """cgroup settings for the container (``linux.resources``)."""

    devices: list[DeviceCgroup]
    memory: Memory
    cpu: CPU
    pids: Pids
    blockIO: BlockIO
    hugepageLimits: list[HugepageLimit]
    network: Network
    rdma: dict[str, Rdma]
    unified: dict[str, str]


class SeccompArg(TypedDict, total=False):
    index: Required[int]
    value: Required[int]
    valueTwo: int
    op: Required[str]


class Syscall(TypedDict, total=False):
    names: Required[list[str]]
    action: Required[str]
    errnoRet: int
    args: list[SeccompArg]


class Seccomp(TypedDict, total=False):
    """A seccomp filter: ``defaultAction`` unless a ``syscalls`` rule matches."""

    defaultAction: Required[str]
    defaultErrnoRet: int
    architectures: list[str]
    flags: list[str]
    listenerPath: str
    listenerMetadata: str
    syscalls: list[Syscall]


class IntelRdt(TypedDict, total=False):
    closID: str
    l3CacheSchema: str
    memBwSchema: str
    enableCMT: bool
    enableMBM: bool


class Personality(TypedDict, total=False):
    """personality(2): ``LINUX32`` makes ``uname -m`` say i686 on x86_64."""

    domain: Literal["LINUX", "LINUX32"]
    flags: list[str]


class TimeOffset(TypedDict, total=False):
    secs: int
    nanosecs: int


class Linux(TypedDict, total=False):
    """Everything Linux-specific: namespaces, ID maps, devices, cgroups, security."""

    uidMappings: list[IDMapping]
    gidMappings: list[IDMapping]
    timeOffsets: dict[str, TimeOffset]
    sysctl: dict[str, str]
    resources: Resources
    cgroupsPath: str
    namespaces: list[Namespace]
    devices: list[Device]
    seccomp: Seccomp
    rootfsPropagation: str
    maskedPaths: list[str]
    readonlyPaths: list[str]
    mountLabel: str
    intelRdt: IntelRdt
    personality: Personality


# --- the whole config, and the state -----------------------------------------------------------


class Spec(TypedDict, total=False):
    """config.json: the bundle's description of the container."""

    ociVersion: Required[str]
    process: Process
    root: Root
    hostname: str
    domainname: str
    mounts: list[Mount]
    hooks: Hooks
    annotations: dict[str, str]
    linux: Linux


Status = Literal["creating", "created", "running", "stopped"]


class State(TypedDict, total=False):
    """What ``runc state`` prints and what hooks read on stdin (state.md)."""

    ociVersion: Required[str]
    id: Required[str]
    status: Required[Status]
    pid: int
    bundle: Required[str]
    annotations: dict[str, str]
