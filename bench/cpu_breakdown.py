"""Where the CPU of a bare ``run /bin/true`` goes: corral-runc against runc, phase by phase.

    sudo .venv/bin/python bench/cpu_breakdown.py            # 30 rounds
    sudo .venv/bin/python bench/cpu_breakdown.py --runs 100

Each row is the median over the rounds of one command (or one part of one), in ms of wall time
and of CPU time (user + system), read from ``wait4``'s rusage of that command, which includes
the children it reaped:

- the interpreter alone (``-I -S -c pass``) and with the runtime's imports
  (``import corral.cli.runc``): what every verb pays before it does anything;
- ``create``, ``start`` and ``delete`` each as its own command. A created container's init is
  not reaped by ``create``; its CPU (corral: the forked Python that builds the container, then
  the launcher; runc: ``runc init``) is read from /proc/<init>/schedstat just before ``start``
  and shown as its own row, and added to ``create``'s in the next (work can move between the
  two: corral's init loads its own code after fork);
- ``run``: the whole life in one command (its init is its child, so counted in).

runc's rows are the same commands with runc, its rounds alternating with corral's (so that
drift in the machine's load falls on both alike). It exits 0 whatever the figures; 1 if a command
fails. Needs root, runc and a static busybox (scripts/install.sh).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/cpu_breakdown.py", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--runs", type=int, default=30, help="rounds (default 30)")
    parser.add_argument("--corral", default="/usr/local/bin/corral-runc")
    parser.add_argument("--runc", default="runc")
    ns = parser.parse_args(argv)
    if ns.runs < 1:
        parser.error("--runs must be at least 1")
    return ns


def timed(argv: list[str]) -> tuple[float, float]:
    """(wall ms, CPU ms of the command and the children it reaped); output to /dev/null."""
    null = os.open(os.devnull, os.O_RDWR)
    start = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], argv, dict(os.environ), file_actions=[
        (os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, null, 1),
        (os.POSIX_SPAWN_DUP2, null, 2),
    ])
    _, status, usage = os.wait4(pid, 0)
    wall = (time.perf_counter_ns() - start) / 1e6
    os.close(null)
    if status != 0:
        raise SystemExit(f"cpu_breakdown: {' '.join(argv)} failed ({status:#x})")
    return wall, (usage.ru_utime + usage.ru_stime) * 1000


def init_cpu(root: str, runtime: list[str], cid: str) -> float:
    """CPU ms the created container's init used so far (/proc/<pid>/schedstat: nanoseconds on
    a CPU; /proc/<pid>/stat's clock ticks are too coarse for a few ms)."""
    with open(f"/proc/{_pid(root, runtime, cid)}/schedstat") as f:
        return int(f.read().split()[0]) / 1e6


def one_round(rows: dict[str, tuple[list[float], list[float]]], name: str, runtime: list[str],
              bundle: str, tmp: str, i: int, interpreter: list[str]) -> None:
    """Round ``i`` of one runtime: each phase once, its figures appended to ``rows``."""

    def add(row: str, wall: float, cpu: float) -> None:
        walls, cpus = rows.setdefault(row, ([], []))
        walls.append(wall)
        cpus.append(cpu)

    root = os.path.join(tmp, f"root-{name}")
    if interpreter:
        add("interpreter alone", *timed([*interpreter, "-c", "pass"]))
        add("interpreter + imports", *timed([
            *interpreter, "-c",
            f"import sys; sys.path.insert(0, {str(REPO / 'src')!r}); import corral.cli.runc",
        ]))
    cid = f"cpu-{name}-{i}"
    wall, cpu = timed([*runtime, "--root", root, "create", "--bundle", bundle, cid])
    add("create", wall, cpu)
    init = init_cpu(root, runtime, cid)
    add("  the init until start", 0.0, init)
    add("  create + its init", 0.0, cpu + init)
    add("start", *timed([*runtime, "--root", root, "start", cid]))
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{_pid(root, runtime, cid)}"):
        if time.monotonic() > deadline:
            raise SystemExit(f"cpu_breakdown: {cid} did not stop")
        time.sleep(0.002)
    add("delete", *timed([*runtime, "--root", root, "delete", cid]))
    add("run (whole life)", *timed([*runtime, "--root", root, "run", "--bundle", bundle,
                                    f"{cid}-run"]))


def _pid(root: str, runtime: list[str], cid: str) -> int:
    import json
    import subprocess

    done = subprocess.run([*runtime, "--root", root, "state", cid], capture_output=True,
                          text=True, check=False)
    return int(json.loads(done.stdout)["pid"]) if done.returncode == 0 else 0


def script_interpreter(path: str) -> list[str]:
    with open(path, "rb") as f:
        first = f.readline(256)
    return first[2:].decode().split() if first.startswith(b"#!") else []


def format_table(corral: dict[str, tuple[list[float], list[float]]],
                 runc: dict[str, tuple[list[float], list[float]]]) -> str:
    header = (f"{'phase':<24} {'corral wall':>11} {'corral CPU':>11} {'runc wall':>10}"
              f" {'runc CPU':>9}")
    lines = [header, "-" * len(header)]
    for row, (walls, cpus) in corral.items():
        other = runc.get(row)
        theirs = f"{'':>10} {'':>9}"
        if other:
            their_wall = f"{statistics.median(other[0]):>10.2f}" if any(other[0]) else f"{'':>10}"
            theirs = f"{their_wall} {statistics.median(other[1]):>9.2f}"
        wall = f"{statistics.median(walls):>11.2f}" if any(walls) else f"{'':>11}"
        lines.append(f"{row:<24} {wall} {statistics.median(cpus):>11.2f} {theirs}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(argv)
    from corral.bundle import make_busybox_bundle

    corral_path = shutil.which(ns.corral) or ns.corral
    runc_path = shutil.which(ns.runc) or ns.runc
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    with tempfile.TemporaryDirectory(prefix="corral-cpu-") as tmp:
        bundle = os.path.join(tmp, "bundle")
        make_busybox_bundle(bundle, ["/bin/true"], terminal=False)
        corral: dict[str, tuple[list[float], list[float]]] = {}
        runc: dict[str, tuple[list[float], list[float]]] = {}
        interpreter = script_interpreter(corral_path)
        for i in range(ns.runs):  # alternating, so that drift in the load falls on both alike
            one_round(corral, "corral", [corral_path], bundle, tmp, i, interpreter)
            one_round(runc, "runc", [runc_path], bundle, tmp, i, [])
    print(f"CPU of run /bin/true by phase: medians of {ns.runs} rounds, ms "
          f"(corral-runc {corral_path}, runc {runc_path})")
    print(format_table(corral, runc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
