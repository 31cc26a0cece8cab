"""The engine against podman (runc, ``--network none``), command by command, and the memory
each running container adds: corral's monitor and waiters against podman's conmon.

    .venv/bin/python bench/engine.py [--runs N] [--containers N] [--memory-only]

Run as root. Both get private roots in a temporary directory and the same busybox image
(corral's built-in one, saved and loaded into podman). podman on this host needs its own
CONTAINERS_CONF (written here and said so): ``runtime = "runc"`` (crun refuses the hybrid
cgroup host) and ``default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]`` (its default
1048576 is above what runc may set here).

Timings alternate corral and podman run by run and print medians and the ratio corral/podman
(target: at most 0.5x). Memory: with N containers running (``sleep``), the PSS
(/proc/<pid>/smaps_rollup) of everything that stays behind for them is summed and divided by
N: for corral the root's monitor and every waiter, for podman every conmon (runc does not
stay). The containers' own processes are not counted, nor podman's or corral's CLI (gone).
Measured twice: containers run ``-d``, and run ``-dit`` (a pty each, held by the waiter or
conmon, and the attach socket).
Exit 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORRAL = str(REPO / ".venv" / "bin" / "corral")
PODMAN = shutil.which("podman") or "podman"
HAS_EXEC = subprocess.run([CORRAL, "exec", "--help"], capture_output=True).returncode == 0


def sh(argv: list[str], env: dict[str, str] | None = None) -> str:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False,
                          stdin=subprocess.DEVNULL)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: {done.returncode}: {done.stderr.strip()}")
    return done.stdout


class Tool:
    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.name, self.argv, self.env = name, argv, env

    def __call__(self, *args: str) -> str:
        return sh([*self.argv, *args], self.env)


def setup(base: Path) -> tuple[Tool, Tool]:
    corral = Tool("corral", [CORRAL, "--root", str(base / "corral")])
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
    podman = Tool("podman", [PODMAN, "--root", str(pm / "root"), "--runroot",
                             str(pm / "runroot"), "--tmpdir", str(pm / "libpod"),
                             "--cgroup-manager", "cgroupfs", "--events-backend", "file"],
                  env)  # fmt: skip
    podman("load", "-i", str(archive))
    print(f"podman: CONTAINERS_CONF={conf} (runtime = \"runc\", default_ulimits nofile=20000, "
          "nproc=4096), --network none")  # fmt: skip
    return corral, podman


def image(tool: Tool) -> str:
    return "busybox" if tool.name == "corral" else "localhost/busybox"


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


Maker = Callable[[Tool], Callable[[], object]]


def compare(label: str, runs: int, tools: tuple[Tool, Tool], make: Maker) -> None:
    times: dict[str, list[float]] = {t.name: [] for t in tools}
    for _ in range(runs):
        for tool in tools:  # alternate
            times[tool.name].append(timed(make(tool)))
    a, b = (statistics.median(times[t.name]) for t in tools)
    print(f"{label:<34} corral {a:7.1f} ms   podman {b:7.1f} ms   ratio {a / b:5.2f}x")


def run_rm(tool: Tool) -> Callable[[], object]:
    net = [] if tool.name == "corral" else ["--network", "none"]
    return lambda: tool("run", "--rm", *net, image(tool), "true")


def run_exec_rm(tool: Tool) -> Callable[[], object]:
    net = [] if tool.name == "corral" else ["--network", "none"]

    def go() -> None:
        cid = tool("run", "-d", *net, image(tool), "sleep", "1000").strip()
        if tool.name == "podman" or HAS_EXEC:  # corral's exec is another change's
            tool("exec", cid, "true")
        tool("rm", "-f", *(["-t", "0"] if tool.name == "podman" else []), cid)

    return go


def start_many(tool: Tool, n: int, tty: bool = False) -> list[str]:
    net = [] if tool.name == "corral" else ["--network", "none"]
    run = ["run", "-dit"] if tty else ["run", "-d"]
    return [tool(*run, *net, image(tool), "sleep", "100000").strip() for _ in range(n)]


def remove(tool: Tool, ids: list[str]) -> None:
    if ids:
        tool("rm", "-f", *(["-t", "0"] if tool.name == "podman" else []), *ids)


def pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def processes(match: Callable[[str, str], bool]) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{name}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if match(comm, cmd):
            out.append(int(name))
    return out


def memory(corral: Tool, podman: Tool, n: int, base: Path, tty: bool = False) -> None:
    root = str(base / "corral")
    ids = start_many(corral, n, tty)
    time.sleep(1.0)
    waiters = processes(lambda comm, cmd: cmd.strip() == "corral-waiter")
    monitors = processes(lambda comm, cmd: "corral.engine.monitor" in cmd and root in cmd)
    mine = waiters  # run as the only corral root with containers, as here
    corral_total = sum(pss_kb(p) for p in monitors) + sum(pss_kb(p) for p in mine)
    monitor_kb = sum(pss_kb(p) for p in monitors)
    remove(corral, ids)
    ids = start_many(podman, n, tty)
    time.sleep(1.0)
    conmons = processes(lambda comm, cmd: comm == "conmon" and str(base) in cmd)
    conmon_total = sum(pss_kb(p) for p in conmons)
    remove(podman, ids)
    kind = "-dit" if tty else "-d"
    print(f"memory per running container ({n} containers run {kind}, sum of PSS / {n}):")
    print(
        f"  corral: monitor {monitor_kb} kB ({len(monitors)} process) + {len(mine)} waiters "
        f"{corral_total - monitor_kb} kB = {corral_total / n:.0f} kB per container"
    )
    print(
        f"  podman: {len(conmons)} conmon {conmon_total} kB = {conmon_total / n:.0f} kB per "
        f"container;  ratio {corral_total / max(conmon_total, 1):.2f}x"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--containers", type=int, default=20)
    parser.add_argument("--memory-only", action="store_true", help="no timings")
    ns = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="cb-", dir="/tmp"))
    try:
        corral, podman = setup(base)
        tools = (corral, podman)
        if ns.memory_only:
            memory(corral, podman, ns.containers, base)
            memory(corral, podman, ns.containers, base, tty=True)
            return 0
        for tool in tools:  # warm up
            run_rm(tool)()
        compare("run --rm true", ns.runs, tools, run_rm)
        compare("run -d + exec true + rm -f", ns.runs, tools, run_exec_rm)
        compare("ps -a (empty)", ns.runs, tools, lambda t: lambda: t("ps", "-a"))
        empty = (Tool("corral", [CORRAL, "--root", str(base / "empty")]),
                 Tool("podman", [*podman.argv[:1], "--root", str(base / "pm" / "empty"),
                                 "--runroot", str(base / "pm" / "emptyrun"),
                                 *podman.argv[5:]], podman.env))  # fmt: skip
        compare("images (empty store)", ns.runs, empty, lambda t: lambda: t("images"))
        compare("images (busybox)", ns.runs, tools, lambda t: lambda: t("images"))
        many = {t.name: start_many(t, ns.containers) for t in tools}
        compare(f"ps -a ({ns.containers} containers)", ns.runs, tools,
                lambda t: lambda: t("ps", "-a"))  # fmt: skip
        for tool in tools:
            remove(tool, many[tool.name])
        memory(corral, podman, ns.containers, base)
        memory(corral, podman, ns.containers, base, tty=True)
    finally:
        subprocess.run(["umount", "-R", str(base / "pm" / "root" / "overlay")],
                       capture_output=True, check=False)  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
