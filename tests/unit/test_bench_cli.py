"""bench/runc_startup.py: its pure helpers (statistics, formatting, arguments); no timing."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "runc_startup.py"


def _load(script: Path = SCRIPT, name: str = "runc_startup") -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bench = _load()


def test_median() -> None:
    assert bench.median([3.0, 1.0, 2.0]) == 2.0
    assert bench.median([4.0, 1.0, 2.0, 3.0]) == 2.5
    with pytest.raises(ValueError):
        bench.median([])


def test_percentile_interpolates_like_numpy() -> None:
    values = [float(v) for v in range(1, 11)]  # 1..10
    assert bench.percentile(values, 0) == 1.0
    assert bench.percentile(values, 100) == 10.0
    assert bench.percentile(values, 50) == bench.median(values) == 5.5
    assert bench.percentile(values, 10) == pytest.approx(1.9)
    assert bench.percentile(values, 90) == pytest.approx(9.1)
    assert bench.percentile([7.0], 90) == 7.0
    with pytest.raises(ValueError):
        bench.percentile(values, 101)
    with pytest.raises(ValueError):
        bench.percentile([], 50)


def test_ratio_and_its_format() -> None:
    assert bench.format_ratio(bench.ratio(3.0, 2.0)) == "1.50"
    assert bench.format_ratio(bench.ratio(1.0, 3.0)) == "0.33"
    assert bench.ratio(1.0, 0.0) is None
    assert bench.format_ratio(None) == "n/a"


def test_summarize_in_ms_and_mib() -> None:
    samples = [bench.Sample(wall_ns=ms * 1_000_000, maxrss_kib=10 * 1024) for ms in range(1, 12)]
    stats = bench.summarize(samples)
    assert stats["median_ms"] == 6.0
    assert stats["p10_ms"] == pytest.approx(2.0)
    assert stats["p90_ms"] == pytest.approx(10.0)
    assert stats["peak_rss_mib"] == 10.0


def test_table_ends_with_the_ratios() -> None:
    stats = {
        "corral": {"median_ms": 30.0, "p10_ms": 28.0, "p90_ms": 35.0, "peak_rss_mib": 12.0},
        "runc": {"median_ms": 15.0, "p10_ms": 14.0, "p90_ms": 17.0, "peak_rss_mib": 10.0},
    }
    lines = bench.format_table(stats).splitlines()
    assert lines[0].split()[:3] == ["runtime", "median", "ms"]
    assert lines[2].split() == ["corral", "30.00", "28.00", "35.00", "12.0"]
    assert lines[3].split() == ["runc", "15.00", "14.00", "17.00", "10.0"]
    assert lines[-2:] == ["ratio corral/runc (median): 2.00", "peak RSS corral/runc: 1.20"]


def test_rss_note_flags_figures_at_the_floor() -> None:
    stats = {"corral": {"peak_rss_mib": 12.0}, "runc": {"peak_rss_mib": 8.1}}
    assert bench.rss_note(stats, 8.0).endswith("runc at the floor: the true peak may be lower)")
    assert "floor" in bench.rss_note(stats, 4.0)
    assert "at the floor" not in bench.rss_note(stats, 4.0)


def test_arguments_default() -> None:
    ns = bench.parse_args([])
    assert (ns.runs, ns.warmup, ns.corral, ns.runc, ns.json) == (40, 5, None, ["runc"], False)


def test_arguments_split_commands_like_a_shell() -> None:
    ns = bench.parse_args(
        [
            "--runs",
            "3",
            "--warmup",
            "0",
            "--corral",
            "corral-runc --cgroup-manager 'disabled'",
            "--runc",
            "/usr/sbin/runc",
            "--json",
        ]
    )
    assert ns.runs == 3 and ns.warmup == 0 and ns.json
    assert ns.corral == ["corral-runc", "--cgroup-manager", "disabled"]
    assert ns.runc == ["/usr/sbin/runc"]


@pytest.mark.parametrize(
    "argv", [["--runs", "0"], ["--runs", "x"], ["--warmup", "-1"], ["--corral", "  "]]
)
def test_bad_arguments_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(argv)
    assert exc.value.code == 2


# bench/clients.py: its arguments and tables (it reuses the helpers above).

CLIENTS_SCRIPT = SCRIPT.parent / "clients.py"


clients_bench = _load(CLIENTS_SCRIPT, "clients_bench")


def test_clients_bench_arguments_default() -> None:
    ns = clients_bench.parse_args([])
    assert (ns.runs, ns.warmup, ns.clients, ns.json) == (30, 3, ["ctr", "podman", "docker"], False)
    assert ns.corral == "/usr/local/bin/corral-runc"


def test_clients_bench_arguments() -> None:
    ns = clients_bench.parse_args(["--runs", "5", "--clients", "docker, ctr", "--runc", "/x"])
    assert (ns.runs, ns.clients, ns.runc) == (5, ["docker", "ctr"], "/x")


@pytest.mark.parametrize("argv", [["--clients", "crio"], ["--clients", ","], ["--runs", "0"]])
def test_clients_bench_bad_arguments_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        clients_bench.parse_args(argv)
    assert exc.value.code == 2


def test_clients_bench_tables() -> None:
    runs = {"ctr": {"corral": [110.0, 130.0, 120.0], "runc": [100.0, 100.0]}}
    lines = clients_bench.format_clients_table(runs).splitlines()
    assert lines[0].split() == ["client", "corral-runc", "ms", "runc", "ms", "ratio"]
    assert lines[2].split() == ["ctr", "120.0", "100.0", "1.20"]
    verbs = {"state": {"corral": [9.0], "runc": [4.5]}, "start": {"corral": [], "runc": [1.0]}}
    lines = clients_bench.format_verbs_table(verbs).splitlines()
    assert lines[2].split() == ["state", "9.00", "4.50", "+4.50", "2.00"]
    assert lines[3].split()[:3] == ["start", "nan", "1.00"]


def test_clients_bench_verbs_table_shows_the_cost_above_the_interpreter() -> None:
    table = clients_bench.format_verbs_table({
        "--version": {"corral": [9.0], "runc": [3.0]},
        "state": {"corral": [9.5], "runc": [4.0]},
        "interpreter": {"corral": [7.0]},
    })
    assert "interpreter" not in table.splitlines()[2]  # not a row of its own
    assert table.splitlines()[-1] == (
        "corral-runc's interpreter alone (-c pass): 7.00 ms; each verb above it (ms):"
        " --version +2.00, state +2.50"
    )


# bench/cpu_breakdown.py: its arguments and table.

cpu_bench = _load(SCRIPT.parent / "cpu_breakdown.py", "cpu_breakdown")


def test_cpu_breakdown_arguments() -> None:
    assert cpu_bench.parse_args([]).runs == 30
    assert cpu_bench.parse_args(["--runs", "3", "--runc", "/x"]).runc == "/x"
    with pytest.raises(SystemExit):
        cpu_bench.parse_args(["--runs", "0"])


def test_cpu_breakdown_table() -> None:
    corral = {"create": ([20.0, 22.0], [15.0, 16.0]), "  the init": ([0.0], [4.0])}
    runc = {"create": ([18.0], [10.0]), "  the init": ([0.0], [5.0])}
    lines = cpu_bench.format_table(corral, runc).splitlines()
    assert lines[2].split() == ["create", "21.00", "15.50", "18.00", "10.00"]
    assert lines[3].split() == ["the", "init", "4.00", "5.00"]  # no wall time for it
