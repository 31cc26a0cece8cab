"""Rootless: ``corral-runc`` run by an unprivileged user (nobody, 65534) with a bundle made by
``corral-runc spec --rootless`` as that user (issue 4).

The user gets a state directory it owns (``--root``, or ``$XDG_RUNTIME_DIR/corral``); the
container has a user namespace mapping its root to the caller, no cgroups (the host's are not
delegated), and its own pid namespace.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from helpers.paths import CORRAL_RUNC_SCRIPT

NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


def open_path_to(path: Path) -> None:
    """Let nobody traverse down to ``path`` (pytest's /tmp/pytest-of-root is 0700)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o011)


class Nobody:
    def __init__(self, home: Path) -> None:
        self.home = home
        home.mkdir()
        os.chown(home, NOBODY, NOBODY)
        open_path_to(home)
        self.root = home / "root"
        self.xdg = home / "xdg"
        for d in (self.root, self.xdg):
            d.mkdir(mode=0o700)
            os.chown(d, NOBODY, NOBODY)
        self.ids: list[tuple[str, bool]] = []

    def __call__(
        self, *args: Any, root: bool = True, check: bool = False, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        env = {"PATH": os.environ["PATH"], "XDG_RUNTIME_DIR": str(self.xdg)}
        argv = [*AS_NOBODY, str(CORRAL_RUNC_SCRIPT)]
        if root:
            argv += ["--root", str(self.root)]
        argv += [str(a) for a in args]
        # Files, not pipes: a detached container keeps its stdout and stderr.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            code = subprocess.run(
                argv,
                stdout=out,
                stderr=err,
                env=env,
                timeout=timeout,
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                check=False,
            ).returncode
            out.seek(0)
            err.seek(0)
            done = subprocess.CompletedProcess(argv, code, out.read(), err.read())
        if check and done.returncode:
            raise AssertionError(f"{argv} -> {done.returncode}\n{done.stdout}{done.stderr}")
        return done

    def bundle(self, bundle: Any, args: list[str]) -> Any:
        """``spec --rootless`` as nobody, with ``args``; the bundle made readable to nobody."""
        self("spec", "--rootless", root=False, check=True)
        config = json.loads((self.home / "config.json").read_text())
        config["process"]["args"] = args
        config["process"]["terminal"] = False
        bundle.write_config(config)
        open_path_to(bundle.rootfs)
        subprocess.run(["chmod", "-R", "a+rX", str(bundle)], check=True)
        return config

    def cleanup(self) -> None:
        for cid, root in self.ids:
            self("delete", "--force", cid, root=root)


@pytest.fixture
def nobody(tmp_path: Path) -> Any:
    user = Nobody(tmp_path / "nobody")
    yield user
    user.cleanup()


def test_rootless_spec_maps_root_to_the_caller(nobody: Any, bundle: Any) -> None:
    config = nobody.bundle(bundle, ["true"])
    assert config["linux"]["uidMappings"] == [{"containerID": 0, "hostID": NOBODY, "size": 1}]
    assert {"type": "user"} in config["linux"]["namespaces"]


def test_rootless_run_is_root_and_pid_1_inside(nobody: Any, bundle: Any, cid: str) -> None:
    nobody.bundle(
        bundle,
        ["sh", "-c", "id -u; id -g; echo $$; ls /proc | grep -c '^[0-9]'; cat /proc/self/uid_map"],
    )
    nobody.ids.append((cid, True))
    done = nobody("run", "--bundle", bundle, cid)
    assert done.returncode == 0, done.stderr
    uid, gid, pid, nprocs, uid_map = done.stdout.splitlines()
    assert (uid, gid, pid) == ("0", "0", "1")
    assert int(nprocs) <= 3  # sh, ls/grep: no host processes
    assert uid_map.split() == ["0", str(NOBODY), "1"]
    assert done.stderr == ""


def test_rootless_cannot_see_or_signal_host_processes(nobody: Any, bundle: Any, cid: str) -> None:
    host = os.getpid()
    nobody.bundle(
        bundle, ["sh", "-c", f"kill -0 {host} 2>&1; echo rc=$?; ls /proc/{host} 2>&1; true"]
    )
    nobody.ids.append((cid, True))
    done = nobody("run", "--bundle", bundle, cid)
    assert done.returncode == 0, done.stderr
    assert "rc=1" in done.stdout and "No such file" in done.stdout


def test_rootless_state_in_xdg_runtime_dir_and_exec(nobody: Any, bundle: Any, cid: str) -> None:
    nobody.bundle(bundle, ["sleep", "30"])
    nobody.ids.append((cid, False))
    nobody("run", "-d", "--bundle", bundle, cid, root=False, check=True)
    assert (nobody.xdg / "corral" / cid).is_dir()
    state = json.loads(nobody("state", cid, root=False, check=True).stdout)
    assert state["status"] == "running" and state["owner"] == str(NOBODY)
    done = nobody("exec", cid, "sh", "-c", "id -u; ps -o pid,comm | wc -l", root=False)
    assert done.returncode == 0, done.stderr
    uid, lines = done.stdout.split()
    assert uid == "0" and int(lines) <= 5  # header, sleep, sh, ps, wc: none of the host's
    nobody("kill", cid, "KILL", root=False, check=True)
    nobody("delete", "--force", cid, root=False, check=True)
    assert not (nobody.xdg / "corral" / cid).exists()


def test_rootless_skips_cgroups_and_says_so_with_debug(nobody: Any, bundle: Any, cid: str) -> None:
    nobody.bundle(bundle, ["true"])
    nobody.ids.append((cid, True))
    done = nobody("--debug", "run", "--bundle", bundle, cid)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("cgroups skipped") == 1
    assert not any(Path("/sys/fs/cgroup").glob(f"*/corral/{cid}"))


def test_rootless_without_a_user_namespace(nobody: Any, bundle: Any, cid: str) -> None:
    nobody.bundle(bundle, ["true"])
    with bundle.edit() as config:
        config["linux"]["namespaces"].remove({"type": "user"})
        del config["linux"]["uidMappings"], config["linux"]["gidMappings"]
    done = nobody("run", "--bundle", bundle, cid)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "linux.namespaces: rootless containers need a user namespace (linux.namespaces type"
        ' "user"); run `corral-runc spec --rootless`'
    ]
    assert os.listdir(nobody.root) == []


def test_rootless_cannot_map_someone_elses_ids(nobody: Any, bundle: Any, cid: str) -> None:
    nobody.bundle(bundle, ["true"])
    with bundle.edit() as config:
        config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 0, "size": 1}]
    done = nobody("run", "--bundle", bundle, cid)
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith("linux.uidMappings[0]: host uids 0-0 are not the caller's")


def test_rootless_cannot_ask_for_limits_it_cannot_get(nobody: Any, bundle: Any, cid: str) -> None:
    nobody.bundle(bundle, ["true"])
    with bundle.edit() as config:
        config["linux"]["resources"] = {"pids": {"limit": 10}}
    done = nobody("run", "--bundle", bundle, cid)
    assert done.returncode != 0
    assert done.stderr.startswith("linux.resources.pids: rootless containers cannot set")
