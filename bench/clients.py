"""corral-runc against runc under real clients (ctr, podman, docker), and each runtime verb alone.

    .venv/bin/python bench/clients.py [--runs N] [--warmup N] [--clients ctr,podman,docker]
                                      [--corral PATH] [--runc PATH] [--json]

Run as root, with what scripts/install.sh installs (containerd, docker.io, podman, runc). It
starts a private containerd and dockerd, and podman's private roots, exactly as the client tests
do (tests/helpers/clients.py: roots, state and sockets in a temporary directory, each in a
network namespace of its own; the busybox image made locally and loaded, nothing pulled), then:

1. Clients: ``run --rm IMAGE /bin/true`` through each client, alternating corral-runc, runc,
   corral-runc, runc ... (warm-ups first, also alternating), each run timed from spawn to exit:
   ``ctr run --rm --runc-binary PATH``, ``podman --runtime PATH run --rm``, ``docker run --rm
   --runtime corral|runc`` (dockerd has corral added with ``--add-runtime``). It prints the
   medians and the corral/runc ratio per client.
2. Verbs: the cost of each runtime call alone, on a busybox bundle whose process is /bin/true:
   ``--version``; then per container ``create`` (not timed), ``state``, ``start``, (wait until
   stopped, not timed), ``delete``; alternating the runtimes. It prints the medians, the
   difference and the ratio.

Every timed command is spawned with ``os.posix_spawn`` by the lean ``python3 -IS`` worker of
bench/runc_startup.py and timed with ``time.perf_counter_ns`` around spawn and ``wait4``. It is a
benchmark, not a test: it exits 0 whatever the figures, 1 when a run fails (printing the
command and its output), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CLIENTS = ("ctr", "podman", "docker")
VERBS = ("--version", "state", "start", "kill --all", "delete")


def _load_startup() -> ModuleType:
    """bench/runc_startup.py: its statistics, formatting, argument types and spawner."""
    spec = importlib.util.spec_from_file_location("runc_startup", REPO / "bench/runc_startup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


startup = _load_startup()
median: Callable[[list[float]], float] = startup.median
ratio: Callable[[float, float], float | None] = startup.ratio
format_ratio: Callable[[float | None], str] = startup.format_ratio
RunFailed: type[Exception] = startup.RunFailed


# Pure helpers (tests/unit/test_bench_cli.py).


def _clients(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in CLIENTS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"say one or more of {','.join(CLIENTS)}, comma-separated (got {text!r})"
        )
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/clients.py",
        description="Time `run --rm /bin/true` through ctr, podman and docker with corral-runc"
        " and with runc, and each runtime verb alone.",
    )
    parser.add_argument(
        "--runs",
        type=startup._positive,
        default=30,
        help="timed runs of each runtime, per client and per verb (default 30)",
    )
    parser.add_argument(
        "--warmup",
        type=startup._nonnegative,
        default=3,
        help="untimed runs of each first (default 3)",
    )
    parser.add_argument(
        "--clients",
        type=_clients,
        default=list(CLIENTS),
        metavar="LIST",
        help="which clients, comma-separated (default ctr,podman,docker)",
    )
    parser.add_argument(
        "--corral",
        default="/usr/local/bin/corral-runc",
        metavar="PATH",
        help="corral-runc (default /usr/local/bin/corral-runc)",
    )
    parser.add_argument(
        "--runc",
        default=shutil.which("runc") or "/usr/sbin/runc",
        metavar="PATH",
        help="runc (default: runc on PATH)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser.parse_args(argv)


def _ms(values: list[float]) -> float:
    return median(values) if values else float("nan")


def format_clients_table(samples: dict[str, dict[str, list[float]]]) -> str:
    """One row per client: the corral and runc medians (ms) and their ratio."""
    header = f"{'client':<8} {'corral-runc ms':>15} {'runc ms':>9} {'ratio':>6}"
    lines = [header, "-" * len(header)]
    for client, by_runtime in samples.items():
        c, r = _ms(by_runtime["corral"]), _ms(by_runtime["runc"])
        lines.append(f"{client:<8} {c:>15.1f} {r:>9.1f} {format_ratio(ratio(c, r)):>6}")
    return "\n".join(lines)


def script_interpreter(path: str) -> list[str]:
    """The interpreter and flags of a ``#!`` script (corral-runc's launcher), or []."""
    try:
        with open(shutil.which(path) or path, "rb") as f:
            first = f.readline(256)
    except OSError:
        return []
    return first[2:].decode().split() if first.startswith(b"#!") else []


def format_verbs_table(samples: dict[str, dict[str, list[float]]]) -> str:
    """One row per verb: the corral and runc medians (ms), the difference and the ratio; then
    each corral verb's cost above its interpreter's bare start, when that was measured."""
    header = f"{'verb':<10} {'corral-runc ms':>15} {'runc ms':>9} {'+ms':>7} {'ratio':>6}"
    lines = [header, "-" * len(header)]
    bare = samples.get("interpreter", {}).get("corral")
    for verb, by_runtime in samples.items():
        if verb == "interpreter":
            continue
        c, r = _ms(by_runtime["corral"]), _ms(by_runtime["runc"])
        lines.append(
            f"{verb:<10} {c:>15.2f} {r:>9.2f} {c - r:>+7.2f} {format_ratio(ratio(c, r)):>6}"
        )
    if bare:
        start = _ms(bare)
        above = ", ".join(
            f"{verb} {_ms(by['corral']) - start:+.2f}"
            for verb, by in samples.items()
            if verb != "interpreter"
        )
        lines.append(
            f"\ncorral-runc's interpreter alone (-c pass): {start:.2f} ms;"
            f" each verb above it (ms): {above}"
        )
    return "\n".join(lines)


# Running.


class Timer:
    """Times commands with runc_startup's lean spawner; a failure raises RunFailed."""

    def __init__(self, tmp: str) -> None:
        self.spawner = startup.Spawner(startup._python(), os.path.join(tmp, "output"))

    def ms(self, argv: list[str]) -> float:
        argv = [shutil.which(argv[0]) or argv[0], *argv[1:]]
        status, wall_ns, _rss = self.spawner.run(argv)
        if status != 0:
            with open(self.spawner.output, errors="replace") as f:
                text = f.read().rstrip()
            code = os.waitstatus_to_exitcode(status)
            raise RunFailed(f"exit status {code}: {shlex.join(argv)}\n{text}")
        return float(wall_ns / 1e6)

    def close(self) -> None:
        self.spawner.close()


def _ctr_run(ctrd: Any, runtime: Any) -> list[str]:
    return list(
        ctrd.ctr.argv(
            "run",
            *ctrd.run_flags(runtime),
            "--rm",
            ctrd.image,
            f"bench-{secrets.token_hex(5)}",
            "/bin/true",
        )
    )


def _podman_run(pm: Any, runtime: Any) -> list[str]:
    return list(
        pm.cli(runtime).argv(
            "run",
            "--rm",
            "--pull",
            "never",
            "--cgroup-parent",
            pm.cgroup_parent,
            pm.image,
            "/bin/true",
        )
    )


def _docker_run(dockerd: Any, runtime: Any) -> list[str]:
    return list(
        dockerd.docker.argv(
            "run", "--rm", "--pull", "never", "--runtime", runtime.name, dockerd.image, "/bin/true"
        )
    )


def client_commands(
    stack: ExitStack,
    tmp: Path,
    names: list[str],
    corral: Any,
    runc: Any,
) -> dict[str, dict[str, Callable[[], list[str]]]]:
    """Start the clients named; for each, per runtime, a function giving the next run's argv."""
    from helpers import clients  # tests/helpers, on sys.path (see main)

    started: dict[str, tuple[Any, Callable[[Any, Any], list[str]]]] = {}
    if "ctr" in names:
        started["ctr"] = (stack.enter_context(clients.containerd(tmp / "containerd")), _ctr_run)
    if "podman" in names:
        pm = stack.enter_context(clients.podman(tmp / "podman"))
        # The spawner passes its environment on: podman's private configuration.
        os.environ.update({k: pm.env[k] for k in ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF")})
        started["podman"] = (pm, _podman_run)
    if "docker" in names:
        dockerd = stack.enter_context(clients.dockerd(tmp / "docker", [corral]))
        os.environ["DOCKER_CONFIG"] = str(tmp / "docker" / "cli")
        started["docker"] = (dockerd, _docker_run)
    return {
        name: {rt.name: functools.partial(make, client, rt) for rt in (corral, runc)}
        for name, (client, make) in started.items()
    }


def bench_clients(
    timer: Timer, commands: dict[str, dict[str, Callable[[], list[str]]]], runs: int, warmup: int
) -> dict[str, dict[str, list[float]]]:
    samples: dict[str, dict[str, list[float]]] = {}
    for client, by_runtime in commands.items():
        samples[client] = {name: [] for name in by_runtime}
        for i in range(warmup + runs):
            for name, argv in by_runtime.items():
                took = timer.ms(argv())
                if i >= warmup:
                    samples[client][name].append(took)
    return samples


def _runtime_call(argv: list[str], *args: str) -> str:
    """Run a runtime command untimed; its output (a file, not a pipe: after ``create`` the
    container's init holds the stdio it was given)."""
    with tempfile.TemporaryFile() as out:
        done = subprocess.run(
            [*argv, *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
            timeout=60,
        )
        out.seek(0)
        text = out.read().decode(errors="replace")
    if done.returncode != 0:
        raise RunFailed(f"exit status {done.returncode}: {shlex.join([*argv, *args])}\n{text}")
    return text


def bench_verbs(
    timer: Timer, tmp: Path, runtimes: dict[str, str], runs: int, warmup: int
) -> dict[str, dict[str, list[float]]]:
    """``--version``, ``state``, ``start``, ``kill --all`` and ``delete`` of each runtime,
    alternating."""
    from corral.bundle import make_busybox_bundle

    bundle = make_busybox_bundle(str(tmp / "bundle"), ["/bin/true"], terminal=False)
    samples: dict[str, dict[str, list[float]]] = {v: {n: [] for n in runtimes} for v in VERBS}
    interpreter = script_interpreter(runtimes.get("corral", ""))
    if interpreter:
        samples["interpreter"] = {"corral": []}
    for i in range(warmup + runs):
        for name, path in runtimes.items():
            rt = [path, "--root", str(tmp / f"root-{name}")]
            cid = f"bench-{name}-{i}"
            took = {"--version": timer.ms([path, "--version"])}
            if name == "corral" and interpreter:
                took["interpreter"] = timer.ms([*interpreter, "-c", "pass"])
            _runtime_call(rt, "create", "--bundle", bundle, cid)
            took["state"] = timer.ms([*rt, "state", cid])
            took["start"] = timer.ms([*rt, "start", cid])
            deadline = time.monotonic() + 10
            while '"stopped"' not in _runtime_call(rt, "state", cid):
                if time.monotonic() > deadline:
                    raise RunFailed(f"{name}: {cid} still not stopped 10 s after start")
                time.sleep(0.005)
            # What containerd's shim sends after the init exited, for what it may have left.
            took["kill --all"] = timer.ms([*rt, "kill", "--all", cid, "9"])
            took["delete"] = timer.ms([*rt, "delete", cid])
            if i >= warmup:
                for verb, ms in took.items():
                    samples[verb][name].append(ms)
    return samples


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(argv)
    sys.path[:0] = [str(REPO / "tests"), str(REPO / "src")]
    from helpers import clients
    from helpers.shim import start_reaper

    corral = clients.Runtime("corral", ns.corral)
    runc = clients.Runtime("runc", ns.runc)
    # Containers' inits outlive `create` and `run -d`; reap them as a shim would.
    stop_reaper = start_reaper()
    tmp = Path(tempfile.mkdtemp(prefix="corral-bench-clients-"))
    results: dict[str, Any] = {
        "runs": ns.runs,
        "warmup": ns.warmup,
        "runtimes": {"corral": ns.corral, "runc": ns.runc},
    }
    try:
        with ExitStack() as stack:
            commands = client_commands(stack, tmp, ns.clients, corral, runc)
            timer = Timer(str(tmp))  # after: the clients' environment is set by then
            stack.callback(timer.close)
            results["clients"] = bench_clients(timer, commands, ns.runs, ns.warmup)
            results["verbs"] = bench_verbs(
                timer, tmp, {"corral": ns.corral, "runc": ns.runc}, ns.runs, ns.warmup
            )
    except RunFailed as err:
        print(f"clients: {err}", file=sys.stderr)
        return 1
    finally:
        stop_reaper.set()
        shutil.rmtree(tmp, ignore_errors=True)
    if ns.json:
        print(json.dumps(results, indent=2))
        return 0
    print(
        f"run --rm /bin/true through each client: {ns.runs} runs each after {ns.warmup}"
        f" warm-ups, alternating corral-runc ({ns.corral}) and runc ({ns.runc}); medians"
    )
    print(format_clients_table(results["clients"]))
    print()
    print(f"each runtime verb alone (busybox bundle, /bin/true): {ns.runs} runs each; medians")
    print(format_verbs_table(results["verbs"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
