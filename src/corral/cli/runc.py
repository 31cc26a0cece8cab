"""``corral-runc``: runc's command line over corral.runtime.

Thin on purpose: parse flags, call the library, print, and turn a CorralError into one line on
stderr (and the ``--log`` file) with exit status 1. Flags follow runc's (Go's ``flag`` rules, as
urfave/cli applies them): ``-name`` and ``--name`` are the same flag, values come as
``--name value`` or ``--name=value``, and flag parsing stops at the first positional argument
(so ``exec ID sh -c ...`` passes ``-c`` to sh).

argparse is not used: it costs as much to import as the interpreter takes to start, and
containerd runs this command four times for every container. For the same reason this module
imports neither ``os`` nor ``__future__`` (see corral._posix), and each command imports what it
needs when it runs: ``state``, ``start``, ``kill`` and ``delete`` load no part of ``create``.
"""

import posix
import sys

from corral.errors import CorralError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

VERSION = "0.1.0"
SPEC_VERSION = "1.0.2-dev"

# Flag tables: name -> kind ("bool", "str", "int", "list"); "a=b" entries are aliases.
GLOBAL_FLAGS = {
    "root": "str",
    "log": "str",
    "log-format": "str",
    "debug": "bool",
    "systemd-cgroup": "bool",
    "cgroup-manager": "str",
    "version": "bool",
    "v=version": "",
    "help": "bool",
    "h=help": "",
    "criu": "str",
    "rootless": "str",
}
CREATE_FLAGS = {
    "bundle": "str",
    "b=bundle": "",
    "pid-file": "str",
    "console-socket": "str",
    "no-pivot": "bool",
    "no-new-keyring": "bool",
    "preserve-fds": "int",
    "dry-run": "bool",
}
COMMAND_FLAGS: dict[str, dict[str, str]] = {
    "spec": {"bundle": "str", "b=bundle": "", "rootless": "bool"},
    "create": CREATE_FLAGS,
    "run": {**CREATE_FLAGS, "detach": "bool", "d=detach": "", "keep": "bool"},
    "start": {},
    "state": {},
    "kill": {"all": "bool", "a=all": ""},
    "delete": {"force": "bool", "f=force": ""},
    "list": {"format": "str", "f=format": "", "quiet": "bool", "q=quiet": ""},
    "ps": {"format": "str", "f=format": ""},
    "exec": {
        "process": "str",
        "p=process": "",
        "tty": "bool",
        "t=tty": "",
        "console-socket": "str",
        "detach": "bool",
        "d=detach": "",
        "pid-file": "str",
        "cwd": "str",
        "env": "list",
        "e=env": "",
        "user": "str",
        "u=user": "",
        "additional-gids": "list",
        "g=additional-gids": "",
        "cap": "list",
        "c=cap": "",
        "no-new-privs": "bool",
        "preserve-fds": "int",
        "process-label": "str",
        "apparmor": "str",
        "cgroup": "str",
        "ignore-paused": "bool",
    },
    "pause": {},
    "resume": {},
    "events": {"stats": "bool", "interval": "str"},
    "update": {
        "resources": "str",
        "r=resources": "",
        "blkio-weight": "str",
        "cpu-period": "str",
        "cpu-quota": "str",
        "cpu-share": "str",
        "cpu-rt-period": "str",
        "cpu-rt-runtime": "str",
        "cpuset-cpus": "str",
        "cpuset-mems": "str",
        "kernel-memory": "str",
        "kernel-memory-tcp": "str",
        "memory": "str",
        "memory-reservation": "str",
        "memory-swap": "str",
        "pids-limit": "str",
        "l3-cache-schema": "str",
        "mem-bw-schema": "str",
    },
    "features": {},
}
MIN_ARGS = {
    "create": 1,
    "run": 1,
    "start": 1,
    "state": 1,
    "kill": 1,
    "delete": 1,
    "ps": 1,
    "exec": 1,
    "pause": 1,
    "resume": 1,
    "events": 1,
    "update": 1,
}
USAGE = """usage: corral-runc [global options] COMMAND [options] [ARGS]

corral-runc is an OCI runtime with runc's command line.

commands: spec create start run state kill delete list ps exec pause resume events update
          features

global options: --root DIR  --log FILE  --log-format text|json  --debug  --systemd-cgroup
                --cgroup-manager cgroupfs|disabled  --version
"""


def parse_flags(
    args: list[str], table: dict[str, str], where: str
) -> "tuple[dict[str, Any], list[str]]":
    """Go-style flag parsing; returns (values, positional arguments)."""
    kinds: dict[str, str] = {}
    for key, kind in table.items():
        name, _, target = key.partition("=")
        kinds[name] = kind or "=" + target
    values: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        name, eq, value = arg.lstrip("-").partition("=")
        found = kinds.get(name)
        if found is not None and found.startswith("="):
            name = found[1:]
            found = kinds[name]
        if found is None:
            raise UsageError(f"{where}: flag provided but not defined: -{name}")
        kind = found
        if kind == "bool":
            if eq and value not in ("true", "false", "1", "0"):
                raise UsageError(f'{where}: invalid boolean value "{value}" for -{name}')
            values[name] = value in ("true", "1") if eq else True
        else:
            if not eq:
                i += 1
                if i >= len(args):
                    raise UsageError(f"{where}: flag needs an argument: -{name}")
                value = args[i]
            if kind == "int":
                try:
                    values[name] = int(value)
                except ValueError:
                    raise UsageError(
                        f'{where}: invalid value "{value}" for flag -{name}: not an integer'
                    ) from None
            elif kind == "list":
                values.setdefault(name, []).append(value)
            else:
                values[name] = value
        i += 1
    return values, args[i:]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    from corral.runtime import log

    try:
        opts, rest = parse_flags(args, GLOBAL_FLAGS, "corral-runc")
        log_format = opts.get("log-format", "text")
        if log_format not in ("text", "json"):
            raise UsageError(f'--log-format: unknown format "{log_format}" (text or json)')
        log.configure(opts.get("log"), log_format, bool(opts.get("debug")))
        if opts.get("version"):
            print(f"corral-runc version {VERSION}\nspec: {SPEC_VERSION}")
            return 0
        if not rest or opts.get("help"):
            sys.stdout.write(USAGE)
            return 0 if opts.get("help") else 1
        command, cmd_args = rest[0], rest[1:]
        table = COMMAND_FLAGS.get(command)
        if table is None:
            raise UsageError(f"corral-runc: no such command: {command}")
        cmd_opts, positional = parse_flags(cmd_args, table, command)
        if len(positional) < MIN_ARGS.get(command, 0):
            raise UsageError(f'corral-runc: "{command}" requires a minimum of 1 argument')
        return int(COMMANDS[command](opts, cmd_opts, positional) or 0)
    except CorralError as err:
        log.error(str(err))
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1
    except Exception as err:  # a bug in corral: still one line, the traceback with --debug
        if "--debug" in args or "-debug" in args:
            import traceback

            traceback.print_exc()
        log.error(f"internal error: {type(err).__name__}: {err}")
        return 1


def _store(g: "dict[str, Any]") -> "Any":
    from corral.runtime.state import DEFAULT_ROOT, StateStore

    if g.get("root") or posix.geteuid() == 0:
        return StateStore(g.get("root") or DEFAULT_ROOT)
    from corral.runtime.rootless import default_root  # $XDG_RUNTIME_DIR/corral when euid != 0

    return StateStore(default_root(DEFAULT_ROOT))


def _runtime(g: "dict[str, Any]") -> "Any":
    """The library's facade (corral.runtime.api.Runtime) on this invocation's --root."""
    from corral.runtime.api import Runtime

    return Runtime(_store(g).root)


def _create_options(g: "dict[str, Any]", o: "dict[str, Any]") -> "Any":
    from corral import _posix
    from corral.runtime.lifecycle import CreateOptions

    manager = g.get("cgroup-manager", "cgroupfs")
    if manager not in ("cgroupfs", "disabled", "systemd"):
        raise UsageError(f'--cgroup-manager: unknown manager "{manager}" (cgroupfs or disabled)')
    if (g.get("systemd-cgroup") or manager == "systemd") and not _posix.isdir(
        "/run/systemd/system"
    ):
        raise UsageError(
            "--systemd-cgroup: systemd is not running on this host; use the default "
            "cgroupfs manager"
        )
    preserve_fds = int(o.get("preserve-fds", 0))
    if preserve_fds < 0:
        raise UsageError("--preserve-fds: must be a non-negative integer")
    return CreateOptions(
        # Relative to our cwd, not the bundle (create chdirs into the bundle before writing it).
        pid_file=_posix.abspath(o["pid-file"]) if o.get("pid-file") else None,
        console_socket=o.get("console-socket"),
        no_pivot=bool(o.get("no-pivot")),
        no_new_keyring=bool(o.get("no-new-keyring")),
        preserve_fds=preserve_fds,
        cgroup_manager="disabled" if manager == "disabled" else "cgroupfs",
        systemd_cgroup=bool(g.get("systemd-cgroup")) or manager == "systemd",
    )


def cmd_create(g: "dict[str, Any]", o: "dict[str, Any]", a: list[str]) -> int:
    if o.get("dry-run"):  # print what create would do to build the filesystem; do nothing
        from corral.runtime import lifecycle

        _, _, plan = lifecycle.prepare(o.get("bundle") or ".", _create_options(g, o))
        print("\n".join(plan.describe()))
        return 0
    from corral.runtime import lifecycle  # what Runtime.create calls, without the facade's module

    lifecycle.create(_store(g), a[0], o.get("bundle") or ".", _create_options(g, o))
    return 0


def cmd_start(g: "dict[str, Any]", o: "dict[str, Any]", a: list[str]) -> int:
    _runtime(g).start(a[0])
    return 0


def cmd_run(g: "dict[str, Any]", o: "dict[str, Any]", a: list[str]) -> int:
    return int(
        _runtime(g).run(
            a[0],
            o.get("bundle") or ".",
            _create_options(g, o),
            detach=bool(o.get("detach")),
            keep=bool(o.get("keep")),
        )
    )


def cmd_state(g: "dict[str, Any]", o: "dict[str, Any]", a: list[str]) -> int:
    from corral import _json

    print(_json.dumps(_store(g).load(a[0]).oci_state(), indent=2))
    return 0


def cmd_kill(g: "dict[str, Any]", o: "dict[str, Any]", a: list[str]) -> int:
    if len(a) > 2:
        raise UsageError("kill: too many arguments (usage: kill [--all] ID [SIGNAL])")
    sig = 15
    if len(a) > 1:  # a number (what containerd sends: "9") needs no table of names
        if a[1].isascii() and a[1].isdigit() and 1 <= int(a[1]) <= 64:
            sig = int(a[1])
        else:
            from corral.spec.signals import parse_signal

            sig = parse_signal(a[1])
    _runtime(g).kill(a[0], sig, all_processes=bool(o.get("all")))
    return 0


def cmd_delete(g: "dict[str, Any]", o: "dict[str, Any]", a: list[str]) -> int:
    runtime = _runtime(g)
    for container_id in a:
        runtime.delete(container_id, force=bool(o.get("force")))
    return 0


def cmd_list(g: "dict[str, Any]", o: "dict[str, Any]", a: list[str]) -> int:
    from corral import _json

    fmt = o.get("format", "table")
    if fmt not in ("table", "json"):
        raise UsageError(f'list: invalid format option "{fmt}" (table or json)')
    store = _store(g)
    states = []
    for cid in store.ids():
        try:
            states.append(store.load(cid).oci_state())
        except CorralError:
            continue  # removed while we listed
    if o.get("quiet"):
        for s in states:
            print(s["id"])
    elif fmt == "json":
        print(_json.dumps(states))
    else:
        rows = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]]
        rows += [
            [s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"] or "root"]
            for s in states
        ]
        sys.stdout.write(tabulate(rows))
    return 0


def tabulate(rows: list[list[str]], minwidth: int = 12, padding: int = 3) -> str:
    """Columns as Go's tabwriter (minwidth 12, padding 3) lays them out for runc."""
    widths = [
        max(minwidth, max(len(r[i]) for r in rows) + padding) for i in range(len(rows[0]) - 1)
    ]
    return "".join(
        "".join(cell.ljust(w) for cell, w in zip(r, widths, strict=False)) + r[-1] + "\n"
        for r in rows
    )


def cmd_ps(g: "dict[str, Any]", o: "dict[str, Any]", a: list[str]) -> int:
    from corral import _json
    from corral.runtime.ops import container_pids

    fmt = o.get("format", "table")
    if fmt not in ("table", "json"):
        raise UsageError(f'ps: invalid format option "{fmt}" (table or json)')
    pids = container_pids(_store(g), a[0])
    if fmt == "json":
        print(_json.dumps(pids))
        return 0
    from corral.runtime.ops import ps_table

    sys.stdout.write(ps_table(pids, a[1:] or ["-ef"]))
    return 0


def cmd_pause(g: "dict[str, Any]", o: "dict[str, Any]", a: list[str]) -> int:
    _runtime(g).pause(a[0])
    return 0


def cmd_resume(g: "dict[str, Any]", o: "dict[str, Any]", a: list[str]) -> int:
    _runtime(g).resume(a[0])
    return 0


def cmd_events(g: "dict[str, Any]", o: "dict[str, Any]", a: list[str]) -> int:
    import gc

    from corral.cli.runc_values import parse_duration
    from corral.runtime.ops import events

    gc.enable()  # it runs until stopped (run() turned the collector off)

    interval = parse_duration(o.get("interval", "5s"), "--interval")
    return events(_store(g), a[0], bool(o.get("stats")), interval)


def cmd_update(g: "dict[str, Any]", o: "dict[str, Any]", a: list[str]) -> int:
    from corral.cli.runc_values import FLAG_OF, update_resources
    from corral.errors import SpecError

    try:
        _runtime(g).update(a[0], update_resources(o))
    except SpecError as err:  # checked before anything changed; name the flag that gave it
        if err.path not in FLAG_OF:
            raise
        raise UsageError(f"{FLAG_OF[err.path]}: {err.detail}") from None
    return 0


def cmd_exec(g: "dict[str, Any]", o: "dict[str, Any]", a: list[str]) -> int:
    """The process comes from --process (a runtime-spec process.json) or from the flags."""
    runtime = _runtime(g)
    if o.get("process"):
        from corral.spec.load import load_process

        process: dict[str, Any] = load_process(o["process"])  # type: ignore[assignment]
    else:
        if not a[1:]:
            raise UsageError("exec: args must not be empty (give a command or --process)")
        from corral.cli.runc_values import exec_process

        base = runtime.store.load(a[0]).config.get("process") or {}
        process = exec_process(base, a[1:], o)
    return int(
        runtime.exec(
            a[0],
            process=process,
            detach=bool(o.get("detach")),
            console_socket=o.get("console-socket"),
            pid_file=o.get("pid-file"),
            preserve_fds=int(o.get("preserve-fds", 0)),
            ignore_paused=bool(o.get("ignore-paused")),
        )
    )


def cmd_spec(g: "dict[str, Any]", o: "dict[str, Any]", a: list[str]) -> int:
    import os

    from corral import _json
    from corral.spec.defaults import default_spec

    bundle = o.get("bundle") or "."
    path = os.path.join(bundle, "config.json")
    if os.path.exists(path):
        raise UsageError("File config.json exists. Remove it first.")
    try:
        with open(path, "x") as f:
            # runc writes its config with tabs; so do we, byte for byte.
            f.write(_json.dumps(default_spec(rootless=bool(o.get("rootless"))), indent="\t"))
    except OSError as err:
        raise UsageError(f"spec: {path}: {err.strerror}") from None
    return 0


def cmd_features(g: "dict[str, Any]", o: "dict[str, Any]", a: list[str]) -> int:
    from corral import _json
    from corral.spec.features import features

    print(_json.dumps(features(), indent=4))
    return 0


COMMANDS: "dict[str, Callable[[dict[str, Any], dict[str, Any], list[str]], int]]" = {
    "spec": cmd_spec,
    "create": cmd_create,
    "start": cmd_start,
    "run": cmd_run,
    "state": cmd_state,
    "kill": cmd_kill,
    "delete": cmd_delete,
    "list": cmd_list,
    "ps": cmd_ps,
    "exec": cmd_exec,
    "pause": cmd_pause,
    "resume": cmd_resume,
    "events": cmd_events,
    "update": cmd_update,
    "features": cmd_features,
}


def run() -> None:
    """The command's entry point: ``main()``, then exit at once.

    Interpreter shutdown (module teardown, garbage collection) takes ~2.5 ms and this process
    has nothing to finalize, so flush stdio and ``_exit``. ``main()`` stays a plain function for
    callers that want the exit code back.

    The cyclic garbage collector is off for the same reason: a verb lives for milliseconds and
    makes little cyclic garbage, and the collections that its imports' allocations trigger
    (a full one among them, which visits every object) cost about 1 ms of ``create``; in the
    container's init, forked from us, a collection would also write to every page it shares
    with us. ``events``, which loops until stopped, turns it back on.
    """
    import gc

    gc.disable()
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        code = code or 1
    posix._exit(code)


if __name__ == "__main__":
    run()
