"""corral.spec.validate: every field's check, and the exact one-line error it gives."""

from __future__ import annotations

import json
from typing import Any

import pytest

from corral.errors import SpecError, UserError
from corral.spec.defaults import default_spec
from corral.spec.validate import validate_config, validate_process, validate_resources

DELETE = object()


def put(cfg: Any, path: str, value: object) -> None:
    """Set (or with DELETE remove) the field at a JSON path like ``linux.namespaces[1].type``."""
    steps: list[str | int] = []
    for part in path.split("."):
        name, _, rest = part.partition("[")
        if name:
            steps.append(name)
        for index in rest.rstrip("]").split("][") if rest else []:
            steps.append(int(index))
    target = cfg
    for step in steps[:-1]:
        if isinstance(step, str) and step not in target:
            target[step] = {}
        target = target[step]
    if value is DELETE:
        del target[steps[-1]]
    elif isinstance(target, list) and steps[-1] == len(target):
        target.append(value)
    else:
        target[steps[-1]] = value


def config(*edits: tuple[str, object]) -> dict[str, Any]:
    cfg: dict[str, Any] = default_spec()
    for path, value in edits:
        put(cfg, path, value)
    return cfg


def error_of(cfg: object, **kwargs: Any) -> str:
    with pytest.raises(SpecError) as info:
        validate_config(cfg, **kwargs)
    return str(info.value)


NS_ALL = [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "user", "time")]
NS_MIN = [{"type": "pid"}, {"type": "mount"}]
NS_UTS = [*NS_MIN, {"type": "uts"}]
MAPS = [{"containerID": 0, "hostID": 1000, "size": 1}]

# (edits, exact message); each case changes a valid `runc spec` config.
BAD = [
    # top level
    ([("ociVersion", DELETE)], 'ociVersion: is required (a version string like "1.0.2")'),
    ([("ociVersion", 1)], "ociVersion: must be a string, got 1"),
    ([("root", DELETE)], 'root: is required (an object with "path")'),
    ([("root", "rootfs")], 'root: must be an object, got "rootfs"'),
    (
        [("root.path", DELETE)],
        "root.path: is required (the rootfs directory, relative to the bundle)",
    ),
    ([("root.path", "")], 'root.path: must be a non-empty string, got ""'),
    ([("root.readonly", "yes")], 'root.readonly: must be true or false, got "yes"'),
    ([("hostname", 7)], "hostname: must be a string, got 7"),
    ([("domainname", ["a"])], 'domainname: must be a string, got ["a"]'),
    ([("annotations", {"a": 1})], 'annotations["a"]: must be a string, got 1'),
    ([("annotations", [])], "annotations: must be an object, got []"),
    # process
    ([("process", DELETE)], "process: is required (an object with args and cwd)"),
    ([("process", [])], "process: must be an object, got []"),
    ([("process.user.uid", "abc")], 'process.user.uid: must be a non-negative integer, got "abc"'),
    ([("process.user.uid", -1)], "process.user.uid: must be a non-negative integer, got -1"),
    ([("process.user.uid", 2**32)], "process.user.uid: must be at most 4294967295, got 4294967296"),
    ([("process.user.gid", True)], "process.user.gid: must be a non-negative integer, got true"),
    ([("process.user.gid", 1.0)], "process.user.gid: must be a non-negative integer, got 1.0"),
    (
        [("process.user.umask", "022")],
        'process.user.umask: must be a non-negative integer, got "022"',
    ),
    (
        [("process.user.additionalGids", [1, "x"])],
        'process.user.additionalGids[1]: must be a non-negative integer, got "x"',
    ),
    ([("process.user.additionalGids", 5)], "process.user.additionalGids: must be a list, got 5"),
    ([("process.user", 0)], "process.user: must be an object, got 0"),
    ([("process.args", DELETE)], "process.args: is required (a non-empty list of strings)"),
    ([("process.args", [])], "process.args: must be a non-empty list of strings, got []"),
    ([("process.args", "sh")], 'process.args: must be a non-empty list of strings, got "sh"'),
    ([("process.args", ["sh", 1])], "process.args[1]: must be a string, got 1"),
    ([("process.cwd", DELETE)], "process.cwd: is required (an absolute path)"),
    ([("process.cwd", "tmp")], 'process.cwd: must be an absolute path, got "tmp"'),
    ([("process.cwd", "")], 'process.cwd: must be an absolute path, got ""'),
    (
        [("process.env", ["A=1", "B"])],
        'process.env[1]: must be "NAME=value" (a non-empty name, no NUL), got "B"',
    ),
    (
        [("process.env", ["=x"])],
        'process.env[0]: must be "NAME=value" (a non-empty name, no NUL), got "=x"',
    ),
    (
        [("process.env", ["A=\0"])],
        'process.env[0]: must be "NAME=value" (a non-empty name, no NUL), got "A=\\u0000"',
    ),
    ([("process.env", [3])], "process.env[0]: must be a string, got 3"),
    ([("process.terminal", 1)], "process.terminal: must be true or false, got 1"),
    ([("process.consoleSize", {"height": 10})], "process.consoleSize.width: is required (columns)"),
    (
        [("process.consoleSize", {"height": 10, "width": -1})],
        "process.consoleSize.width: must be a non-negative integer, got -1",
    ),
    (
        [("process.consoleSize", {"height": 70000, "width": 1})],
        "process.consoleSize.height: must be at most 65535, got 70000",
    ),
    (
        [("process.rlimits[0].type", "RLIMIT_FOO")],
        'process.rlimits[0].type: unknown rlimit "RLIMIT_FOO" (see getrlimit(2))',
    ),
    (
        [("process.rlimits[0].hard", "1024")],
        'process.rlimits[0].hard: must be a non-negative integer, got "1024"',
    ),
    ([("process.rlimits[0].soft", DELETE)], "process.rlimits[0].soft: is required (an integer)"),
    (
        [("process.rlimits[0].soft", 2048)],
        "process.rlimits[0].soft: must not exceed hard (2048 > 1024)",
    ),
    (
        [("process.rlimits[1]", {"type": "RLIMIT_NOFILE", "hard": 1, "soft": 1})],
        "process.rlimits[1].type: duplicate rlimit RLIMIT_NOFILE (also in process.rlimits[0])",
    ),
    ([("process.rlimits", {})], "process.rlimits: must be a list, got {}"),
    (
        [("process.capabilities.bounding[1]", "CAP_FOO")],
        'process.capabilities.bounding[1]: unknown capability "CAP_FOO"',
    ),
    (
        [("process.capabilities.ambient[0]", "kill")],
        'process.capabilities.ambient[0]: unknown capability "kill"',
    ),
    (
        [("process.capabilities.effective", "CAP_KILL")],
        'process.capabilities.effective: must be a list, got "CAP_KILL"',
    ),
    ([("process.capabilities", [])], "process.capabilities: must be an object, got []"),
    (
        [("process.noNewPrivileges", "true")],
        'process.noNewPrivileges: must be true or false, got "true"',
    ),
    ([("process.oomScoreAdj", 1001)], "process.oomScoreAdj: must be at most 1000, got 1001"),
    ([("process.oomScoreAdj", -1001)], "process.oomScoreAdj: must be at least -1000, got -1001"),
    ([("process.oomScoreAdj", "5")], 'process.oomScoreAdj: must be an integer, got "5"'),
    ([("process.apparmorProfile", 1)], "process.apparmorProfile: must be a string, got 1"),
    ([("process.selinuxLabel", False)], "process.selinuxLabel: must be a string, got false"),
    # mounts
    ([("mounts", {})], "mounts: must be a list, got {}"),
    ([("mounts[0]", "proc")], 'mounts[0]: must be an object, got "proc"'),
    (
        [("mounts[2].destination", DELETE)],
        "mounts[2].destination: is required (an absolute path in the container)",
    ),
    ([("mounts[2].destination", "")], 'mounts[2].destination: must be a non-empty string, got ""'),
    (
        [("mounts[2].destination", "a/../../etc")],
        'mounts[2].destination: must be a path inside the container, got "a/../../etc"',
    ),
    ([("mounts[1].type", 1)], "mounts[1].type: must be a string, got 1"),
    (
        [("mounts[1].source", None), ("mounts[1].type", [])],
        "mounts[1].type: must be a string, got []",
    ),
    ([("mounts[1].options", "ro")], 'mounts[1].options: must be a list, got "ro"'),
    ([("mounts[1].options[2]", 755)], "mounts[1].options[2]: must be a string, got 755"),
    (
        [("mounts[0].uidMappings", [{"containerID": 0, "hostID": 0, "size": 0}])],
        "mounts[0].uidMappings[0].size: must be a positive integer, got 0",
    ),
    # hooks
    ([("hooks", [])], "hooks: must be an object, got []"),
    ([("hooks.poststop", {})], "hooks.poststop: must be a list, got {}"),
    (
        [("hooks.prestart", [{"path": "hook"}])],
        'hooks.prestart[0].path: must be an absolute path, got "hook"',
    ),
    (
        [("hooks.createRuntime", [{}])],
        "hooks.createRuntime[0].path: is required (an absolute path)",
    ),
    (
        [("hooks.startContainer", [{"path": "/h", "timeout": 0}])],
        "hooks.startContainer[0].timeout: must be a positive integer, got 0",
    ),
    (
        [("hooks.poststart", [{"path": "/h", "args": ["h", 2]}])],
        "hooks.poststart[0].args[1]: must be a string, got 2",
    ),
    (
        [("hooks.createContainer", [{"path": "/h", "env": "A=1"}])],
        'hooks.createContainer[0].env: must be a list, got "A=1"',
    ),
    # linux
    ([("linux", "x")], 'linux: must be an object, got "x"'),
    (
        [("linux.namespaces[1].type", "net")],
        "linux.namespaces[1].type: must be one of pid, network, mount, ipc, uts, user, cgroup, "
        'time, got "net"',
    ),
    (
        [("linux.namespaces[4].type", "pid")],
        'linux.namespaces[4].type: duplicate namespace "pid" (also in linux.namespaces[0])',
    ),
    ([("linux.namespaces[0]", {})], "linux.namespaces[0].type: is required (a namespace type)"),
    ([("linux.namespaces[0].path", 5)], "linux.namespaces[0].path: must be a string, got 5"),
    (
        [("linux.namespaces", NS_ALL), ("linux.uidMappings", MAPS), ("linux.gidMappings", [{}])],
        "linux.gidMappings[0].containerID: is required (an integer)",
    ),
    (
        [
            ("linux.namespaces", NS_ALL),
            ("linux.uidMappings", [{"containerID": -1, "hostID": 0, "size": 1}]),
        ],
        "linux.uidMappings[0].containerID: must be a non-negative integer, got -1",
    ),
    (
        [("linux.devices", [{"type": "c", "path": "/dev/x"}])],
        "linux.devices[0].major: is required for a 'c' device",
    ),
    (
        [("linux.devices", [{"type": "c", "path": "/dev/x", "major": 1}])],
        "linux.devices[0].minor: is required for a 'c' device",
    ),
    (
        [("linux.devices", [{"type": "x", "path": "/dev/x"}])],
        'linux.devices[0].type: must be one of c, b, u, p, got "x"',
    ),
    (
        [("linux.devices", [{"path": "/dev/x"}])],
        "linux.devices[0].type: is required (c, b, u or p)",
    ),
    (
        [("linux.devices", [{"type": "p", "path": "dev/x"}])],
        'linux.devices[0].path: must be an absolute path, got "dev/x"',
    ),
    (
        [("linux.devices", [{"type": "p", "path": "/x", "fileMode": -1}])],
        "linux.devices[0].fileMode: must be a non-negative integer, got -1",
    ),
    (
        [("linux.devices", [{"type": "b", "path": "/x", "major": "8", "minor": 0}])],
        'linux.devices[0].major: must be an integer, got "8"',
    ),
    ([("linux.sysctl", {"net.a": 1})], 'linux.sysctl["net.a"]: must be a string, got 1'),
    (
        [("linux.maskedPaths[1]", "proc/kcore")],
        'linux.maskedPaths[1]: must be an absolute path, got "proc/kcore"',
    ),
    ([("linux.readonlyPaths", [1])], "linux.readonlyPaths[0]: must be a string, got 1"),
    (
        [("linux.rootfsPropagation", "recursive")],
        "linux.rootfsPropagation: must be one of private, shared, slave, unbindable, rprivate, "
        'rshared, rslave, runbindable, got "recursive"',
    ),
    (
        [("linux.personality", {"domain": "LINUX64"})],
        'linux.personality.domain: must be one of LINUX, LINUX32, got "LINUX64"',
    ),
    (
        [("linux.personality", {"flags": [1]})],
        "linux.personality.flags[0]: must be a string, got 1",
    ),
    ([("linux.cgroupsPath", 1)], "linux.cgroupsPath: must be a string, got 1"),
    ([("linux.mountLabel", 1)], "linux.mountLabel: must be a string, got 1"),
    (
        [("linux.intelRdt", {"enableCMT": "y"})],
        'linux.intelRdt.enableCMT: must be true or false, got "y"',
    ),
    (
        [("linux.timeOffsets", {"realtime": {"secs": 1}})],
        'linux.timeOffsets["realtime"]: must be one of monotonic, boottime, got "realtime"',
    ),
    (
        [("linux.timeOffsets", {"boottime": {"nanosecs": 10**9}})],
        'linux.timeOffsets["boottime"].nanosecs: must be at most 999999999, got 1000000000',
    ),
    (
        [("linux.timeOffsets", {"monotonic": {"secs": "1"}})],
        'linux.timeOffsets["monotonic"].secs: must be an integer, got "1"',
    ),
    # linux.resources
    ([("linux.resources", [])], "linux.resources: must be an object, got []"),
    (
        [("linux.resources.memory", {"limit": -2})],
        "linux.resources.memory.limit: must be at least -1, got -2",
    ),
    (
        [("linux.resources.memory", {"limit": "1G"})],
        'linux.resources.memory.limit: must be an integer, got "1G"',
    ),
    (
        [("linux.resources.memory", {"swappiness": -1})],
        "linux.resources.memory.swappiness: must be a non-negative integer, got -1",
    ),
    (
        [("linux.resources.memory", {"disableOOMKiller": 1})],
        "linux.resources.memory.disableOOMKiller: must be true or false, got 1",
    ),
    (
        [("linux.resources.pids", {"limit": "max"})],
        'linux.resources.pids.limit: must be an integer, got "max"',
    ),
    ([("linux.resources.pids", {})], "linux.resources.pids.limit: is required (an integer)"),
    (
        [("linux.resources.cpu", {"shares": -1})],
        "linux.resources.cpu.shares: must be 0 (not set) or 2 to 262144, got -1",
    ),
    ([("linux.resources.cpu", {"cpus": 0})], "linux.resources.cpu.cpus: must be a string, got 0"),
    (
        [("linux.resources.cpu", {"quota": -5})],
        "linux.resources.cpu.quota: must be at least -1, got -5",
    ),
    (
        [("linux.resources.cpu", {"period": 1.5})],
        "linux.resources.cpu.period: must be a non-negative integer, got 1.5",
    ),
    (
        [("linux.resources.blockIO", {"weight": 70000})],
        "linux.resources.blockIO.weight: must be 0 (not set) or 10 to 1000, got 70000",
    ),
    (
        [("linux.resources.blockIO", {"weightDevice": [{"minor": 0}]})],
        "linux.resources.blockIO.weightDevice[0].major: is required (an integer)",
    ),
    (
        [
            (
                "linux.resources.blockIO",
                {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": -1}]},
            )
        ],
        "linux.resources.blockIO.throttleReadBpsDevice[0].rate: "
        "must be a non-negative integer, got -1",
    ),
    (
        [("linux.resources.hugepageLimits", [{"pageSize": "2M", "limit": 1}])],
        'linux.resources.hugepageLimits[0].pageSize: must be a page size like "2MB", got "2M"',
    ),
    (
        [("linux.resources.hugepageLimits", [{"pageSize": "02MB", "limit": 1}])],
        'linux.resources.hugepageLimits[0].pageSize: must be a page size like "2MB", got "02MB"',
    ),
    (
        [("linux.resources.hugepageLimits", [{"pageSize": "2MB"}])],
        "linux.resources.hugepageLimits[0].limit: is required (bytes)",
    ),
    (
        [("linux.resources.network", {"classID": -1})],
        "linux.resources.network.classID: must be a non-negative integer, got -1",
    ),
    (
        [("linux.resources.network", {"priorities": [{"priority": 1}]})],
        "linux.resources.network.priorities[0].name: is required (an interface name)",
    ),
    (
        [("linux.resources.rdma", {"mlx5_1": {"hcaHandles": -1}})],
        'linux.resources.rdma["mlx5_1"].hcaHandles: must be a non-negative integer, got -1',
    ),
    (
        [("linux.resources.unified", {"memory.max": 5})],
        'linux.resources.unified["memory.max"]: must be a string, got 5',
    ),
    (
        [("linux.resources.devices[0].type", "x")],
        'linux.resources.devices[0].type: must be one of a, c, b, got "x"',
    ),
    (
        [("linux.resources.devices[0].access", "rwx")],
        'linux.resources.devices[0].access: must be letters of "rwm", got "rwx"',
    ),
    (
        [("linux.resources.devices[0].allow", DELETE)],
        "linux.resources.devices[0].allow: is required (true or false)",
    ),
    # linux.seccomp (shape only)
    ([("linux.seccomp", {})], "linux.seccomp.defaultAction: is required (an SCMP_ACT_* name)"),
    (
        [("linux.seccomp", {"defaultAction": 1})],
        "linux.seccomp.defaultAction: must be a string, got 1",
    ),
    (
        [
            (
                "linux.seccomp",
                {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [], "action": "X"}]},
            )
        ],
        "linux.seccomp.syscalls[0].names: must be a non-empty list of syscall names, got []",
    ),
    (
        [("linux.seccomp", {"defaultAction": "A", "syscalls": [{"action": "SCMP_ACT_ERRNO"}]})],
        "linux.seccomp.syscalls[0].names: is required (syscall names)",
    ),
    (
        [("linux.seccomp", {"defaultAction": "A", "syscalls": [{"names": ["read"]}]})],
        "linux.seccomp.syscalls[0].action: is required (an SCMP_ACT_* name)",
    ),
    (
        [
            (
                "linux.seccomp",
                {
                    "defaultAction": "A",
                    "syscalls": [
                        {"names": ["x"], "action": "B", "args": [{"index": 0, "value": 1}]}
                    ],
                },
            )
        ],
        "linux.seccomp.syscalls[0].args[0].op: is required (an SCMP_CMP_* name)",
    ),
    (
        [("linux.seccomp", {"defaultAction": "A", "architectures": "SCMP_ARCH_X86_64"})],
        'linux.seccomp.architectures: must be a list, got "SCMP_ARCH_X86_64"',
    ),
    # rules between fields
    (
        [
            ("linux.namespaces", NS_MIN),
            ("linux.maskedPaths", DELETE),
            ("linux.readonlyPaths", DELETE),
        ],
        'hostname: requires a new UTS namespace (linux.namespaces type "uts")',
    ),
    (
        [("hostname", DELETE), ("domainname", "example.org"), ("linux.namespaces", NS_MIN)],
        'domainname: requires a new UTS namespace (linux.namespaces type "uts")',
    ),
    (
        [("linux.namespaces", [{"type": "uts"}])],
        'linux.maskedPaths: requires a new mount namespace (linux.namespaces type "mount")',
    ),
    (
        [("linux.namespaces", [{"type": "uts"}]), ("linux.maskedPaths", [])],
        'linux.readonlyPaths: requires a new mount namespace (linux.namespaces type "mount")',
    ),
    (
        [("linux.uidMappings", MAPS)],
        'linux.uidMappings: requires a new user namespace (linux.namespaces type "user")',
    ),
    (
        [("linux.gidMappings", MAPS)],
        'linux.gidMappings: requires a new user namespace (linux.namespaces type "user")',
    ),
    (
        [("linux.namespaces", NS_ALL), ("linux.gidMappings", MAPS)],
        'linux.uidMappings: is required when linux.namespaces creates a "user" namespace',
    ),
    (
        [("linux.timeOffsets", {"monotonic": {"secs": 1}})],
        'linux.timeOffsets: requires a new time namespace (linux.namespaces type "time")',
    ),
    (
        [
            (
                "linux.namespaces",
                [{"type": "uts"}, {"type": "mount"}, {"type": "time", "path": "/proc/1/ns/time"}],
            ),
            ("linux.timeOffsets", {"monotonic": {"secs": 1}}),
        ],
        "linux.timeOffsets: cannot be set when joining an existing time namespace "
        '(it has a "path")',
    ),
    (
        [("linux.namespaces", NS_UTS), ("linux.sysctl", {"net.ipv4.ip_forward": "1"})],
        'linux.sysctl["net.ipv4.ip_forward"]: requires a new network namespace '
        '(linux.namespaces type "network")',
    ),
    (
        [("linux.namespaces", NS_UTS), ("linux.sysctl", {"kernel.shmmax": "1"})],
        'linux.sysctl["kernel.shmmax"]: requires a new IPC namespace (linux.namespaces type "ipc")',
    ),
    (
        [("linux.namespaces", NS_UTS), ("linux.sysctl", {"fs.mqueue.msg_max": "1"})],
        'linux.sysctl["fs.mqueue.msg_max"]: requires a new IPC namespace '
        '(linux.namespaces type "ipc")',
    ),
    (
        [
            ("hostname", DELETE),
            ("linux.namespaces", NS_MIN),
            ("linux.sysctl", {"kernel.domainname": "x"}),
        ],
        'linux.sysctl["kernel.domainname"]: requires a new UTS namespace '
        '(linux.namespaces type "uts")',
    ),
    (
        [("linux.sysctl", {"kernel.hostname": "x"})],
        'linux.sysctl["kernel.hostname"]: conflicts with the "hostname" field; set that instead',
    ),
    (
        [("linux.sysctl", {"vm.swappiness": "1"})],
        'linux.sysctl["vm.swappiness"]: is not namespaced, so a container may not set it (net.*, '
        "fs.mqueue.*, kernel.domainname, kernel.msgmax, kernel.msgmnb, kernel.msgmni, kernel.sem, "
        "kernel.shm_rmid_forced, kernel.shmall, kernel.shmmax, kernel.shmmni)",
    ),
    (
        [("linux.sysctl", {"kernel.msgmaxx": "1"})],
        'linux.sysctl["kernel.msgmaxx"]: is not namespaced, so a container may not set it (net.*, '
        "fs.mqueue.*, kernel.domainname, kernel.msgmax, kernel.msgmnb, kernel.msgmni, kernel.sem, "
        "kernel.shm_rmid_forced, kernel.shmall, kernel.shmmax, kernel.shmmni)",
    ),
]


# A NUL byte ends a C string: the kernel would read "/etc\0/x" as "/etc". Every string that
# reaches the kernel refuses one (issue 8); annotations and listenerMetadata are free text.
NUL_FIELDS = [
    ("root.path", "rootfs\0x"),
    ("process.cwd", "/tmp\0x"),
    ("process.args[0]", "sh\0x"),
    ("process.args[1]", "-c\0"),
    ("process.apparmorProfile", "p\0"),
    ("process.selinuxLabel", "l\0"),
    ("hostname", "box\0"),
    ("mounts[0].destination", "/etc\0/x"),
    ("mounts[0].source", "proc\0x"),
    ("mounts[0].type", "proc\0"),
    ("mounts[1].options[0]", "nosuid\0"),
    ("hooks.prestart[0].path", "/bin/true\0x"),
    ("hooks.prestart[0].args[0]", "true\0"),
    ("hooks.poststop[0].env[0]", "A=\0"),
    ("linux.namespaces[1].path", "/proc/1/ns/net\0"),
    ("linux.maskedPaths[0]", "/proc/kcore\0x"),
    ("linux.readonlyPaths[0]", "/proc/sys\0x"),
    ("linux.devices[0].path", "/dev/x\0"),
    ("linux.cgroupsPath", "/corral/x\0y"),
    ("linux.mountLabel", "l\0"),
    ("linux.resources.cpu.cpus", "0\0"),
    ("linux.seccomp.listenerPath", "/run/x\0"),
    ("linux.seccomp.syscalls[0].names[0]", "read\0x"),
    ('linux.sysctl["net.ipv4.ip_forward"]', "1\0"),
    ('linux.resources.unified["memory.max"]', "1\0"),
]


def _with_nul_at(field: str, value: str) -> dict[str, Any]:
    cfg = config(
        ("hooks.prestart", [{"path": "/bin/true", "args": ["true"]}]),
        ("hooks.poststop", [{"path": "/bin/true", "env": ["A=1"]}]),
        ("linux.devices", [{"path": "/dev/x", "type": "c", "major": 1, "minor": 3}]),
        ("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW"}),
        ("linux.seccomp.syscalls", [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]),
        ("linux.namespaces[1].path", "/proc/1/ns/net"),
    )
    if '["' in field:  # a map entry: linux.sysctl["net.ipv4.ip_forward"]
        parent, _, key = field.partition('["')
        put(cfg, parent, {key.rstrip('"]'): value})
    else:
        put(cfg, field, value)
    return cfg


@pytest.mark.parametrize(("field", "value"), NUL_FIELDS, ids=[f for f, _ in NUL_FIELDS])
def test_rejects_a_nul_byte(field: str, value: str) -> None:
    message = f"must not contain a NUL byte, got {json.dumps(value)}"
    assert error_of(_with_nul_at(field, value)) == f"{field}: {message}"


@pytest.mark.parametrize("key", ["linux.sysctl", "linux.resources.unified"])
def test_rejects_a_nul_byte_in_a_file_name(key: str) -> None:
    cfg = config((key, {"net.ipv4.ip_forward\0x": "1"}))
    message = 'a name must not contain a NUL byte, got "net.ipv4.ip_forward\\u0000x"'
    assert error_of(cfg) == f"{key}: {message}"


def test_annotations_may_hold_a_nul_byte() -> None:
    validate_config(config(("annotations", {"a\0": "b\0"})))


@pytest.mark.parametrize(("edits", "message"), BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_rejects_with_exact_message(edits: list[tuple[str, object]], message: str) -> None:
    assert error_of(config(*edits)) == message


GOOD = [
    [],
    [("process.oomScoreAdj", -1000)],
    [("process.user", {"uid": 4294967295, "gid": 0, "umask": 0o22, "additionalGids": [1, 2]})],
    [("process.consoleSize", {"height": 24, "width": 80})],
    [("process.rlimits[0].hard", 2**64 - 1)],
    [("process.env", ["A=", "B==c"])],
    [("mounts[0].destination", "proc")],  # relative: runc 1.1 takes it from "/"
    [("mounts[0].destination", "/../proc")],  # ".." at "/" stays at "/"
    [("mounts[1].options", ["nosuid", "tmpcopyup", "whatever=fs-data"])],
    [("hostname", "")],
    [("hostname", None)],  # null is absent, as in Go
    [("linux.rootfsPropagation", "")],
    [("linux.rootfsPropagation", "rshared")],
    [("linux.namespaces", NS_ALL), ("linux.uidMappings", MAPS), ("linux.gidMappings", MAPS)],
    [("linux.namespaces", [*NS_UTS, {"type": "user", "path": "/proc/1/ns/user"}])],
    [
        ("linux.namespaces", [*NS_ALL, {"type": "cgroup"}]),
        ("linux.uidMappings", MAPS),
        ("linux.gidMappings", MAPS),
    ],
    [("linux.devices", [{"type": "p", "path": "/dev/fifo"}])],
    [
        (
            "linux.devices",
            [{"type": "c", "path": "/dev/null", "major": 1, "minor": 3, "fileMode": 0o20666}],
        )
    ],
    [
        (
            "linux.sysctl",
            {"net.ipv4.ip_forward": "1", "kernel.shmmax": "1", "fs.mqueue.msg_max": "2"},
        )
    ],
    [("linux.sysctl", {"kernel.domainname": "example.org"})],
    [
        ("linux.namespaces", NS_ALL),
        ("linux.uidMappings", MAPS),
        ("linux.gidMappings", MAPS),
        ("linux.timeOffsets", {"monotonic": {"secs": -5, "nanosecs": 999_999_999}, "boottime": {}}),
    ],
    [("linux.resources.memory", {"limit": -1, "swap": -1, "reservation": 0, "swappiness": 60})],
    [("linux.resources.pids", {"limit": -1})],
    [("linux.resources.cpu", {"quota": -1, "period": 100000, "cpus": "0-3", "idle": 1})],
    [("linux.resources.hugepageLimits", [{"pageSize": "1GB", "limit": 0}])],
    [
        (
            "linux.resources.devices",
            [{"allow": True, "type": "c", "major": -1, "minor": -1, "access": ""}],
        )
    ],
    [
        (
            "linux.seccomp",
            {
                "defaultAction": "SCMP_ACT_ERRNO",
                "defaultErrnoRet": 1,
                "syscalls": [
                    {
                        "names": ["read"],
                        "action": "SCMP_ACT_ALLOW",
                        "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}],
                    }
                ],
            },
        )
    ],
    [("linux.personality", {"domain": "LINUX32"})],
    [
        ("somethingNew", {"x": 1}),
        ("process.futureField", 1),
        ("linux.resources.memory", {"new": "x"}),
    ],
]


@pytest.mark.parametrize("edits", GOOD)
def test_accepts(edits: list[tuple[str, object]]) -> None:
    cfg = config(*edits)
    assert validate_config(cfg) is cfg


def test_runc_spec_config_is_valid() -> None:
    cfg = default_spec()
    assert validate_config(cfg) is cfg
    assert validate_config(default_spec(rootless=True))


def test_null_fields_are_removed() -> None:
    cfg = config(("hostname", None), ("process.apparmorProfile", None))
    validate_config(cfg)
    assert "hostname" not in cfg
    assert "apparmorProfile" not in cfg["process"]


def test_not_an_object() -> None:
    assert error_of([]) == "must be a JSON object, got []"


def test_source_prefixes_the_message() -> None:
    cfg = config(("process.user.uid", "abc"))
    message = error_of(cfg, source="/b/config.json")
    assert message == '/b/config.json: process.user.uid: must be a non-negative integer, got "abc"'


def test_error_carries_path_detail_and_source() -> None:
    with pytest.raises(SpecError) as info:
        validate_config(config(("mounts[2].destination", "")), "/b/config.json")
    err = info.value
    assert isinstance(err, UserError)
    assert (err.path, err.source) == ("mounts[2].destination", "/b/config.json")
    assert err.detail == 'must be a non-empty string, got ""'


def test_process_optional_when_not_needed() -> None:
    cfg = config(("process", DELETE))
    assert validate_config(cfg, need_process=False) is cfg
    # ...but checked when present
    bad = config(("process.cwd", "x"))
    assert error_of(bad, need_process=False) == 'process.cwd: must be an absolute path, got "x"'


def test_first_problem_wins() -> None:
    cfg = config(("root.path", ""), ("process.cwd", "x"))
    assert error_of(cfg).startswith("process.cwd:")  # process comes before root, as in Go


def test_long_values_are_cut() -> None:
    message = error_of(config(("process.cwd", "x" * 100)))
    assert message == 'process.cwd: must be an absolute path, got "' + "x" * 36 + "..."


def test_validate_process_standalone() -> None:
    proc = {"args": ["ls"], "cwd": "/", "env": ["A=1"], "user": {"uid": 1}}
    assert validate_process(proc) is proc


@pytest.mark.parametrize(
    ("proc", "path", "message"),
    [
        ({"cwd": "/"}, "", "args: is required (a non-empty list of strings)"),
        ({"args": ["a"], "cwd": "x"}, "", 'cwd: must be an absolute path, got "x"'),
        (
            {"args": ["a"], "cwd": "/", "user": {"uid": -1}},
            "process",
            "process.user.uid: must be a non-negative integer, got -1",
        ),
        ([], "", "must be a JSON object, got []"),
    ],
)
def test_validate_process_errors(proc: object, path: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        validate_process(proc, None, path)
    assert str(info.value) == message


def test_validate_process_source() -> None:
    with pytest.raises(SpecError) as info:
        validate_process({"cwd": "/"}, "/tmp/p.json", "")
    assert str(info.value) == "/tmp/p.json: args: is required (a non-empty list of strings)"


# --- linux.resources: the one set of rules (issue 10), for create and for update ---------------
# These were the cgroup managers' checks, some different from the ones here ("1TB" pages taken
# by one and refused by the other); the managers now trust what passed here.

RESOURCE_ERRORS: list[tuple[dict[str, Any], str]] = [
    ({"blockIO": {"weight": 5}}, "linux.resources.blockIO.weight"),
    ({"blockIO": {"weight": 1001}}, "linux.resources.blockIO.weight"),
    (
        {"blockIO": {"weightDevice": [{"major": 8, "weight": 100}]}},
        "linux.resources.blockIO.weightDevice[0].minor",
    ),
    (
        {"blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": -1}]}},
        "linux.resources.blockIO.throttleReadBpsDevice[0].rate",
    ),
    (
        {"blockIO": {"throttleReadBpsDevice": {"major": 8}}},
        "linux.resources.blockIO.throttleReadBpsDevice",
    ),
    ({"memory": {"limit": -2}}, "linux.resources.memory.limit"),
    ({"memory": {"limit": "1g"}}, "linux.resources.memory.limit"),
    ({"memory": {"limit": 1.5}}, "linux.resources.memory.limit"),
    ({"memory": {"swappiness": 101}}, "linux.resources.memory.swappiness"),
    ({"memory": {"disableOOMKiller": 1}}, "linux.resources.memory.disableOOMKiller"),
    ({"memory": []}, "linux.resources.memory"),
    ({"cpu": {"shares": 1}}, "linux.resources.cpu.shares"),
    ({"cpu": {"shares": True}}, "linux.resources.cpu.shares"),
    ({"cpu": {"shares": 1 << 20}}, "linux.resources.cpu.shares"),
    ({"cpu": {"quota": -5}}, "linux.resources.cpu.quota"),
    ({"cpu": {"period": -1}}, "linux.resources.cpu.period"),
    ({"cpu": {"cpus": "0-a"}}, "linux.resources.cpu.cpus"),
    ({"cpu": {"cpus": "3-1"}}, "linux.resources.cpu.cpus"),
    ({"cpu": {"mems": 0}}, "linux.resources.cpu.mems"),
    ({"cpu": {"idle": 2}}, "linux.resources.cpu.idle"),
    ({"pids": {"limit": "10"}}, "linux.resources.pids.limit"),
    (
        {"hugepageLimits": [{"pageSize": "2M", "limit": 1}]},
        "linux.resources.hugepageLimits[0].pageSize",
    ),
    (
        {"hugepageLimits": [{"pageSize": "2MB", "limit": -1}]},
        "linux.resources.hugepageLimits[0].limit",
    ),
    (
        {"network": {"priorities": [{"name": "eth 0", "priority": 1}]}},
        "linux.resources.network.priorities[0].name",
    ),
    ({"rdma": {"mlx5_0": {"hcaHandles": -1}}}, 'linux.resources.rdma["mlx5_0"].hcaHandles'),
    ({"devices": [{"allow": "yes"}]}, "linux.resources.devices[0].allow"),
    ({"devices": [{"allow": True, "type": "x"}]}, "linux.resources.devices[0].type"),
    ({"devices": [{"allow": True, "access": "rwx"}]}, "linux.resources.devices[0].access"),
    (
        {"devices": [{"allow": True, "type": "c", "major": -3}]},
        "linux.resources.devices[0].major",
    ),
    (
        {"devices": [{"allow": True, "type": "a", "access": "r"}]},
        "linux.resources.devices[0].access",
    ),
]
RESOURCE_ERRORS += [
    (
        {"hugepageLimits": [{"pageSize": "1TB", "limit": 1}]},
        "linux.resources.hugepageLimits[0].pageSize",
    ),
    ({"memory": {"limit": 200, "swap": 100}}, "linux.resources.memory.swap"),
    ({"memory": {"swap": 100}}, "linux.resources.memory.swap"),
    ({"memory": {"limit": -1, "swap": 100}}, "linux.resources.memory.swap"),
    ({"unified": {"../memory.max": "1"}}, 'linux.resources.unified["../memory.max"]'),
    ({"unified": {"nodot": "1"}}, 'linux.resources.unified["nodot"]'),
    ({"unified": {"memory.high": 1}}, 'linux.resources.unified["memory.high"]'),
    ({"rdma": {"mlx 5": {"hcaHandles": 1}}}, 'linux.resources.rdma["mlx 5"]'),
]


@pytest.mark.parametrize(("resources", "field"), RESOURCE_ERRORS)
def test_validate_resources_names_the_field(resources: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as info:
        validate_resources(json.loads(json.dumps(resources)))
    assert info.value.path == field


@pytest.mark.parametrize(("resources", "field"), RESOURCE_ERRORS)
def test_a_config_gets_the_same_rules(resources: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as info:
        validate_config(config(("linux.resources", json.loads(json.dumps(resources)))))
    assert info.value.path == field


def test_swap_below_the_limit_says_why() -> None:
    with pytest.raises(SpecError, match=r"must not be below memory.limit \(200\), got 100"):
        validate_resources({"memory": {"limit": 200, "swap": 100}})
    with pytest.raises(SpecError, match=r"needs a memory limit"):
        validate_resources({"memory": {"swap": 100}})


@pytest.mark.parametrize(
    "resources",
    [
        {"memory": {"limit": 200, "swap": 200}},
        {"memory": {"limit": 200, "swap": -1}},
        {"memory": {"limit": -1, "swap": -1}},
        {"memory": {"limit": 200, "swap": 0}},
        {"cpu": {"shares": 0, "cpus": "0-3,8", "mems": "", "idle": 1}},
        {"blockIO": {"weight": 0, "weightDevice": [{"major": 8, "minor": 0, "weight": 10}]}},
        {"pids": {"limit": -5}},
        {"hugepageLimits": [{"pageSize": "64KB", "limit": 0}]},
        {"devices": [{"allow": True, "type": "a", "access": "rwm"}, {"allow": False}]},
        {"unified": {"memory.high": "1G"}},
    ],
)
def test_validate_resources_accepts(resources: dict[str, Any]) -> None:
    assert validate_resources(resources) == resources


def test_resources_must_be_an_object() -> None:
    with pytest.raises(SpecError, match=r"^linux.resources: must be an object"):
        validate_resources([])
