"""The smallest memory limit under which ``run`` of /bin/true still succeeds: corral, runc, crun.

    .venv/bin/python bench/memory_floor.py [--min KIB] [--max KIB] [--tries N] [--step KIB]
                                           [--corral CMD] [--runc CMD] [--crun CMD]
                                           [--only NAME ...] [--verbose] [--json]

Run as root. It makes a busybox bundle whose process is ``/bin/true`` (no terminal) and, for
each runtime, bisects over ``linux.resources.memory.limit`` (with ``memory.swap`` set to the same
value, so swap cannot absorb anything) between ``--min`` and ``--max`` KiB, in multiples of
``--step`` KiB (default 4, one page). A size passes when all ``--tries`` runs (default 3) of

    CMD --root ROOT run --bundle BUNDLE ID

exit 0; any failure (the runtime refusing the limit, the OOM killer, a start-up error) fails it.
The floor is the smallest passing size, assuming that a larger limit never hurts; ``--max``
must pass (it is checked first) and a runtime whose ``--min`` passes is reported as "<= min".

crun 1.8 refuses hybrid hosts ("cgroups in hybrid mode not supported"); on one, crun runs in
a private mount namespace with a tmpfs over ``/sys/fs/cgroup/unified``, which makes the host
look like plain v1 to it:
``unshare -m sh -c 'mount -t tmpfs none /sys/fs/cgroup/unified && exec crun ...'``.

Every container is force-deleted after its run and the temporary directory removed. It is a
benchmark, not a test: it exits 0 whatever the floors, 1 when a runtime fails at ``--max``
or is missing, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
LEAN_LAUNCHER = "/usr/local/bin/corral-runc"
UNIFIED = "/sys/fs/cgroup/unified"
KiB = 1024


class Runtime:
    """A runtime under test: its name, its argv prefix, its --root and what it saw per size."""

    def __init__(self, name: str, argv: list[str], root: str, wrap_hybrid: bool = False) -> None:
        self.name = name
        self.argv = argv
        self.root = root
        self.wrap_hybrid = wrap_hybrid
        self.results: dict[int, list[str]] = {}  # size in KiB -> "ok" or a failure per try

    def command(self, *args: str) -> list[str]:
        argv = [*self.argv, "--root", self.root, *args]
        if not self.wrap_hybrid:
            return argv
        script = f'mount -t tmpfs none {UNIFIED} && exec "$@"'
        return ["unshare", "-m", "sh", "-c", script, "sh", *argv]


def bisect_floor(passes: Any, low: int, high: int, step: int) -> tuple[int, bool]:
    """The smallest size in [low, high] (multiples of ``step``) for which ``passes(size)`` is
    true, given that ``passes(high)`` is; returns (size, whether ``low`` itself passed)."""
    if passes(low):
        return low, True
    lo, hi = low, high  # lo fails, hi passes
    while hi - lo > step:
        mid = lo + ((hi - lo) // 2 // step) * step
        if mid in (lo, hi):
            break
        if passes(mid):
            hi = mid
        else:
            lo = mid
    return hi, False


def format_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table: runtime, floor (KiB), and the failure seen just below the floor."""
    lines = ["| runtime | floor (KiB) | below the floor |", "| --- | ---: | --- |"]
    for row in rows:
        floor = row["floor_kib"]
        text = "-" if floor is None else (f"<= {floor}" if row["min_passed"] else str(floor))
        lines.append(f"| {row['name']} | {text} | {row['below'] or '-'} |")
    return "\n".join(lines)


def _write_limit(bundle: str, size: int) -> None:
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        config = json.load(f)
    config["linux"]["resources"] = {"memory": {"limit": size, "swap": size}}
    with open(path, "w") as f:
        json.dump(config, f)


def _describe(code: int, output: str) -> str:
    if code == 137 or code == -9:
        return "killed (SIGKILL: the OOM killer)"
    last = output.strip().splitlines()[-1] if output.strip() else ""
    return f"exit {code}: {last[:160]}"


def run_once(runtime: Runtime, bundle: str) -> str:
    """One ``run``: "ok" or a description of the failure. The container is always deleted."""
    cid = "floor-" + uuid.uuid4().hex[:10]
    try:
        done = subprocess.run(
            runtime.command("run", "--bundle", bundle, cid),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        code, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired:
        code, output = -1, "timed out after 60 s"
    finally:
        subprocess.run(
            runtime.command("delete", "--force", cid),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
    return "ok" if code == 0 else _describe(code, output)


def measure(runtime: Runtime, bundle: str, ns: argparse.Namespace) -> dict[str, Any]:
    def passes(kib: int) -> bool:
        _write_limit(bundle, kib * KiB)
        outcomes = runtime.results.setdefault(kib, [])
        for _ in range(ns.tries):
            outcome = run_once(runtime, bundle)
            outcomes.append(outcome)
            if outcome != "ok":
                break
        ok = all(o == "ok" for o in outcomes)
        if ns.verbose:
            print(f"  {runtime.name} {kib} KiB: {'pass' if ok else outcomes[-1]}", file=sys.stderr)
        return ok

    if not passes(ns.max):
        return {
            "name": runtime.name,
            "floor_kib": None,
            "min_passed": False,
            "below": f"fails at --max {ns.max} KiB: {runtime.results[ns.max][-1]}",
            "results": runtime.results,
        }
    floor, min_passed = bisect_floor(passes, ns.min, ns.max, ns.step)
    below = [k for k in runtime.results if k < floor]
    reason = runtime.results[max(below)][-1] if below else ""
    return {
        "name": runtime.name,
        "floor_kib": floor,
        "min_passed": min_passed,
        "below": reason,
        "results": runtime.results,
    }


def _hybrid() -> bool:
    try:
        with open("/proc/self/mountinfo") as f:
            return any(f" {UNIFIED} " in line and " - cgroup2 " in line for line in f)
    except OSError:
        return False


def _command(text: str) -> list[str]:
    argv = shlex.split(text)
    if not argv:
        raise argparse.ArgumentTypeError("empty command")
    return argv


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--min", type=_positive, default=128, help="smallest size, KiB (128)")
    p.add_argument("--max", type=_positive, default=16384, help="largest size, KiB (16384)")
    p.add_argument("--step", type=_positive, default=4, help="resolution, KiB (4: one page)")
    p.add_argument("--tries", type=_positive, default=3, help="runs per size, all must pass (3)")
    p.add_argument(
        "--corral",
        type=_command,
        default=None,
        help=f"corral's command (default {LEAN_LAUNCHER} if installed, else .venv/bin/corral-runc)",
    )
    p.add_argument("--runc", type=_command, default=["runc"])
    p.add_argument("--crun", type=_command, default=["crun"])
    p.add_argument(
        "--only", nargs="+", choices=("corral", "runc", "crun"), help="measure only these runtimes"
    )
    p.add_argument("--verbose", action="store_true", help="print every size tried (stderr)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    ns = p.parse_args(argv)
    if ns.min > ns.max:
        p.error("--min must not be above --max")
    return ns


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(argv)
    if os.geteuid() != 0:
        print("memory_floor: run as root", file=sys.stderr)
        return 2
    corral = ns.corral or (
        [LEAN_LAUNCHER]
        if os.access(LEAN_LAUNCHER, os.X_OK)
        else [str(REPO / ".venv" / "bin" / "corral-runc")]
    )
    commands = {"corral": corral, "runc": ns.runc, "crun": ns.crun}
    names = ns.only or ["corral", "runc", "crun"]
    for name in names:
        if shutil.which(commands[name][0]) is None:
            print(f"memory_floor: {name}: {commands[name][0]} not found", file=sys.stderr)
            return 1
    sys.path.insert(0, str(REPO / "src"))
    from corral.bundle import make_busybox_bundle

    tmp = tempfile.mkdtemp(prefix="memory-floor-")
    try:
        bundle = make_busybox_bundle(os.path.join(tmp, "bundle"), ["/bin/true"], terminal=False)
        hybrid = _hybrid()
        rows = []
        for name in names:
            root = os.path.join(tmp, f"root-{name}")
            os.mkdir(root, 0o700)
            runtime = Runtime(name, commands[name], root, wrap_hybrid=name == "crun" and hybrid)
            rows.append(measure(runtime, bundle, ns))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if ns.json:
        print(
            json.dumps(
                {
                    "min_kib": ns.min,
                    "max_kib": ns.max,
                    "step_kib": ns.step,
                    "tries": ns.tries,
                    "runtimes": rows,
                },
                indent=2,
            )
        )
    else:
        print(
            f"memory floor of `run` /bin/true (busybox bundle), swap = limit, {ns.tries} tries"
            f" per size, {ns.min}..{ns.max} KiB in {ns.step} KiB steps\n"
        )
        print(format_table(rows))
    return 1 if any(row["floor_kib"] is None for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
