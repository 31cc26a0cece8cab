"""corral.cli.run_flags: docker's value grammars for the run flags, and docker's messages."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from corral.cli import run_flags as rf
from corral.cli.main import build_parser
from corral.engine.containers.spec import MountOption, RunOptions, Ulimit
from corral.errors import UsageError


def options(*flags: str) -> RunOptions:
    ns = build_parser().parse_args(["run", *flags, "busybox", "true"])
    return rf.run_options(ns)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("512m", 512 << 20), ("1g", 1 << 30), ("1.5GiB", 3 << 29), ("100000", 100000),
     ("64M", 64 << 20), ("10kb", 10 << 10), ("2 t", 2 << 40)],
)  # fmt: skip
def test_sizes(text: str, expected: int) -> None:
    assert rf.parse_size(text, "-m, --memory") == expected


@pytest.mark.parametrize("text", ["12q", "", "m", "-1", "1.2.3m", "1e3"])
def test_bad_size_is_dockers_message(text: str) -> None:
    with pytest.raises(UsageError) as err:
        options("-m", text)
    assert str(err.value) == (
        f'invalid argument "{text}" for "-m, --memory" flag: invalid size: \'{text}\''
    )


def test_limits_read_into_options() -> None:
    opts = options(
        "-m", "512m", "--memory-swap", "-1", "--memory-reservation", "256m", "--cpus", "0.5",
        "--pids-limit", "10", "--cpu-shares", "512", "--cpuset-cpus", "0", "--shm-size", "1m",
        "--ulimit", "nofile=100:200", "--ulimit", "core=0", "--blkio-weight", "300",
        "--oom-kill-disable",
    )  # fmt: skip
    assert (opts.memory, opts.memory_swap, opts.memory_reservation) == (512 << 20, -1, 256 << 20)
    assert (opts.cpus, opts.pids_limit, opts.cpu_shares, opts.cpuset_cpus) == (0.5, 10, 512, "0")
    assert opts.shm_size == 1 << 20 and opts.blkio_weight == 300 and opts.oom_kill_disable
    assert opts.ulimits == [Ulimit("nofile", 100, 200), Ulimit("core", 0, 0)]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--cpus", "-1"], f"Range of CPUs is from 0.01 to {os.cpu_count()}.00, as there are "
         f"only {os.cpu_count()} CPUs available"),
        (["--cpus", "abc"], 'invalid argument "abc" for "--cpus" flag: failed to parse abc as a '
         "rational number"),
        (["-m", "4m"], "Minimum memory limit allowed is 6MB"),
        (["--memory-swap", "1g"], "You should always set the Memory limit when using "
         "Memoryswap limit, see usage"),
        (["-m", "1g", "--memory-swap", "512m"], "Minimum memoryswap limit should be larger than "
         "memory limit, see usage"),
        (["-m", "64m", "--memory-reservation", "128m"], "Minimum memory limit can not be less "
         "than memory reservation limit, see usage"),
        (["--blkio-weight", "5"], "Range of blkio weight is from 10 to 1000"),
        (["--pids-limit", "ten"], 'invalid argument "ten" for "--pids-limit" flag: '
         'strconv.ParseInt: parsing "ten": invalid syntax'),
        (["--ulimit", "bogus=1"], 'invalid argument "bogus=1" for "--ulimit" flag: invalid '
         "ulimit type: bogus"),
        (["--ulimit", "nofile=10:5"], 'invalid argument "nofile=10:5" for "--ulimit" flag: '
         "ulimit soft limit must be less than or equal to hard limit: 10 > 5"),
        (["-v", "relative:path"], "invalid volume specification: 'relative:path': invalid mount "
         "config for type \"volume\": invalid mount path: 'path' mount path must be absolute"),
        (["-v", "a/b:/data"], 'create a/b: "a/b" includes invalid characters for a local volume '
         'name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
         "directory, use absolute path"),
        (["-v", "/a:/b:bogus"], "invalid mode: bogus"),
        (["-v", "/a:/x", "-v", "/b:/x"], "Duplicate mount point: /x"),
        (["--mount", "type=bind,target=/x"], 'invalid mount config for type "bind": field '
         "Source must not be empty"),
        (["--mount", "type=nfs,target=/x"], 'invalid argument "type=nfs,target=/x" for '
         "\"--mount\" flag: unknown type 'nfs'"),
        (["--sysctl", "vm.swappiness=1"], 'invalid argument "vm.swappiness=1" for "--sysctl" '
         "flag: sysctl 'vm.swappiness=1' is not allowed"),
        (["--cap-add", "NOPE"], '--cap-add NOPE: unknown capability: "CAP_NOPE"'),
        (["--add-host", "db:notanip"], 'invalid argument "db:notanip" for "--add-host" flag: '
         'invalid IP address in add-host: "notanip"'),
        (["--device", "/dev/null:/dev/x:q"], 'invalid argument "/dev/null:/dev/x:q" for '
         '"--device" flag: bad mode specified: q'),
        (["--security-opt", "bogus"], "Invalid --security-opt: 'bogus'"),
        (["--stop-signal", "NOPE"], 'unknown signal "NOPE"'),
    ],
)  # fmt: skip
def test_bad_values(flags: list[str], message: str) -> None:
    with pytest.raises(UsageError) as err:
        options(*flags)
    assert str(err.value) == message


def test_volume_grammar(tmp_path: Path) -> None:
    assert rf.parse_volume("/host:/ctr:ro") == MountOption(
        "bind", "/ctr", "/host", True, create=True
    )
    assert rf.parse_volume("data:/var/lib/x") == MountOption("volume", "/var/lib/x", "data")
    assert rf.parse_volume("/anon") == MountOption("volume", "/anon")
    assert rf.parse_volume("/anon:ro").readonly
    assert rf.parse_volume("data:/d:nocopy").nocopy
    assert rf.parse_volume("/h:/c:rshared,z").options == ("rshared",)


def test_mount_and_tmpfs_grammar() -> None:
    m = rf.parse_mount("type=bind,src=/h,dst=/c,readonly,bind-propagation=rslave")
    assert (m.type, m.source, m.target, m.readonly, m.options) == ("bind", "/h", "/c", True,
                                                                    ("rslave",))  # fmt: skip
    v = rf.parse_mount("type=volume,source=data,target=/d,volume-nocopy")
    assert (v.type, v.source, v.nocopy, v.create) == ("volume", "data", True, False)
    t = rf.parse_mount("type=tmpfs,destination=/t,tmpfs-size=1m,tmpfs-mode=1770")
    assert (t.size, t.mode) == (1 << 20, 0o1770)
    t = rf.parse_tmpfs("/run:size=64m,mode=1777,exec")
    assert (t.type, t.target, t.size, t.mode, t.options) == ("tmpfs", "/run", 64 << 20, 0o1777,
                                                             ("exec",))  # fmt: skip


def test_identity_security_and_process_flags(tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nA=1\n\nB=two words\n")
    profile = tmp_path / "seccomp.json"
    profile.write_text('{"defaultAction": "SCMP_ACT_ALLOW"}')
    opts = options(
        "--cap-add", "sys_admin", "--cap-drop", "CAP_CHOWN", "--group-add", "audio",
        "--security-opt", "no-new-privileges", "--security-opt", f"seccomp={profile}",
        "--sysctl", "net.ipv4.ip_forward=1", "--init", "--stop-signal", "SIGUSR1",
        "--stop-timeout", "3", "--env-file", str(env_file), "-e", "C=3", "-l", "a=b",
        "--add-host", "db:10.0.0.2", "--add-host", "v6=[::1]", "--read-only", "--privileged",
        "--device-cgroup-rule", "c 1:3 mr", "--device", "/dev/null:/dev/mynull:r",
    )  # fmt: skip
    assert opts.cap_add == ["CAP_SYS_ADMIN"] and opts.cap_drop == ["CAP_CHOWN"]
    assert opts.group_add == ["audio"] and opts.no_new_privileges
    assert opts.seccomp_profile == {"defaultAction": "SCMP_ACT_ALLOW"}
    assert opts.sysctls == {"net.ipv4.ip_forward": "1"}
    assert opts.init and opts.stop_signal == "SIGUSR1" and opts.stop_timeout == 3
    assert opts.env == ["A=1", "B=two words", "C=3"] and opts.labels == {"a": "b"}
    assert opts.add_hosts == [("db", "10.0.0.2"), ("v6", "::1")]
    assert opts.read_only and opts.privileged
    assert opts.device_cgroup_rules == [
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "mr"}
    ]
    assert [(d.host, d.container, d.perms) for d in opts.devices] == [
        ("/dev/null", "/dev/mynull", "r")
    ]
    assert not options("--security-opt", "seccomp=unconfined").seccomp


def test_defaults_set_nothing() -> None:
    opts = options()
    assert opts == RunOptions(command=["true"])
