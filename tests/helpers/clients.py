"""containerd (ctr), podman and dockerd from Debian's packages, private to a test, on corral-runc.

Each daemon (or, for podman, each command) runs with every root, state directory and socket in
a directory the caller gives (a pytest tmp dir), inside a network namespace made for it: lo is up
and dockerd's bridge, veths and iptables rules live there, never on the host. The namespace has
no name once made (the fixture holds it open by a file descriptor), so nothing of it can leak:
it goes away with the last daemon in it.

    with clients.containerd(tmp_path) as ctrd:       # also clients.dockerd, clients.podman
        ctrd.ctr("run", *ctrd.run_flags(runtime_under_test()), "--rm", ctrd.image, new_cid(),
                 "true")

The runtime under test is ``$CORRAL_CLIENT_RUNTIME``: ``corral`` (the default, the lean
launcher ``/usr/local/bin/corral-runc`` that scripts/install.sh writes), ``runc`` (to check that
a test is right: every scenario must pass with it), or the absolute path of any runc-compatible
binary. Each client reaches it as its users would: ``ctr run --runc-binary``, ``podman
--runtime``, ``dockerd --add-runtime`` with ``docker run --runtime``.

What cannot be made private, and is cleaned up after:
- containerd 1.6 puts its shims' sockets in /run/containerd/s whatever its state dir (they go
  when the shims exit; the directory is removed if the daemon made it);
- dockerd makes /run/docker/plugins, and the containerd it starts /opt/containerd (each
  removed if it made it);
- podman keeps a blob-info cache in /var/lib/containers/cache (a cache, left as it is), and the
  runtime's state stays in the runtime's default root (see ``Podman.cli``).

The image is a busybox image made locally (``corral image busybox`` + ``corral save``) and
loaded into each client's store: nothing is pulled.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import re
import secrets
import shutil
import signal
import struct
import subprocess
import tempfile
import termios
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

from helpers.engine import corral
from helpers.runc import RuncError, new_cid

RUNTIME_ENV = "CORRAL_CLIENT_RUNTIME"
CORRAL_RUNC = "/usr/local/bin/corral-runc"
CTR = "/usr/bin/ctr"
CONTAINERD = "/usr/bin/containerd"
DOCKERD = "/usr/sbin/dockerd"
DOCKER = "/usr/bin/docker"  # Debian's client, not another one earlier on PATH
PODMAN = "/usr/bin/podman"
# containerd's cgroups are /<namespace>/<id>; docker's /<parent>/<id>; podman's (cgroupfs)
# /<parent>/libpod-<id> (podman has no daemon: each run gets --cgroup-parent). The parents are
# not named corral* so that the leak check, which removes new cgroups named so, leaves them be;
# what a test's containers leave below them is looked for by ``leftover_cgroups``.
CTR_NAMESPACE = "clients"
DOCKER_CGROUP_PARENT = "/clients-docker"
PODMAN_CGROUP_PARENT = "/clients-podman"
DEFAULT_TIMEOUT = 60.0

# The scenarios' programs (busybox sh), the same under every client.
TRAP_TERM = 'trap "echo bye; exit 0" TERM; echo started; while :; do sleep 0.1; done'
IGNORE_TERM = 'trap "" TERM; echo started; while :; do sleep 0.1; done'
COUNTER = "i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done"
# With pids.max 10 the 5th fork succeeds and one before the 20th fails: sh exits 2, "can't fork".
FORKS = ("i=0; while [ $i -lt 20 ]; do sleep 10 & i=$((i+1)); [ $i = 5 ] && echo five; done; "
         "echo all")


# -- the runtime under test ----------------------------------------------------------------------


@dataclass(frozen=True)
class Runtime:
    """A runc-compatible runtime: ``name`` as the clients know it, and its binary."""

    name: str
    path: str


def runtime_named(value: str) -> Runtime:
    """``corral``, ``runc`` or an absolute path to a runc-compatible binary."""
    if value == "corral":
        return Runtime("corral", CORRAL_RUNC)
    if value == "runc":
        found = shutil.which("runc")
        if found is None:
            raise RuntimeError("runc is not installed (scripts/install.sh installs it)")
        return Runtime("runc", found)
    if not os.path.isabs(value):
        raise RuntimeError(f"{RUNTIME_ENV}={value!r}: say corral, runc or an absolute path")
    return Runtime("under-test", value)


def runtime_under_test() -> Runtime:
    """The runtime the client tests run: ``$CORRAL_CLIENT_RUNTIME``, corral by default."""
    return runtime_named(os.environ.get(RUNTIME_ENV) or "corral")


# -- running a client ----------------------------------------------------------------------------


class Cli:
    """A client's command line; ``cli(*args)`` runs it and returns ``CompletedProcess[str]``.

    Output goes through temporary files, not pipes, so a command that leaves a process holding
    its stdout (a detached container's monitor) still returns when the command exits. stdin is
    /dev/null unless ``input=`` is given.
    """

    def __init__(
        self, argv: Sequence[str], env: dict[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT, cwd: Path | None = None,
    ) -> None:
        self.prefix = list(argv)
        self.env = env
        self.timeout = timeout
        self.cwd = cwd

    def argv(self, *args: str | os.PathLike[str]) -> list[str]:
        return [*self.prefix, *(os.fspath(a) for a in args)]

    def __call__(
        self, *args: str | os.PathLike[str], input: str | None = None,
        timeout: float | None = None, check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        argv = self.argv(*args)
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                stdout=out, stderr=err, env=self.env, cwd=self.cwd,
            )
            try:
                proc.communicate(
                    input.encode() if input is not None else None,
                    timeout=timeout or self.timeout,
                )
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise
            done = subprocess.CompletedProcess(argv, proc.returncode, _read(out), _read(err))
        if check and done.returncode != 0:
            raise RuncError(done.returncode, argv, done.stdout, done.stderr)
        return done

    def ok(self, *args: str | os.PathLike[str], timeout: float | None = None) -> str:
        """Run; fail (showing the command and its output) unless it exits 0; return stdout."""
        return self(*args, timeout=timeout, check=True).stdout

    def pty(self, *args: str | os.PathLike[str]) -> Pty:
        """Start the command with a new pty as its controlling terminal (stdin, out and err)."""
        return Pty(self.argv(*args), env=self.env, cwd=self.cwd)


def _read(f: IO[bytes]) -> str:
    f.seek(0)
    return f.read().decode("utf-8", "replace")


class Pty:
    """A command on a pty of its own, driven from the master side as a user's terminal would."""

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        # setsid -c: a new session whose controlling terminal is the pty (stdin).
        self.proc = subprocess.Popen(
            ["setsid", "-c", *argv], stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd,
        )
        os.close(slave)
        self.output = b""

    def read_until(self, needle: bytes, timeout: float = 20.0) -> bytes:
        """Read until ``needle`` has come (fail with what came otherwise); all output so far."""
        import select

        deadline = time.monotonic() + timeout
        while needle not in self.output:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([self.master], [], [], left)
            if not ready:
                continue
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: every slave fd is closed
                chunk = b""
            if not chunk:
                break
            self.output += chunk
        assert needle in self.output, f"{needle!r} never came; the terminal shows {self.output!r}"
        return self.output

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait(self, timeout: float = 20.0) -> int:
        """Read what is left until the command exits; its exit status."""
        import select

        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:
                    chunk = b""
                self.output += chunk
        return self.proc.wait(timeout=max(deadline - time.monotonic(), 0.1))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)

    def __enter__(self) -> Pty:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_for(what: str, probe: Callable[[], bool], timeout: float = 20.0) -> float:
    """Poll ``probe`` until it is true; the seconds it took. Fails naming ``what``."""
    start = time.monotonic()
    while not probe():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - start


# -- the network namespace -----------------------------------------------------------------------


class NetNS:
    """A new network namespace with lo up, held by an open fd and by the processes in it.

    It is made with ``ip netns add`` and its name removed at once, so no /run/netns entry is
    left to leak or to be removed under us; ``enter`` is ``nsenter --net=/proc/<us>/fd/<fd>``.
    """

    def __init__(self) -> None:
        name = f"corral-clients-{secrets.token_hex(4)}"
        _run("ip", "netns", "add", name)
        try:
            self.fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
        finally:
            _run("ip", "netns", "delete", name)
        self.path = f"/proc/{os.getpid()}/fd/{self.fd}"
        _run(*self.enter, "ip", "link", "set", "lo", "up")

    @property
    def enter(self) -> list[str]:
        return ["nsenter", f"--net={self.path}"]

    def close(self) -> None:
        os.close(self.fd)


def _run(*argv: str, timeout: float = 60) -> str:
    done = subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuncError(done.returncode, list(argv), done.stdout, done.stderr)
    return done.stdout


# -- the image -----------------------------------------------------------------------------------


def busybox_archive(where: Path) -> Path:
    """A docker-archive of the busybox image (static busybox, one symlink per applet)."""
    root = where / "engine"
    archive = where / "busybox.tar"
    corral(root, "image", "busybox")
    corral(root, "save", "-o", str(archive), "busybox")
    shutil.rmtree(root)
    return archive


# -- daemons -------------------------------------------------------------------------------------


class Daemon:
    """A daemon process with its output in a log file, stopped by ``stop``."""

    def __init__(self, name: str, argv: Sequence[str], log: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                start_new_session=True,
            )

    def wait_ready(self, probe: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not probe():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s:\n{self.tail()}")
            time.sleep(0.05)

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def reap_orphans() -> None:
    """Reap the shims and conmons that exited as our orphans: the test session is a subreaper
    (tests/helpers/shim.py), so they come to it when their parent exits, and nobody waits."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.find(b"(") + 1:stat.rfind(b")")]
        state, ppid = stat.rpartition(b")")[2].split()[:2]
        if (state == b"Z" and int(ppid) == os.getpid()
                and comm in (b"containerd-shim", b"conmon", b"podman")):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(int(entry), os.WNOHANG)


def _processes_mentioning(marker: str) -> list[int]:
    """Live processes (not zombies) whose command line mentions ``marker``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                if f.read().rpartition(b")")[2].split()[0] == b"Z":
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().decode("utf-8", "replace")
        except (OSError, IndexError):
            continue
        if marker in cmdline:
            pids.append(int(entry))
    return pids


def _cleanup_below(base: Path, made: Sequence[Path]) -> None:
    """After the daemons: kill what still mentions ``base`` (shims, conmon), unmount what is
    mounted below it, remove it, and remove the host directories in ``made`` if now empty."""
    marker = str(base)
    for _ in range(2):
        pids = _processes_mentioning(marker)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if not pids:
            break
        time.sleep(0.2)
    with open("/proc/self/mountinfo") as f:
        targets = [line.split()[4] for line in f]
    for target in sorted((t for t in targets if t.startswith(marker + "/")), reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True, check=False)
    shutil.rmtree(base, ignore_errors=True)
    for directory in made:
        for dirpath, _dirs, _files in sorted(os.walk(directory, topdown=False), reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)


def _hierarchies() -> list[Path]:
    return [h for h in Path("/sys/fs/cgroup").iterdir() if h.is_dir() and not h.is_symlink()]


def _remove_cgroup(name: str) -> None:
    """Remove the (empty) cgroup directory ``name`` from every hierarchy, children first."""
    for hierarchy in _hierarchies():
        top = hierarchy / name.strip("/")
        if not top.is_dir():
            continue
        for dirpath, _dirs, _files in sorted(os.walk(top, topdown=False), reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)


def container_cgroups(parent: str) -> set[str]:
    """The container cgroups (child directories) below ``parent``, in every hierarchy."""
    found: set[str] = set()
    for hierarchy in _hierarchies():
        top = hierarchy / parent.strip("/")
        if top.is_dir():
            found.update(str(child) for child in top.iterdir() if child.is_dir())
    return found


def leftover_cgroups(parent: str, before: set[str]) -> list[str]:
    """Container cgroups below ``parent`` that were not there ``before``; each is removed (if
    empty of processes) and named in the list."""
    left = sorted(container_cgroups(parent) - before)
    for child in left:
        for dirpath, _dirs, _files in sorted(os.walk(child, topdown=False), reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)
    return left


def _absent(*paths: str) -> list[Path]:
    return [Path(p) for p in paths if not os.path.exists(p)]


class Client:
    """What the three clients share: their containers' cgroup parent, and the check after
    each test (``with client.checked(): ...``)."""

    cgroup_parent = ""
    image = ""

    def load(self, archive: Path) -> None:
        """Load the docker-archive and set ``image`` to its name."""
        raise NotImplementedError

    def warm_up(self) -> None:
        """Run a container with runc: checks the client, and makes the parent cgroups before
        any test's leak check looks."""
        raise NotImplementedError

    def remove_all(self) -> list[str]:
        """Remove every container; the ids there were."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the daemon, if there is one."""

    @contextlib.contextmanager
    def checked(self) -> Iterator[None]:
        """Around a test: afterwards remove its containers, and fail if they left cgroups below
        the parent that were not there before (the leak check does not know docker's and
        podman's cgroup names)."""
        before = container_cgroups(self.cgroup_parent)
        yield
        self.remove_all()
        reap_orphans()
        left = leftover_cgroups(self.cgroup_parent, before)
        if left:
            import pytest

            pytest.fail("the test's containers left these cgroups (now removed):\n  "
                        + "\n  ".join(left), pytrace=False)


ClientT = TypeVar("ClientT", bound=Client)


@contextlib.contextmanager
def _session(base: Path, make: Callable[[NetNS], ClientT], host_dirs: Sequence[str],
             ) -> Iterator[ClientT]:
    """A network namespace, the client made in it, the busybox image loaded, a warm-up; then
    everything stopped and removed, and the ``host_dirs`` it made removed if empty."""
    made = _absent(*host_dirs)
    base.mkdir(parents=True, exist_ok=True)
    netns = NetNS()
    client = None
    try:
        client = make(netns)
        client.load(busybox_archive(base))
        client.warm_up()
        yield client
    finally:
        if client is not None:
            client.remove_all()
            client.stop()
        netns.close()
        _cleanup_below(base, made)
        if client is not None:
            _remove_cgroup(client.cgroup_parent)


class Containerd(Client):
    """containerd with a private root, state, sockets and plugin dirs; ``ctr`` talks to it."""

    def __init__(self, base: Path, netns: NetNS) -> None:
        self.base = base
        self.sock = base / "containerd.sock"
        config = base / "config.toml"
        config.write_text(
            "version = 2\n"
            f'root = "{base}/root"\nstate = "{base}/state"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{self.sock}"\n'
            f'[ttrpc]\n  address = "{base}/ttrpc.sock"\n'
            f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{base}/opt"\n'
        )
        self.cgroup_parent = CTR_NAMESPACE
        self.fifo_dir = str(base / "fifo")
        self.ctr = Cli([CTR, "--address", str(self.sock), "--namespace", CTR_NAMESPACE])
        self.daemon = Daemon(
            "containerd", [*netns.enter, CONTAINERD, "--config", str(config)],
            base / "containerd.log",
        )
        self.daemon.wait_ready(lambda: self.ctr("version").returncode == 0)

    def run_flags(self, runtime: Runtime) -> list[str]:
        """``ctr run`` flags that make it use ``runtime``, with private runtime and fifo dirs."""
        return [
            "--runc-binary", runtime.path,
            "--runc-root", str(self.base / f"runtime-{runtime.name}"),
            "--fifo-dir", self.fifo_dir,
        ]

    def exec_flags(self, exec_id: str) -> list[str]:
        """``ctr tasks exec`` flags: the process's id and a private fifo dir."""
        return ["--exec-id", exec_id, "--fifo-dir", self.fifo_dir]

    def load(self, archive: Path) -> None:
        self.ctr.ok("images", "import", archive)
        self.image = self.ctr.ok("images", "ls", "--quiet").split()[0]

    def warm_up(self) -> None:
        self.ctr.ok("run", *self.run_flags(runtime_named("runc")), "--rm", self.image,
                    f"warmup-{secrets.token_hex(4)}", "true")

    def remove_all(self) -> list[str]:
        """Kill and delete every task and container; the ids there were."""
        ids = self.ctr.ok("containers", "ls", "--quiet").split()
        for cid in ids:
            self.ctr("tasks", "kill", "--signal", "SIGKILL", cid)
            wait_for(f"task {cid} to stop", functools.partial(self._not_running, cid))
            self.ctr("tasks", "delete", "--force", cid)
            self.ctr("containers", "delete", cid)
        return ids

    def _not_running(self, cid: str) -> bool:
        return "RUNNING" not in self.task_status(cid)

    def task_status(self, cid: str) -> str:
        """The STATUS column of ``ctr tasks ls`` for ``cid`` ('' when it has no task)."""
        for line in self.ctr.ok("tasks", "ls").splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == cid:
                return fields[-1]
        return ""

    def stop(self) -> None:
        self.daemon.stop()


def containerd(base: Path) -> contextlib.AbstractContextManager[Containerd]:
    """A private containerd in a network namespace of its own, with the busybox image."""
    return _session(base, lambda netns: Containerd(base, netns), ["/run/containerd"])


class Dockerd(Client):
    """dockerd (with the containerd it manages) on private roots, socket, pid file and key."""

    def __init__(self, base: Path, netns: NetNS, runtimes: Sequence[Runtime]) -> None:
        self.base = base
        self.netns = netns
        sock = base / "docker.sock"
        config = base / "daemon.json"
        # dockerd 20.10 writes its trust key to /etc/docker/key.json unless told otherwise (the
        # option has no command-line flag any more).
        config.write_text(json.dumps({"deprecated-key-path": str(base / "key.json")}) + "\n")
        self.cgroup_parent = DOCKER_CGROUP_PARENT
        added = [f"--add-runtime={r.name}={r.path}" for r in runtimes if r.name != "runc"]
        # The CLI's own config dir, with an empty config (podman reads it too, for auth).
        (base / "cli").mkdir()
        (base / "cli" / "config.json").write_text("{}\n")
        self.docker = Cli(
            [DOCKER, "--host", f"unix://{sock}"],
            env={**os.environ, "DOCKER_CONFIG": str(base / "cli")},
        )
        self.image = "busybox:latest"
        self.daemon = Daemon("dockerd", [
            *netns.enter, DOCKERD, "--config-file", str(config),
            "--data-root", str(base / "data"), "--exec-root", str(base / "exec"),
            "--pidfile", str(base / "dockerd.pid"), "--host", f"unix://{sock}",
            "--cgroup-parent", DOCKER_CGROUP_PARENT, *added,
        ], base / "dockerd.log")
        self.daemon.wait_ready(lambda: self.docker("version").returncode == 0)

    def load(self, archive: Path) -> None:
        self.docker.ok("load", "--input", archive)

    def warm_up(self) -> None:
        self.docker.ok("run", "--rm", "--runtime", "runc", self.image, "true")

    def remove_all(self) -> list[str]:
        ids = self.docker.ok("ps", "--all", "--quiet").split()
        if ids:
            self.docker("rm", "--force", *ids)
        return ids

    def stop(self) -> None:
        self.daemon.stop()


def dockerd(base: Path, runtimes: Sequence[Runtime] = ()
            ) -> contextlib.AbstractContextManager[Dockerd]:
    """A private dockerd in a network namespace of its own (its bridge and iptables rules are
    there), with ``runtimes`` added (runc is dockerd's own) and the busybox image."""
    # the containerd that dockerd starts has no setting for its opt dir
    host_dirs = ["/run/docker", "/run/containerd", "/opt/containerd"]
    return _session(base, lambda netns: Dockerd(base, netns, runtimes), host_dirs)


class Podman(Client):
    """podman with private storage, run root, tmp dir, events log and configuration files.

    Every command runs inside the network namespace (containers get none: ``netns = "none"``).
    ``cli(runtime)`` is the command line for containers run by ``runtime``.
    """

    def __init__(self, base: Path, netns: NetNS) -> None:
        self.base = base
        self.netns = netns
        self.cgroup_parent = PODMAN_CGROUP_PARENT
        # podman sets the container's RLIMIT_NOFILE and RLIMIT_NPROC to 1048576 by default;
        # neither runc nor corral-runc can raise a hard limit above their own without
        # CAP_SYS_RESOURCE (which some hosts, this CI's VM among them, withhold), so create fails
        # ("error setting rlimit type 7: operation not permitted"). Set lower defaults, as a
        # podman user on such a host does.
        ulimits = '["nofile=1024:1024", "nproc=4096:4096"]'
        conf = base / "containers.conf"
        conf.write_text(
            f"[containers]\ndefault_ulimits = {ulimits}\nnetns = \"none\"\n"
            "log_driver = \"k8s-file\"\n"
            f"[engine]\nevents_logfile_path = \"{base}/events.log\"\n"
            f"image_copy_tmp_dir = \"{base}/tmp\"\n"
        )
        storage = base / "storage.conf"
        storage.write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{base}/root"\n'
            f'runroot = "{base}/runroot"\n'
        )
        self.env = {
            **os.environ, "CONTAINERS_CONF": str(conf), "CONTAINERS_STORAGE_CONF": str(storage),
        }
        (base / "tmp").mkdir(exist_ok=True)

    def cli(self, runtime: Runtime) -> Cli:
        return Cli([
            *self.netns.enter, PODMAN, "--root", str(self.base / "root"),
            "--runroot", str(self.base / "runroot"), "--tmpdir", str(self.base / "libpod"),
            "--cgroup-manager", "cgroupfs", "--events-backend", "file",
            "--network-config-dir", str(self.base / "networks"),
            "--volumepath", str(self.base / "volumes"),
            # No --runtime-flag root=...: podman 4.3 does not pass it on to the `container
            # cleanup` that conmon runs when a container exits, whose `delete` then finds no
            # state and leaves the container's cgroups (and state) behind. So the runtime keeps
            # its state in its default root (/run/runc, /run/corral), as under a rootful podman.
            "--runtime", runtime.path,
            # In the base dir: conmon 2.1.6, given no --persist-dir by podman 4.3, writes the
            # "oom" file of an OOM kill into its working directory.
        ], env=self.env, cwd=self.base)

    def load(self, archive: Path) -> None:
        loaded = self.cli(runtime_named("runc")).ok("load", "--input", archive)
        found = re.search(r"Loaded image(?:\(s\))?: (\S+)", loaded)
        assert found, loaded
        self.image = found.group(1)

    def warm_up(self) -> None:
        self.cli(runtime_named("runc")).ok("run", "--rm", "--cgroup-parent", self.cgroup_parent,
                                           self.image, "true")

    def remove_all(self) -> list[str]:
        podman = self.cli(runtime_named("runc"))
        ids = podman.ok("ps", "--all", "--quiet").split()
        if ids:
            podman("rm", "--force", "--time", "0", *ids)
            # conmon runs `podman container cleanup` as the container exits, racing the rm; the
            # last podman to exit unmounts the storage's private mount only if no container is
            # mounted then. Wait for every conmon and cleanup to finish, and let one more podman
            # see that nothing is mounted.
            wait_for("podman's conmon and cleanup processes to exit",
                     lambda: not _processes_mentioning(str(self.base)))
            podman.ok("ps", "--all", "--quiet")
        return ids


def podman(base: Path) -> contextlib.AbstractContextManager[Podman]:
    """podman's private roots in ``base``, the busybox image loaded, a network namespace."""
    return _session(base, lambda netns: Podman(base, netns), [])


# -- what the scenarios read ---------------------------------------------------------------------


def cgroup_file(pid: int, controller: str, name: str) -> str:
    """The content of ``name`` in the v1 ``controller`` cgroup that ``pid`` is in."""
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _hid, controllers, path = line.rstrip("\n").split(":", 2)
            if controller in controllers.split(","):
                return Path(f"/sys/fs/cgroup/{controller}{path}/{name}").read_text().strip()
    raise AssertionError(f"pid {pid} is in no {controller} cgroup")


def inspect(cli: Cli, what: str, template: str) -> str:
    """``inspect --format TEMPLATE WHAT`` (docker and podman), stripped."""
    return cli.ok("inspect", "--format", template, what).strip()


# -- scenarios: docker and podman take the same verbs and flags ----------------------------------
# ``cli`` is the client, ``run`` the flags every ``run`` gets (docker: --runtime NAME), ``image``
# the busybox image. The ctr scenarios are in tests/e2e/test_clients_containerd.py.


def expect(actual: object, wanted: object, context: object = None) -> None:
    """``assert actual == wanted`` that shows both, and ``context`` if given (pytest rewrites
    the asserts of test modules, not of helpers)."""
    if actual != wanted:
        more = "" if context is None else f"\n{context!r}"
        raise AssertionError(f"got {actual!r}, wanted {wanted!r}{more}")


def _started(cli: Cli, name: str) -> None:
    wait_for(f"{name} to print 'started'", lambda: "started" in cli.ok("logs", name))


def run_rm_output_and_exit_code(cli: Cli, run: Sequence[str], image: str) -> None:
    done = cli("run", "--rm", *run, image, "sh", "-c", "echo out; echo err >&2; exit 3")
    expect((done.returncode, done.stdout, done.stderr), (3, "out\n", "err\n"))
    expect(cli.ok("ps", "--all", "--quiet"), "")


def detached_exec_logs_stop_rm(cli: Cli, run: Sequence[str], image: str) -> None:
    name = new_cid()
    cli.ok("run", "--detach", "--name", name, *run, image, "sh", "-c", TRAP_TERM)
    _started(cli, name)
    done = cli("exec", name, "sh", "-c", "echo $((6 * 7)); echo oops >&2; exit 5")
    expect((done.returncode, done.stdout, done.stderr), (5, "42\n", "oops\n"))
    with cli.pty("exec", "--tty", name, "sh", "-c", "tty; exit 4") as term:
        expect(term.wait(), 4, term.output)
        assert b"/dev/pts/" in term.output, term.output
    begin = time.monotonic()
    cli.ok("stop", "--time", "20", name)
    assert time.monotonic() - begin < 10, "TERM was not honoured: stop waited for its timeout"
    expect(inspect(cli, name, "{{.State.Status}} {{.State.ExitCode}}"), "exited 0")
    expect(cli.ok("logs", name), "started\nbye\n")
    cli.ok("rm", name)
    expect(cli.ok("ps", "--all", "--quiet"), "")


def stop_escalates_to_kill(cli: Cli, run: Sequence[str], image: str) -> None:
    name = new_cid()
    cli.ok("run", "--detach", "--name", name, *run, image, "sh", "-c", IGNORE_TERM)
    _started(cli, name)
    begin = time.monotonic()
    cli.ok("stop", "--time", "1", name)
    took = time.monotonic() - begin
    assert 1 <= took < 10, f"stop --time 1 took {took:.1f} s"
    expect(inspect(cli, name, "{{.State.Status}} {{.State.ExitCode}}"), "exited 137")


def interactive_tty(cli: Cli, run: Sequence[str], image: str) -> None:
    with cli.pty("run", "--interactive", "--tty", "--rm", *run, image, "sh") as term:
        expect_shell_session(term)


def expect_shell_session(term: Pty) -> None:
    """Drive busybox sh on a terminal: its tty, a sum, and its exit status."""
    term.read_until(b"# ")
    if b"\x1b[6n" in term.output:  # busybox's line editor asks where the cursor is
        term.write(b"\x1b[1;1R")  # and a terminal answers
    term.write(b"tty; echo $((6 * 7)); exit 7\r")
    status = term.wait()
    lines = term.output.replace(b"\r", b"").split(b"\n")
    expect((status, b"/dev/pts/0" in lines, b"42" in lines), (7, True, True), term.output)


def pause_and_resume(cli: Cli, run: Sequence[str], image: str) -> None:
    name = new_cid()
    cli.ok("run", "--detach", "--name", name, *run, image, "sh", "-c", COUNTER)

    def count() -> int:
        return len(cli.ok("logs", name).split())

    wait_for("the counter to count", lambda: count() > 3)
    cli.ok("pause", name)
    expect(inspect(cli, name, "{{.State.Status}}"), "paused")
    pid = int(inspect(cli, name, "{{.State.Pid}}"))
    expect(cgroup_file(pid, "freezer", "freezer.state"), "FROZEN")
    stopped_at = count()
    time.sleep(0.5)
    assert count() == stopped_at, "the counter went on while paused"
    cli.ok("unpause", name)
    expect(inspect(cli, name, "{{.State.Status}}"), "running")
    wait_for("the counter to go on", lambda: count() > stopped_at + 3)


def oom_kill_is_reported(cli: Cli, run: Sequence[str], image: str) -> None:
    name = new_cid()
    done = cli("run", "--name", name, "--memory", "32m", "--memory-swap", "32m", *run, image,
               "tail", "/dev/zero")
    expect(done.returncode, 137, done.stderr)
    expect(inspect(cli, name, "{{.State.OOMKilled}} {{.State.ExitCode}}"), "true 137")


def pids_limit(cli: Cli, run: Sequence[str], image: str) -> None:
    done = cli("run", "--rm", "--pids-limit", "10", *run, image, "sh", "-c", FORKS)
    expect((done.returncode, done.stdout), (2, "five\n"), done.stderr)
    assert "can't fork" in done.stderr, done.stderr


def update(cli: Cli, run: Sequence[str], image: str, pids: bool) -> None:
    """``update`` of memory, swap, CPU shares (and pids, where the client can), read back from
    the container's cgroups."""
    name = new_cid()
    cli.ok("run", "--detach", "--name", name, "--memory", "32m", "--memory-swap", "64m",
           *(["--pids-limit", "20"] if pids else []), *run, image, "sh", "-c", TRAP_TERM)
    pid = int(inspect(cli, name, "{{.State.Pid}}"))
    expect(cgroup_file(pid, "memory", "memory.limit_in_bytes"), str(32 << 20))
    cli.ok("update", "--memory", "64m", "--memory-swap", "128m", "--cpu-shares", "512",
           *(["--pids-limit", "50"] if pids else []), name)
    expect(cgroup_file(pid, "memory", "memory.limit_in_bytes"), str(64 << 20))
    expect(cgroup_file(pid, "memory", "memory.memsw.limit_in_bytes"), str(128 << 20))
    expect(cgroup_file(pid, "cpu", "cpu.shares"), "512")
    if pids:
        expect(cgroup_file(pid, "pids", "pids.max"), "50")


def restart_on_failure(cli: Cli, run: Sequence[str], image: str) -> None:
    name = new_cid()
    cli.ok("run", "--detach", "--name", name, "--restart", "on-failure:2", *run, image,
           "sh", "-c", "echo ran; exit 1")
    wait_for("two restarts, then exited", lambda: inspect(
        cli, name, "{{.RestartCount}} {{.State.Status}}") == "2 exited", timeout=30)
    expect(cli.ok("logs", name), "ran\nran\nran\n")
    expect(inspect(cli, name, "{{.State.ExitCode}}"), "1")


# The scenarios docker and podman run alike (update and the OOM kill differ, see the tests).
SHARED_SCENARIOS = (
    run_rm_output_and_exit_code,
    detached_exec_logs_stop_rm,
    stop_escalates_to_kill,
    interactive_tty,
    pause_and_resume,
    pids_limit,
    restart_on_failure,
)
