"""Pull + unpack of a ~200 MB, 5-layer image from a local registry: corral against skopeo+umoci
and against podman; then the disk use of 10 containers of that image.

    sudo .venv/bin/python bench/pull_unpack.py                 # 5 runs of each, alternating
    sudo .venv/bin/python bench/pull_unpack.py --runs 9 --size-mb 400 --json

It builds the image with umoci (5 gzip layers: copies of /usr/lib files and pseudo-random
bytes), pushes it with skopeo to Debian's docker-registry on 127.0.0.1 (started as
tests/helpers/registry.py does), then times, alternating tool by tool so drift in the machine's
load falls on all alike, each from nothing (a fresh store every run):

    corral    corral --root FRESH pull --tls-verify=false HOST/bench/big:1
    skopeo    skopeo copy docker://HOST/bench/big:1 oci:FRESH:1 && umoci unpack --image ...
    podman    podman --root FRESH --runroot FRESH pull --tls-verify=false HOST/bench/big:1

and prints medians and the ratios corral/skopeo+umoci and corral/podman. Exit 0 whatever the
figures; 1 when a run fails (showing its command and output).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORRAL = str(REPO / ".venv" / "bin" / "corral")
sys.path.insert(0, str(REPO / "tests"))


def sh(*args: str | Path, quiet: bool = True) -> str:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if done.returncode != 0:
        print(f"failed ({done.returncode}): {' '.join(map(str, args))}\n{done.stdout}{done.stderr}")
        sys.exit(1)
    return done.stdout


def build_layer(directory: Path, index: int, size: int, rng: random.Random) -> Path:
    """A layer tar of about ``size`` bytes: 3/4 real library files, 1/4 pseudo-random bytes."""
    tree = directory / f"layer{index}"
    target = tree / f"data{index}"
    target.mkdir(parents=True)
    budget = size * 3 // 4
    libs = sorted(p for p in Path("/usr/lib").rglob("*") if p.is_file() and not p.is_symlink())
    rng.shuffle(libs)
    for n, lib in enumerate(libs):
        if budget <= 0:
            break
        try:
            if lib.stat().st_size > budget:
                continue
            data = lib.read_bytes()
        except OSError:
            continue
        (target / f"{n:05d}-{lib.name}").write_bytes(data)
        budget -= len(data)
    left = size // 4
    n = 0
    while left > 0:
        chunk = min(left, 1 << 20)
        (target / f"random-{n:04d}.bin").write_bytes(rng.randbytes(chunk))
        left -= chunk
        n += 1
    out = directory / f"layer{index}.tar"
    with tarfile.open(out, "w") as tar:
        tar.add(tree, arcname=".")
    shutil.rmtree(tree)
    return out


def build_image(work: Path, size_mb: int, layers: int) -> Path:
    layout = work / "layout"
    sh("umoci", "init", "--layout", layout)
    sh("umoci", "new", "--image", f"{layout}:1")
    rng = random.Random(42)
    for i in range(layers):
        tar = build_layer(work, i, size_mb * (1 << 20) // layers, rng)
        sh("umoci", "raw", "add-layer", "--image", f"{layout}:1", tar)
        tar.unlink()
    sh("umoci", "config", "--image", f"{layout}:1", "--config.cmd", "sh")
    return layout


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        print(f"failed ({done.returncode}): {' '.join(argv)}\n{done.stdout}{done.stderr}")
        sys.exit(1)
    return elapsed


def du(path: Path) -> int:
    return int(sh("du", "-sb", path).split()[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--only", action="append", choices=["corral", "skopeo", "podman"])
    ns = parser.parse_args()
    from helpers.registry import start_registry

    work = Path(tempfile.mkdtemp(prefix="corral-bench-", dir="/var/tmp"))
    short = Path(tempfile.mkdtemp(prefix="cb-", dir="/tmp"))  # podman: runroot <= 50 chars
    registry = None
    try:
        layout = build_image(work, ns.size_mb, ns.layers)
        blobs = sum(p.stat().st_size for p in (layout / "blobs" / "sha256").iterdir())
        registry = start_registry(work / "registry")
        ref = f"{registry.host}/bench/big:1"
        sh("skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:1", f"docker://{ref}")
        tools = ns.only or ["corral", "skopeo", "podman"]
        times: dict[str, list[float]] = {t: [] for t in tools}
        for run in range(ns.runs):
            for tool in tools:
                fresh = work / f"{tool}-{run}"
                if tool == "corral":
                    argv = [CORRAL, "--root", str(fresh), "pull", "-q", "--tls-verify=false", ref]
                    times[tool].append(timed(argv))
                elif tool == "skopeo":
                    t = timed(["skopeo", "copy", "-q", "--src-tls-verify=false",
                               f"docker://{ref}", f"oci:{fresh}:1"])  # fmt: skip
                    t += timed(["umoci", "unpack", "--image", f"{fresh}:1", str(fresh) + "-b"])
                    times[tool].append(t)
                else:
                    run_root = short / f"r{run}"
                    times[tool].append(
                        timed(
                            [
                                "podman",
                                "--root",
                                str(fresh),
                                "--runroot",
                                str(run_root),
                                "pull",
                                "-q",
                                "--tls-verify=false",
                                ref,
                            ]
                        )
                    )
                    subprocess.run(["podman", "--root", str(fresh), "--runroot", str(run_root),
                                    "system", "reset", "-f"], capture_output=True)  # fmt: skip
                if tool != "corral":
                    shutil.rmtree(fresh, ignore_errors=True)
                    shutil.rmtree(str(fresh) + "-b", ignore_errors=True)
                elif run != ns.runs - 1:
                    shutil.rmtree(fresh, ignore_errors=True)
        medians = {t: statistics.median(v) for t, v in times.items()}
        disk = disk_use(work / f"corral-{ns.runs - 1}", ref) if "corral" in tools else {}
        report = {
            "image": {"layers": ns.layers, "size_mb": ns.size_mb, "blob_bytes": blobs},
            "runs": ns.runs,
            "seconds": times,
            "median_s": medians,
            "disk_10_containers": disk,
        }
        if ns.json:
            print(json.dumps(report, indent=2))
            return 0
        print(f"image: {ns.layers} layers, {ns.size_mb} MB unpacked, {blobs / 1e6:.1f} MB gzip")
        print(f"{'tool':<16}{'median s':>10}{'min s':>9}{'max s':>9}")
        for tool, values in times.items():
            name = "skopeo+umoci" if tool == "skopeo" else tool
            print(f"{name:<16}{medians[tool]:>10.2f}{min(values):>9.2f}{max(values):>9.2f}")
        for other in ("skopeo", "podman"):
            if "corral" in medians and other in medians:
                print(f"ratio corral/{other}: {medians['corral'] / medians[other]:.2f}")
        if disk:
            print(
                f"10 containers of one image: layers {disk['layers_bytes'] / 1e6:.1f} MB (one "
                f"copy, {disk['layer_dirs']} dirs), 10 upper dirs {disk['uppers_bytes']} bytes "
                f"in all; store total {disk['store_bytes'] / 1e6:.1f} MB (with the gzip blobs)"
            )
        return 0
    finally:
        if registry is not None:
            registry.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(short, ignore_errors=True)


def disk_use(root: Path, ref: str) -> dict[str, int]:
    """Create 10 containers of the pulled image; one copy of the layers, 10 small upper dirs."""
    ids = [sh(CORRAL, "--root", root, "create", ref, "sh", "-c", "true").strip() for _ in range(10)]
    try:
        snapshots = root / "snapshots"
        uppers = [p for p in snapshots.iterdir() if (p / "work").exists()]
        layers = [p for p in snapshots.iterdir() if not (p / "work").exists()]
        df = sh(CORRAL, "--root", root, "system", "df")
        sys.stdout.write(df)
        return {
            "layer_dirs": len(layers),
            "layers_bytes": sum(du(p) for p in layers),
            "upper_dirs": len(uppers),
            "uppers_bytes": sum(du(p / "fs") for p in uppers),
            "store_bytes": du(root),
        }
    finally:
        sh(CORRAL, "--root", root, "rm", "-f", *ids)


if __name__ == "__main__":
    sys.exit(main())
