"""``corral create | run | start | attach | stop | restart | kill | pause | unpause | wait | rm |
ps | logs | inspect | cp | diff | export | commit`` (and ``container ...``): containers.

Thin (DESIGN.md): parse, call ``Engine.containers``, print as docker prints.
"""

from __future__ import annotations

import os
import sys

from corral.cli.common import confirm, engine, format_rows
from corral.cli.network import add_run_flags as add_network_flags
from corral.cli.network import request_from
from corral.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from corral.cli.common import Commands


def _options(ns: argparse.Namespace) -> Any:
    from corral.cli.run_flags import run_options
    from corral.engine.containers.spec import NO_NETWORK

    opts = run_options(ns)
    opts.tty = ns.tty
    alone = not (ns.publish or ns.publish_all or ns.network_alias or ns.ip)
    opts.network = NO_NETWORK if ns.network == "none" and alone else request_from(ns)
    return opts


def _start_failure_status(err: BaseException) -> int:
    """run and create: 127 command not found, 126 cannot be invoked, else 125 (as docker)."""
    from corral.engine.containers.exit_status import start_failure_status

    return start_failure_status(err)


def _monitor_options(ns: argparse.Namespace) -> Any:
    """--restart, --health-*, --stop-signal, --stop-timeout, --log-opt: the monitor's config."""
    from corral.engine.monitor.config import (
        MonitorConfig,
        healthcheck_from,
        parse_restart,
        parse_size,
    )
    from corral.spec.signals import parse_signal

    config = MonitorConfig()
    config.tty, config.open_stdin = ns.tty, ns.interactive
    config.restart, config.max_retries = parse_restart(ns.restart)
    if ns.restart != "no" and ns.rm:
        raise UsageError("--restart and --rm: conflicting options (a restarted container is "
                         "not removed)")  # fmt: skip
    given = (ns.health_cmd, ns.health_interval, ns.health_timeout, ns.health_retries,
             ns.health_start_period)  # fmt: skip
    if ns.no_healthcheck or any(v is not None for v in given):
        config.healthcheck = healthcheck_from(None, *given, disabled=ns.no_healthcheck)
        config.no_healthcheck = ns.no_healthcheck
    if ns.stop_signal is not None:
        try:
            parse_signal(ns.stop_signal)
        except Exception:
            raise UsageError(f"--stop-signal {ns.stop_signal!r}: not a signal") from None
        config.stop_signal = ns.stop_signal
    if ns.stop_timeout is not None:
        config.stop_timeout = ns.stop_timeout
    for option in ns.log_opt or []:
        key, eq, value = option.partition("=")
        if key == "max-size" and eq:
            config.log_max_size = parse_size(value, "--log-opt max-size")
        elif key == "max-file" and value.isdigit() and int(value) > 0:
            config.log_max_file = int(value)
        else:
            raise UsageError(f"--log-opt {option!r}: only max-size=SIZE and max-file=N are known")
    return config


def _create(ns: argparse.Namespace) -> Any:
    _ensure_image(ns)
    return engine(ns).containers.create(
        ns.image, _options(ns), name=ns.name, auto_remove=ns.rm, monitor=_monitor_options(ns)
    )


def cmd_create(ns: argparse.Namespace) -> int:
    print(_create(ns).id)
    return 0


def cmd_run(ns: argparse.Namespace) -> int:
    from corral.engine.monitor.attach import parse_detach_keys

    keys = parse_detach_keys(ns.detach_keys)
    sig_proxy = _bool_flag(ns.sig_proxy, "--sig-proxy")
    if ns.tty and ns.interactive and not ns.detach and not os.isatty(0):
        print("the input device is not a TTY", file=sys.stderr)  # docker's words and status
        return 1
    containers = engine(ns).containers
    record = _create(ns)
    if ns.tty and not ns.detach:  # attached to its pty through the monitor, as docker
        sys.stdout.flush()
        try:
            code = containers.start_attached(
                record, stdin=ns.interactive, detach_keys=keys, sig_proxy=sig_proxy
            )
        except BaseException:
            if record.auto_remove:
                containers.remove(record.id, force=True)
            raise
        return 0 if code is None else code
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
        return containers.run_foreground(record, interactive=ns.interactive)
    except BaseException:
        if record.auto_remove:
            containers.remove(record.id, force=True)
        raise


def cmd_start(ns: argparse.Namespace) -> int:
    containers = engine(ns).containers
    if ns.attach or ns.interactive:  # start -a [-i]: attached from the start, as run -it
        from corral.engine.monitor.attach import parse_detach_keys

        keys = parse_detach_keys(ns.detach_keys)
        if len(ns.containers) > 1:
            raise UsageError("you cannot start and attach multiple containers at once")
        sys.stdout.flush()
        code = containers.start_attached(
            containers.record(ns.containers[0]), stdin=ns.interactive, detach_keys=keys
        )
        return 0 if code is None else code
    for ref in ns.containers:
        containers.start_detached(containers.record(ref))
        print(ref)
    return 0


def cmd_attach(ns: argparse.Namespace) -> int:
    """docker's ``attach``: our terminal to a running container until it exits (its exit
    code) or the detach keys are typed (0, it runs on)."""
    from corral.engine.monitor.attach import parse_detach_keys

    keys = parse_detach_keys(ns.detach_keys)
    sig_proxy = _bool_flag(ns.sig_proxy, "--sig-proxy")
    sys.stdout.flush()
    code = engine(ns).containers.attach(
        ns.container, stdin=not ns.no_stdin, detach_keys=keys, sig_proxy=sig_proxy
    )
    return 0 if code is None else code


def _bool_flag(text: str, flag: str) -> bool:
    """A Go-style boolean flag's value (``--sig-proxy=false``)."""
    value = text.lower()
    if value in ("true", "1", "t"):
        return True
    if value in ("false", "0", "f"):
        return False
    raise UsageError(f"{flag} {text!r}: want true or false")


def _add_attach_flags(p: Any) -> None:
    p.add_argument("--detach-keys", metavar="KEYS",
                   help="keys that detach, leaving it running (ctrl-p,ctrl-q)")  # fmt: skip
    p.add_argument("--sig-proxy", nargs="?", const="true", default="true", metavar="BOOL",
                   help="pass our signals on to it (without -t; default true)")  # fmt: skip


def _each(ns: argparse.Namespace, action: Any) -> int:
    """Do ``action(ref)`` for each container named, printing its name; docker goes on after
    a failure (one line) and exits 1 at the end."""
    from corral.errors import CorralError

    failed: CorralError | None = None
    for ref in ns.containers:
        try:
            action(ref)
            print(ref)
        except CorralError as err:
            print(f"Error: {err}", file=sys.stderr)
            failed = err
    sys.stdout.flush()
    return 0 if failed is None else failed.exit_code


def cmd_stop(ns: argparse.Namespace) -> int:
    containers = engine(ns).containers
    return _each(ns, lambda ref: containers.stop(ref, timeout=ns.time, signal=ns.signal))


def cmd_restart(ns: argparse.Namespace) -> int:
    containers = engine(ns).containers
    return _each(ns, lambda ref: containers.restart(ref, timeout=ns.time))


def cmd_kill(ns: argparse.Namespace) -> int:
    containers = engine(ns).containers
    return _each(ns, lambda ref: containers.kill(ref, ns.signal))


def cmd_pause(ns: argparse.Namespace) -> int:
    return _each(ns, engine(ns).containers.pause)


def cmd_unpause(ns: argparse.Namespace) -> int:
    return _each(ns, engine(ns).containers.unpause)


def cmd_wait(ns: argparse.Namespace) -> int:
    containers = engine(ns).containers
    from corral.errors import CorralError

    failed: CorralError | None = None
    for ref in ns.containers:
        try:
            print(containers.wait(ref), flush=True)
        except CorralError as err:
            print(f"Error: {err}", file=sys.stderr)
            failed = err
    return 0 if failed is None else failed.exit_code


def cmd_inspect(ns: argparse.Namespace) -> int:
    import json

    from corral.cli.common import go_template

    containers = engine(ns).containers
    out = [containers.inspect(ref) for ref in ns.containers]
    if ns.format:
        for item in out:
            print(go_template(ns.format, item))
        return 0
    print(json.dumps(out, indent=4))
    return 0


def cmd_rm(ns: argparse.Namespace) -> int:
    from corral.errors import CorralError

    containers = engine(ns).containers
    failed: CorralError | None = None
    for ref in ns.containers:
        try:
            containers.remove(ref, force=ns.force, volumes=ns.volumes)
            print(ref)
        except CorralError as err:
            print(f"Error: {err}", file=sys.stderr)
            failed = err
    return 0 if failed is None else failed.exit_code


def cmd_logs(ns: argparse.Namespace) -> int:
    """stdout lines to our stdout, stderr lines to our stderr (as docker), ``-t`` prefixed
    with their time."""
    since = _log_time(ns.since, "--since") if ns.since else None
    until = _log_time(ns.until, "--until") if ns.until else None
    entries = engine(ns).containers.read_logs(
        ns.container, _tail(ns.tail), ns.follow, since=since, until=until
    )
    out, err = sys.stdout.buffer, sys.stderr.buffer
    for entry in entries:
        target = err if entry.stream == "stderr" else out
        if ns.timestamps:
            target.write(entry.time.encode() + b" ")
        target.write(entry.data)
        if ns.follow or target is err:
            target.flush()
    out.flush()
    return 0


def _log_time(text: str, flag: str) -> str:
    """docker's --since/--until: an RFC 3339 time or date, a Unix time (``1700000000.5``), or
    a duration before now (``10m``, ``1h30m``); as the log's own time strings."""
    import datetime
    import time

    from corral.engine.monitor.config import parse_duration
    from corral.engine.monitor.logfile import timestamp

    value = text.strip()
    try:
        return timestamp(float(value))
    except ValueError:
        pass
    try:
        return timestamp(time.time() - parse_duration(value, flag))
    except UsageError:
        pass
    try:
        when = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{flag} {text!r}: use an RFC 3339 time, a Unix time or a duration "
                         "such as 10m") from None  # fmt: skip
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return timestamp(when.timestamp())


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
    from corral.engine import filters
    from corral.engine.containers.listing import PS_COLUMNS, PS_FIELDS, row, select

    chosen = filters.parse(ns.filter or [], filters.CONTAINER_KEYS)
    everything = ns.all or ns.latest or ns.last is not None
    statuses = select(engine(ns).containers, chosen, everything)
    if ns.latest:
        statuses = statuses[:1]
    elif ns.last is not None:
        statuses = statuses[: max(ns.last, 0)] if ns.last >= 0 else statuses
    if ns.quiet:
        for s in statuses:
            print(s.record.id if ns.no_trunc else s.record.id[:12])
        return 0
    rows = [row(s, ns.no_trunc) for s in statuses]
    sys.stdout.write(format_rows(ns.format, rows, PS_COLUMNS, PS_FIELDS))
    return 0


def cmd_exec(ns: argparse.Namespace) -> int:
    from corral.engine.containers.processes import ExecRequest, exec_in, parse_user

    if ns.tty and ns.interactive and not os.isatty(0):
        raise UsageError("the input device is not a TTY")
    if not ns.interactive and not ns.detach:
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
    request = ExecRequest(
        args=list(ns.command),
        env=list(ns.env or []),
        user=parse_user(ns.user),
        workdir=ns.workdir,
        tty=ns.tty,
        detach=ns.detach,
    )
    sys.stdout.flush()
    return exec_in(engine(ns).containers, ns.container, request)


def _exec_failure_status(err: BaseException) -> int:
    from corral.engine.containers.processes import exec_failure_status

    return exec_failure_status(err)


def cmd_top(ns: argparse.Namespace) -> int:
    from corral.engine.containers.processes import top

    sys.stdout.write(top(engine(ns).containers, ns.container, list(ns.ps_args)))
    return 0


#: ``stats``' columns: header -> field.
STATS_COLUMNS = {
    "CONTAINER ID": "ID",
    "NAME": "Name",
    "CPU %": "CPUPerc",
    "MEM USAGE / LIMIT": "MemUsage",
    "MEM %": "MemPerc",
    "NET I/O": "NetIO",
    "BLOCK I/O": "BlockIO",
    "PIDS": "PIDs",
}


def cmd_stats(ns: argparse.Namespace) -> int:
    """docker's ``stats``: one table (--no-stream) or a new one every second until Ctrl-C."""
    import time

    from corral.engine.containers.processes import stats
    from corral.engine.format import human_size

    containers = engine(ns).containers
    fields = {v: k for k, v in STATS_COLUMNS.items()}
    clear = sys.stdout.isatty() and not ns.no_stream
    while True:
        rows = []
        for st in stats(containers, list(ns.containers), ns.all):
            rows.append(
                {
                    "ID": st.id if ns.no_trunc else st.id[:12],
                    "Name": st.name,
                    "CPUPerc": f"{st.cpu_percent:.2f}%",
                    "MemUsage": f"{_iec(st.memory_usage)} / {_iec(st.memory_limit)}",
                    "MemPerc": f"{st.memory_percent:.2f}%",
                    "NetIO": f"{human_size(st.net_rx)} / {human_size(st.net_tx)}",
                    "BlockIO": f"{human_size(st.block_read)} / {human_size(st.block_write)}",
                    "PIDs": str(st.pids),
                }
            )
        if clear:
            sys.stdout.write("\033[2J\033[H")
        sys.stdout.write(format_rows(ns.format, rows, STATS_COLUMNS, fields))
        sys.stdout.flush()
        if ns.no_stream:
            return 0
        time.sleep(0.5)


def _iec(size: int) -> str:
    """Memory as docker's stats prints it: binary units (``1.5MiB``)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.4g}{unit}" if unit != "B" else f"{int(value)}B"
        value /= 1024
    return f"{size}B"


def cmd_rename(ns: argparse.Namespace) -> int:
    engine(ns).containers.rename(ns.container, ns.new_name)
    return 0


def cmd_container_prune(ns: argparse.Namespace) -> int:
    from corral.engine import filters
    from corral.engine.format import human_size

    chosen = filters.parse(ns.filter or [], frozenset({"label"}))
    if not ns.force and not confirm("WARNING! This will remove all stopped containers.\n"):
        return 0
    report = engine(ns).prune_containers(chosen)
    if report.containers:
        print("Deleted Containers:")
        print("\n".join(report.containers) + "\n")
    print(f"Total reclaimed space: {human_size(report.reclaimed)}")
    return 0


# -- files: run/create --pull, cp, diff, export, commit -------------------------------------------

PULL_POLICIES = ("missing", "always", "never")


def _ensure_image(ns: argparse.Namespace) -> None:
    """``run``/``create --pull``: as the docker CLI does, pull the image when it is missing
    (``Unable to find image 'x:latest' locally``, the progress on stderr), always, or never.
    ``busybox:latest`` is made from the host's busybox when missing (``create`` does it)."""
    from corral.engine.images.reference import normalize
    from corral.errors import NotFoundError

    if ns.pull not in PULL_POLICIES:
        raise UsageError(f"invalid pull option: {ns.pull!r}: must be one of \"always\", "
                         "\"missing\" or \"never\"")  # fmt: skip
    name = normalize(ns.image) if "@" not in ns.image else ns.image
    images = engine(ns).images
    if ns.pull != "always":
        try:
            images.get(ns.image)
            return
        except NotFoundError:
            if name == "busybox:latest":
                return
            if ns.pull == "never":
                raise NotFoundError(f"No such image: {name}") from None
        print(f"Unable to find image '{name}' locally", file=sys.stderr)
    from corral.cli.progress import Progress
    from corral.engine.distribution import Options, default_auth_file, pull

    options = Options(tls_verify=ns.tls_verify, auth_file=default_auth_file(engine(ns).layout))
    pull(images, ns.image, options, Progress(sys.stderr))


def _cp_arg(text: str) -> tuple[str | None, str]:
    """docker's split of a ``cp`` argument: ``CONTAINER:PATH``, or a local path (one that
    starts with / or . is always local, so ``./a:b`` names a file)."""
    if text == "-" or text.startswith(("/", ".")) or ":" not in text:
        return None, text
    name, _, path = text.partition(":")
    return name, path


def cmd_cp(ns: argparse.Namespace) -> int:
    from corral.engine.containers import files
    from corral.errors import UserError

    (src_ctr, src), (dst_ctr, dst) = _cp_arg(ns.src), _cp_arg(ns.dest)
    if src_ctr is not None and dst_ctr is not None:
        raise UserError("copying between containers is not supported")
    if src_ctr is None and dst_ctr is None:
        raise UserError("must specify at least one container source")
    if src_ctr is not None:
        if dst == "-":
            sys.stdout.flush()
        done = files.copy_from(engine(ns), src_ctr, src, dst, follow=ns.follow_link,
                               out=sys.stdout.buffer)  # fmt: skip
    else:
        assert dst_ctr is not None
        done = files.copy_to(engine(ns), dst_ctr, src, dst, follow=ns.follow_link,
                             archive=ns.archive, source=sys.stdin.buffer)  # fmt: skip
    if not ns.quiet and sys.stderr.isatty():
        from corral.engine.format import human_size

        print(f"Successfully copied {human_size(done.size, 3)} to {done.where}", file=sys.stderr)
    return 0


def cmd_diff(ns: argparse.Namespace) -> int:
    from corral.engine.containers import files

    for change in files.diff(engine(ns), ns.container):
        print(change)
    return 0


def cmd_export(ns: argparse.Namespace) -> int:
    from corral.engine.containers import files
    from corral.errors import UserError

    if ns.output is None:
        if sys.stdout.isatty():
            raise UserError("cowardly refusing to save to a terminal. Use the -o flag or "
                            "redirect")  # fmt: skip
        sys.stdout.flush()
        files.export(engine(ns), ns.container, sys.stdout.buffer)
        return 0
    engine(ns).containers.record(ns.container)  # no such container: no file made
    tmp = f"{ns.output}.corral-tmp"
    try:
        with open(tmp, "wb") as out:
            files.export(engine(ns), ns.container, out)
        os.rename(tmp, ns.output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return 0


def cmd_commit(ns: argparse.Namespace) -> int:
    from corral.engine.containers import files

    image = files.commit(engine(ns), ns.container, ns.repository, message=ns.message or "",
                         author=ns.author or "", changes=ns.change or [],
                         pause=ns.pause)  # fmt: skip
    print(image.id)
    return 0


def _register_files(sub: Any) -> None:
    p = sub.add_parser("cp", help="copy files between a container and the host (or a tar on -)")
    p.add_argument("-a", "--archive", action="store_true", help="keep uid/gid (default: 0:0)")
    p.add_argument("-L", "--follow-link", action="store_true", help="follow a symlink in SRC")
    p.add_argument("-q", "--quiet", action="store_true", help="no closing line on a terminal")
    p.add_argument("src", metavar="CONTAINER:SRC_PATH|SRC_PATH|-")
    p.add_argument("dest", metavar="DEST_PATH|-|CONTAINER:DEST_PATH")
    p.set_defaults(func=cmd_cp)

    p = sub.add_parser("diff", help="files a container added (A), changed (C), deleted (D)")
    p.add_argument("container", metavar="CONTAINER")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("export", help="a tar of a container's filesystem")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE, not stdout")
    p.add_argument("container", metavar="CONTAINER")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("commit", help="a new image from a container's changes")
    p.add_argument("-a", "--author", metavar="TEXT", help='e.g. "Jo <jo@example.com>"')
    p.add_argument("-c", "--change", action="append", metavar="INSTRUCTION",
                   help="CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, USER, VOLUME, WORKDIR")
    p.add_argument("-m", "--message", metavar="TEXT", help="the commit message")
    p.add_argument("-p", "--pause", default=True, type=_true_false, metavar="BOOL",
                   help="pause the container meanwhile (default true)")  # fmt: skip
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("repository", nargs="?", metavar="REPOSITORY[:TAG]")
    p.set_defaults(func=cmd_commit)


def _true_false(text: str) -> bool:
    if text.lower() in ("true", "1"):
        return True
    if text.lower() in ("false", "0"):
        return False
    raise UsageError(f"--pause {text!r}: want true or false")


# -- the parser ------------------------------------------------------------------------------------


def _run_flags(p: Any, run: bool) -> None:
    p.add_argument("--name", help="the container's name (default: a random one)")
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    p.add_argument(
        "-e", "--env", action="append", metavar="K=V", help="set an environment variable"
    )
    p.add_argument("-w", "--workdir", metavar="DIR", help="working directory in the container")
    p.add_argument("-u", "--user", metavar="USER[:GROUP]", help="user (and group), name or id")
    p.add_argument("--hostname", metavar="NAME", help="hostname (default: the short id)")
    p.add_argument("--entrypoint", metavar="CMD", help="replace the image's Entrypoint")
    p.add_argument(
        "--security-opt", action="append", metavar="OPT", help="seccomp=..., no-new-privileges"
    )
    from corral.cli.run_flags import add_run_flags

    add_run_flags(p)
    add_network_flags(p)
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin attached")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a terminal (a pty)")
    p.add_argument("--restart", default="no", metavar="POLICY",
                   help="no | on-failure[:N] | always | unless-stopped")  # fmt: skip
    p.add_argument("--health-cmd", metavar="CMD", help="command to check health (sh -c)")
    p.add_argument("--health-interval", metavar="DURATION", help="between checks (30s)")
    p.add_argument("--health-timeout", metavar="DURATION", help="longest check (30s)")
    p.add_argument("--health-retries", type=int, metavar="N", help="failures to be unhealthy")
    p.add_argument("--health-start-period", metavar="DURATION",
                   help="failures not counted before this")  # fmt: skip
    p.add_argument("--no-healthcheck", action="store_true", help="not even the image's")
    p.add_argument("--log-opt", action="append", metavar="K=V", help="max-size=10m, max-file=3")
    p.add_argument("--pull", default=os.environ.get("CORRAL_PULL") or "missing",
                   metavar="POLICY",
                   help="missing (default, or $CORRAL_PULL), always, never")  # fmt: skip
    p.add_argument("--tls-verify", default=True, type=_tls_verify, nargs="?", const=True,
                   metavar="BOOL", help="for --pull: HTTPS with verified certificates")  # fmt: skip
    if run:
        p.add_argument("-d", "--detach", action="store_true", help="run in the background")
        _add_attach_flags(p)
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("command", nargs="...", metavar="CMD")  # argparse.REMAINDER


def declare_run(p: Any) -> None:
    """``run``'s flags, on ``p`` (argparse, or cli.main's _Declared)."""
    _run_flags(p, run=True)


def declare_create(p: Any) -> None:
    """``create``'s flags, on ``p``."""
    _run_flags(p, run=False)


def _tls_verify(text: str) -> bool:
    from corral.cli.registry import _bool

    return _bool(text)


def register(commands: Commands) -> None:
    """The container commands, at the top level and under ``container`` (docker's two forms)."""
    _register(commands.top, grouped=False)
    _register(commands.group("container", "manage containers"), grouped=True)


def _register(sub: Any, grouped: bool) -> None:
    p = sub.add_parser("create", help="create a container (do not start it)")
    p.defer(lambda p=p: declare_create(p))  # built only when used
    p.set_defaults(func=cmd_create, error_status=_start_failure_status)

    p = sub.add_parser("run", help="run a command in a new container")
    p.defer(lambda p=p: declare_run(p))  # built only when used
    p.set_defaults(func=cmd_run, error_status=_start_failure_status)

    p = sub.add_parser("start", help="start created or stopped containers")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.add_argument("-a", "--attach", action="store_true", help="attach its output (and wait)")
    p.add_argument("-i", "--interactive", action="store_true", help="attach its input too")
    p.add_argument("--detach-keys", metavar="KEYS",
                   help="keys that detach, leaving it running (ctrl-p,ctrl-q)")  # fmt: skip
    p.set_defaults(func=cmd_start)

    p = sub.add_parser("attach", help="attach our terminal to a running container")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("--no-stdin", action="store_true", help="do not attach stdin")
    _add_attach_flags(p)
    p.set_defaults(func=cmd_attach)

    p = sub.add_parser("stop", help="stop running containers")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.add_argument(
        "-t",
        "--time",
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="before SIGKILL (default: the container's --stop-timeout, 10)",
    )
    p.add_argument("-s", "--signal", metavar="SIGNAL",
                   help="signal to send (default: the container's stop signal)")  # fmt: skip
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("restart", help="restart containers (stop, then start)")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.add_argument(
        "-t",
        "--time",
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="before SIGKILL (default: the container's --stop-timeout, 10)",
    )
    p.set_defaults(func=cmd_restart)

    p = sub.add_parser("kill", help="send a signal to running containers")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.add_argument("-s", "--signal", default="KILL", metavar="SIGNAL", help="(default KILL)")
    p.set_defaults(func=cmd_kill)

    p = sub.add_parser("pause", help="freeze every process of containers")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.set_defaults(func=cmd_pause)

    p = sub.add_parser("unpause", help="thaw paused containers")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.set_defaults(func=cmd_unpause)

    p = sub.add_parser("wait", help="wait for containers to stop; print their exit codes")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.set_defaults(func=cmd_wait)

    if grouped:
        p = sub.add_parser("inspect", help="container details as JSON (docker's shape)")
        p.add_argument("containers", nargs="+", metavar="CONTAINER")
        p.add_argument("-f", "--format", help="a Go-template subset: '{{.State.Status}}'")
        p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("rm", help="remove containers")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.add_argument("-f", "--force", action="store_true", help="kill a running container first")
    p.add_argument("-v", "--volumes", action="store_true", help="also its anonymous volumes")
    p.set_defaults(func=cmd_rm)

    p = sub.add_parser("ps", aliases=["ls", "list"] if grouped else [], help="list containers")
    p.add_argument("-a", "--all", action="store_true", help="also stopped ones")
    p.add_argument("-q", "--quiet", action="store_true", help="only ids")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument(
        "-f", "--filter", action="append", metavar="KEY=VALUE",
        help="id, name, status, exited, ancestor, label, before, since, health",
    )  # fmt: skip
    p.add_argument(
        "--format", metavar="TEMPLATE",
        help="'table {{.ID}}\\t{{.Names}}', '{{.Names}}', 'json' (fields: ID, Image, Command, "
        "CreatedAt, RunningFor, Ports, State, Status, Size, Names, Labels, Mounts, Networks)",
    )  # fmt: skip
    p.add_argument("-n", "--last", type=int, metavar="N", help="the N last created (all states)")
    p.add_argument("-l", "--latest", action="store_true", help="the last created (all states)")
    p.set_defaults(func=cmd_ps)

    p = sub.add_parser("logs", help="the output of a detached container")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("-f", "--follow", action="store_true", help="go on until it stops")
    p.add_argument(
        "-n", "--tail", default="all", metavar="N", help="only the last N lines (default: all)"
    )
    p.add_argument("-t", "--timestamps", action="store_true", help="show each line's time")
    p.add_argument("--since", metavar="TIME", help="from this time (RFC 3339, Unix, or 10m)")
    p.add_argument("--until", metavar="TIME", help="before this time (same forms)")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("exec", help="run a command in a running container")
    p.add_argument("-d", "--detach", action="store_true", help="in the background")
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin attached")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a terminal")
    p.add_argument("-e", "--env", action="append", metavar="K=V", help="set a variable")
    p.add_argument("-u", "--user", metavar="UID[:GID]", help="numeric user (and group)")
    p.add_argument("-w", "--workdir", metavar="DIR", help="working directory in the container")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("command", nargs="...", metavar="CMD")
    p.set_defaults(func=cmd_exec, error_status=_exec_failure_status)

    p = sub.add_parser("top", help="the processes of a running container")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("ps_args", nargs="...", metavar="PS OPTIONS", help="for ps (default -ef)")
    p.set_defaults(func=cmd_top)

    p = sub.add_parser("stats", help="CPU, memory, network, block I/O and pids of containers")
    p.add_argument("containers", nargs="*", metavar="CONTAINER")
    p.add_argument("-a", "--all", action="store_true", help="all containers (default: running)")
    p.add_argument("--no-stream", action="store_true", help="one table, then exit")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--format", metavar="TEMPLATE", help="'table {{.Name}}\\t{{.CPUPerc}}', 'json'")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("rename", help="rename a container")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("new_name", metavar="NEW_NAME")
    p.set_defaults(func=cmd_rename)

    _register_files(sub)

    if grouped:
        p = sub.add_parser("prune", help="remove all stopped containers")
        p.add_argument("-f", "--force", action="store_true", help="do not ask")
        p.add_argument("--filter", action="append", metavar="label=K[=V]")
        p.set_defaults(func=cmd_container_prune)
