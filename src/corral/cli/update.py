"""``corral update [OPTIONS] CONTAINER...``: change a container's limits, docker's verb.

The limit flags are ``run``'s (corral.cli.run_flags), with the same grammars and checks; the
work is in corral.engine.containers.prepare.update.
"""

from __future__ import annotations

from corral.cli.common import engine

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from corral.cli.common import Commands


def cmd_update(ns: argparse.Namespace) -> int:
    from corral.cli import run_flags
    from corral.engine.containers.prepare import update
    from corral.engine.containers.spec import RunOptions

    opts = RunOptions(cpuset_cpus=ns.cpuset_cpus, cpuset_mems=ns.cpuset_mems)
    if ns.memory is not None:
        opts.memory = run_flags.parse_size(ns.memory, "-m, --memory")
    if ns.memory_swap is not None:
        swap = ns.memory_swap
        opts.memory_swap = -1 if swap == "-1" else run_flags.parse_size(swap, "--memory-swap")
    if ns.memory_reservation is not None:
        opts.memory_reservation = run_flags.parse_size(
            ns.memory_reservation, "--memory-reservation"
        )
    if ns.cpus is not None:
        opts.cpus = run_flags.parse_cpus(ns.cpus)
    if ns.cpu_shares is not None:
        opts.cpu_shares = run_flags.parse_int(ns.cpu_shares, "-c, --cpu-shares")
    if ns.pids_limit is not None:
        opts.pids_limit = run_flags.parse_int(ns.pids_limit, "--pids-limit")
    if ns.blkio_weight is not None:
        opts.blkio_weight = run_flags.parse_int(ns.blkio_weight, "--blkio-weight")
    run_flags.check(opts)
    containers = engine(ns).containers
    for ref in ns.containers:
        update(containers, ref, opts)
        print(ref)
    return 0


def _add(sub: Any) -> None:
    p = sub.add_parser("update", help="change the limits of containers")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.add_argument("-m", "--memory", metavar="BYTES")
    p.add_argument("--memory-swap", metavar="BYTES")
    p.add_argument("--memory-reservation", metavar="BYTES")
    p.add_argument("--cpus", metavar="N")
    p.add_argument("-c", "--cpu-shares", metavar="N")
    p.add_argument("--cpuset-cpus", metavar="LIST")
    p.add_argument("--cpuset-mems", metavar="LIST")
    p.add_argument("--pids-limit", metavar="N")
    p.add_argument("--blkio-weight", metavar="N")
    p.set_defaults(func=cmd_update)


def register(commands: Commands) -> None:
    _add(commands.top)
    _add(commands.group("container", "manage containers"))
