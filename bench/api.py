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
- ``runc`` ``crun`` ``subprocess.run([RUNTIME, "--root", R, "run", "--bundle", B, ID])`` on a
                    busybox bundle running /bin/true (the rootfs is a plain directory: no
                    engine, no overlay, no network namespace file). crun refuses a hybrid
                    cgroup host ("cgroups in hybrid mode not supported", even with
                    ``--cgroup-manager=disabled``); there its row is left out, and said so.
- ``cli``           ``corral run --rm busybox true`` (a fresh interpreter each time);
- ``cli+options``   the same with ``-v DIR:/data -m 64m --pids-limit 64``.

The API row does more than the runtime rows (an engine container, not a bundle); the issue's
target is that it is still faster than spawning runc, and that the options add under 2 ms.
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import corral
    from corral.bundle import make_busybox_bundle
    from corral.engine.engine import Engine

    work = Path(tempfile.mkdtemp(prefix="corral-bench-api-"))
    corral_cli = str(REPO / ".venv" / "bin" / "corral")
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

        def spawn(runtime: str, *flags: str) -> Callable[[], None]:
            def go() -> None:
                cid = f"bench-{next(counter)}"
                cmd = [runtime, "--root", str(work / runtime), *flags, "run", "--bundle", bundle,
                       cid]  # fmt: skip
                done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True)
                if done.returncode != 0:
                    raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.decode()[-300:]}")

            return go

        def cli(*flags: str) -> Callable[[], None]:
            def go() -> None:
                cmd = [corral_cli, "--root", str(work / "root"), "run", "--rm", *flags,
                       "busybox", "true"]  # fmt: skip
                done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True)
                if done.returncode != 0:
                    raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.decode()[-300:]}")

            return go

        rows: dict[str, Callable[[], None]] = {"api": api, "api+options": api_options}
        if shutil.which("runc"):
            rows["runc"] = spawn("runc")
        skipped: list[str] = []
        if shutil.which("crun"):
            try:
                spawn("crun")()
                rows["crun"] = spawn("crun")
            except RuntimeError as err:  # a hybrid cgroup host: crun refuses to run at all
                skipped.append("crun: " + str(err).strip().rsplit(": ", 1)[-1])
        rows["cli"] = cli()
        rows["cli+options"] = cli("-v", f"{data}:/data", "-m", "64m", "--pids-limit", "64")
        samples: dict[str, list[float]] = {name: [] for name in rows}
        for i in range(args.warmup + args.runs):
            for name, fn in rows.items():
                start = time.perf_counter()
                fn()
                elapsed = (time.perf_counter() - start) * 1000
                if i >= args.warmup:
                    samples[name].append(elapsed)
    except RuntimeError as err:
        print(f"bench/api.py: {err}", file=sys.stderr)
        return 1
    finally:
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
