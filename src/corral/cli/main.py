"""``corral``: the docker/podman-style engine CLI.

Thin by design (DESIGN.md, "Every CLI is thin"): parse the command line with argparse, call
``corral.engine``, print the result the way docker prints it. Every failure is one line on
stderr (``Error: ...``) naming the argument or file at fault, with no traceback (set
``CORRAL_DEBUG=1`` to see one), and docker's exit status: 125 for a flag that does not parse;
``run``/``create`` 125 when the engine fails, 126/127 when the container's command cannot be
invoked / is not found, else the container's own; 1 for other failures. The engine is imported
inside each command, so ``corral --help`` costs an interpreter and argparse, nothing more.

The commands live in one module per noun (``NOUNS`` below: images, containers, system,
registry), each with ``register(commands)``; this module builds the parser from them and runs
the command chosen.
"""

from __future__ import annotations

import os
import sys

from corral.errors import CorralError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:  # importing typing costs ~8 ms; argparse pulls in re: both only when needed
    import argparse
    from typing import NoReturn

PROG = "corral"
#: docker's status for a flag it cannot parse (unknown, missing its value, a bad value).
USAGE_STATUS = 125


def _parser_class() -> type[argparse.ArgumentParser]:
    import argparse

    class Parser(argparse.ArgumentParser):
        """argparse, but a usage mistake is a UsageError (one line), not usage + exit 2.

        Its status is docker's: 125 for a flag (unknown, without its value, a bad value), 1
        for a wrong number of arguments or an unknown command.
        """

        def error(self, message: str) -> NoReturn:
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


def build_parser() -> argparse.ArgumentParser:
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
    commands = Commands(sub, _Parser)
    for name in NOUNS:
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
        parser = build_parser()
        ns = parser.parse_args(args)
        if ns.version:
            from corral import __version__

            print(f"corral version {__version__}")
            return 0
        if getattr(ns, "func", None) is None:
            parser.print_help()
            return 0 if ns.command is None and not args else 1
        return int(ns.func(ns) or 0)
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


def _error_status(ns: argparse.Namespace | None, err: BaseException, default: int) -> int:
    """The exit status for ``err``: the command's own ``error_status`` rule, or ``default``."""
    rule = getattr(ns, "error_status", None)
    return int(rule(err)) if rule is not None else default


def _debug() -> None:
    if os.environ.get("CORRAL_DEBUG"):
        import traceback

        traceback.print_exc()


if __name__ == "__main__":
    sys.exit(main())
