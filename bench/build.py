"""``corral build``: a first build against a rebuild of the unchanged context (the cache).

    sudo .venv/bin/python bench/build.py                 # 3 runs, medians
    sudo .venv/bin/python bench/build.py --runs 5 --json

The context is ~20 MB in 200 files (pseudo-random bytes, fixed seed) plus a Containerfile of
the usual shape: COPY the sources, RUN a "compile" that reads them all and writes ~30 MB of
output, COPY a config, RUN a smaller step, CMD. Each run starts from a fresh store holding
only the busybox image, then times

    first     corral --root FRESH build -t bench:1 CONTEXT      (every step runs)
    rebuild   corral --root FRESH build -t bench:2 CONTEXT      (every step from the cache)

and prints the medians and rebuild/first (the issue asks under 10%). The rebuild still reads
and hashes every COPY source (that is how it knows they did not change), so its cost grows
with the context, not with the work the RUN steps do. Exit 0 whatever the figures; 1 when a
build fails.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORRAL = str(REPO / ".venv" / "bin" / "corral")

CONTAINERFILE = """\
FROM busybox
WORKDIR /src
COPY src/ ./
RUN mkdir -p /out && for f in *.bin; do sha256sum "$f" >> /out/sums; done \\
 && for i in 1 2 3; do cat *.bin | gzip -1 > /out/bundle-$i.gz; done
COPY app.conf /etc/app.conf
RUN sort /out/sums > /out/sums.sorted && wc -l /out/sums.sorted
CMD ["cat", "/out/sums.sorted"]
"""


def make_context(where: Path, files: int, size: int) -> None:
    rng = random.Random(1)
    (where / "src").mkdir(parents=True)
    for i in range(files):
        (where / "src" / f"part{i:03d}.bin").write_bytes(rng.randbytes(size))
    (where / "app.conf").write_text("level=info\n")
    (where / "Containerfile").write_text(CONTAINERFILE)


def run(*args: str) -> float:
    start = time.perf_counter()
    done = subprocess.run([CORRAL, *args], capture_output=True, text=True)
    took = time.perf_counter() - start
    if done.returncode != 0:
        print(f"failed: corral {' '.join(args)}\n{done.stdout}{done.stderr}", file=sys.stderr)
        raise SystemExit(1)
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--file-kb", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    ns = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="corral-bench-build-"))
    try:
        context = base / "context"
        make_context(context, ns.files, ns.file_kb * 1024)
        firsts, rebuilds = [], []
        for i in range(ns.runs):
            root = base / f"root{i}"
            run("--root", str(root), "image", "busybox")
            firsts.append(run("--root", str(root), "build", "-q", "-t", "bench:1", str(context)))
            rebuilds.append(run("--root", str(root), "build", "-q", "-t", "bench:2", str(context)))
            shutil.rmtree(root, ignore_errors=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    first, rebuild = statistics.median(firsts), statistics.median(rebuilds)
    result = {
        "first_s": round(first, 3),
        "rebuild_s": round(rebuild, 3),
        "ratio": round(rebuild / first, 4),
        "runs": ns.runs,
        "context_mb": round(ns.files * ns.file_kb / 1024, 1),
    }
    if ns.json:
        print(json.dumps(result))
    else:
        print(f"first build (every step runs):      {first:7.3f} s  (median of {ns.runs})")
        print(f"rebuild, unchanged context (cache): {rebuild:7.3f} s")
        print(f"rebuild / first:                    {rebuild / first:7.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
