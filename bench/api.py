"""The sandbox API from a warm process against spawning runc and crun; ``corral run`` options.

::

    sudo .venv/bin/python bench/api.py                # 30 runs of each after 3 warm-ups
    sudo .venv/bin/python bench/api.py --runs 100 --json

What each row times (wall clock, ``time.perf_counter``), interleaved round-robin so drift in the
machine's load falls on every row alike:

- ``api``           ``corral.run("busybox", ["true"])`` in this (warm) process: the whole life of
                    an engine container -- create (record, snapshot, config), mount the overlay,
                    make the network namespace, run, wait, tear down, remove.
- ``api+options``   the same with ``memory="64m", pids=64, volumes={DIR: "/data"}``.
- ``runc`` ``crun`` ``RUNTIME --root R run --bundle B ID`` on a busybox bundle running /bin/true
                    (the rootfs is a plain directory: no engine, no overlay, no network
                    namespace file), spawned (posix_spawn + wait4) and timed by the lean
                    ``python3 -IS`` worker of bench/runc_startup.py.
- ``crun (mntns)``  crun 1.8 refuses a hybrid cgroup host ("cgroups in hybrid mode not
                    supported", even with ``--cgroup-manager=disabled``), so on one its worker
                    runs in a private mount namespace with a tmpfs over /sys/fs/cgroup/unified
                    (``unshare -m``), where crun sees plain cgroup v1, as bench/memory_floor.py
                    does; ``runc (mntns)`` is runc from the same kind of worker, for comparison.
- ``cli``           ``corral run --rm --network none busybox true`` through a lean launcher like
                    scripts/install.sh's (a fresh interpreter each time);
- ``cli+options``   the same with ``-v DIR:/data -m 64m --pids-limit 64``.

It holds the test runs' flock (/run/corral-tests.lock) while it runs: their leak check would
remove its containers. The API row does more than the runtime rows (an engine container, not a
bundle); the issue's target is that it is still faster than spawning runc, and that the
options add under 2 ms.
Exits 0 whatever the figures, 1 when a run fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from runc_startup import percentile  # (bench/ is on sys.path: the scripts' folder)

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))
UNIFIED = "/sys/fs/cgroup/unified"

#: The flock that integration and e2e test runs take turns on (tests/conftest.py TEST_LOCK).
#: Their leak check removes every container-like thing that appears during a test (processes
#: in other PID namespaces, mounts under /tmp, cgroups named corral*), so on a shared machine a
#: benchmark running beside them loses its containers; it holds the lock while it runs.
TEST_LOCK = "/run/corral-tests.lock"


def hold_test_lock() -> int:
    """Wait for the tests' lock and hold it (until this process exits); its fd."""
    import fcntl

    fd = os.open(TEST_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"waiting for {TEST_LOCK} (a test run holds it)", flush=True)
        fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


class Spawner:
    """runc_startup.py's lean worker (``python3 -IS``; it times posix_spawn + wait4), started
    behind ``prefix`` (``unshare -m ...``) if given."""

    def __init__(self, output: str, prefix: list[str] | None = None) -> None:
        from runc_startup import WORKER

        self.output = output
        python = str(REPO / ".venv" / "bin" / "python3")
        self._proc = subprocess.Popen([*(prefix or []), python, "-IS", "-c", WORKER, output],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip

    def run(self, argv: list[str]) -> float:
        """Run ``argv`` (absolute program path); its wall time in ms. RuntimeError if it fails."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(b"\0".join(os.fsencode(a) for a in argv) + b"\n")
        self._proc.stdin.flush()
        answer = self._proc.stdout.readline().split()
        if len(answer) != 3 or answer[0] != b"0":
            with open(self.output, errors="replace") as f:
                raise RuntimeError(f"{' '.join(argv)}: {f.read().strip()[-300:]}")
        return int(answer[1]) / 1e6

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._proc.wait()


def private_cgroup_v1() -> list[str]:
    """A prefix that runs a command in a private mount namespace where a hybrid host's cgroup2
    tree (``/sys/fs/cgroup/unified``) is hidden under a tmpfs: crun 1.8 then sees plain v1."""
    script = f"mount --make-rprivate / && mount -t tmpfs none {UNIFIED} && exec \"$@\""
    return ["unshare", "-m", "sh", "-c", script, "sh"]


def lean_launcher(path: Path) -> str:
    """A ``corral`` launcher for this checkout like scripts/install.sh's (``python3 -IS``)."""
    import sysconfig

    python = REPO / ".venv" / "bin" / "python3"
    path.write_text(
        f"#!{python} -IS\nimport sys\nsys.path.insert(0, {str(REPO / 'src')!r})\n"
        f"sys.path.append({sysconfig.get_paths()['purelib']!r})\n"
        "from corral.cli.main import main; sys.exit(main())\n"
    )
    path.chmod(0o755)
    return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import corral
    from corral.bundle import make_busybox_bundle
    from corral.engine.engine import Engine

    hold_test_lock()
    work = Path(tempfile.mkdtemp(prefix="corral-bench-api-"))
    corral_cli = lean_launcher(work / "corral")
    spawners: list[Spawner] = []
    try:
        engine = Engine(work / "root")
        with engine.locked():
            engine.images.ensure_busybox()
        data = work / "data"
        data.mkdir()
        bundle = make_busybox_bundle(str(work / "bundle"), ["/bin/true"])
        counter = iter(range(1 << 30))

        def api() -> None:
            result = corral.run("busybox", ["true"], engine=engine)
            if result.exit_code != 0:
                raise RuntimeError(f"corral.run: exit {result.exit_code}: {result.stderr!r}")

        def api_options() -> None:
            result = corral.run("busybox", ["true"], engine=engine, memory="64m", pids=64,
                                volumes={str(data): "/data"})  # fmt: skip
            if result.exit_code != 0:
                raise RuntimeError(f"corral.run: exit {result.exit_code}: {result.stderr!r}")

        def spawn(runtime: str, spawner: Spawner) -> Callable[[], float]:
            program = shutil.which(runtime) or runtime

            def go() -> float:
                cid = f"bench-{next(counter)}"
                return spawner.run([program, "--root", str(work / runtime), "run", "--bundle",
                                    bundle, cid])  # fmt: skip

            return go

        def cli(*flags: str) -> Callable[[], None]:
            def go() -> None:
                cmd = [corral_cli, "--root", str(work / "root"), "run", "--rm", "--network",
                       "none", *flags, "busybox", "true"]  # fmt: skip
                done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True)
                if done.returncode != 0:
                    raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.decode()[-300:]}")

            return go

        rows: dict[str, Callable[[], float | None]] = {"api": api, "api+options": api_options}
        plain = Spawner(str(work / "spawn.out"))
        spawners.append(plain)
        hybrid = os.path.isdir(UNIFIED) and os.path.ismount(UNIFIED)
        if hybrid:
            private = Spawner(str(work / "spawn-mntns.out"), private_cgroup_v1())
            spawners.append(private)
        if shutil.which("runc"):
            rows["runc"] = spawn("runc", plain)
        skipped: list[str] = []
        if shutil.which("crun"):
            if hybrid:
                rows["crun (mntns)"] = spawn("crun", private)
                if shutil.which("runc"):
                    rows["runc (mntns)"] = spawn("runc", private)
            else:
                rows["crun"] = spawn("crun", plain)
        else:
            skipped.append("crun: not installed")
        rows["cli"] = cli()
        rows["cli+options"] = cli("-v", f"{data}:/data", "-m", "64m", "--pids-limit", "64")
        samples: dict[str, list[float]] = {name: [] for name in rows}
        for i in range(args.warmup + args.runs):
            for name, fn in rows.items():
                start = time.perf_counter()
                timed = fn()  # the spawned rows time themselves (in the worker)
                elapsed = (time.perf_counter() - start) * 1000 if timed is None else timed
                if i >= args.warmup:
                    samples[name].append(elapsed)
    except RuntimeError as err:
        print(f"bench/api.py: {err}", file=sys.stderr)
        return 1
    finally:
        for spawner in spawners:
            spawner.close()
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps({"samples": samples, "skipped": skipped}, indent=1))
        return 0
    for line in skipped:
        print(f"left out: {line}")
    print(f"{'':14}{'median':>9}{'p10':>9}{'p90':>9}   (ms, {args.runs} runs each)")
    for name, values in samples.items():
        print(f"{name:14}{statistics.median(values):9.1f}{percentile(values, 10):9.1f}"
              f"{percentile(values, 90):9.1f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("bench/api.py: needs root (containers)", file=sys.stderr)
        sys.exit(1)
    sys.exit(main())
