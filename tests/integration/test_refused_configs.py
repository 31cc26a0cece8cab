"""Configs runc refuses, refused here too, and profiles that once failed inside the init.

Issue 8, points 5 and 6. A refusal is one line on stderr naming the field, exit 1, and nothing
left behind (no state in --root, no cgroup; the autouse leak check covers mounts and
processes). The seccomp cases are containers that must run.
"""

from __future__ import annotations

import glob
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from helpers import Bundle, Runc


def assert_refused(done: Any, *fragments: str) -> str:
    """Exit 1, exactly one line on stderr with every fragment, no traceback, no internal error."""
    err: str = done.stderr
    assert done.returncode == 1, f"exit {done.returncode}\n{done.stdout}{err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    assert "Traceback" not in err and "internal error" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def assert_nothing_left(root: Path, cid: str) -> None:
    assert sorted(p.name for p in root.iterdir()) == []
    cgroups = glob.glob(f"/sys/fs/cgroup/*/corral/{cid}")
    assert cgroups + glob.glob(f"/sys/fs/cgroup/corral/{cid}") == []


def _set_namespace_path(config: dict[str, Any], kind: str, path: str | None) -> None:
    """Give the ``kind`` namespace a ``path`` (None: remove the entry altogether)."""
    namespaces = [ns for ns in config["linux"]["namespaces"] if ns["type"] != kind]
    if path is not None:
        namespaces.append({"type": kind, "path": path})
    config["linux"]["namespaces"] = namespaces


# -- net.* sysctls need a network namespace of the container's own ------------------------------


@pytest.mark.parametrize(
    ("netns", "fragments"),
    [
        pytest.param(
            None, ('linux.sysctl["net.core.somaxconn"]', "network namespace"), id="no netns"
        ),
        pytest.param(
            "/proc/self/ns/net",
            ('linux.sysctl["net.core.somaxconn"]', "not allowed in the host network namespace"),
            id="host netns by /proc/self",
        ),
        pytest.param(
            "{pin}",
            ('linux.sysctl["net.core.somaxconn"]', "not allowed in the host network namespace"),
            id="host netns bind-mounted elsewhere",
        ),
    ],
)
def test_net_sysctl_in_the_host_network_namespace_is_refused(
    corral_runc: Runc,
    runc_root: Path,
    bundle: Bundle,
    cid: str,
    tmp_path: Path,
    netns: str | None,
    fragments: tuple[str, ...],
) -> None:
    knob = Path("/proc/sys/net/core/somaxconn")  # harmless to change, restored below anyway
    before = knob.read_text()
    pin = tmp_path / "host-netns"
    if netns == "{pin}":  # the host's namespace under another name, as `ip netns` pins one
        pin.touch()
        subprocess.run(["mount", "--bind", "/proc/self/ns/net", str(pin)], check=True)
        netns = str(pin)

    def edit(config: dict[str, Any]) -> None:
        _set_namespace_path(config, "network", netns)
        config["linux"]["sysctl"] = {"net.core.somaxconn": str(int(before) + 1)}

    bundle.set(args=["true"], edit=edit)
    try:
        done = corral_runc("run", "--bundle", bundle, cid)
        assert_refused(done, *fragments)
        assert_nothing_left(runc_root, cid)
        assert knob.read_text() == before
    finally:
        knob.write_text(before)
        if pin.exists():
            subprocess.run(["umount", str(pin)], check=True)


def test_net_sysctl_in_a_joined_network_namespace_of_its_own_is_set(
    corral_runc: Runc, bundle: Bundle, cid: str, tmp_path: Path
) -> None:
    """A network namespace joined by path that is not the host's takes net.* sysctls."""
    pin = tmp_path / "netns"
    pin.touch()
    subprocess.run(["unshare", f"--net={pin}", "true"], check=True)
    try:

        def edit(config: dict[str, Any]) -> None:
            _set_namespace_path(config, "network", str(pin))
            config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}

        bundle.set(args=["cat", "/proc/sys/net/ipv4/ip_forward"], edit=edit)
        done = corral_runc("run", "--bundle", bundle, cid)
        assert (done.returncode, done.stdout.strip()) == (0, "1"), done.stderr
    finally:
        subprocess.run(["umount", str(pin)], check=True)


# -- a NUL byte in a path ------------------------------------------------------------------------


def _mount(destination: str, source: str = "tmpfs") -> Any:
    def edit(config: dict[str, Any]) -> None:
        config["mounts"].append({"destination": destination, "type": "tmpfs", "source": source})

    return edit


def _field(path: str, value: Any) -> Any:
    def edit(config: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return edit


def _namespace(config: dict[str, Any]) -> None:
    _set_namespace_path(config, "network", "/proc/self/ns/net\0x")


def _hook(config: dict[str, Any]) -> None:
    config["hooks"] = {"prestart": [{"path": "/bin/true\0x", "args": ["true"]}]}


def _device(config: dict[str, Any]) -> None:
    config["linux"]["devices"] = [
        {"path": "/dev/null2\0x", "type": "c", "major": 1, "minor": 3, "fileMode": 0o666}
    ]


NUL_CASES: list[tuple[str, Any, tuple[str, ...]]] = [
    ("mount destination", _mount("/etc\0/x"), ("mounts[", "].destination")),
    ("mount source", _mount("/tmpx", "tmp\0fs"), ("mounts[", "].source")),
    ("root.path", _field("root.path", "rootfs\0x"), ("root.path",)),
    ("process.cwd", _field("process.cwd", "/\0tmp"), ("process.cwd",)),
    ("process.args[0]", _field("process.args", ["tr\0ue"]), ("process.args[0]",)),
    ("namespace path", _namespace, ("linux.namespaces[", "].path")),
    ("hook path", _hook, ("hooks.prestart[0].path",)),
    ("maskedPaths", _field("linux.maskedPaths", ["/proc/kcore\0x"]), ("linux.maskedPaths[0]",)),
    ("readonlyPaths", _field("linux.readonlyPaths", ["/proc/sys\0"]), ("linux.readonlyPaths[0]",)),
    ("device path", _device, ("linux.devices[0].path",)),
    ("cgroupsPath", _field("linux.cgroupsPath", "/corral/x\0y"), ("linux.cgroupsPath",)),
]


@pytest.mark.parametrize(
    ("edit", "fragments"), [pytest.param(e, f, id=name) for name, e, f in NUL_CASES]
)
def test_nul_byte_in_a_path_is_refused(
    corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str, edit: Any, fragments: list[str]
) -> None:
    bundle.set(args=["true"], edit=edit)
    done = corral_runc("run", "--bundle", bundle, cid)
    assert_refused(done, *fragments, "NUL")
    assert_nothing_left(runc_root, cid)


# -- /proc, /sys and /dev of the rootfs must be directories, not symlinks -------------------------


@pytest.mark.parametrize("name", ["proc", "sys", "dev"])
@pytest.mark.parametrize("target", ["/tmp", "tmp", "../../.."])
def test_rootfs_with_a_symlinked_system_directory_is_refused(
    corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str, name: str, target: str
) -> None:
    victim = bundle.rootfs / name
    victim.rmdir() if victim.is_dir() and not victim.is_symlink() else victim.unlink()
    victim.symlink_to(target)
    bundle.set(args=["true"])
    before = sorted(os.listdir(bundle.rootfs / "tmp"))
    done = corral_runc("run", "--bundle", bundle, cid)
    assert_refused(done, f"rootfs/{name}", "symlink")
    assert_nothing_left(runc_root, cid)
    assert sorted(os.listdir(bundle.rootfs / "tmp")) == before


# -- seccomp profiles that have nothing but a default action -------------------------------------


@pytest.mark.parametrize("nnp", [True, False])
@pytest.mark.parametrize(
    ("seccomp", "expect"),
    [
        ({"defaultAction": "SCMP_ACT_ALLOW"}, (0, "ok")),
        ({"defaultAction": "SCMP_ACT_LOG"}, (0, "ok")),
        # Every syscall fails with EPERM, execve of the program too: the runtime reports it.
        ({"defaultAction": "SCMP_ACT_ERRNO"}, (1, "")),
    ],
)
def test_seccomp_with_only_a_default_action(
    corral_runc: Runc,
    bundle: Bundle,
    cid: str,
    seccomp: dict[str, Any],
    nnp: bool,
    expect: tuple[int, str],
) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["linux"]["seccomp"] = seccomp
        config["process"]["noNewPrivileges"] = nnp

    bundle.set(args=["echo", "ok"], edit=edit)
    done = corral_runc("run", "--bundle", bundle, cid)
    assert "ctypes" not in done.stderr and "internal error" not in done.stderr, done.stderr
    assert (done.returncode, done.stdout.strip()) == expect, done.stderr
    if done.returncode:
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert done.stderr.startswith("linux.seccomp: the filter stopped"), done.stderr
