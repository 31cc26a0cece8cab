"""``corral run`` options as a user types them (issue 11): each value read back from inside the
container or from the kernel, the seeds' two demos on an image made by ``from-host python3``,
a stopped container started again keeping its files, volumes, and docker's errors for bad
input with nothing left behind."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from helpers.engine import corral
from helpers.host import cgroup_files, cgroup_mode, hierarchy

PROC_PY = """
import os, time
children = []
for i in range(1, 30):
    try:
        pid = os.fork()
    except OSError as err:
        print(f"fork {i} failed: {err}", flush=True)
        break
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    children.append(pid)
    print(f"child {i}", flush=True)
for pid in children:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
"""

MEM_PY = """
blocks = []
for step in range(1, 11):
    blocks.append(bytearray(100 * 1024 * 1024))
    print(f"step {step}: {step * 100} MB", flush=True)
"""


def run(root: Path, *args: str) -> str:
    """``corral run --rm ARGS`` must succeed; its stdout."""
    return corral(root, "run", "--rm", *args).stdout


def leftovers(root: Path) -> dict[str, object]:
    info = json.loads(corral(root, "info", "-f", "json").stdout)
    containers = root / "containers"
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f if str(root) in line]
    return {
        "containers": sorted(os.listdir(containers)) if containers.exists() else [],
        "rows": info["containers"],
        "active_snapshots": info["active_snapshots"],
        "volumes": corral(root, "volume", "ls", "-q").stdout.split(),
        "mounts": mounts,
    }


# -- the seeds' demos ------------------------------------------------------------------------------


def test_from_host_python3_then_pids_limit_demo(root: Path, tmp_path: Path) -> None:
    # pyenv's shim comes first on this PATH: the lookup must pass over it to the ELF python3
    env_path = os.environ.get("PATH", "")
    assert corral(root, "image", "from-host", "py", "python3").returncode == 0, env_path
    (tmp_path / "proc.py").write_text(PROC_PY)
    out = run(root, "--pids-limit", "10", "-v", f"{tmp_path}:/demo:ro", "py",
              "python3", "/demo/proc.py")  # fmt: skip
    lines = out.splitlines()
    assert lines[:9] == [f"child {i}" for i in range(1, 10)]
    assert lines[9] == "fork 10 failed: [Errno 11] Resource temporarily unavailable"
    # the stdlib came along: modules with C extensions and their libraries import
    assert run(root, "py", "python3", "-c", "import json, ssl, sqlite3, ctypes; print('ok')") == (
        "ok\n"
    )


def test_memory_demo_is_oom_killed_at_the_sixth_step(root: Path, tmp_path: Path) -> None:
    corral(root, "image", "from-host", "py", "python3")
    (tmp_path / "mem.py").write_text(MEM_PY)
    done = corral(root, "run", "--name", "mem", "-m", "512m", "-v", f"{tmp_path}:/demo:ro",
                  "py", "python3", "/demo/mem.py", check=False)  # fmt: skip
    assert done.returncode == 137, done.stderr
    assert done.stdout.splitlines() == [f"step {i}: {i * 100} MB" for i in range(1, 6)]
    assert "Exited (137)" in corral(root, "ps", "-a").stdout
    # the OOM kill is recorded on this cgroup v1 host too (memory.oom_control's oom_kill)
    state = "{{.State.OOMKilled}} {{.State.ExitCode}}"
    assert corral(root, "inspect", "-f", state, "mem").stdout == "true 137\n"
    corral(root, "rm", "mem")
    # detached, the monitor records it; a SIGKILL that is not the OOM killer's is not one
    corral(root, "run", "-d", "--name", "mem", "-m", "512m", "-v", f"{tmp_path}:/demo:ro",
           "py", "python3", "/demo/mem.py")  # fmt: skip
    corral(root, "run", "-d", "--name", "killed", "-m", "512m", "py", "python3", "-c",
           "import time; time.sleep(60)")  # fmt: skip
    corral(root, "kill", "killed")
    assert corral(root, "wait", "mem", "killed").stdout.split() == ["137", "137"]
    assert corral(root, "inspect", "-f", state, "mem").stdout == "true 137\n"
    assert corral(root, "inspect", "-f", state, "killed").stdout == "false 137\n"
    corral(root, "rm", "mem", "killed")


def test_stopped_container_started_again_keeps_its_files(root: Path) -> None:
    corral(root, "run", "-d", "--name", "keep", "busybox", "sh", "-c",
           "echo run >> /state; cat /state")  # fmt: skip
    for _ in range(2):
        deadline = time.monotonic() + 20
        while "Exited" not in corral(root, "ps", "-a").stdout:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        if _ == 0:
            corral(root, "start", "keep")
            time.sleep(0.2)
    assert corral(root, "logs", "keep").stdout == "run\nrun\nrun\n"
    corral(root, "rm", "keep")


# -- limits, read back ------------------------------------------------------------------------


def test_limits_are_in_the_kernel(root: Path) -> None:
    """Each flag read back from the container's own cgroup files (v1 or v2: the container sees
    its cgroup at /sys/fs/cgroup) and from inside."""
    from helpers.host import cgroup_mode

    v2 = cgroup_mode() == "v2"
    if v2:  # cpu.weight is runc's conversion of --cpu-shares 512: 1 + (512-2)*9999/262142
        files = "memory.max pids.max cpu.max cpu.weight memory.low"
        want = [str(64 << 20), "20", "50000 100000", "20", str(32 << 20)]
    else:
        files = ("memory/memory.limit_in_bytes pids/pids.max cpu/cpu.cfs_quota_us cpu/cpu.shares "
                 "memory/memory.soft_limit_in_bytes")  # fmt: skip
        want = [str(64 << 20), "20", "50000", "512", str(32 << 20)]
    script = (
        "cd /sys/fs/cgroup && cat " + files + "; ulimit -n; ulimit -Hn; df -k /dev/shm | tail -1"
    )
    out = run(root, "-m", "64m", "--memory-reservation", "32m", "--pids-limit", "20", "--cpus",
              "0.5", "--cpu-shares", "512", "--ulimit", "nofile=100:200", "--shm-size", "2m",
              "busybox", "sh", "-c", script).split("\n")  # fmt: skip
    assert out[:7] == [*want, "100", "200"]
    assert out[7].split()[1] == "2048"


def test_blkio_weight_where_the_host_cannot(root: Path) -> None:
    files = cgroup_files("blkio")
    done = corral(root, "run", "--rm", "--blkio-weight", "300", "busybox", "cat",
                  "/sys/fs/cgroup/blkio/blkio.bfq.weight", check=False)  # fmt: skip
    if "blkio.bfq.weight" in files or "blkio.weight" in files:
        assert done.returncode == 0 and "300" in done.stdout, done.stderr
    else:
        assert done.returncode == 125
        assert "blockIO.weight" in done.stderr and "BFQ" in done.stderr
        assert leftovers(root)["containers"] == []


# -- storage ---------------------------------------------------------------------------------------


def test_bind_tmpfs_read_only(root: Path, tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "in").write_text("from the host\n")
    script = (
        "cat /b/in; echo x > /b/out; echo rw=$?; echo y > /ro/z 2>/dev/null; echo ro=$?; "
        "touch /rootfile 2>/dev/null; echo root=$?; echo t > /t/f && echo tmpfs=ok; "
        "grep ' /t ' /proc/mounts"
    )
    out = run(root, "--read-only", "-v", f"{host}:/b", "-v", f"{host}:/ro:ro",
              "--tmpfs", "/t:size=1m,mode=1770", "busybox", "sh", "-c", script)  # fmt: skip
    lines = out.splitlines()
    assert lines[:5] == ["from the host", "rw=0", "ro=1", "root=1", "tmpfs=ok"]
    assert "size=1024k" in lines[5] and "mode=1770" in lines[5] and "noexec" in lines[5]
    assert (host / "out").read_text() == "x\n"
    # -v makes a missing host directory; --mount refuses it, as docker
    run(root, "-v", f"{tmp_path}/made:/m", "busybox", "true")
    assert (tmp_path / "made").is_dir()
    done = corral(root, "run", "--rm", "--mount", f"type=bind,src={tmp_path}/nope,dst=/m",
                  "busybox", "true", check=False)  # fmt: skip
    assert done.returncode == 125
    assert "bind source path does not exist" in done.stderr


def test_named_volume_seeded_kept_and_managed(root: Path) -> None:
    # a fresh volume gets the image's content at its target; later writes are kept
    assert "root:x:0:0" in run(root, "-v", "cfg:/etc", "busybox", "cat", "/etc/passwd")
    run(root, "-v", "cfg:/etc", "busybox", "sh", "-c", "echo mine > /etc/note")
    assert run(root, "-v", "cfg:/mnt", "busybox", "cat", "/mnt/note") == "mine\n"
    assert corral(root, "volume", "ls", "-q").stdout == "cfg\n"
    info = json.loads(corral(root, "volume", "inspect", "cfg").stdout)[0]
    assert (info["Name"], info["Driver"]) == ("cfg", "local")
    assert Path(info["Mountpoint"], "note").read_text() == "mine\n"
    # nocopy leaves a fresh volume empty
    assert run(root, "--mount", "type=volume,src=empty,dst=/usr,volume-nocopy", "busybox",
               "ls", "/usr") == ""  # fmt: skip
    assert run(root, "-v", "full:/usr", "busybox", "ls", "/usr") == "bin\nsbin\n"
    # in use: rm refused; system df counts it
    corral(root, "create", "--name", "user", "-v", "cfg:/data", "busybox", "true")
    done = corral(root, "volume", "rm", "cfg", check=False)
    assert done.returncode != 0 and "volume is in use" in done.stderr
    df = corral(root, "system", "df").stdout
    assert [line.split()[:4] for line in df.splitlines() if line.startswith("Local Volumes")] == [
        ["Local", "Volumes", "3", "1"]
    ]
    assert "cfg" in corral(root, "system", "df", "-v").stdout
    corral(root, "rm", "user")
    assert corral(root, "volume", "rm", "cfg", "empty", "full").stdout == "cfg\nempty\nfull\n"
    assert leftovers(root)["volumes"] == []


def test_anonymous_volumes_go_with_rm_v_and_run_rm(root: Path) -> None:
    run(root, "-v", "/anon", "busybox", "touch", "/anon/f")
    assert corral(root, "volume", "ls", "-q").stdout == ""  # run --rm took it
    corral(root, "create", "--name", "c", "-v", "/anon", "-v", "named:/n", "busybox", "true")
    assert len(corral(root, "volume", "ls", "-q").stdout.split()) == 2
    corral(root, "rm", "-v", "c")
    assert corral(root, "volume", "ls", "-q").stdout == "named\n"
    corral(root, "create", "--name", "d", "-v", "/anon", "busybox", "true")
    corral(root, "rm", "d")
    assert len(corral(root, "volume", "ls", "-q").stdout.split()) == 2
    assert corral(root, "volume", "prune", "-f").stdout.startswith("Deleted Volumes:")
    assert corral(root, "volume", "ls", "-q").stdout == "named\n"


# -- identity, security, process ---------------------------------------------------------------


def test_users_by_name_groups_and_workdir(root: Path) -> None:
    assert run(root, "-u", "nobody", "busybox", "sh", "-c", "id; echo $HOME") == (
        "uid=65534(nobody) gid=65534(nogroup)\n/nonexistent\n"
    )
    assert run(root, "-u", "nobody:root", "--group-add", "4242", "busybox", "id") == (
        "uid=65534(nobody) gid=0(root) groups=4242\n"
    )
    assert run(root, "-w", "/new/dir", "busybox", "pwd") == "/new/dir\n"


def test_caps_privileged_security_opts(root: Path) -> None:
    def caps(*flags: str) -> int:
        out = run(root, *flags, "busybox", "grep", "CapEff", "/proc/self/status")
        return int(out.split()[1], 16)

    default = caps()
    assert default & (1 << 0) and not default & (1 << 21)  # CHOWN yes, SYS_ADMIN no
    changed = caps("--cap-add", "SYS_ADMIN", "--cap-drop", "CHOWN")
    assert changed & (1 << 21) and not changed & (1 << 0)
    assert caps("--cap-drop", "ALL") == 0
    with open("/proc/self/status") as f:
        mine = next(int(line.split()[1], 16) for line in f if line.startswith("CapBnd"))
    assert caps("--privileged") == mine
    assert run(root, "--security-opt", "no-new-privileges", "busybox", "grep", "NoNewPrivs",
               "/proc/self/status").split() == ["NoNewPrivs:", "1"]  # fmt: skip
    assert run(root, "busybox", "grep", "Seccomp:", "/proc/self/status").split()[1] == "2"
    assert run(root, "--security-opt", "seccomp=unconfined", "busybox", "grep", "Seccomp:",
               "/proc/self/status").split()[1] == "0"  # fmt: skip
    assert run(root, "--sysctl", "net.ipv4.ip_forward=1", "busybox", "cat",
               "/proc/sys/net/ipv4/ip_forward") == "1\n"  # fmt: skip
    assert run(root, "--device", "/dev/zero:/dev/myzero", "busybox", "sh", "-c",
               "head -c 3 /dev/myzero | wc -c") == "3\n"  # fmt: skip


def test_init_env_file_labels_hosts(root: Path, tmp_path: Path) -> None:
    assert run(root, "--init", "busybox", "cat", "/proc/1/cmdline").split("\0")[:2] == [
        "/sbin/docker-init",
        "--",
    ]
    env = tmp_path / "env"
    env.write_text("# comment\nA=1\nB=two words\n")
    assert run(root, "--env-file", str(env), "busybox", "sh", "-c", 'echo "$A|$B"') == (
        "1|two words\n"
    )
    out = run(
        root,
        "--hostname",
        "box",
        "--add-host",
        "db:192.0.2.7",
        "busybox",
        "sh",
        "-c",
        "cat /etc/hostname; grep -E 'localhost$|box|db' /etc/hosts; cat /etc/resolv.conf",
    )
    lines = out.splitlines()
    assert lines[:4] == ["box", "127.0.0.1\tlocalhost", "127.0.0.1\tbox", "192.0.2.7\tdb"]
    assert any(line.startswith("nameserver ") for line in lines[4:])
    assert not any(line.startswith("nameserver 127.") for line in lines[4:])
    # --read-only keeps the generated files writable, as docker
    assert run(root, "--read-only", "busybox", "sh", "-c", "echo x >> /etc/hosts && echo ok") == (
        "ok\n"
    )


# -- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["-m", "12q"], 'invalid argument "12q" for "-m, --memory" flag: invalid size: \'12q\''),
        (["--cpus", "-1"], "Range of CPUs is from 0.01 to"),
        (["-v", "relative:path"], "invalid volume specification: 'relative:path': invalid mount "
         "config for type \"volume\": invalid mount path: 'path' mount path must be absolute"),
        (["-v", "a/b:/data"], 'create a/b: "a/b" includes invalid characters for a local volume '
         "name"),
        (["-u", "nosuch"], "unable to find user nosuch: no matching entries in passwd file"),
        (["-v", "fresh:/data", "-u", "nosuch"], "unable to find user nosuch"),
    ],
)  # fmt: skip
def test_bad_input_exits_125_leaving_nothing(root: Path, flags: list[str], message: str) -> None:
    done = corral(root, "run", "--rm", *flags, "busybox", "true", check=False)
    assert done.returncode == 125
    assert done.stderr.startswith(f"Error: {message}"), done.stderr
    assert len(done.stderr.splitlines()) == 1
    assert leftovers(root) == {
        "containers": [], "rows": 0, "active_snapshots": 0, "volumes": [], "mounts": []
    }  # fmt: skip


def test_update_changes_a_running_container_and_is_kept(root: Path) -> None:
    corral(root, "run", "-d", "--name", "up", "-m", "64m", "--pids-limit", "10", "busybox",
           "sleep", "60")  # fmt: skip
    assert corral(root, "update", "-m", "128m", "--pids-limit", "20", "up").stdout == "up\n"
    corral(root, "container", "update", "--cpus", "0.5", "up")
    cid = corral(root, "ps", "-q", "--no-trunc").stdout.strip()

    v2 = cgroup_mode() == "v2"

    def kernel(controller: str, v1: str, v2_name: str) -> str:
        name = v2_name if v2 else v1
        return Path(f"{hierarchy(controller)}/corral/{cid}/{name}").read_text().split()[0]

    assert kernel("memory", "memory.limit_in_bytes", "memory.max") == str(128 << 20)
    assert kernel("pids", "pids.max", "pids.max") == "20"
    assert kernel("cpu", "cpu.cfs_quota_us", "cpu.max") == "50000"
    corral(root, "stop", "-t", "0", "up")
    done = corral(root, "update", "-m", "12q", "up", check=False)
    assert done.returncode != 0 and "invalid size: '12q'" in done.stderr
    corral(root, "start", "up")  # the new limits are in its config now
    assert kernel("pids", "pids.max", "pids.max") == "20"
    corral(root, "rm", "-f", "up")


def test_stop_signal_and_stop_timeout(root: Path) -> None:
    # the program traps USR1 and says so; stop must send USR1, not TERM
    script = "trap 'echo got-usr1; exit 0' USR1; trap 'echo got-term; exit 0' TERM; " \
             "while true; do sleep 0.1; done"  # fmt: skip
    corral(root, "run", "-d", "--name", "sig", "--stop-signal", "USR1", "busybox", "sh", "-c",
           script)  # fmt: skip
    time.sleep(0.5)
    corral(root, "stop", "sig")
    assert corral(root, "logs", "sig").stdout == "got-usr1\n"
    # a program that ignores TERM is killed after --stop-timeout seconds, not 10
    corral(root, "run", "-d", "--name", "deaf", "--stop-timeout", "1", "busybox", "sh", "-c",
           "trap '' TERM; while true; do sleep 0.1; done")  # fmt: skip
    time.sleep(0.5)
    began = time.monotonic()
    corral(root, "stop", "deaf")
    assert 1 <= time.monotonic() - began < 6
    assert "Exited (137)" in corral(root, "ps", "-a").stdout
    corral(root, "rm", "sig", "deaf")
