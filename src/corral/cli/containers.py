"""``corral create | run | start | stop | rm | ps | logs`` (and ``container ...``): containers.

Thin (DESIGN.md): parse, call ``Engine.containers``, print as docker prints.
"""

from __future__ import annotations

import os
import sys

from corral.cli.common import engine
from corral.cli.network import add_run_flags, request_from
from corral.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from corral.cli.common import Commands


def _options(ns: argparse.Namespace) -> Any:
    from corral.engine.containers import RunOptions

    return RunOptions(
        command=list(ns.command),
        env=list(ns.env or []),
        workdir=ns.workdir,
        user=ns.user,
        hostname=ns.hostname,
        entrypoint=ns.entrypoint,
        seccomp=_seccomp_opt(ns.security_opt or []),
        network=request_from(ns),
    )


def _seccomp_opt(options: list[str]) -> bool:
    """--security-opt: only ``seccomp=unconfined`` (no filter) is understood so far."""
    for option in options:
        key, _, value = option.replace(":", "=", 1).partition("=")
        if key == "seccomp" and value == "unconfined":
            return False
        raise UsageError(f"--security-opt {option!r}: only seccomp=unconfined is supported")
    return True


def _start_failure_status(err: BaseException) -> int:
    """run and create: 127 command not found, 126 cannot be invoked, else 125 (as docker)."""
    from corral.engine.containers.exit_status import start_failure_status

    return start_failure_status(err)


def cmd_create(ns: argparse.Namespace) -> int:
    record = engine(ns).containers.create(ns.image, _options(ns), name=ns.name, auto_remove=ns.rm)
    print(record.id)
    return 0


def cmd_run(ns: argparse.Namespace) -> int:
    if ns.tty:
        raise UsageError("-t: terminals are not supported by corral run yet")
    containers = engine(ns).containers
    record = containers.create(ns.image, _options(ns), name=ns.name, auto_remove=ns.rm)
    if ns.detach:
        try:
            containers.start_detached(record)
        except BaseException:
            if record.auto_remove:
                containers.remove(record.id, force=True)
            raise
        print(record.id)
        sys.stdout.flush()
        return 0
    if not ns.interactive:
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
    sys.stdout.flush()
    try:
        return containers.run_foreground(record)
    except BaseException:
        if record.auto_remove:
            containers.remove(record.id, force=True)
        raise


def cmd_start(ns: argparse.Namespace) -> int:
    containers = engine(ns).containers
    for ref in ns.containers:
        containers.start_detached(containers.record(ref))
        print(ref)
    return 0


def cmd_stop(ns: argparse.Namespace) -> int:
    containers = engine(ns).containers
    for ref in ns.containers:
        containers.stop(ref, timeout=ns.time)
        print(ref)
    return 0


def cmd_rm(ns: argparse.Namespace) -> int:
    from corral.errors import CorralError

    containers = engine(ns).containers
    failed: CorralError | None = None
    for ref in ns.containers:
        try:
            containers.remove(ref, force=ns.force)
            print(ref)
        except CorralError as err:
            print(f"Error: {err}", file=sys.stderr)
            failed = err
    return 0 if failed is None else failed.exit_code


def cmd_logs(ns: argparse.Namespace) -> int:
    if ns.timestamps or ns.since or ns.until:
        flag = "--timestamps" if ns.timestamps else "--since" if ns.since else "--until"
        raise UsageError(f"logs {flag}: not supported yet (the log keeps no times so far)")
    for chunk in engine(ns).containers.read_logs(ns.container, _tail(ns.tail), ns.follow):
        sys.stdout.buffer.write(chunk)
        if ns.follow:
            sys.stdout.flush()
    sys.stdout.flush()
    return 0


def _tail(text: str) -> int | None:
    """``--tail``: "all" (or a negative number, as docker) for everything, else a line count."""
    if text == "all":
        return None
    try:
        lines = int(text)
    except ValueError:
        raise UsageError(f"--tail {text!r}: expected a number of lines or 'all'") from None
    return lines if lines >= 0 else None


def cmd_ps(ns: argparse.Namespace) -> int:
    import json
    import shlex
    import time

    from corral.engine.format import ago, human_duration, rfc3339, table, truncate

    containers = engine(ns).containers
    statuses = containers.list(all_containers=ns.all)
    if ns.quiet:
        for s in statuses:
            print(s.record.id if ns.no_trunc else s.record.id[:12])
        return 0
    rows = []
    now = time.time()
    for s in statuses:
        r = s.record
        if s.state == "running":
            text = f"Up {human_duration(now - (s.started or now))}"
        elif s.state == "exited":
            code = "?" if s.exit_code is None else str(s.exit_code)
            text = f"Exited ({code}) {ago(rfc3339(s.finished or now))}"
        else:
            text = "Created"
        command = " ".join(shlex.quote(a) for a in r.args)
        rows.append(
            [
                r.id if ns.no_trunc else r.id[:12],
                r.image,
                json.dumps(command if ns.no_trunc else truncate(command, 20), ensure_ascii=False),
                ago(rfc3339(r.created)),
                text,
                "",
                r.name,
            ]
        )
    sys.stdout.write(
        table(["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"], rows)
    )
    return 0


# -- the parser ------------------------------------------------------------------------------------


def _run_flags(p: Any, run: bool) -> None:
    p.add_argument("--name", help="the container's name (default: a random one)")
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    p.add_argument(
        "-e", "--env", action="append", metavar="K=V", help="set an environment variable"
    )
    p.add_argument("-w", "--workdir", metavar="DIR", help="working directory in the container")
    p.add_argument("-u", "--user", metavar="UID[:GID]", help="numeric user (and group)")
    p.add_argument("--hostname", metavar="NAME", help="hostname (default: the short id)")
    p.add_argument("--entrypoint", metavar="CMD", help="replace the image's Entrypoint")
    p.add_argument(
        "--security-opt", action="append", metavar="OPT", help="seccomp=unconfined: no filter"
    )
    add_run_flags(p)
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin attached")
    p.add_argument("-t", "--tty", action="store_true", help="a terminal (not supported yet)")
    if run:
        p.add_argument("-d", "--detach", action="store_true", help="run in the background")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("command", nargs="...", metavar="CMD")  # argparse.REMAINDER


def register(commands: Commands) -> None:
    """The container commands, at the top level and under ``container`` (docker's two forms)."""
    _register(commands.top, grouped=False)
    _register(commands.group("container", "manage containers"), grouped=True)


def _register(sub: Any, grouped: bool) -> None:
    p = sub.add_parser("create", help="create a container (do not start it)")
    _run_flags(p, run=False)
    p.set_defaults(func=cmd_create, error_status=_start_failure_status)

    p = sub.add_parser("run", help="run a command in a new container")
    _run_flags(p, run=True)
    p.set_defaults(func=cmd_run, error_status=_start_failure_status)

    p = sub.add_parser("start", help="start created or stopped containers (detached)")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.set_defaults(func=cmd_start)

    p = sub.add_parser("stop", help="stop running containers")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.add_argument("-t", "--time", type=float, default=10.0, help="seconds before SIGKILL")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("rm", help="remove containers")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.add_argument("-f", "--force", action="store_true", help="kill a running container first")
    p.set_defaults(func=cmd_rm)

    p = sub.add_parser("ps", aliases=["ls", "list"] if grouped else [], help="list containers")
    p.add_argument("-a", "--all", action="store_true", help="also stopped ones")
    p.add_argument("-q", "--quiet", action="store_true", help="only ids")
    p.add_argument("--no-trunc", action="store_true")
    p.set_defaults(func=cmd_ps)

    p = sub.add_parser("logs", help="the output of a detached container")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("-f", "--follow", action="store_true", help="go on until it stops")
    p.add_argument(
        "-n", "--tail", default="all", metavar="N", help="only the last N lines (default: all)"
    )
    p.add_argument("-t", "--timestamps", action="store_true", help="(not supported yet)")
    p.add_argument("--since", metavar="TIME", help="(not supported yet)")
    p.add_argument("--until", metavar="TIME", help="(not supported yet)")
    p.set_defaults(func=cmd_logs)
