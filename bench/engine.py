"""The engine against podman (runc, ``--network none``), command by command, and the memory
each running container adds: corral's monitor and waiters against podman's conmon.

::

    sudo .venv/bin/python bench/engine.py                  # 10 runs of each, alternating
    sudo .venv/bin/python bench/engine.py --runs 20 --containers 20 --json
    sudo .venv/bin/python bench/engine.py --corral "/usr/local/bin/corral" --skip-memory
    sudo .venv/bin/python bench/engine.py --memory-only
    sudo .venv/bin/python bench/engine.py --only-run --baseline /path/to/other/corral

Both get private roots in a temporary directory and the same busybox image (corral's built-in
one, saved and loaded into podman), and both run containers with ``--network none`` (corral's
default is a bridge network now, as docker's; podman's is its CNI network). podman on this host
needs its own CONTAINERS_CONF (written here and said so): ``runtime = "runc"`` (crun refuses the
hybrid cgroup host) and ``default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]`` (its
default 1048576 is above what runc may set here).

corral is run through a lean launcher like the one scripts/install.sh writes (``python3 -IS``,
the checkout's ``src`` and the venv's site-packages on sys.path), written for this checkout
into the temporary directory unless ``--corral`` names a command.

Timings alternate corral and podman run by run; each row prints the medians, p10-p90 and the
ratio corral/podman of the medians (target: at most 0.5x). ``--baseline CMD`` adds another
corral (another checkout's launcher: before/after figures of one run), on its own root, to the
same alternation; ``--only-run`` keeps the two container rows. Rows:

- ``run --rm true``                  a whole foreground container
- ``run -d + exec true + rm -f``     one detached container's life, with an exec into it
- ``ps -a (empty)``, ``ps -a (N containers)``: N running ``sleep`` containers, created first
- ``images (empty store)``, ``images (busybox)``

Memory: with N containers running (``sleep``), the PSS (/proc/<pid>/smaps_rollup) of everything
that stays behind for them, summed and divided by N. For each container that is the parent of
its init (``inspect``'s State.Pid): corral's waiter, podman's conmon (runc does not stay); for
corral also the root's one monitor (``<root>/monitor.pid``). The containers' own processes are
not counted, nor the CLIs (gone). Measured twice: containers run ``-d``, and run ``-dit`` (a pty
each, held by the waiter or conmon, and the attach socket). The load average is printed before
and after: on a shared machine compare only figures from one run. The benchmark holds the test
runs' flock (/run/corral-tests.lock) while it runs: their leak check would remove its
containers. Exit 0 whatever the figures, 1 when a command fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from runc_startup import percentile  # (bench/ is on sys.path: the scripts' folder)

REPO = Path(__file__).resolve().parent.parent
PODMAN = shutil.which("podman") or "podman"

#: The flock that integration and e2e test runs take turns on (tests/conftest.py TEST_LOCK).
#: Their leak check removes every container-like thing that appears during a test (processes
#: in other PID namespaces, mounts under /tmp, cgroups named corral*), so on a shared machine a
#: benchmark running beside them loses its containers; it holds the lock while it runs.
TEST_LOCK = "/run/corral-tests.lock"


def hold_test_lock() -> int:
    """Wait for the tests' lock and hold it (until this process exits); its fd. Run under
    ``flock /run/corral-tests.lock ...``, the caller holds it already: go on."""
    import fcntl

    fd = os.open(TEST_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        if _held_by_an_ancestor(fd):
            return fd
        print(f"waiting for {TEST_LOCK} (a test run holds it)", flush=True)
        fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _held_by_an_ancestor(fd: int) -> bool:
    """Whether a process above this one holds a flock on ``fd``'s file (/proc/locks)."""
    inode = os.fstat(fd).st_ino
    ancestors, pid = set(), os.getppid()
    while pid > 1 and pid not in ancestors:
        ancestors.add(pid)
        try:
            pid = parent_of(pid)
        except (OSError, ValueError):
            break
    with open("/proc/locks") as f:  # "1: FLOCK  ADVISORY  WRITE 1234 fd:00:5678 0 EOF"
        for line in f:
            fields = line.split()
            ours = len(fields) > 5 and fields[1] == "FLOCK" and fields[4].isdigit()
            if ours and int(fields[4]) in ancestors and fields[5].endswith(f":{inode}"):
                return True
    return False


class Failed(Exception):
    """A command of the benchmark failed (its line and stderr)."""


def sh(argv: list[str], env: dict[str, str] | None = None) -> str:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False,
                          stdin=subprocess.DEVNULL)  # fmt: skip
    if done.returncode != 0:
        raise Failed(f"{shlex.join(argv)}: exit {done.returncode}: {done.stderr.strip()[-400:]}")
    return done.stdout


class Tool:
    """An engine's command line on its root. ``name`` labels its figures; ``podman`` tells
    podman (its image name and flags) from a corral."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, podman: bool = False
    ) -> None:
        self.name, self.argv, self.env, self.podman = name, argv, env, podman

    def __call__(self, *args: str) -> str:
        return sh([*self.argv, *args], self.env)

    @property
    def image(self) -> str:
        return "localhost/busybox" if self.podman else "busybox"

    def run_flags(self) -> list[str]:
        return ["--network", "none"]

    def rm_flags(self) -> list[str]:
        return ["-t", "0"] if self.podman else []  # podman's default waits 10 s


def lean_launcher(path: Path) -> str:
    """A launcher for this checkout like scripts/install.sh's: ``python3 -IS``, no site."""
    python = REPO / ".venv" / "bin" / "python3"
    site = sysconfig.get_paths()["purelib"]
    path.write_text(
        f"#!{python} -IS\nimport sys\nsys.path.insert(0, {str(REPO / 'src')!r})\n"
        f"sys.path.append({site!r})\nfrom corral.cli.main import main; sys.exit(main())\n"
    )
    path.chmod(0o755)
    return str(path)


def setup(base: Path, corral_cmd: list[str]) -> tuple[Tool, Tool, Tool, Tool]:
    """corral and podman on their stores with busybox, and on empty stores."""
    corral = Tool("corral", [*corral_cmd, "--root", str(base / "corral")])
    corral("image", "busybox")
    archive = base / "busybox.tar"
    corral("save", "-o", str(archive), "busybox")
    pm = base / "pm"
    (pm / "tmp").mkdir(parents=True)
    conf = pm / "containers.conf"
    conf.write_text(
        '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]\n'
        'netns = "none"\nlog_driver = "k8s-file"\n'
        f'[engine]\nruntime = "runc"\nevents_logfile_path = "{pm}/events.log"\n'
        f'image_copy_tmp_dir = "{pm}/tmp"\n'
    )
    storage = pm / "storage.conf"
    storage.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{pm}/root"\n'
                       f'runroot = "{pm}/runroot"\n')  # fmt: skip
    env = {**os.environ, "CONTAINERS_CONF": str(conf), "CONTAINERS_STORAGE_CONF": str(storage)}

    def podman_at(root: str, runroot: str) -> Tool:
        return Tool("podman", [PODMAN, "--root", str(pm / root), "--runroot", str(pm / runroot),
                               "--tmpdir", str(pm / "libpod"), "--cgroup-manager", "cgroupfs",
                               "--events-backend", "file"], env, podman=True)  # fmt: skip

    podman = podman_at("root", "runroot")
    podman("load", "-i", str(archive))
    print(f"podman {sh([PODMAN, '--version']).split()[-1]}: CONTAINERS_CONF={conf} "
          '(runtime = "runc", default_ulimits nofile=20000, nproc=4096); both --network none')
    empty_corral = Tool("corral", [*corral_cmd, "--root", str(base / "empty")])
    return corral, podman, empty_corral, podman_at("empty", "emptyrun")


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


Maker = Callable[[Tool], Callable[[], object]]
Results = dict[str, dict[str, list[float]]]


def compare(
    label: str, runs: int, tools: tuple[Tool, ...], make: Maker, out: Results
) -> None:
    """Time ``make(tool)()`` ``runs`` times for each tool, alternating; print each tool's
    median (p10-p90) and, for the corrals, the ratio of their median to the last tool's
    (podman's)."""
    times: dict[str, list[float]] = {t.name: [] for t in tools}
    for _ in range(runs):
        for tool in tools:  # alternate
            times[tool.name].append(timed(make(tool)))
    out[label] = times
    last = statistics.median(times[tools[-1].name])
    cells, ratios = [], []
    for tool in tools:
        v = times[tool.name]
        m = statistics.median(v)
        cells.append(f"{tool.name} {m:6.1f} ({percentile(v, 10):5.1f}-{percentile(v, 90):5.1f})")
        if tool is not tools[-1]:
            name = "" if len(tools) == 2 else f"{tool.name} "
            ratios.append(f"{name}{m / last:4.2f}x")
    print(f"{label:<30} {'  '.join(cells)} ms  ratio {', '.join(ratios)}", flush=True)


def run_rm(tool: Tool) -> Callable[[], object]:
    return lambda: tool("run", "--rm", *tool.run_flags(), tool.image, "true")


def run_exec_rm(tool: Tool) -> Callable[[], object]:
    def go() -> None:
        cid = tool("run", "-d", *tool.run_flags(), tool.image, "sleep", "1000").strip()
        tool("exec", cid, "true")
        tool("rm", "-f", *tool.rm_flags(), cid)

    return go


def start_many(tool: Tool, n: int, tty: bool = False) -> list[str]:
    ids: list[str] = []
    run = ["run", "-dit"] if tty else ["run", "-d"]
    try:
        for _ in range(n):
            cid = tool(*run, *tool.run_flags(), tool.image, "sleep", "100000").strip()
            ids.append(cid)
    except BaseException:
        remove(tool, ids)
        raise
    return ids


def remove(tool: Tool, ids: list[str]) -> None:
    for i in range(0, len(ids), 10):  # a few at a time: one rm of many may take long
        tool("rm", "-f", *tool.rm_flags(), *ids[i : i + 10])


def pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rpartition(")")[2].split()[1])


def stay_behind(tool: Tool, ids: list[str]) -> list[int]:
    """The processes that stay for each container: the parent of its init."""
    out = []
    for cid in ids:
        pid = int(tool("inspect", "--format", "{{.State.Pid}}", cid).strip())
        if pid <= 0:
            raise Failed(f"{tool.name} {cid[:12]}: not running")
        out.append(parent_of(pid))
    return out


def memory(
    corral: Tool, podman: Tool, n: int, corral_root: Path, tty: bool = False
) -> dict[str, float]:
    """PSS per running container (kB): corral's waiters + monitor, podman's conmons."""
    figures: dict[str, float] = {}
    ids = start_many(corral, n, tty)
    try:
        time.sleep(1.0)  # let the monitor adopt them all
        waiters = stay_behind(corral, ids)
        monitor = int((corral_root / "monitor.pid").read_text())
        waiter_kb = sum(pss_kb(p) for p in waiters)
        monitor_kb = pss_kb(monitor)
    finally:
        remove(corral, ids)
    ids = start_many(podman, n, tty)
    try:
        time.sleep(1.0)
        conmons = stay_behind(podman, ids)
        conmon_kb = sum(pss_kb(p) for p in conmons)
    finally:
        remove(podman, ids)
    corral_total = waiter_kb + monitor_kb
    kind = "-dit" if tty else "-d"
    print(f"memory per running container ({n} containers run {kind}, sum of PSS / {n}):")
    print(f"  corral: monitor {monitor_kb} kB (1 process) + {len(set(waiters))} waiters "
          f"{waiter_kb} kB = {corral_total / n:.0f} kB per container")  # fmt: skip
    print(f"  podman: {len(set(conmons))} conmon {conmon_kb} kB = {conmon_kb / n:.0f} kB per "
          f"container;  ratio {corral_total / max(conmon_kb, 1):.2f}x")  # fmt: skip
    figures["corral_kb_per_container"] = corral_total / n
    figures["corral_monitor_kb"] = monitor_kb
    figures["corral_waiters_kb"] = waiter_kb
    figures["podman_kb_per_container"] = conmon_kb / n
    return figures


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs of each (10)")
    parser.add_argument("--containers", type=int, default=20, help="for ps -a and memory (20)")
    parser.add_argument("--corral", help="the corral command (default: a lean launcher)")
    parser.add_argument("--skip-memory", action="store_true", help="timings only")
    parser.add_argument("--memory-only", action="store_true", help="no timings")
    parser.add_argument("--json", action="store_true", help="every sample as JSON at the end")
    parser.add_argument("--baseline", metavar="CMD",
                        help="another corral command, timed in the same alternation (before/after)")
    parser.add_argument("--only-run", action="store_true",
                        help="only the run --rm and run -d + exec + rm -f rows")  # fmt: skip
    ns = parser.parse_args(argv)
    hold_test_lock()
    base = Path(tempfile.mkdtemp(prefix="cb-", dir="/tmp"))
    results: Results = {}
    extra: dict[str, object] = {"load_before": loadavg()}
    print(f"load average {extra['load_before']} ({os.cpu_count()} CPUs)", flush=True)
    corral_cmd = shlex.split(ns.corral) if ns.corral else [lean_launcher(base / "corral-lean")]
    many: dict[str, list[str]] = {}
    tools: tuple[Tool, Tool] | None = None
    try:
        corral, podman, empty_corral, empty_podman = setup(base, corral_cmd)
        tools = (corral, podman)
        timing: tuple[Tool, ...] = tools
        if ns.baseline:
            root = ["--root", str(base / "baseline")]
            baseline = Tool("baseline", [*shlex.split(ns.baseline), *root])
            baseline("image", "busybox")
            timing = (baseline, corral, podman)
            run_rm(baseline)()
            run_exec_rm(baseline)()
        if ns.memory_only:
            extra["memory"] = memory(corral, podman, ns.containers, base / "corral")
            extra["memory_tty"] = memory(corral, podman, ns.containers, base / "corral", True)
            return 0
        for tool in tools:  # warm up (page cache, podman's first-run set-up)
            run_rm(tool)()
            run_exec_rm(tool)()
        compare("run --rm true", ns.runs, timing, run_rm, results)
        compare("run -d + exec true + rm -f", ns.runs, timing, run_exec_rm, results)
        if not ns.only_run:
            compare("ps -a (empty)", ns.runs, tools, lambda t: lambda: t("ps", "-a"), results)
            compare("images (empty store)", ns.runs, (empty_corral, empty_podman),
                    lambda t: lambda: t("images"), results)  # fmt: skip
            compare("images (busybox)", ns.runs, tools, lambda t: lambda: t("images"), results)
            for tool in tools:
                many[tool.name] = start_many(tool, ns.containers)
            compare(f"ps -a ({ns.containers} containers)", ns.runs, tools,
                    lambda t: lambda: t("ps", "-a"), results)  # fmt: skip
            for tool in tools:
                remove(tool, many.pop(tool.name))
        if not ns.skip_memory and not ns.only_run:
            extra["memory"] = memory(corral, podman, ns.containers, base / "corral")
            extra["memory_tty"] = memory(corral, podman, ns.containers, base / "corral", True)
    except Failed as err:
        print(f"bench/engine.py: {err}", file=sys.stderr)
        return 1
    finally:
        if tools is not None:
            for tool in tools:
                try:
                    remove(tool, many.get(tool.name, []))
                except Failed as err:
                    print(f"bench/engine.py: cleanup: {err}", file=sys.stderr)
        subprocess.run(["umount", "-R", str(base / "pm" / "root" / "overlay")],
                       capture_output=True, check=False)  # fmt: skip
        for _ in range(50):  # podman's cleanup processes may still write into its storage
            shutil.rmtree(base, ignore_errors=True)
            if not base.exists():
                break
            time.sleep(0.1)
        extra["load_after"] = loadavg()
        print(f"load average {extra['load_after']}")
    if ns.json:
        print(json.dumps({"samples_ms": results, **extra}, indent=1))
    return 0


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("bench/engine.py: needs root (containers)", file=sys.stderr)
        sys.exit(1)
    sys.exit(main())
