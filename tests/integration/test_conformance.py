"""OCI runtime-spec conformance: one test per MUST that corral implements.

Written from the runtime-spec text (config.md, config-linux.md, runtime.md, runtime-linux.md),
not from corral's code. Each test's docstring quotes the MUST it checks and names its section.
The evidence is what the container itself reports (busybox commands in the default busybox
bundle), or, for the lifecycle, what the runtime's CLI does; a runtime that skips the MUST fails
the test. Values are chosen to differ from both the bundle's defaults and the host's, so a
runtime that ignores a field cannot pass by accident.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# linux/capability.h numbers, written out here so the test does not trust the runtime's table.
CAP = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_FOWNER": 3, "CAP_KILL": 5, "CAP_SETGID": 6,
    "CAP_SETUID": 7, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_RAW": 13, "CAP_SYS_CHROOT": 18,
    "CAP_MKNOD": 27, "CAP_AUDIT_WRITE": 29, "CAP_SETFCAP": 31,
}


# -- helpers ---------------------------------------------------------------------------------


def mask(names: list[str]) -> int:
    m = 0
    for name in names:
        m |= 1 << CAP[name]
    return m


def run_sh(corral_runc: Any, bundle: Any, cid: str, script: str,
           edit: Callable[[dict[str, Any]], None] | None = None, rc: int = 0) -> str:
    """Run ``sh -c script`` in the bundle (after ``edit``); check the exit status; stdout."""
    bundle.set(args=["sh", "-c", script], edit=edit)
    done = corral_runc("run", "--bundle", bundle, cid)
    assert done.returncode == rc, f"rc={done.returncode}\n{done.stdout}\n{done.stderr}"
    return str(done.stdout)


def facts(text: str) -> dict[str, str]:
    """``key=value`` lines (the first ``=`` splits) as a dict."""
    out = {}
    for line in text.splitlines():
        if "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def status_fields(text: str) -> dict[str, str]:
    """/proc/<pid>/status ``Name:\\tvalue`` lines as a dict."""
    out = {}
    for line in text.splitlines():
        if ":" in line:
            key, _, value = line.partition(":")
            out[key.strip()] = value.strip()
    return out


def add_mounts(*mounts: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def edit(config: dict[str, Any]) -> None:
        config["mounts"].extend(mounts)
    return edit


def bind(source: Path | str, dest: str, *options: str) -> dict[str, Any]:
    return {"destination": dest, "type": "bind", "source": str(source),
            "options": ["rbind", *options]}


def out_dir(tmp_path: Path, name: str = "out") -> tuple[Path, dict[str, Any]]:
    """A host directory and the mount that shows it at /out in the container."""
    d = tmp_path / name
    d.mkdir()
    return d, bind(d, "/out")


def chain(*edits: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def edit(config: dict[str, Any]) -> None:
        for e in edits:
            e(config)
    return edit


def wait_for(pred: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {pred}")
        time.sleep(0.02)


def state(corral_runc: Any, cid: str) -> dict[str, Any]:
    done = corral_runc("state", cid)
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def status_of(corral_runc: Any, cid: str) -> str:
    return str(state(corral_runc, cid)["status"])


def create(corral_runc: Any, bundle: Any, cid: str, *extra: str) -> None:
    done = corral_runc("create", *extra, "--bundle", bundle, cid)
    assert done.returncode == 0, done.stderr


def set_namespaces(*types: str, **paths: str) -> Callable[[dict[str, Any]], None]:
    """Exactly these namespaces (new ones by type, joined ones by type=path); without a new
    uts namespace the config's hostname goes too (a runtime refuses it then)."""
    def edit(config: dict[str, Any]) -> None:
        nss: list[dict[str, Any]] = [{"type": t} for t in types]
        nss += [{"type": t, "path": p} for t, p in paths.items()]
        config["linux"]["namespaces"] = nss
        if "uts" not in types:
            config.pop("hostname", None)
    return edit


def assert_not_created(corral_runc: Any, runc_root: Path, cid: str) -> None:
    """The runtime-spec's "a new container MUST NOT be created": no state, no directory."""
    assert corral_runc("state", cid).returncode != 0
    assert not (runc_root / cid).exists()
    assert cid not in corral_runc("list", "-q").stdout


# == config.md: process ======================================================================


def test_process_args(corral_runc, bundle, cid):
    """config.md "process": args "with the same semantics as IEEE Std 1003.1-2008 execvp's argv".
    """
    bundle.set(args=["sh", "-c", 'echo "[$0][$1][$#]"', "zero", "one two"])
    done = corral_runc("run", "--bundle", bundle, cid)
    assert (done.returncode, done.stdout) == (0, "[zero][one two][1]\n"), done.stderr


def test_process_env(corral_runc, bundle, cid):
    """config.md "process": env "with the same semantics as IEEE Std 1003.1-2008's environ".

    The program's initial environment (/proc/1/environ, the shell as exec'd) is exactly env.
    """
    env = [PATH, "CONF_A=1", "CONF_B=with space", "CONF_EMPTY="]
    bundle.set(env=env)
    out = run_sh(corral_runc, bundle, cid, "cat /proc/1/environ | tr '\\0' '\\n'")
    assert out.splitlines() == env


def test_process_cwd(corral_runc, bundle, cid):
    """config.md "process": cwd "is the working directory that will be set for the executable".
    """
    bundle.set(cwd="/etc")
    out = run_sh(corral_runc, bundle, cid, "pwd; readlink /proc/1/cwd")
    assert out == "/etc\n/etc\n"


def test_process_args_unrunnable_fails_create(corral_runc, bundle, cid, runc_root):
    """runtime.md "create": "If the runtime cannot apply a property as specified in the
    configuration, it MUST generate an error and a new container MUST NOT be created."
    """
    bundle.set(args=["/no/such/program"])
    done = corral_runc("create", "--bundle", bundle, cid)
    assert done.returncode != 0
    assert_not_created(corral_runc, runc_root, cid)


def test_process_user_uid_gid_additional_gids(corral_runc, bundle, cid):
    """config.md "POSIX process": uid "specifies the user ID in the container namespace", gid
    the group ID, additionalGids "additional group IDs in the container namespace to be added
    to the process"."""
    def edit(c: dict[str, Any]) -> None:
        c["process"]["user"] = {"uid": 1234, "gid": 2345, "additionalGids": [5, 3456]}
    out = run_sh(corral_runc, bundle, cid, "grep -E '^(Uid|Gid|Groups):' /proc/self/status",
                 edit)
    f = status_fields(out)
    assert f["Uid"].split() == ["1234"] * 4
    assert f["Gid"].split() == ["2345"] * 4
    assert sorted(f["Groups"].split()) == ["3456", "5"]


def test_process_user_umask(corral_runc, bundle, cid):
    """config.md "POSIX process": umask "specifies the umask of the user" (a file created with
    mode 0666 gets 0666 & ~umask)."""
    def edit(c: dict[str, Any]) -> None:
        c["process"]["user"]["umask"] = 0o027
        c["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"})
    out = run_sh(corral_runc, bundle, cid, "umask; touch /tmp/f; stat -c %a /tmp/f", edit)
    assert out.split() == ["0027", "640"]


def test_process_rlimits(corral_runc, bundle, cid):
    """config.md "POSIX process" rlimits: "For each entry in rlimits, a getrlimit(3) on type
    MUST succeed. rlim.rlim_cur MUST match the configured value of soft. rlim.rlim_max MUST
    match the configured value of hard."""
    def edit(c: dict[str, Any]) -> None:
        c["process"]["rlimits"] = [
            {"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456},
            {"type": "RLIMIT_CORE", "soft": 4096, "hard": 8192},
            {"type": "RLIMIT_NPROC", "soft": 777, "hard": 888},
        ]
    out = run_sh(corral_runc, bundle, cid,
                 "echo n=$(ulimit -n); echo hn=$(ulimit -Hn); cat /proc/self/limits", edit)
    f = facts(out)
    assert (f["n"], f["hn"]) == ("123", "456")
    limits = {line[:26].strip(): line[26:].split()[:2] for line in out.splitlines()[2:]}
    assert limits["Max open files"] == ["123", "456"]
    assert limits["Max core file size"] == ["4096", "8192"]
    assert limits["Max processes"] == ["777", "888"]


def test_process_rlimits_unknown_type_is_an_error(corral_runc, bundle, cid, runc_root):
    """config.md "POSIX process" rlimits type: "the runtime MUST generate an error for any
    values which cannot be mapped to a relevant kernel interface"."""
    def edit(c: dict[str, Any]) -> None:
        c["process"]["rlimits"] = [{"type": "RLIMIT_NOPE", "soft": 1, "hard": 1}]
    bundle.set(edit=edit)
    assert corral_runc("create", "--bundle", bundle, cid).returncode != 0
    assert_not_created(corral_runc, runc_root, cid)


_STATUS_CAPS = "grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs):' /proc/self/status"


def _caps(out: str) -> dict[str, int]:
    return {k: int(v, 16) for k, v in status_fields(out).items() if k.startswith("Cap")}


def test_capabilities_root_bounding(corral_runc, bundle, cid):
    """config.md "Linux process" capabilities: bounding "is the bounding set for the process";
    for uid 0 the permitted and effective sets after exec are bounding | inheritable."""
    bnd = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SYS_CHROOT"]
    def edit(c: dict[str, Any]) -> None:
        c["process"]["capabilities"] = {
            "bounding": bnd, "permitted": bnd, "effective": bnd, "inheritable": [],
            "ambient": []}
    caps = _caps(run_sh(corral_runc, bundle, cid, _STATUS_CAPS, edit))
    assert caps == {"CapInh": 0, "CapPrm": mask(bnd), "CapEff": mask(bnd),
                    "CapBnd": mask(bnd), "CapAmb": 0}


def test_capabilities_all_sets_non_root(corral_runc, bundle, cid):
    """config.md "Linux process" capabilities: effective, bounding, inheritable, permitted and
    ambient sets are applied. As uid 1000 the kernel keeps, across exec, exactly: bounding,
    inheritable, and ambient as permitted/effective (ambient needs permitted+inheritable)."""
    bnd = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_KILL", "CAP_NET_RAW", "CAP_SETFCAP"]
    inh = ["CAP_KILL", "CAP_NET_RAW", "CAP_DAC_OVERRIDE"]
    prm = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_DAC_OVERRIDE"]
    amb = ["CAP_KILL", "CAP_NET_RAW"]
    def edit(c: dict[str, Any]) -> None:
        c["process"]["user"] = {"uid": 1000, "gid": 1000}
        c["process"]["capabilities"] = {
            "bounding": bnd, "permitted": prm, "effective": prm, "inheritable": inh,
            "ambient": amb}
    caps = _caps(run_sh(corral_runc, bundle, cid, _STATUS_CAPS, edit))
    assert caps == {"CapInh": mask(inh), "CapPrm": mask(amb), "CapEff": mask(amb),
                    "CapBnd": mask(bnd), "CapAmb": mask(amb)}


def test_capabilities_are_enforced(corral_runc, bundle, cid):
    """config.md "Linux process" capabilities: a capability outside the configured sets is not
    held: chown (CAP_CHOWN) is refused without it, allowed with it."""
    def edit(c: dict[str, Any]) -> None:
        c["root"]["readonly"] = False
    script = "{ touch /f; chown 1:1 /f && echo chown-ok; } 2>&1"
    bundle.set(edit=edit)
    out = run_sh(corral_runc, bundle, cid, script + "; echo end")
    assert "chown-ok" not in out and "Operation not permitted" in out
    def add_chown(c: dict[str, Any]) -> None:
        for s in ("bounding", "permitted", "effective"):
            c["process"]["capabilities"][s].append("CAP_CHOWN")
    out = run_sh(corral_runc, bundle, cid, script, add_chown)
    assert "chown-ok" in out


def test_capabilities_unknown_name_is_an_error(corral_runc, bundle, cid, runc_root):
    """config.md "Linux process" capabilities: "Any value which cannot be mapped to a relevant
    kernel interface MUST cause an error"."""
    def edit(c: dict[str, Any]) -> None:
        c["process"]["capabilities"]["bounding"].append("CAP_NOT_A_CAPABILITY")
    bundle.set(edit=edit)
    assert corral_runc("create", "--bundle", bundle, cid).returncode != 0
    assert_not_created(corral_runc, runc_root, cid)


@pytest.mark.parametrize("nnp", [True, False])
def test_no_new_privileges(corral_runc, bundle, cid, nnp):
    """config.md "Linux process": noNewPrivileges "setting noNewPrivileges to true prevents the
    process from gaining additional privileges" (prctl PR_SET_NO_NEW_PRIVS)."""
    def edit(c: dict[str, Any]) -> None:
        c["process"]["noNewPrivileges"] = nnp
    out = run_sh(corral_runc, bundle, cid, _STATUS_CAPS, edit)
    assert status_fields(out)["NoNewPrivs"] == ("1" if nnp else "0")


def test_oom_score_adj(corral_runc, bundle, cid):
    """config.md "Linux process": oomScoreAdj "adjusts the oom-killer score in
    [pid]/oom_score_adj for the process's [pid] in a proc pseudo-filesystem"."""
    def edit(c: dict[str, Any]) -> None:
        c["process"]["oomScoreAdj"] = 345
    out = run_sh(corral_runc, bundle, cid, "cat /proc/self/oom_score_adj /proc/1/oom_score_adj",
                 edit)
    assert out.split() == ["345", "345"]


def test_terminal_console_socket(corral_runc, bundle, cid, tmp_path):
    """config.md "process": terminal "specifies whether a terminal is attached to the process";
    consoleSize "specifies the console size in characters of the terminal". config-linux.md
    "Default Devices": "/dev/console is set up if terminal is enabled in the config by bind
    mounting the pseudoterminal pty to /dev/console"."""
    path = str(tmp_path / "console.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    bundle.set(args=["sh", "-c",
                     "tty; stty size; [ /dev/console -ef $(tty) ] && echo console-ok;"
                     " [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo stdio-tty"],
               terminal=True,
               edit=lambda c: c["process"].__setitem__("consoleSize",
                                                        {"height": 33, "width": 97}))
    master = -1
    try:
        create(corral_runc, bundle, cid, "--console-socket", path)
        conn, _ = server.accept()
        with conn:
            _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
        assert len(fds) == 1
        master = fds[0]
        assert corral_runc("start", cid).returncode == 0
        chunks = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                continue
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the slave side is closed, the program is done
                break
            if not data:
                break
            chunks.append(data)
        out = b"".join(chunks).decode().replace("\r\n", "\n")
    finally:
        server.close()
        if master >= 0:
            os.close(master)
    assert out.splitlines() == ["/dev/pts/0", "33 97", "console-ok", "stdio-tty"], out
    wait_for(lambda: status_of(corral_runc, cid) == "stopped")
    assert corral_runc("delete", cid).returncode == 0


def test_run_exit_status_propagates(corral_runc, bundle, cid):
    """runtime.md lifecycle / runc `run`: the container process's exit status is the
    command's (containerd and docker read it from there)."""
    out = run_sh(corral_runc, bundle, cid, "echo out; echo err >&2; exit 42", rc=42)
    assert out == "out\n"


# == config.md: hostname, domainname, root ===================================================


def test_hostname(corral_runc, bundle, cid):
    """config.md "Hostname": hostname "specifies the container's hostname as seen by processes
    running inside the container" (in the container's UTS namespace, not the host's)."""
    host_before = os.uname().nodename
    bundle.set(hostname="conformance-h1")
    out = run_sh(corral_runc, bundle, cid, "hostname; cat /proc/sys/kernel/hostname")
    assert out.split() == ["conformance-h1", "conformance-h1"]
    assert os.uname().nodename == host_before


def test_domainname(corral_runc, bundle, cid):
    """config.md "Domainname": domainname "specifies the container's domainname as seen by
    processes running inside the container"."""
    with open("/proc/sys/kernel/domainname") as f:
        host_before = f.read()
    out = run_sh(corral_runc, bundle, cid, "cat /proc/sys/kernel/domainname",
                 lambda c: c.__setitem__("domainname", "conf.example"))
    assert out == "conf.example\n"
    with open("/proc/sys/kernel/domainname") as f:
        assert f.read() == host_before


def test_root_readonly(corral_runc, bundle, cid):
    """config.md "Root": readonly "If true then the root filesystem MUST be read-only inside
    the container"."""
    out = run_sh(corral_runc, bundle, cid,
                 "touch /probe 2>&1; echo rc=$?; grep -E '^[0-9]+ [0-9]+ [^ ]+ [^ ]+ / ' "
                 "/proc/self/mountinfo",
                 lambda c: c["root"].__setitem__("readonly", True))
    assert "Read-only file system" in out
    assert facts(out)["rc"] != "0"
    assert " ro," in out.splitlines()[-1] or " ro " in out.splitlines()[-1]
    assert not (bundle.rootfs / "probe").exists()


def test_root_writable_when_not_readonly(corral_runc, bundle, cid):
    """config.md "Root": path "Specifies the path to the root filesystem": with readonly false a
    file written at / inside lands in root.path on the host."""
    out = run_sh(corral_runc, bundle, cid, "echo data > /probe && echo ok",
                 lambda c: c["root"].__setitem__("readonly", False))
    assert out == "ok\n"
    assert (bundle.rootfs / "probe").read_text() == "data\n"


def test_root_path_relative_to_bundle(corral_runc, bundle, cid):
    """config.md "Root": path "is either an absolute path or a relative path to the bundle"."""
    (bundle.rootfs).rename(bundle.path / "other-root")
    (bundle.path / "other-root" / "marker").write_text("relative\n")
    out = run_sh(corral_runc, bundle, cid, "cat /marker",
                 lambda c: c["root"].__setitem__("path", "other-root"))
    assert out == "relative\n"


def test_root_path_absolute(corral_runc, bundle, cid, tmp_path):
    """config.md "Root": path "is either an absolute path or a relative path to the bundle"."""
    elsewhere = tmp_path / "elsewhere" / "rootfs"
    elsewhere.parent.mkdir()
    bundle.rootfs.rename(elsewhere)
    (elsewhere / "marker").write_text("absolute\n")
    out = run_sh(corral_runc, bundle, cid, "cat /marker",
                 lambda c: c["root"].__setitem__("path", str(elsewhere)))
    assert out == "absolute\n"


# == config.md: mounts =======================================================================


def _mountinfo_line(out: str, dest: str) -> str:
    lines = [ln for ln in out.splitlines() if len(ln.split()) > 4 and ln.split()[4] == dest]
    assert lines, f"{dest} not mounted:\n{out}"
    return lines[-1]


def test_mount_tmpfs_with_options(corral_runc, bundle, cid):
    """config.md "Mounts": type, source and options "of the filesystem to be mounted" (mount(2)
    flags and filesystem data): a tmpfs with size, mode, nosuid, noexec."""
    m = {"destination": "/mnt/conf", "type": "tmpfs", "source": "conftmp",
         "options": ["nosuid", "noexec", "nodev", "size=1m", "mode=0710"]}
    out = run_sh(corral_runc, bundle, cid,
                 "stat -c mode=%a /mnt/conf; df -k /mnt/conf | tail -n 1; cat /proc/self/mountinfo",
                 add_mounts(m))
    assert facts(out)["mode"] == "710"
    size_line = out.splitlines()[1].split()
    assert size_line[1] == "1024", out
    line = _mountinfo_line(out, "/mnt/conf")
    opts = line.split()[5].split(",")
    assert {"nosuid", "nodev", "noexec"} <= set(opts)
    assert " - tmpfs conftmp " in line


def test_mount_bind_host_dir(corral_runc, bundle, cid, tmp_path):
    """config.md "Mounts": a bind mount shows the host's source at destination (read and
    write through to the host)."""
    host = tmp_path / "hostdir"
    host.mkdir()
    (host / "hello").write_text("from host\n")
    out = run_sh(corral_runc, bundle, cid, "cat /data/hello; echo from container > /data/new",
                 add_mounts(bind(host, "/data")))
    assert out == "from host\n"
    assert (host / "new").read_text() == "from container\n"


def test_mount_bind_readonly(corral_runc, bundle, cid, tmp_path):
    """config.md "Mounts": options ["rbind", "ro"]: a read-only bind mount."""
    host = tmp_path / "hostdir"
    host.mkdir()
    (host / "hello").write_text("ro data\n")
    out = run_sh(corral_runc, bundle, cid,
                 "cat /data/hello; touch /data/x 2>&1; echo rc=$?",
                 add_mounts(bind(host, "/data", "ro")))
    assert out.startswith("ro data\n")
    assert "Read-only file system" in out and facts(out)["rc"] != "0"
    assert not (host / "x").exists()


def test_mount_bind_file(corral_runc, bundle, cid, tmp_path):
    """config.md "Mounts": a bind mount of a single file (the destination file is created)."""
    host = tmp_path / "conf.txt"
    host.write_text("file bind\n")
    out = run_sh(corral_runc, bundle, cid, "cat /etc/conf.txt",
                 add_mounts(bind(host, "/etc/conf.txt", "ro")))
    assert out == "file bind\n"


def test_mount_bind_relative_source_and_no_type(corral_runc, bundle, cid):
    """config.md "Mounts" source: "Path values for bind mounts are either absolute or relative
    to the bundle. A mount is a bind mount if it has either bind or rbind in the options.\""""
    (bundle.path / "reldata").mkdir()
    (bundle.path / "reldata" / "f").write_text("relative bind\n")
    m = {"destination": "/rel", "source": "reldata", "options": ["bind"]}
    out = run_sh(corral_runc, bundle, cid, "cat /rel/f", add_mounts(m))
    assert out == "relative bind\n"


def test_mounts_in_listed_order(corral_runc, bundle, cid, tmp_path):
    """config.md "Mounts": "The runtime MUST mount entries in the listed order." A later mount
    on the same destination hides an earlier one; a mount inside an earlier one needs it."""
    host = tmp_path / "hostdir"
    host.mkdir()
    (host / "mark").write_text("host\n")
    tmpfs = {"destination": "/a", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}
    mounts = [
        tmpfs, bind(host, "/a"),  # /a: the bind, on top
        bind(host, "/b"), {**tmpfs, "destination": "/b"},  # /b: the empty tmpfs, on top
        {**tmpfs, "destination": "/c"}, bind(host, "/c/inner"),  # needs /c's tmpfs first
    ]
    out = run_sh(corral_runc, bundle, cid,
                 "echo a=$(ls /a); echo b=$(ls /b); echo c=$(ls /c); echo inner=$(ls /c/inner)",
                 add_mounts(*mounts))
    assert facts(out) == {"a": "mark", "b": "", "c": "inner", "inner": "mark"}
    assert not (bundle.rootfs / "c" / "inner").exists()  # made in /c's tmpfs, not the image


# == config-linux.md: rootfsPropagation ======================================================


@pytest.fixture
def shared_rootfs(bundle):
    """The bundle's rootfs as a shared mount on the host (as a container image's overlay
    usually is), so every propagation type gives a different answer; unmounted afterwards."""
    root = str(bundle.rootfs)
    subprocess.run(["mount", "--bind", root, root], check=True)
    try:
        subprocess.run(["mount", "--make-shared", root], check=True)
        yield bundle
    finally:
        subprocess.run(["umount", "-l", root], check=True)


@pytest.mark.parametrize("prop,tag", [("private", None), ("slave", "master:"),
                                      ("shared", "shared:"), ("unbindable", "unbindable")])
def test_rootfs_propagation(corral_runc, shared_rootfs, cid, prop, tag):
    """config-linux.md "Rootfs Mount Propagation": rootfsPropagation "sets the rootfs's mount
    propagation. Its value is either slave, private, shared or unbindable.\""""
    out = run_sh(corral_runc, shared_rootfs, cid, "cat /proc/self/mountinfo",
                 lambda c: c["linux"].__setitem__("rootfsPropagation", prop))
    line = _mountinfo_line(out, "/")
    optional = line.split(" - ")[0].split()[6:]
    if tag is None:
        assert optional == [], line
    else:
        assert [o.split(":")[0] + (":" if ":" in o else "") for o in optional] == [tag], line


# == config-linux.md: namespaces =============================================================

_NS_FILES = {"pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts",
             "cgroup": "cgroup", "time": "time"}


@pytest.mark.parametrize("kind", list(_NS_FILES))
def test_namespace_created(corral_runc, bundle, cid, kind):
    """config-linux.md "Namespaces": "If a path is not specified, the runtime MUST create a new
    container namespace of the given type.\""""
    others = ["mount"] if kind != "mount" else []
    out = run_sh(corral_runc, bundle, cid, f"readlink /proc/self/ns/{_NS_FILES[kind]}",
                 set_namespaces(kind, *others))
    assert out.strip() != os.readlink(f"/proc/self/ns/{_NS_FILES[kind]}")
    assert out.startswith(_NS_FILES[kind] + ":[")


@pytest.mark.parametrize("kind", ["pid", "network", "ipc", "uts", "cgroup", "time"])
def test_namespace_inherited_when_absent(corral_runc, bundle, cid, kind):
    """config-linux.md "Namespaces": "If a namespace type is not specified in the namespaces
    array, the container MUST inherit the runtime namespace of that type.\""""
    out = run_sh(corral_runc, bundle, cid, f"readlink /proc/self/ns/{_NS_FILES[kind]}",
                 set_namespaces("mount"))
    assert out.strip() == os.readlink(f"/proc/self/ns/{_NS_FILES[kind]}")


def test_namespace_duplicate_type_is_an_error(corral_runc, bundle, cid, runc_root):
    """config-linux.md "Namespaces": "If a namespaces field contains duplicated namespaces with
    same type, the runtime MUST generate an error.\""""
    bundle.set(edit=set_namespaces("mount", "uts", "uts"))
    assert corral_runc("create", "--bundle", bundle, cid).returncode != 0
    assert_not_created(corral_runc, runc_root, cid)


@pytest.fixture
def netns(tmp_path: Path):
    """A named network namespace (ip netns add), removed afterwards."""
    name = f"conf-{os.getpid()}-{tmp_path.name[-12:]}".replace("_", "")[:30]
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def test_namespace_join_network_by_path(corral_runc, bundle, cid, netns):
    """config-linux.md "Namespaces": path "The runtime MUST place the container process in the
    namespace associated with that path.\""""
    want = os.stat(netns).st_ino
    out = run_sh(corral_runc, bundle, cid, "readlink /proc/self/ns/net",
                 set_namespaces("mount", "pid", network=netns))
    assert out.strip() == f"net:[{want}]"


@pytest.fixture
def ns_holder(tmp_path: Path):
    """A host process in its own uts, ipc and pid namespaces (unshare); killed afterwards."""
    proc = subprocess.Popen(["unshare", "--uts", "--ipc", "--pid", "--fork", "--kill-child",
                             "sh", "-c", "hostname holder; exec sleep 60"])
    children = f"/proc/{proc.pid}/task/{proc.pid}/children"

    def holder() -> int | None:
        kids = Path(children).read_text().split()
        if kids and Path(f"/proc/{kids[0]}/cmdline").read_bytes().startswith(b"sleep"):
            return int(kids[0])
        return None
    try:
        yield wait_for(holder)
    finally:
        proc.kill()
        proc.wait()


def test_namespace_join_uts_ipc_by_path(corral_runc, bundle, cid, ns_holder):
    """config-linux.md "Namespaces": path "The runtime MUST place the container process in the
    namespace associated with that path.\""""
    uts = f"/proc/{ns_holder}/ns/uts"
    ipc = f"/proc/{ns_holder}/ns/ipc"
    want_uts, want_ipc = os.readlink(uts), os.readlink(ipc)

    def edit(c: dict[str, Any]) -> None:
        set_namespaces("mount", "pid", "network", uts=uts, ipc=ipc)(c)
        c.pop("hostname", None)
    out = run_sh(corral_runc, bundle, cid,
                 "readlink /proc/self/ns/uts; readlink /proc/self/ns/ipc; hostname", edit)
    assert out.split() == [want_uts, want_ipc, "holder"]


def test_namespace_join_pid_by_path(corral_runc, bundle, cid, ns_holder):
    """config-linux.md "Namespaces": path "The runtime MUST place the container process in the
    namespace associated with that path" (pid: the container is not pid 1 there)."""
    pid_ns = f"/proc/{ns_holder}/ns/pid"
    want = os.readlink(pid_ns)
    out = run_sh(corral_runc, bundle, cid, "readlink /proc/self/ns/pid; echo pid=$$",
                 set_namespaces("mount", "network", pid=pid_ns))
    assert out.splitlines()[0] == want
    assert facts(out)["pid"] != "1"


def test_namespace_path_of_wrong_type_is_an_error(corral_runc, bundle, cid, runc_root,
                                                  ns_holder):
    """config-linux.md "Namespaces": "The runtime MUST generate an error if path is not
    associated with a namespace of type type.\""""
    bundle.set(edit=set_namespaces("mount", "pid", network=f"/proc/{ns_holder}/ns/uts"))
    assert corral_runc("create", "--bundle", bundle, cid).returncode != 0
    assert_not_created(corral_runc, runc_root, cid)


def test_pid_namespace_process_is_pid_1(corral_runc, bundle, cid):
    """config-linux.md "Namespaces" pid: "processes inside the container will only be able to
    see other processes inside the same container": the program is pid 1 and alone."""
    out = run_sh(corral_runc, bundle, cid, "echo pid=$$; ls /proc; exit 0")
    pids = sorted(int(p) for p in out.split() if p.isdigit())
    assert facts(out)["pid"] == "1"
    assert pids[0] == 1 and pids[-1] < 20, pids  # sh and its few children, nothing else


def test_time_namespace_offsets(corral_runc, bundle, cid):
    """config-linux.md "Offset for Time Namespace": timeOffsets "sets the offset for Time
    Namespace" (monotonic and boottime clocks: /proc/uptime follows boottime)."""
    def edit(c: dict[str, Any]) -> None:
        set_namespaces("mount", "pid", "time")(c)
        c["linux"]["timeOffsets"] = {"boottime": {"secs": 1_000_000, "nanosecs": 0},
                                     "monotonic": {"secs": 2_000_000, "nanosecs": 0}}
    with open("/proc/uptime") as f:
        host_before = float(f.read().split()[0])
    out = run_sh(corral_runc, bundle, cid, "cat /proc/self/timens_offsets; cat /proc/uptime",
                 edit)
    with open("/proc/uptime") as f:
        host_after = float(f.read().split()[0])
    lines = out.splitlines()
    offsets = {ln.split()[0]: ln.split()[1:] for ln in lines[:-1]}
    assert offsets == {"monotonic": ["2000000", "0"], "boottime": ["1000000", "0"]}
    inside = float(lines[-1].split()[0])
    assert host_before + 1_000_000 - 1 <= inside <= host_after + 1_000_000 + 1


def test_cgroup_namespace_root(corral_runc, bundle, cid):
    """config-linux.md "Namespaces" cgroup: "the container will have an isolated view of the
    cgroup hierarchy": its own cgroup shows as "/"."""
    out = run_sh(corral_runc, bundle, cid, "cat /proc/self/cgroup",
                 set_namespaces("mount", "pid", "cgroup"))
    paths = {ln.split(":", 2)[2] for ln in out.splitlines()}
    assert paths == {"/"}, out


def test_cgroup_namespace_absent_shows_full_path(corral_runc, bundle, cid):
    """config-linux.md "Namespaces": without a cgroup namespace the container inherits the
    runtime's, and sees its cgroup's full path (the control for test_cgroup_namespace_root)."""
    out = run_sh(corral_runc, bundle, cid, "cat /proc/self/cgroup", set_namespaces("mount"))
    assert any(ln.split(":", 2)[2] != "/" for ln in out.splitlines()), out


def test_user_namespace_mappings(corral_runc, bundle, cid):
    """config-linux.md "User namespace mappings": uidMappings / gidMappings "describe the user
    namespace uid/gid mappings from the host to the container" (containerID, hostID, size)."""
    for d in (bundle.path, *bundle.path.parents):  # the mapped root must reach the rootfs
        if d.stat().st_mode & 0o001 == 0:
            d.chmod(d.stat().st_mode | 0o001)
    def edit(c: dict[str, Any]) -> None:
        set_namespaces("mount", "pid", "ipc", "uts", "network", "user")(c)
        c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
        c["mounts"] = [m for m in c["mounts"] if m["type"] not in ("cgroup", "sysfs")]
    out = run_sh(corral_runc, bundle, cid,
                 "cat /proc/self/uid_map /proc/self/gid_map; id -u; readlink /proc/self/ns/user",
                 edit)
    lines = out.splitlines()
    assert lines[0].split() == ["0", "100000", "65536"]
    assert lines[1].split() == ["0", "200000", "65536"]
    assert lines[2] == "0"
    assert lines[3] != os.readlink("/proc/self/ns/user")


# == config-linux.md: devices ================================================================

_DEFAULT_DEVICES = {"/dev/null": (1, 3), "/dev/zero": (1, 5), "/dev/full": (1, 7),
                    "/dev/random": (1, 8), "/dev/urandom": (1, 9), "/dev/tty": (5, 0)}


def test_default_devices(corral_runc, bundle, cid):
    """config-linux.md "Default Devices": "the runtime MUST also supply: /dev/null, /dev/zero,
    /dev/full, /dev/random, /dev/urandom, /dev/tty" (character devices, their usual numbers)."""
    names = " ".join(_DEFAULT_DEVICES)
    out = run_sh(corral_runc, bundle, cid, f"stat -c '%n %F %t %T' {names}")
    got = {ln.split()[0]: ln for ln in out.splitlines()}
    for path, (major, minor) in _DEFAULT_DEVICES.items():
        assert got[path] == f"{path} character special file {major:x} {minor:x}"


def test_default_devices_usable(corral_runc, bundle, cid):
    """config-linux.md "Default Devices": the runtime MUST supply them, usable by the
    container's processes even though the config's device rules deny everything else."""
    out = run_sh(corral_runc, bundle, cid,
                 "echo x > /dev/null && echo null-ok; head -c 3 /dev/zero | od -An -tx1;"
                 " head -c 8 /dev/urandom | wc -c; head -c 8 /dev/random | wc -c;"
                 " echo x > /dev/full 2>/dev/null || echo full-ok")
    assert out.split() == ["null-ok", "00", "00", "00", "8", "8", "full-ok"], out


def test_linux_devices_created(corral_runc, bundle, cid):
    """config-linux.md "Devices": devices "lists devices that MUST be available in the
    container" with type, major, minor, fileMode, uid and gid."""
    def edit(c: dict[str, Any]) -> None:
        c["linux"]["devices"] = [
            {"path": "/dev/mydev", "type": "c", "major": 10, "minor": 229, "fileMode": 0o600,
             "uid": 1234, "gid": 2345},
            {"path": "/dev/sub/myblk", "type": "b", "major": 7, "minor": 42,
             "fileMode": 0o640, "uid": 0, "gid": 6},
            {"path": "/dev/myfifo", "type": "p", "fileMode": 0o620},
        ]
    out = run_sh(corral_runc, bundle, cid,
                 "stat -c '%n|%F|%t|%T|%a|%u|%g' /dev/mydev /dev/sub/myblk /dev/myfifo", edit)
    assert out.splitlines() == [
        "/dev/mydev|character special file|a|e5|600|1234|2345",
        "/dev/sub/myblk|block special file|7|2a|640|0|6",
        "/dev/myfifo|fifo|0|0|620|0|0",
    ]


def test_dev_symlinks(corral_runc, bundle, cid):
    """runtime-linux.md "Dev symbolic links": "runtimes MUST create the following symlinks if
    the source file exists after processing mounts: /proc/self/fd -> /dev/fd,
    /proc/self/fd/0 -> /dev/stdin, /proc/self/fd/1 -> /dev/stdout, /proc/self/fd/2 ->
    /dev/stderr\"."""
    out = run_sh(corral_runc, bundle, cid,
                 "for l in fd stdin stdout stderr; do echo $l=$(readlink /dev/$l); done;"
                 " echo via-stdout >> /dev/stdout")
    assert facts(out) == {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
                          "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"}
    assert "via-stdout" in out


def test_dev_ptmx_pts_and_shm(corral_runc, bundle, cid):
    """config-linux.md "Default Devices": "/dev/ptmx. A bind-mount or symlink of the
    container's /dev/pts/ptmx"; the config's devpts and shm mounts are in place."""
    out = run_sh(corral_runc, bundle, cid,
                 "[ /dev/ptmx -ef /dev/pts/ptmx ] && echo ptmx-ok;"
                 " exec 3<>/dev/ptmx && echo open-ok; ls /dev/pts; cat /proc/self/mountinfo")
    assert out.startswith("ptmx-ok\nopen-ok\n"), out
    assert "0" in out.splitlines()[2:4]  # the pty just opened appears in the new devpts
    assert " - devpts devpts " in _mountinfo_line(out, "/dev/pts")
    assert " - tmpfs shm " in _mountinfo_line(out, "/dev/shm")


def test_only_stdio_fds_open(corral_runc, bundle, cid):
    """runtime-linux.md "File descriptors": "By default, only the stdin, stdout and stderr file
    descriptors are kept open for the application by the runtime.\""""
    out = run_sh(corral_runc, bundle, cid, "ls /proc/1/fd; exit 0")
    assert out.split() == ["0", "1", "2"]


# == config-linux.md: masked and read-only paths, sysctl, personality ========================


def test_masked_paths(corral_runc, bundle, cid):
    """config-linux.md "Masked Paths": "The runtime MUST mask over the provided paths inside the
    container so that they cannot be read.\""""
    (bundle.rootfs / "etc" / "secret").write_text("s3cret\n")
    (bundle.rootfs / "secretdir").mkdir()
    (bundle.rootfs / "secretdir" / "inner").write_text("hidden\n")
    out = run_sh(corral_runc, bundle, cid,
                 "echo file=$(cat /etc/secret); echo dir=$(ls -A /secretdir);"
                 " echo inner=$(cat /secretdir/inner 2>/dev/null)",
                 lambda c: c["linux"].__setitem__("maskedPaths",
                                                  ["/etc/secret", "/secretdir", "/nonexistent"]))
    assert facts(out) == {"file": "", "dir": "", "inner": ""}


def test_readonly_paths(corral_runc, bundle, cid):
    """config-linux.md "Readonly Paths": "The runtime MUST set the provided paths as readonly
    inside the container.\""""
    (bundle.rootfs / "rodir").mkdir()
    (bundle.rootfs / "rwdir").mkdir()
    (bundle.rootfs / "rofile").write_text("x\n")

    def edit(c: dict[str, Any]) -> None:
        c["root"]["readonly"] = False
        c["linux"]["readonlyPaths"] = ["/rodir", "/rofile", "/proc/sys"]
    out = run_sh(corral_runc, bundle, cid,
                 "for p in /rodir/new /rofile /rwdir/new; do { echo y >> $p; } 2>&1;"
                 " echo $p=$?; done; { echo 1 > /proc/sys/kernel/ns_last_pid; } 2>&1;"
                 " echo psys=$?", edit)
    f = facts(out)
    assert f["/rwdir/new"] == "0"
    assert f["/rodir/new"] != "0" and f["/rofile"] != "0" and f["psys"] != "0"
    assert "Read-only file system" in out
    assert (bundle.rootfs / "rofile").read_text() == "x\n"


def test_sysctl(corral_runc, bundle, cid):
    """config-linux.md "Sysctl": sysctl "allows kernel parameters to be modified at runtime for
    the container" (namespaced ones; the host keeps its values)."""
    def read(path: str) -> str:
        with open(path) as f:
            return f.read().strip()
    fwd = "/proc/sys/net/ipv4/ip_forward"
    host_fwd, host_shm = read(fwd), read("/proc/sys/kernel/shmmax")
    want_fwd = "0" if host_fwd == "1" else "1"
    out = run_sh(corral_runc, bundle, cid,
                 f"echo fwd=$(cat {fwd}); echo shm=$(cat /proc/sys/kernel/shmmax)",
                 lambda c: c["linux"].__setitem__(
                     "sysctl", {"net.ipv4.ip_forward": want_fwd, "kernel.shmmax": "123456789"}))
    assert facts(out) == {"fwd": want_fwd, "shm": "123456789"}
    assert (read(fwd), read("/proc/sys/kernel/shmmax")) == (host_fwd, host_shm)


def test_personality_linux32(corral_runc, bundle, cid):
    """config-linux.md "Personality": domain LINUX32 "the process will run in 32-bit mode"
    (uname reports the 32-bit machine)."""
    assert os.uname().machine == "x86_64"
    out = run_sh(corral_runc, bundle, cid, "uname -m",
                 lambda c: c["linux"].__setitem__("personality", {"domain": "LINUX32"}))
    assert out.strip() == "i686"


# == runtime.md: state and lifecycle =========================================================


def test_state_fields(corral_runc, bundle, cid, tmp_path):
    """runtime.md "State": ociVersion, id, status, pid ("the ID of the container process, as seen
    by the host"), bundle ("the absolute path to the container's bundle directory"), annotations
    ("the list of annotations associated with the container")."""
    ann = {"org.example.conformance": "yes", "org.example.other": "2"}
    bundle.set(args=["sleep", "30"], edit=lambda c: c.__setitem__("annotations", ann))
    # a relative --bundle: the state must still show the absolute path
    done = corral_runc("create", "--bundle", bundle.path.name, cid, cwd=bundle.path.parent)
    assert done.returncode == 0, done.stderr
    st = state(corral_runc, cid)
    assert st["ociVersion"]
    assert st["id"] == cid
    assert st["status"] == "created"
    assert st["bundle"] == str(bundle.path)
    assert st["annotations"] == ann
    pid = st["pid"]
    assert pid > 0 and os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    assert corral_runc("start", cid).returncode == 0
    assert status_of(corral_runc, cid) == "running"
    assert corral_runc("kill", cid, "KILL").returncode == 0
    wait_for(lambda: status_of(corral_runc, cid) == "stopped")


def test_state_of_unknown_container_is_an_error(corral_runc, cid):
    """runtime.md "Query State": "Attempting to query a container that does not exist MUST
    generate an error.\""""
    done = corral_runc("state", cid)
    assert done.returncode != 0 and not done.stdout.strip()


def test_create_applies_config_but_not_args(corral_runc, bundle, cid, tmp_path):
    """runtime.md "Create": "All of the properties configured in config.json except for process
    MUST be applied. process.args MUST NOT be applied until triggered by the start operation";
    "Lifecycle" step 7 (start): "The runtime MUST run the user-specified program".
    """
    out, m = out_dir(tmp_path)
    bundle.set(args=["sh", "-c", "touch /out/started"], edit=add_mounts(m))
    create(corral_runc, bundle, cid)
    pid = state(corral_runc, cid)["pid"]
    for ns in ("mnt", "net", "uts", "ipc", "pid"):  # namespaces already exist
        assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}")
    time.sleep(0.2)
    assert not (out / "started").exists()
    assert status_of(corral_runc, cid) == "created"
    assert corral_runc("start", cid).returncode == 0
    wait_for(lambda: (out / "started").exists())
    wait_for(lambda: status_of(corral_runc, cid) == "stopped")
    assert corral_runc("delete", cid).returncode == 0


def test_create_changes_to_config_after_create_have_no_effect(corral_runc, bundle, cid,
                                                              tmp_path):
    """runtime.md "Create": "Any changes made to the config.json file after this operation will
    not have an effect on the container.\""""
    out, m = out_dir(tmp_path)
    bundle.set(args=["sh", "-c", "echo original > /out/f"], edit=add_mounts(m))
    create(corral_runc, bundle, cid)
    bundle.set(args=["sh", "-c", "echo changed > /out/f"])
    assert corral_runc("start", cid).returncode == 0
    wait_for(lambda: status_of(corral_runc, cid) == "stopped")
    assert (out / "f").read_text() == "original\n"


def test_create_duplicate_id_is_an_error(corral_runc, bundle, make_bundle, cid):
    """runtime.md "Create": "If the ID provided is not unique across all containers within the
    scope of the runtime ... the implementation MUST generate an error and a new container MUST
    NOT be created.\""""
    bundle.set(args=["sleep", "30"])
    create(corral_runc, bundle, cid)
    before = state(corral_runc, cid)
    other = make_bundle(["sleep", "31"])
    assert corral_runc("create", "--bundle", other, cid).returncode != 0
    after = state(corral_runc, cid)
    assert (after["pid"], after["bundle"], after["status"]) == (
        before["pid"], before["bundle"], "created")


def test_create_invalid_id_is_an_error(corral_runc, bundle, runc_root):
    """runtime.md "Create": an ID that "is not valid in any other way" MUST generate an error
    and a new container MUST NOT be created."""
    done = corral_runc("create", "--bundle", bundle, "../escape")
    assert done.returncode != 0
    assert list(runc_root.iterdir()) == []
    assert not (runc_root.parent / "escape").exists()


def test_start_running_container_is_an_error(corral_runc, bundle, cid):
    """runtime.md "Start": "Attempting to start a container that is not created MUST have no
    effect on the container and MUST generate an error.\""""
    bundle.set(args=["sleep", "30"])
    create(corral_runc, bundle, cid)
    assert corral_runc("start", cid).returncode == 0
    pid = state(corral_runc, cid)["pid"]
    assert corral_runc("start", cid).returncode != 0
    st = state(corral_runc, cid)
    assert (st["status"], st["pid"]) == ("running", pid)


def test_start_stopped_container_is_an_error(corral_runc, bundle, cid, tmp_path):
    """runtime.md "Start": "Attempting to start a container that is not created MUST have no
    effect on the container and MUST generate an error" (here: stopped; the program must not
    run again)."""
    out, m = out_dir(tmp_path)
    bundle.set(args=["sh", "-c", "echo run >> /out/count"], edit=add_mounts(m))
    create(corral_runc, bundle, cid)
    assert corral_runc("start", cid).returncode == 0
    wait_for(lambda: status_of(corral_runc, cid) == "stopped")
    assert corral_runc("start", cid).returncode != 0
    assert status_of(corral_runc, cid) == "stopped"
    assert (out / "count").read_text() == "run\n"


def test_start_unknown_container_is_an_error(corral_runc, cid):
    """runtime.md "Start": "This operation MUST generate an error if it is not provided the
    container ID" (of an existing container)."""
    assert corral_runc("start", cid).returncode != 0
    assert corral_runc("start").returncode != 0


def test_kill_sends_the_signal(corral_runc, bundle, cid, tmp_path):
    """runtime.md "Kill": "This operation MUST send the specified signal to the container
    process.\""""
    out, m = out_dir(tmp_path)
    script = ("trap 'echo got-usr1 > /out/sig; exit 7' USR1; touch /out/ready;"
              " while :; do sleep 0.05; done")
    bundle.set(args=["sh", "-c", script], edit=add_mounts(m))
    create(corral_runc, bundle, cid)
    assert corral_runc("start", cid).returncode == 0
    wait_for(lambda: (out / "ready").exists())
    assert corral_runc("kill", cid, "USR1").returncode == 0
    wait_for(lambda: (out / "sig").exists() and (out / "sig").read_text() == "got-usr1\n")
    wait_for(lambda: status_of(corral_runc, cid) == "stopped")


def test_kill_created_container(corral_runc, bundle, cid, tmp_path):
    """runtime.md "Kill": a signal may be sent to a container that is created or running: the
    created container's process gets it (and, killed, never runs the program)."""
    out, m = out_dir(tmp_path)
    bundle.set(args=["sh", "-c", "touch /out/ran"], edit=add_mounts(m))
    create(corral_runc, bundle, cid)
    assert corral_runc("kill", cid, "KILL").returncode == 0
    wait_for(lambda: status_of(corral_runc, cid) == "stopped")
    assert not (out / "ran").exists()


def test_kill_stopped_container_is_an_error(corral_runc, bundle, cid):
    """runtime.md "Kill": "Attempting to send a signal to a container that is neither created
    nor running MUST have no effect on the container and MUST generate an error.\""""
    bundle.set(args=["true"])
    create(corral_runc, bundle, cid)
    assert corral_runc("start", cid).returncode == 0
    wait_for(lambda: status_of(corral_runc, cid) == "stopped")
    assert corral_runc("kill", cid, "TERM").returncode != 0
    assert status_of(corral_runc, cid) == "stopped"


def test_delete_running_container_is_an_error(corral_runc, bundle, cid):
    """runtime.md "Delete": "Attempting to delete a container that is not stopped MUST have no
    effect on the container and MUST generate an error.\""""
    bundle.set(args=["sleep", "30"])
    create(corral_runc, bundle, cid)
    assert corral_runc("start", cid).returncode == 0
    pid = state(corral_runc, cid)["pid"]
    assert corral_runc("delete", cid).returncode != 0
    st = state(corral_runc, cid)
    assert (st["status"], st["pid"]) == ("running", pid)
    assert os.path.exists(f"/proc/{pid}")


def test_delete_removes_resources(corral_runc, bundle, cid, runc_root):
    """runtime.md "Delete": "Deleting a container MUST delete the resources that were created
    during the create step." (then the ID may be used again)."""
    bundle.set(args=["true"])
    create(corral_runc, bundle, cid)
    pid = state(corral_runc, cid)["pid"]
    cgroup = Path(f"/proc/{pid}/cgroup").read_text()
    assert corral_runc("start", cid).returncode == 0
    wait_for(lambda: status_of(corral_runc, cid) == "stopped")
    assert corral_runc("delete", cid).returncode == 0
    assert corral_runc("state", cid).returncode != 0
    assert not (runc_root / cid).exists()
    for line in cgroup.splitlines():  # the container's own cgroups are gone
        _, controllers, path = line.split(":", 2)
        if cid in path:
            name = controllers.replace("name=", "") or "unified"
            roots = [f"/sys/fs/cgroup/{name}", "/sys/fs/cgroup"]
            assert not any(os.path.isdir(r + path) for r in roots), path
    create(corral_runc, bundle, cid)  # the id is free again


# == config.md: hooks ========================================================================


def _hook_script(tmp_path: Path, log: Path) -> Path:
    """A host hook: appends "<name> <mount ns> <state JSON>" to ``log``."""
    script = tmp_path / "hook.sh"
    script.write_text(
        "#!/bin/sh\n"
        'state=$(cat)\n'
        f'echo "$1 $(readlink /proc/self/ns/mnt) $state" >> {log}\n'
        'exit "${HOOK_EXIT:-0}"\n'
    )
    script.chmod(0o755)
    return script


def _host_hook(script: Path, name: str, **extra: Any) -> dict[str, Any]:
    return {"path": str(script), "args": [script.name, name], "env": [PATH], **extra}


def _read_log(log: Path) -> list[tuple[str, str, dict[str, Any]]]:
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        name, mnt, st = line.split(" ", 2)
        out.append((name, mnt, json.loads(st)))
    return out


def test_hooks_order_state_and_namespaces(corral_runc, bundle, cid, tmp_path):
    """config.md "POSIX-platform Hooks": prestart, createRuntime, createContainer,
    startContainer, poststart and poststop each MUST be called at their point of the lifecycle,
    "Hooks MUST be called in the listed order", "The state of the container MUST be passed to
    hooks over stdin"; createRuntime (and prestart) run in the runtime namespace,
    createContainer and startContainer "MUST be executed in the container namespace".
    """
    logdir = tmp_path / "hooklog"
    logdir.mkdir()
    log = logdir / "log"
    script = _hook_script(tmp_path, log)
    in_container = {  # startContainer's path resolves in the container
        "path": "/bin/sh", "env": [PATH],
        "args": ["sh", "-c", 'echo "startContainer $(readlink /proc/self/ns/mnt) $(cat)"'
                 " >> /hooklog/log"]}

    def edit(c: dict[str, Any]) -> None:
        c["hooks"] = {
            "prestart": [_host_hook(script, "prestart")],
            "createRuntime": [_host_hook(script, "createRuntime1"),
                              _host_hook(script, "createRuntime2")],
            "createContainer": [_host_hook(script, "createContainer")],
            "startContainer": [in_container],
            "poststart": [_host_hook(script, "poststart")],
            "poststop": [_host_hook(script, "poststop")],
        }
        c["mounts"].append(bind(logdir, "/hooklog"))
        c["annotations"] = {"org.example.hooks": "1"}
    bundle.set(args=["sh", "-c", "echo program"], edit=edit)
    create(corral_runc, bundle, cid)
    created = [e[0] for e in _read_log(log)]
    assert created == ["prestart", "createRuntime1", "createRuntime2", "createContainer"]
    pid = state(corral_runc, cid)["pid"]
    container_mnt = os.readlink(f"/proc/{pid}/ns/mnt")
    assert corral_runc("start", cid).returncode == 0
    assert [e[0] for e in _read_log(log)][4:] == ["startContainer", "poststart"]
    wait_for(lambda: status_of(corral_runc, cid) == "stopped")
    assert corral_runc("delete", cid).returncode == 0
    entries = _read_log(log)
    assert [e[0] for e in entries] == [
        "prestart", "createRuntime1", "createRuntime2", "createContainer", "startContainer",
        "poststart", "poststop"]
    host_mnt = os.readlink("/proc/self/ns/mnt")
    want_status = {"prestart": {"creating"}, "createRuntime1": {"creating"},
                   "createRuntime2": {"creating"}, "createContainer": {"creating", "created"},
                   "startContainer": {"created", "running"}, "poststart": {"running"},
                   "poststop": {"stopped"}}
    for name, mnt, st in entries:
        assert st["id"] == cid and st["bundle"] == str(bundle.path), (name, st)
        assert st["status"] in want_status[name], (name, st)
        assert st["ociVersion"] and st.get("annotations") == {"org.example.hooks": "1"}, st
        if name in ("createContainer", "startContainer"):
            assert mnt == container_mnt, name
        else:
            assert mnt == host_mnt, name
        if name in ("prestart", "createRuntime1", "createRuntime2", "poststart"):
            assert st["pid"] == pid, (name, st)


def test_hook_args_and_env(corral_runc, bundle, cid, tmp_path):
    """config.md "POSIX-platform Hooks": path, args "with the same semantics as IEEE Std
    1003.1-2008 execv's argv", env "with the same semantics as IEEE Std 1003.1-2008's environ".
    """
    log = tmp_path / "log"
    hook = {"path": "/bin/sh", "env": ["CONF_HOOK=hello", "OTHER=x"],
            "args": ["sh", "-c", f'echo "$0|$1|$CONF_HOOK|$(env | sort | tr "\\n" ,)" > {log}',
                     "zero", "one"]}
    bundle.set(args=["true"],
               edit=lambda c: c.__setitem__("hooks", {"createRuntime": [hook]}))
    create(corral_runc, bundle, cid)
    zero, one, value, env = log.read_text().strip().split("|")
    assert (zero, one, value) == ("zero", "one", "hello")
    assert "CONF_HOOK=hello" in env and "OTHER=x" in env and "PATH=" not in env


@pytest.mark.parametrize("kind", ["prestart", "createRuntime", "createContainer"])
def test_failing_create_hook_fails_create(corral_runc, bundle, cid, tmp_path, runc_root, kind):
    """runtime.md "Lifecycle": if any prestart / createRuntime / createContainer hook fails,
    "the runtime MUST generate an error, stop the container, and continue the lifecycle at step
    12" (nothing is left: no container, no process)."""
    log = tmp_path / "log"
    script = _hook_script(tmp_path, log)
    out, m = out_dir(tmp_path)
    bad = _host_hook(script, kind, env=[PATH, "HOOK_EXIT=3"])
    bundle.set(args=["sh", "-c", "touch /out/ran"],
               edit=chain(add_mounts(m), lambda c: c.__setitem__("hooks", {kind: [bad]})))
    done = corral_runc("create", "--bundle", bundle, cid)
    assert done.returncode != 0
    assert [e[0] for e in _read_log(log)] == [kind]
    assert_not_created(corral_runc, runc_root, cid)
    assert not (out / "ran").exists()


def test_failing_poststart_hook_is_a_warning(corral_runc, bundle, cid, tmp_path):
    """runtime.md "Lifecycle": "If any poststart hook fails, the runtime MUST log a warning, but
    the remaining hooks and lifecycle continue as if the hook had succeeded.\""""
    log = tmp_path / "log"
    script = _hook_script(tmp_path, log)
    out, m = out_dir(tmp_path)
    hooks = {"poststart": [_host_hook(script, "bad", env=[PATH, "HOOK_EXIT=1"]),
                           _host_hook(script, "good")]}
    bundle.set(args=["sh", "-c", "touch /out/ran"],
               edit=chain(add_mounts(m), lambda c: c.__setitem__("hooks", hooks)))
    create(corral_runc, bundle, cid)
    assert corral_runc("start", cid).returncode == 0
    assert [e[0] for e in _read_log(log)] == ["bad", "good"]
    wait_for(lambda: (out / "ran").exists())


def test_failing_poststop_hook_is_a_warning(corral_runc, bundle, cid, tmp_path, runc_root):
    """runtime.md "Lifecycle": "If any poststop hook fails, the runtime MUST log a warning, but
    the remaining hooks and lifecycle continue as if the hook had succeeded.\""""
    log = tmp_path / "log"
    script = _hook_script(tmp_path, log)
    hooks = {"poststop": [_host_hook(script, "bad", env=[PATH, "HOOK_EXIT=1"]),
                          _host_hook(script, "good")]}
    bundle.set(args=["true"], edit=lambda c: c.__setitem__("hooks", hooks))
    create(corral_runc, bundle, cid)
    assert corral_runc("start", cid).returncode == 0
    wait_for(lambda: status_of(corral_runc, cid) == "stopped")
    assert corral_runc("delete", cid).returncode == 0
    assert [e[0] for e in _read_log(log)] == ["bad", "good"]
    assert corral_runc("state", cid).returncode != 0
    assert not (runc_root / cid).exists()


def test_hook_timeout(corral_runc, bundle, cid, tmp_path, runc_root):
    """config.md "POSIX-platform Hooks": timeout "is the number of seconds before aborting the
    hook"; an aborted createRuntime hook fails create."""
    hook = {"path": "/bin/sleep", "args": ["sleep", "20"], "timeout": 1}
    bundle.set(args=["true"], edit=lambda c: c.__setitem__("hooks", {"createRuntime": [hook]}))
    t0 = time.monotonic()
    done = corral_runc("create", "--bundle", bundle, cid)
    assert done.returncode != 0
    assert time.monotonic() - t0 < 8
    assert_not_created(corral_runc, runc_root, cid)
