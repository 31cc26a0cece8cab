"""Start-up cost of ``corral-runc run`` against ``runc run``, on a container that runs /bin/true.

    .venv/bin/python bench/runc_startup.py [--runs N] [--warmup N] [--corral CMD] [--runc CMD]
                                           [--json]

Run as root. It makes a busybox bundle (process ``/bin/true``, no terminal) in a temporary
directory, then runs ``CMD --root ROOT run --bundle BUNDLE ID`` for both runtimes, alternating
corral, runc, corral, runc ... in one loop (warm-ups first, also alternating), each run with a
fresh container id and each runtime with its own temporary ``--root``. Every run is started with
``os.posix_spawn`` and reaped with ``os.wait4`` by a lean ``python3 -IS`` worker: the wall time is
``time.perf_counter_ns`` around the two, and ``ru_maxrss`` from ``wait4`` is the peak RSS of the
runtime process. Linux reports the largest of the process and the descendants it reaped (such as
``runc init``; the container's /bin/true is tiny), and never less than the RSS of the process it
was spawned from, hence the lean worker; its floor (/bin/true spawned the same way) is reported.

A run that exits non-zero stops the benchmark with its output; the containers are deleted with
``delete --force`` and the temporary roots removed, whatever happens. It is a benchmark, not a
test: it exits 0 whatever the ratio, 1 when a run fails, 2 on a usage error.
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
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
LEAN_LAUNCHER = "/usr/local/bin/corral-runc"


@dataclass
class Sample:
    """One run: wall time in nanoseconds and the runtime's ru_maxrss in KiB."""

    wall_ns: int
    maxrss_kib: int


@dataclass
class Runtime:
    """A runtime under test: its name, its command (argv prefix) and its state root."""

    name: str
    argv: list[str]
    root: str
    samples: list[Sample] = field(default_factory=list)


class RunFailed(Exception):
    """A runtime exited non-zero (or was killed); the message carries its output."""


# Pure helpers (tests/unit/test_bench_cli.py).


def median(values: list[float]) -> float:
    """The median of a non-empty list."""
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (0-100) of a non-empty list, interpolating between ranks.

    The same as numpy's default ("linear"): p=50 is the median, p=0 the minimum, p=100 the
    maximum.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} is not within 0-100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ratio(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator``, or None when the denominator is not positive."""
    return numerator / denominator if denominator > 0 else None


def format_ratio(value: float | None) -> str:
    """A ratio to two decimals, as ``1.23``; ``n/a`` when there is none."""
    return "n/a" if value is None else f"{value:.2f}"


def summarize(samples: list[Sample]) -> dict[str, float]:
    """Median, p10 and p90 wall time in ms, and the median peak RSS in MiB."""
    ms = [s.wall_ns / 1e6 for s in samples]
    return {
        "median_ms": median(ms),
        "p10_ms": percentile(ms, 10),
        "p90_ms": percentile(ms, 90),
        "peak_rss_mib": median([s.maxrss_kib / 1024 for s in samples]),
    }


def format_table(stats: dict[str, dict[str, float]]) -> str:
    """The results table, one row per runtime, then the two corral/runc ratios."""
    header = f"{'runtime':<12} {'median ms':>10} {'p10 ms':>8} {'p90 ms':>8} {'peak RSS MiB':>13}"
    lines = [header, "-" * len(header)]
    for name, s in stats.items():
        lines.append(
            f"{name:<12} {s['median_ms']:>10.2f} {s['p10_ms']:>8.2f} {s['p90_ms']:>8.2f}"
            f" {s['peak_rss_mib']:>13.1f}"
        )
    if "corral" in stats and "runc" in stats:
        c, r = stats["corral"], stats["runc"]
        lines.append("")
        lines.append(
            f"ratio corral/runc (median): {format_ratio(ratio(c['median_ms'], r['median_ms']))}"
        )
        rss = ratio(c["peak_rss_mib"], r["peak_rss_mib"])
        lines.append(f"peak RSS corral/runc: {format_ratio(rss)}")
    return "\n".join(lines)


def rss_note(stats: dict[str, dict[str, float]], floor_mib: float) -> str:
    """A line on the RSS floor, warning about the figures within 5% of it."""
    line = f"(RSS floor, /bin/true spawned the same way: {floor_mib:.1f} MiB"
    low = [name for name, s in stats.items() if s["peak_rss_mib"] <= floor_mib * 1.05]
    if low:
        return line + f"; {', '.join(low)} at the floor: the true peak may be lower)"
    return line + ")"


def _nonnegative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {value}")
    return value


def _positive(text: str) -> int:
    value = _nonnegative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _command(text: str) -> list[str]:
    argv = shlex.split(text)
    if not argv:
        raise argparse.ArgumentTypeError("empty command")
    return argv


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; ``corral`` and ``runc`` are argv lists (None: the default)."""
    parser = argparse.ArgumentParser(
        prog="bench/runc_startup.py",
        description="Time `corral-runc run` against `runc run` on a /bin/true container.",
    )
    parser.add_argument(
        "--runs", type=_positive, default=40, help="timed runs of each runtime (default 40)"
    )
    parser.add_argument(
        "--warmup", type=_nonnegative, default=5, help="untimed runs of each first (default 5)"
    )
    parser.add_argument(
        "--corral",
        type=_command,
        default=None,
        metavar="CMD",
        help=f"corral's command, split like a shell would (default {LEAN_LAUNCHER} if it"
        " exists, else a -IS launcher for this checkout)",
    )
    parser.add_argument(
        "--runc", type=_command, default=["runc"], metavar="CMD", help="runc's command (runc)"
    )
    parser.add_argument(
        "--gap-ms",
        type=_nonnegative,
        default=100,
        metavar="MS",
        help="idle time before each run (default 100; 0 = back to back). Moving a process into"
        " a cgroup waits for an RCU grace period (10-20 ms here) unless another migration ran"
        " just before; back to back, one runtime's run warms that lock for the other's, which"
        " skews the comparison. The gap makes every run start cold, as on a real host.",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser.parse_args(argv)


# Running.

# The process that spawns the runtimes. On Linux a child's ru_maxrss is at least the RSS of the
# process it was spawned from (exec records the old mm's high-water mark, and with posix_spawn's
# vfork that mm is the parent's), so the runs are spawned from this lean `python3 -IS` (about
# 8 MiB; this script, with argparse, json and corral imported, is about 16 MiB). It reads one
# NUL-separated argv a line and answers "STATUS WALL_NS MAXRSS_KIB" a line.
WORKER = """\
import os, sys, time
flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
actions = [
    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
    (os.POSIX_SPAWN_OPEN, 1, sys.argv[1], flags, 0o600),
    (os.POSIX_SPAWN_DUP2, 1, 2),
]
env = os.environ
for line in sys.stdin.buffer:
    argv = line.rstrip(b"\\n").split(b"\\0")
    start = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter_ns() - start
    sys.stdout.write(f"{status} {wall} {usage.ru_maxrss}\\n")
    sys.stdout.flush()
"""


class Spawner:
    """The lean worker: ``run(argv)`` times one command, its output going to ``output``."""

    def __init__(self, python: str, output: str) -> None:
        self.output = output
        self._proc = subprocess.Popen(
            [python, "-IS", "-c", WORKER, output],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def run(self, argv: list[str]) -> tuple[int, int, int]:
        """Returns (wait status, wall ns, ru_maxrss KiB)."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        if any("\0" in a or "\n" in a for a in argv):
            raise RunFailed(f"cannot pass NUL or newline in an argument: {argv!r}")
        self._proc.stdin.write(b"\0".join(os.fsencode(a) for a in argv) + b"\n")
        self._proc.stdin.flush()
        answer = self._proc.stdout.readline().split()
        if len(answer) != 3:
            raise RunFailed(f"the spawner failed on {shlex.join(argv)}: {_read(self.output)}")
        status, wall, maxrss = (int(x) for x in answer)
        return status, wall, maxrss

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._proc.wait()


def _resolve(argv: list[str]) -> list[str]:
    """``argv`` with its program made an absolute path (posix_spawn does not search PATH)."""
    found = shutil.which(argv[0])
    if found is None:
        raise RunFailed(f"{argv[0]}: not found or not executable")
    return [os.path.abspath(found), *argv[1:]]


def _python() -> str:
    venv_python = REPO / ".venv" / "bin" / "python3"
    return str(venv_python) if venv_python.exists() else sys.executable


def _default_corral(tmp: str) -> list[str]:
    """The lean launcher if installed, else one like it written under ``tmp``."""
    if os.access(LEAN_LAUNCHER, os.X_OK):
        return [LEAN_LAUNCHER]
    launcher = os.path.join(tmp, "corral-runc")
    with open(launcher, "w", encoding="utf-8") as f:
        f.write(
            f"#!{_python()} -IS\n"
            "import sys\n"
            f"sys.path.insert(0, {str(REPO / 'src')!r})\n"
            "from corral.cli.runc import run\n"
            "run()\n"
        )
    os.chmod(launcher, 0o755)
    return [launcher]


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _force_delete(runtime: Runtime, container_id: str) -> None:
    subprocess.run(
        [*runtime.argv, "--root", runtime.root, "delete", "--force", container_id],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )


def run_once(spawner: Spawner, runtime: Runtime, bundle: str, container_id: str) -> Sample:
    """One ``run`` of ``runtime``; raises RunFailed (after deleting it) when it fails."""
    argv = [*runtime.argv, "--root", runtime.root, "run", "--bundle", bundle, container_id]
    status, wall, maxrss = spawner.run(argv)
    if status != 0:
        text = _read(spawner.output)
        _force_delete(runtime, container_id)
        code = os.waitstatus_to_exitcode(status)
        how = f"exit status {code}" if code >= 0 else f"signal {-code}"
        raise RunFailed(f"{runtime.name} failed ({how}): {shlex.join(argv)}\n{text.rstrip()}")
    return Sample(wall, maxrss)


def _cleanup(runtimes: list[Runtime]) -> None:
    """Delete any container still in a runtime's root (there should be none)."""
    for runtime in runtimes:
        try:
            left = os.listdir(runtime.root)
        except OSError:
            continue
        for container_id in left:
            print(
                f"runc_startup: deleting leftover {runtime.name} container {container_id}",
                file=sys.stderr,
            )
            _force_delete(runtime, container_id)


def benchmark(ns: argparse.Namespace, tmp: str) -> dict[str, Any]:
    """Make the bundle under ``tmp``, run the loop, and return the results."""
    sys.path.insert(0, str(REPO / "src"))
    from corral.bundle import make_busybox_bundle

    bundle = make_busybox_bundle(os.path.join(tmp, "bundle"), ["/bin/true"], terminal=False)
    corral_argv = _resolve(ns.corral if ns.corral is not None else _default_corral(tmp))
    runtimes = [
        Runtime("corral", corral_argv, os.path.join(tmp, "root-corral")),
        Runtime("runc", _resolve(ns.runc), os.path.join(tmp, "root-runc")),
    ]
    tag = f"bench-{os.getpid()}"
    spawner = Spawner(_python(), os.path.join(tmp, "output"))
    try:
        # The floor under every ru_maxrss figure: that of /bin/true spawned the same way.
        floor = [spawner.run(["/bin/true"])[2] for _ in range(3)]
        for i in range(ns.warmup + ns.runs):
            for runtime in runtimes:
                if ns.gap_ms:
                    time.sleep(ns.gap_ms / 1000)
                sample = run_once(spawner, runtime, bundle, f"{tag}-{runtime.name}-{i}")
                if i >= ns.warmup:
                    runtime.samples.append(sample)
    finally:
        spawner.close()
        _cleanup(runtimes)
    stats = {r.name: summarize(r.samples) for r in runtimes}
    c, r = stats["corral"], stats["runc"]
    return {
        "runs": ns.runs,
        "warmup": ns.warmup,
        "gap_ms": ns.gap_ms,
        "cpus": os.cpu_count(),
        "commands": {rt.name: rt.argv for rt in runtimes},
        "stats": stats,
        "ratio_median": ratio(c["median_ms"], r["median_ms"]),
        "ratio_peak_rss": ratio(c["peak_rss_mib"], r["peak_rss_mib"]),
        "rss_floor_mib": median([k / 1024 for k in floor]),
        "samples": {
            rt.name: {
                "wall_ms": [s.wall_ns / 1e6 for s in rt.samples],
                "maxrss_kib": [s.maxrss_kib for s in rt.samples],
            }
            for rt in runtimes
        },
    }


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="corral-bench-")
    try:
        results = benchmark(ns, tmp)
    except RunFailed as err:
        print(f"runc_startup: {err}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if ns.json:
        print(json.dumps(results, indent=2))
    else:
        print(
            f"{ns.runs} runs each after {ns.warmup} warm-ups, alternating, {ns.gap_ms} ms idle"
            f" before each; {os.cpu_count()} CPUs"
        )
        for name, cmd in results["commands"].items():
            print(f"  {name}: {shlex.join(cmd)}")
        print()
        print(format_table(results["stats"]))
        print(rss_note(results["stats"], results["rss_floor_mib"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
