"""Attacks from inside a container that must fail (issue 4).

Each test is written so that it would *pass for the attacker* on a broken runtime: it performs
the attack for real and looks at the outcome (an errno, what the host sees), rather than
checking a setting. Where an attack succeeding would harm the host, the attack is made
harmless (the clock is set to the time it already has, a sysctl to its own value). Every test
passes against runc 1.1 too (``CORRAL_RUNC=runc``).
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any

import pytest

AGAINST_RUNC = os.path.basename(os.environ.get("CORRAL_RUNC", "").split(" ")[0]) == "runc"


def run(corral_runc: Any, bundle: Any, cid: str, script: str, **config: Any) -> Any:
    """Run ``sh -c script`` in the bundle (default caps, read-only root); return the result."""

    def edit(cfg: dict[str, Any]) -> None:
        for key, value in config.items():
            if key == "caps":
                for name in ("bounding", "effective", "permitted"):
                    cfg["process"]["capabilities"][name] += value
            elif key == "process":
                cfg["process"].update(value)
            else:
                cfg[key] = value

    bundle.set(args=["sh", "-c", script], edit=edit)
    return corral_runc("run", "--bundle", bundle, cid)


# -- processes ------------------------------------------------------------------------------


def test_cannot_see_or_signal_host_processes(corral_runc: Any, bundle: Any, cid: str) -> None:
    host_pid = os.getpid()  # this test's own process: alive, and owned by root
    assert host_pid > 10
    done = run(
        corral_runc,
        bundle,
        cid,
        f"kill -0 {host_pid} 2>&1; echo kill=$?; ls /proc; echo =ps=; ps -o pid,comm",
    )
    assert done.returncode == 0, done.stderr
    assert "kill=1" in done.stdout
    listing = done.stdout.split("=ps=\n")[0].split()
    pids = {int(name) for name in listing if name.isdigit()}
    assert str(host_pid) not in listing
    assert 1 in pids and max(pids) < 10, pids  # sh (1), ls, and nothing of the host
    ps = done.stdout.split("=ps=\n")[1].splitlines()[1:]
    assert len(ps) <= 3, ps  # sh and ps (maybe ls's zombie): not the host's hundreds


# -- privileged operations with the default capabilities --------------------------------------


def test_cannot_mount(corral_runc: Any, bundle: Any, cid: str) -> None:
    done = run(
        corral_runc,
        bundle,
        cid,
        "mount -t tmpfs none /dev/shm 2>&1; echo rc=$?;"
        " mount -o remount,rw / 2>&1; echo rc=$?; touch /x 2>&1; echo rc=$?",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("rc=") == 3 and "rc=0" not in done.stdout, done.stdout
    assert "not permitted" in done.stdout or "permission denied" in done.stdout
    assert not (bundle.rootfs / "x").exists()


def test_cannot_load_kernel_modules(corral_runc: Any, bundle: Any, cid: str) -> None:
    """A bogus module: with CAP_SYS_MODULE the kernel would parse it and say "invalid module
    format" (ENOEXEC); without it, it refuses to look (EPERM). A kernel built without module
    support answers ENOSYS to everyone: then the evidence is the bounding set, which has no
    CAP_SYS_MODULE (bit 16) to regain."""
    (bundle.rootfs / "bogus.ko").write_bytes(b"\x7fELF" + b"\0" * 60)
    done = run(
        corral_runc,
        bundle,
        cid,
        "insmod /bogus.ko 2>&1; echo rc=$?; grep CapBnd /proc/self/status",
    )
    assert done.returncode == 0, done.stderr
    assert "rc=0" not in done.stdout
    assert "Invalid module format" not in done.stdout
    bounding = int(done.stdout.split("CapBnd:")[1].split()[0], 16)
    assert not bounding >> 16 & 1
    if os.path.exists("/proc/modules"):  # a kernel with modules: the errno tells
        assert "Operation not permitted" in done.stdout, done.stdout


def test_cannot_set_the_hostname_with_default_caps(corral_runc: Any, bundle: Any, cid: str) -> None:
    host = socket.gethostname()
    done = run(corral_runc, bundle, cid, "hostname evil 2>&1; echo rc=$?; hostname")
    assert done.returncode == 0, done.stderr
    assert "rc=1" in done.stdout and done.stdout.splitlines()[-1] == "corral"
    assert socket.gethostname() == host


def test_with_cap_sys_admin_the_hostname_changes_only_inside(
    corral_runc: Any, bundle: Any, cid: str
) -> None:
    host = socket.gethostname()
    done = run(
        corral_runc,
        bundle,
        cid,
        "hostname evil 2>&1; echo rc=$?; hostname",
        caps=["CAP_SYS_ADMIN"],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["rc=0", "evil"]
    assert socket.gethostname() == host


def test_cannot_set_the_clock(corral_runc: Any, bundle: Any, cid: str) -> None:
    # To the time it already is: even on a broken runtime the host's clock stays right.
    done = run(corral_runc, bundle, cid, 'date -s "@$(date +%s)" 2>&1; echo rc=$?')
    assert done.returncode == 0, done.stderr
    assert "not permitted" in done.stdout  # busybox date exits 0 even so


def test_proc_sys_is_read_only_even_for_its_own_value(
    corral_runc: Any, bundle: Any, cid: str
) -> None:
    before = Path("/proc/sys/vm/swappiness").read_text()
    done = run(
        corral_runc,
        bundle,
        cid,
        "{ v=$(cat /proc/sys/vm/swappiness); echo $v > /proc/sys/vm/swappiness; } 2>&1; echo rc=$?",
        caps=["CAP_SYS_ADMIN"],  # even with it: the files are on a read-only mount
    )
    assert done.returncode == 0, done.stderr
    assert "rc=1" in done.stdout and "Read-only file system" in done.stdout, done.stdout
    assert Path("/proc/sys/vm/swappiness").read_text() == before


MASKED_FILES = ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug"]


def test_masked_proc_files_read_empty(corral_runc: Any, bundle: Any, cid: str) -> None:
    """/proc/kcore (the host's memory) & co read as /dev/null; /sys/firmware is an empty dir.
    Only the files this host's kernel has are checked (a VM's kernel may lack /proc/kcore)."""
    files = [f for f in MASKED_FILES if os.path.exists(f)]
    assert files
    script = "".join(f"wc -c < {f}; stat -c %t:%T {f};" for f in files)
    done = run(
        corral_runc,
        bundle,
        cid,
        script + " ls -A /sys/firmware | wc -l",
        caps=["CAP_SYS_RAWIO", "CAP_SYS_ADMIN"],
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout.split()
    assert out[:-1] == ["0", "1:3"] * len(files)  # empty, and the device /dev/null
    assert out[-1] == "0"


# -- capabilities and no_new_privs -------------------------------------------------------------


def test_an_unknown_capability_is_an_error(corral_runc: Any, bundle: Any, cid: str) -> None:
    """A typo must not silently drop (or keep) a privilege. (runc 1.1 only warns.)"""
    with bundle.edit() as config:
        config["process"]["capabilities"]["bounding"].append("CAP_SYS_GOD")
        config["process"]["args"] = ["true"]
    done = corral_runc("run", "--bundle", bundle, cid)
    assert "CAP_SYS_GOD" in done.stderr
    if not AGAINST_RUNC:
        assert done.returncode != 0
        assert len(done.stderr.strip().splitlines()) == 1
        assert done.stderr.strip().endswith(
            'process.capabilities.bounding[3]: unknown capability "CAP_SYS_GOD"'
        )


def geteuid_elf() -> bytes:
    """A static x86_64 program: exit(geteuid() & 0xff). Busybox drops setuid privileges by
    itself, so the test needs a program that does not."""
    code = bytes.fromhex("b86b0000000f0589c7b83c0000000f05")
    base, offset = 0x400000, 64 + 56
    header = struct.pack(
        "<4sBBBBB7sHHIQQQIHHHHHH",
        b"\x7fELF",
        2,
        1,
        1,
        0,
        0,
        b"\0" * 7,
        2,
        62,
        1,
        base + offset,
        64,
        0,
        0,
        64,
        56,
        1,
        0,
        0,
        0,
    )
    phdr = struct.pack(
        "<IIQQQQQQ", 1, 5, 0, base, base, offset + len(code), offset + len(code), 0x1000
    )
    return header + phdr + code


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the program is x86_64 code")
@pytest.mark.parametrize("nnp", [True, False], ids=["no-new-privs", "control"])
def test_no_new_privileges_blocks_setuid(
    corral_runc: Any, bundle: Any, cid: str, nnp: bool
) -> None:
    prog = bundle.rootfs / "bin" / "whoami-suid"
    prog.write_bytes(geteuid_elf())
    os.chown(prog, 0, 0)
    prog.chmod(0o4755)
    done = run(
        corral_runc,
        bundle,
        cid,
        "/bin/whoami-suid; echo euid=$?",
        process={"user": {"uid": 1000, "gid": 1000}, "noNewPrivileges": nnp},
    )
    assert done.returncode == 0, done.stderr
    # 1000 & 0xff == 232: still the user; 0: the setuid bit made it root.
    assert done.stdout.strip() == ("euid=232" if nnp else "euid=0")


# -- mount destinations through symlinks ---------------------------------------------------------


def bind_to(dest: str, source: Path) -> Any:
    def edit(cfg: dict[str, Any]) -> None:
        cfg["mounts"].append(
            {"destination": dest, "type": "bind", "source": str(source), "options": ["rbind"]}
        )

    return edit


@pytest.mark.parametrize("target", ["abs", "dotdot", "dotdot-abs"])
def test_a_symlinked_destination_stays_in_the_rootfs(
    corral_runc: Any, bundle: Any, cid: str, tmp_path: Path, target: str
) -> None:
    canary = tmp_path / "host-canary"  # a host directory the symlink points at
    canary.mkdir()
    source = tmp_path / "source"
    source.mkdir()
    (source / "marker").write_text("mounted\n")
    link = {
        "abs": str(canary),
        "dotdot": "../../../../../../../../.." + str(canary),
        "dotdot-abs": "/../../.." + str(canary),
    }[target]
    os.symlink(link, bundle.rootfs / "evil")
    inside = str(canary)  # where the link leads when resolved with the rootfs as "/"
    (bundle.rootfs / inside.lstrip("/")).mkdir(parents=True)  # exists on both sides
    bundle.set(
        args=["sh", "-c", f"cat {inside}/x/marker; cat /evil/x/marker"],
        edit=bind_to("/evil/x", source),
    )
    with bundle.edit() as config:
        config["root"]["readonly"] = False
    done = corral_runc("run", "--bundle", bundle, cid)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "mounted\nmounted\n"
    assert os.listdir(canary) == []  # the host's directory: no "x" made, nothing mounted
    assert (bundle.rootfs / str(canary).lstrip("/") / "x").is_dir()
    assert str(canary) not in Path("/proc/self/mountinfo").read_text()


def test_a_dangling_symlinked_destination_never_reaches_the_host(
    corral_runc: Any, bundle: Any, cid: str, tmp_path: Path
) -> None:
    """The link's target exists on the host only: a runtime that followed it there would
    mkdir and mount in the host's directory. As runc does, the link is followed inside the
    rootfs: the target is created there and the mount lands there."""
    canary = tmp_path / "host-canary"
    canary.mkdir()
    source = tmp_path / "source"
    source.mkdir()
    (source / "marker").write_text("mounted\n")
    os.symlink(str(canary), bundle.rootfs / "evil")
    bundle.set(args=["cat", "/evil/x/marker"], edit=bind_to("/evil/x", source))
    with bundle.edit() as config:
        config["root"]["readonly"] = False
    done = corral_runc("run", "--bundle", bundle, cid)
    assert os.listdir(canary) == []
    assert str(canary) not in Path("/proc/self/mountinfo").read_text()
    assert done.returncode == 0, done.stderr
    assert done.stdout == "mounted\n"
    assert (bundle.rootfs / str(canary).lstrip("/") / "x").is_dir()


def test_a_relative_dangling_symlink_and_a_loop_stay_in_the_rootfs(
    corral_runc: Any, bundle: Any, cid: str, tmp_path: Path
) -> None:
    """A relative link climbing out (``../../..``) resolves at the rootfs's "/" as the kernel
    does in RESOLVE_IN_ROOT; a symlink loop is a one-line error, not a hang."""
    source = tmp_path / "source"
    source.mkdir()
    (source / "marker").write_text("mounted\n")
    os.symlink("../../../../made-here", bundle.rootfs / "tmp" / "up")
    bundle.set(args=["cat", "/made-here/marker"], edit=bind_to("/tmp/up", source))
    done = corral_runc("run", "--bundle", bundle, cid)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "mounted\n"
    assert (bundle.rootfs / "made-here").is_dir()
    assert not (tmp_path.parent / "made-here").exists()
    os.symlink("loop-b", bundle.rootfs / "loop-a")
    os.symlink("loop-a", bundle.rootfs / "loop-b")
    bundle.set(args=["true"], edit=bind_to("/loop-a", source))
    looped = corral_runc("run", "--bundle", bundle, cid + "-2")
    assert looped.returncode == 1
    assert len(looped.stderr.strip().splitlines()) == 1, looped.stderr


def test_a_destination_swapped_for_a_symlink_during_setup_stays_in_the_rootfs(
    corral_runc: Any, make_bundle: Any, tmp_path: Path
) -> None:
    """A container process racing the runtime: the mount destination's parent flips between a
    directory and a symlink to a host directory while containers are created, over and over.
    Nothing may ever be created or mounted in the host's directory."""
    from helpers import new_cid

    canary = tmp_path / "host-canary"
    canary.mkdir()
    source = tmp_path / "source"
    source.mkdir()
    (source / "marker").write_text("mounted\n")
    bundle = make_bundle(["cat", "/swap/m/marker"], edit=bind_to("/swap/m", source))
    (bundle.rootfs / "swap").mkdir()
    with bundle.edit() as config:
        config["root"]["readonly"] = False
    swap = bundle.rootfs / "swap"
    tmp_dir = bundle.rootfs / ".swap-dir"
    stop = threading.Event()
    flips = [0]
    seen: list[str] = []

    def clear() -> None:
        """Take away whatever is at ``swap`` (the directory is kept aside while the link is
        there; one the runtime made meanwhile, inside the rootfs, is removed)."""
        if swap.is_symlink():
            os.unlink(swap)
        elif swap.is_dir():
            if tmp_dir.exists():
                shutil.rmtree(swap)
            else:
                os.rename(swap, tmp_dir)

    def flipper() -> None:
        while not stop.is_set():
            try:
                clear()
                os.symlink(str(canary), swap)  # now a symlink to the host's directory
                time.sleep(0.0005)
                clear()
                os.rename(tmp_dir, swap)  # and a directory again
                flips[0] += 1
                time.sleep(0.0005)
            except OSError:
                pass  # the runtime got in between (it may create "swap"): just go on

    def watcher() -> None:
        while not stop.is_set():
            text = Path("/proc/self/mountinfo").read_text()
            if str(canary) in text:
                seen.append(text)
            if os.listdir(canary):
                seen.append(f"created in the host's directory: {os.listdir(canary)}")

    threads = [threading.Thread(target=flipper), threading.Thread(target=watcher)]
    for t in threads:
        t.start()
    outcomes: list[str] = []
    try:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            done = corral_runc("run", "--bundle", bundle, new_cid())
            outcomes.append(done.stdout if done.returncode == 0 else "failed")
    finally:
        stop.set()
        for t in threads:
            t.join()
    print(f"{len(outcomes)} runs, {outcomes.count('failed')} failed, {flips[0]} flips")
    assert flips[0] > 10, flips  # the race really ran
    assert seen == [], seen[0][:500]
    assert os.listdir(canary) == []
    # Every run that worked saw the bind mount where it asked for it.
    assert all(o in ("mounted\n", "failed") for o in outcomes), set(outcomes)
    assert "mounted\n" in outcomes
