"""bench/memory_floor.py: its pure helpers (bisection, table, command wrapping); no runs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "memory_floor.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("memory_floor", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = _load()


@pytest.mark.parametrize("floor", [128, 132, 200, 256, 1000, 16380, 16384])
def test_bisect_finds_the_smallest_passing_size(floor: int) -> None:
    tried: list[int] = []

    def passes(size: int) -> bool:
        tried.append(size)
        assert size % 4 == 0
        return size >= floor

    found, min_passed = bench.bisect_floor(passes, 128, 16384, 4)
    assert found == floor
    assert min_passed == (floor == 128)
    assert len(tried) <= 14  # log2((16384 - 128) / 4) + 1


def test_table() -> None:
    rows = [
        {"name": "corral", "floor_kib": 128, "min_passed": True, "below": ""},
        {"name": "crun", "floor_kib": 212, "min_passed": False, "below": "killed"},
        {"name": "runc", "floor_kib": None, "min_passed": False, "below": "fails at --max"},
    ]
    assert bench.format_table(rows).splitlines()[2:] == [
        "| corral | <= 128 | - |",
        "| crun | 212 | killed |",
        "| runc | - | fails at --max |",
    ]


def test_crun_on_a_hybrid_host_gets_a_private_unified_tmpfs() -> None:
    runtime = bench.Runtime("crun", ["crun"], "/r", wrap_hybrid=True)
    argv = runtime.command("run", "x")
    assert argv[:3] == ["unshare", "-m", "sh"]
    assert "mount -t tmpfs none /sys/fs/cgroup/unified" in argv[4]
    assert argv[-5:] == ["crun", "--root", "/r", "run", "x"]
    assert bench.Runtime("runc", ["runc"], "/r").command("run", "x") == [
        "runc",
        "--root",
        "/r",
        "run",
        "x",
    ]


def test_arguments() -> None:
    ns = bench.parse_args(["--min", "64", "--max", "1024", "--only", "corral"])
    assert (ns.min, ns.max, ns.step, ns.tries, ns.only) == (64, 1024, 4, 3, ["corral"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--min", "2048", "--max", "1024"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--tries", "0"])
