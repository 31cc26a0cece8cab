"""``corral``: the docker/podman-style engine CLI.

Thin by design (DESIGN.md, "Every CLI is thin"): parse the command line with argparse, call
``corral.engine``, print the result the way docker prints it. Every failure is one line on
stderr (``Error: ...``) naming the argument or file at fault, with no traceback (set
``CORRAL_DEBUG=1`` to see one), and docker's exit status: 125 for a flag that does not parse;
``run``/``create`` 125 when the engine fails, 126/127 when the container's command cannot be
invoked / is not found, else the container's own; 1 for other failures.

The commands live in one module per noun (``NOUNS`` below: images, containers, system,
registry...), each with ``register(commands)``; this module builds the parser from them and runs
the command chosen. Start-up is most of a short command's time (bench/README.md, engine.py), so:

- only the modules of the command's word are imported (``COMMANDS``), and only that command's
  parser is built (``Commands(only=word)``); ``run``'s flags only when ``run`` is parsed
  (``Parser.defer``); the engine is imported inside each command function;
- ``ps`` and ``images`` with at most ``-a``/``-q`` skip argparse (``PLAIN``), whose
  import of ``re`` and ``gettext`` costs more than listing the containers, and print the
  engine's precomputed views (engine.views) without opening the database.
"""

import sys

from corral.errors import CorralError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:  # importing typing costs ~8 ms; argparse pulls in re: both only when needed
    import argparse
    from collections.abc import Callable
    from typing import Any, NoReturn

PROG = "corral"
#: docker's status for a flag it cannot parse (unknown, missing its value, a bad value).
USAGE_STATUS = 125


def _parser_class() -> "type[argparse.ArgumentParser]":
    import argparse

    class Parser(argparse.ArgumentParser):
        """argparse, but a usage mistake is a UsageError (one line), not usage + exit 2.

        Its status is docker's: 125 for a flag (unknown, without its value, a bad value), 1
        for a wrong number of arguments or an unknown command.
        """

        _deferred: "list[Callable[[], object]] | None" = None

        def defer(self, add_arguments: "Callable[[], object]") -> None:
            """Call ``add_arguments`` (which declares this parser's flags) only when this
            parser is used: ``run``'s hundred flags are not built for ``corral ps``."""
            self._deferred = [*(self._deferred or []), add_arguments]

        def parse_known_args(self, args: "Any" = None, namespace: "Any" = None) -> "Any":
            for add_arguments in self._deferred or []:
                add_arguments()
            self._deferred = None
            return super().parse_known_args(args, namespace)

        def format_help(self) -> str:
            for add_arguments in self._deferred or []:
                add_arguments()
            self._deferred = None
            return super().format_help()

        def error(self, message: str) -> "NoReturn":
            err = UsageError(f"{self.prog}: {message}")
            if _about_a_flag(message):
                err.exit_code = USAGE_STATUS
            raise err

    return Parser


def _about_a_flag(message: str) -> bool:
    """Whether an argparse error ``message`` is about an option, not a positional."""
    if message.startswith("argument -"):
        return True
    unknown = message.partition("unrecognized arguments: ")[2]
    return any(word.startswith("-") for word in unknown.split())


#: The noun modules, in the order ``corral --help`` lists their commands.
NOUNS = (
    "corral.cli.images",
    "corral.cli.registry",
    "corral.cli.containers",
    "corral.cli.network",
    "corral.cli.update",
    "corral.cli.volumes",
    "corral.cli.system",
    "corral.cli.build",
)


#: The noun modules that register each top-level word (``corral WORD ...``). To parse a command
#: line only the modules of its word are imported: ``corral ps`` does not import (or build the
#: parser of) ``run``'s hundred flags, ``build`` or the registry client. A word missing here (a
#: new command) still works, with every module loaded; tests/unit/test_cli_dispatch.py checks
#: the table against what the modules register.
COMMANDS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(
        ("images", "history", "tag", "rmi", "inspect", "import", "load", "save"),
        ("corral.cli.images",),
    ),
    "image": ("corral.cli.images", "corral.cli.registry"),
    **dict.fromkeys(("pull", "push", "login", "logout"), ("corral.cli.registry",)),
    **dict.fromkeys(
        (
            "create", "run", "start", "stop", "restart", "kill", "pause", "unpause", "wait",
            "rm", "ps", "logs", "exec", "top", "stats", "rename", "attach", "cp", "diff",
            "commit", "export",
        ),
        ("corral.cli.containers",),
    ),
    "container": ("corral.cli.containers", "corral.cli.update"),
    **dict.fromkeys(("network", "port"), ("corral.cli.network",)),
    "update": ("corral.cli.update",),
    "volume": ("corral.cli.volumes",),
    **dict.fromkeys(("info", "system"), ("corral.cli.system",)),
    **dict.fromkeys(("build", "builder"), ("corral.cli.build",)),
}

#: The global options that take a value (``--root DIR``): skipped to find the command's word.
_VALUED = ("--root", "--runroot")


def command_word(args: list[str]) -> str | None:
    """The command's word in ``args`` (``ps`` in ``--root R ps -a``): the first argument that
    is not a global option or its value; None when there is none (``corral``, ``--help``)."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in _VALUED:
            skip = True
        elif arg == "--" or not arg.startswith("-"):
            return None if arg == "--" else arg
    return None


def modules_for(args: list[str]) -> tuple[str, ...]:
    """The noun modules that parsing ``args`` needs: its word's, none for ``--version``, all
    for help (``corral``, ``corral --help``) and for a word not in COMMANDS."""
    word = command_word(args)
    if word is None and {"-v", "--version"} & set(args) and not {"-h", "--help"} & set(args):
        return ()
    return COMMANDS.get(word or "", NOUNS)


class Plain:
    """How to parse one command's common forms without argparse (``PLAIN``).

    ``flags``: the flags that set an attribute to True, alone or bundled (``-it``); ``values``:
    the flags that take a value (``-e X``, ``--env=X``) -> (attribute, whether it appends);
    then the words: all of them (at least one) to ``words`` (``rm CONTAINER...``), or the first
    to ``first`` and all after it, flags too, to ``rest`` (``exec CONTAINER CMD...``), or none;
    ``defaults``: every other attribute the parser sets; ``also``: attributes taken from the
    command's module by name. Anything else on the line (an unknown flag, ``--``, a missing
    word) is left to argparse.
    """

    def __init__(self, module: str, function: str, flags: "dict[str, str] | None" = None,
                 defaults: "dict[str, object] | None" = None,
                 values: "dict[str, tuple[str, bool]] | None" = None,
                 words: "str | None" = None, first: "str | None" = None, rest: "str | None" = None,
                 also: "dict[str, str] | None" = None, declare: "str | None" = None,
                 ) -> None:  # fmt: skip
        self.module, self.function = module, function
        self.flags, self.values, self.defaults = flags or {}, values or {}, defaults or {}
        self.words, self.first, self.rest = words, first, rest
        self.also = also or {}
        self.declare = declare

    def learned(self, module: object) -> "Plain":
        """This Plain with the flags that the module's ``declare`` function declares (on a
        parser: here on a _Declared). Learned at each use: a default may come from the
        environment (``--network``'s from $CORRAL_NETWORK)."""
        if self.declare is None:
            return self
        declared = _Declared()
        getattr(module, self.declare)(declared)
        return Plain(self.module, self.function, {**self.flags, **declared.flags},
                     {**self.defaults, **declared.defaults}, {**self.values, **declared.values},
                     self.words, self.first, self.rest, self.also)  # fmt: skip

    def parse(self, args: "list[str]", found: "dict[str, object]") -> bool:
        """Fill ``found`` from ``args`` (what follows the command's word); False if argparse
        must decide."""
        found.update(self.defaults)
        i = 0
        while i < len(args) and args[i].startswith("-") and args[i] != "-":
            arg = args[i]
            name, eq, value = arg.partition("=")
            if arg in self.flags:
                found[self.flags[arg]] = True
            elif name in self.values and (eq or i + 1 < len(args)):
                if not eq:
                    i += 1
                    value = args[i]
                    if value.startswith("-"):  # argparse's rules for those (-1, a flag...)
                        return False
                attr, append = self.values[name]
                found[attr] = [*(found[attr] or []), value] if append else value  # type: ignore[misc]
            elif not arg.startswith("--") and all(f"-{c}" in self.flags for c in arg[1:]):
                for c in arg[1:]:  # bundled: -it
                    found[self.flags[f"-{c}"]] = True
            else:
                return False
            i += 1
        left = args[i:]
        if self.first is not None and self.rest is not None:
            if not left:
                return False
            found[self.first], found[self.rest] = left[0], left[1:]
            return True
        if self.words is not None:
            if not left or any(w.startswith("-") for w in left):
                return False
            found[self.words] = left
            return True
        return not left


class _Declared:
    """Stands in for a parser to learn the flags a command declares (``run``'s and ``create``'s
    hundred, in cli.containers): the plain ones (True flags, values, appended values) for
    Plain, and every default. A flag with a type, choices or an optional value is left to
    argparse: Plain does not know it, so a command line that uses it goes there."""

    def __init__(self) -> None:
        self.flags: dict[str, str] = {}
        self.values: dict[str, tuple[str, bool]] = {}
        self.defaults: dict[str, object] = {}

    def add_argument(self, *names: str, **kw: "Any") -> None:
        if not names[0].startswith("-"):
            if kw.get("nargs") == "...":
                self.defaults[names[0]] = []
            return  # the positionals are Plain's ``first`` and ``rest``
        long = [n for n in names if n.startswith("--")]
        dest = kw.get("dest") or (long or names)[0].lstrip("-").replace("-", "_")
        action = kw.get("action")
        plain = not {"type", "choices", "nargs", "const"} & set(kw)
        if action == "store_true":
            self.defaults[dest] = kw.get("default", False)
            self.flags.update(dict.fromkeys(names, dest))
        else:
            self.defaults[dest] = kw.get("default")
            if plain and action in (None, "store", "append"):
                self.values.update(dict.fromkeys(names, (dest, action == "append")))


#: The commonest commands in their plain forms, parsed without argparse (whose import of re and
#: gettext, and the parser's construction, cost 4-7 ms: more than listing the containers, a
#: tenth of ``rm -f``). ``ps`` and ``images`` print from the engine's views (cli.plain,
#: engine.views); ``run`` and ``create`` learn their flags from cli.containers (_Declared).
#: Any other command line goes to argparse; tests/unit/test_cli_dispatch.py checks that both
#: give the same attributes.
PLAIN: "dict[str, Plain]" = {
    "ps": Plain(
        "corral.cli.plain", "ps",
        {"-a": "all", "--all": "all", "-q": "quiet", "--quiet": "quiet"},
        {"all": False, "quiet": False, "no_trunc": False, "filter": None, "format": None,
         "last": None, "latest": False},
    ),
    "images": Plain(
        "corral.cli.plain", "images", {"-q": "quiet", "--quiet": "quiet"},
        {"reference": None, "quiet": False, "no_trunc": False, "filter": None, "format": None},
    ),
    "rm": Plain(
        "corral.cli.containers", "cmd_rm",
        {"-f": "force", "--force": "force", "-v": "volumes", "--volumes": "volumes"},
        {"force": False, "volumes": False}, words="containers",
    ),
    "run": Plain(
        "corral.cli.containers", "cmd_run", declare="declare_run", first="image", rest="command",
        also={"error_status": "_start_failure_status"},
    ),
    "create": Plain(
        "corral.cli.containers", "cmd_create", declare="declare_create", first="image",
        rest="command", also={"error_status": "_start_failure_status"},
    ),
    "exec": Plain(
        "corral.cli.containers", "cmd_exec",
        {"-d": "detach", "--detach": "detach", "-i": "interactive", "--interactive": "interactive",
         "-t": "tty", "--tty": "tty"},
        {"detach": False, "interactive": False, "tty": False, "env": None, "user": None,
         "workdir": None},
        values={"-e": ("env", True), "--env": ("env", True), "-u": ("user", False),
                "--user": ("user", False), "-w": ("workdir", False),
                "--workdir": ("workdir", False)},
        first="container", rest="command",
        also={"error_status": "_exec_failure_status"},
    ),
}  # fmt: skip


def parse_plain(args: list[str]) -> "argparse.Namespace | None":
    """``args`` parsed as the parser would, if they are a PLAIN command's plain form
    (``--root DIR ps -a``, ``rm -f web``); else None."""
    found: dict[str, object] = {"root": None, "runroot": None, "version": False}
    i = 0
    while i + 1 < len(args) and args[i] in _VALUED:
        found[args[i][2:]] = args[i + 1]
        i += 2
    if i >= len(args) or args[i] not in PLAIN:
        return None
    plain = PLAIN[args[i]]
    __import__(plain.module)  # (importlib and types would cost the plain path 0.4 ms)
    module = sys.modules[plain.module]
    plain = plain.learned(module)
    found["command"] = args[i]  # (run's and exec's own ``command`` replaces it, as in argparse)
    if not plain.parse(args[i + 1 :], found):
        return None
    found["func"] = getattr(module, plain.function)
    for attr, name in plain.also.items():
        found[attr] = getattr(module, name)
    parsed = _Parsed()
    parsed.__dict__.update(found)
    return parsed  # type: ignore[return-value]  # the attributes are the same


class _Parsed:
    """A plain command line, parsed: the attributes argparse's Namespace would have."""


def build_parser(
    modules: tuple[str, ...] = NOUNS, only: str | None = None
) -> "argparse.ArgumentParser":
    """The parser of the commands that ``modules`` register (default: every command), or of
    the command ``only`` among them."""
    import importlib

    from corral.cli.common import Commands

    _Parser = _parser_class()
    parser = _Parser(prog=PROG, description="corral: containers and images, docker-style.")
    parser.add_argument(
        "--root", metavar="DIR", help="storage root (default $CORRAL_ROOT or /var/lib/corral)"
    )
    parser.add_argument(
        "--runroot",
        metavar="DIR",
        help="runtime state, on a tmpfs (default $CORRAL_RUNROOT or /run/corral-engine/<id>)",
    )
    parser.add_argument("-v", "--version", action="store_true", help="print the version")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands = Commands(sub, _Parser, only)
    for name in modules:
        importlib.import_module(name).register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit status.

    As docker: 125 for a flag that does not parse (1 for a missing argument or an unknown
    command); ``run`` and ``create`` exit 125
    when the engine fails, ``run`` 126/127 when the container's command cannot be invoked or
    is not found (``error_status`` in the command's defaults decides), else the container's
    status; other commands 1 on error.
    """
    args = sys.argv[1:] if argv is None else argv
    ns = None
    try:
        ns = parse_plain(args)
        if ns is None:
            word = command_word(args)
            parser = build_parser(modules_for(args), word if word in COMMANDS else None)
            ns = parser.parse_args(args)
        if ns.version:
            from corral import __version__

            print(f"corral version {__version__}")
            return 0
        if getattr(ns, "func", None) is None:
            parser.print_help()
            return 0 if ns.command is None and not args else 1
        status = int(ns.func(ns) or 0)
        sys.stdout.flush()  # here, where a reader gone away is caught (below)
        return status
    except BrokenPipeError:  # ``corral export c | head``: the reader left; stop quietly, as
        _drop_stdout()  # docker does (killed by SIGPIPE: 128 + 13)
        return 141
    except CorralError as err:
        _debug()
        print(f"Error: {err}", file=sys.stderr)
        return _error_status(ns, err, err.exit_code)
    except OSError as err:
        _debug()
        where = f"{err.filename}: " if err.filename else ""
        print(f"Error: {where}{err.strerror or err}", file=sys.stderr)
        return _error_status(ns, err, 1)
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # a bug; still one line unless debugging
        _debug()
        print(f"Error: internal error: {type(err).__name__}: {err}", file=sys.stderr)
        return _error_status(ns, err, 1)


def _error_status(ns: "argparse.Namespace | None", err: BaseException, default: int) -> int:
    """The exit status for ``err``: the command's own ``error_status`` rule, or ``default``."""
    rule = getattr(ns, "error_status", None)
    return int(rule(err)) if rule is not None else default


def _drop_stdout() -> None:
    """Point fd 1 at /dev/null, so that flushing what is left at exit cannot fail again."""
    import os

    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.close(null)


def _debug() -> None:
    from corral.engine.roots import getenv

    if getenv("CORRAL_DEBUG"):
        import traceback

        traceback.print_exc()


if __name__ == "__main__":
    sys.exit(main())
