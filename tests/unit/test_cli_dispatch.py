"""The engine CLI's dispatcher: a command line imports only the noun modules of its word."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from corral.cli.common import Commands
from corral.cli.main import COMMANDS, NOUNS, _parser_class, command_word, modules_for


def _registered() -> dict[str, set[str]]:
    """Each top-level word -> the modules that add it, found by registering every module."""
    words: dict[str, set[str]] = {}
    for name in NOUNS:
        parser_class = _parser_class()
        sub = parser_class(prog="corral").add_subparsers(dest="command", parser_class=parser_class)
        importlib.import_module(name).register(Commands(sub, parser_class))
        for word in sub.choices:
            words.setdefault(word, set()).add(name)
    return words


def test_the_table_names_every_word_and_all_its_modules() -> None:
    assert {word: set(modules) for word, modules in COMMANDS.items()} == _registered()


@pytest.mark.parametrize(
    ("args", "word"),
    [
        (["ps", "-a"], "ps"),
        (["--root", "/r", "ps"], "ps"),
        (["--root=/r", "--runroot", "/x", "image", "ls"], "image"),
        (["-v"], None),
        (["--", "ps"], None),
        ([], None),
    ],
)
def test_command_word(args: list[str], word: str | None) -> None:
    assert command_word(args) == word


def test_modules_for() -> None:
    assert modules_for(["--root", "/r", "ps", "-a"]) == ("corral.cli.containers",)
    assert modules_for(["--version"]) == ()
    assert modules_for(["--version", "--help"]) == NOUNS
    assert modules_for(["no-such-command"]) == NOUNS
    assert modules_for([]) == NOUNS


def test_ps_imports_neither_run_flags_nor_the_other_nouns() -> None:
    code = (
        "import sys; from corral.cli.main import build_parser, modules_for\n"
        "build_parser(modules_for(['ps', '-a'])).parse_args(['ps', '-a'])\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('corral.'))))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.split()  # fmt: skip
    assert "corral.cli.containers" in loaded
    for absent in ("corral.cli.run_flags", "corral.cli.images", "corral.cli.build",
                   "corral.engine.containers.manager"):  # fmt: skip
        assert absent not in loaded


def test_run_flags_are_built_when_run_is_parsed() -> None:
    from corral.cli.main import build_parser

    ns = build_parser(modules_for(["run", "-m", "64m", "busybox"])).parse_args(
        ["run", "-m", "64m", "--rm", "busybox", "true"]
    )
    assert ns.rm and ns.memory == "64m" and ns.command == ["true"]


@pytest.mark.parametrize(
    "args",
    [
        ["ps"], ["ps", "-a"], ["--root", "/r", "ps", "--all", "-q"], ["ps", "--quiet"],
        ["ps", "-aq"],
        ["images"], ["--runroot", "/x", "--root", "/r", "images", "-q"],
        ["rm", "web"], ["rm", "-f", "a", "b"], ["--root", "/r", "rm", "-fv", "a"],
        ["rm", "--force", "--volumes", "x"],
        ["exec", "web", "true"], ["exec", "-it", "web", "sh"], ["exec", "-d", "web", "sleep", "1"],
        ["exec", "-e", "A=1", "--env", "B=2", "--env=C=3", "-u", "7:8", "-w", "/tmp", "web",
         "ls", "-l", "--", "-x"],
        ["exec", "--user=0", "--workdir=/", "--interactive", "--tty", "web", "-t", "cmd"],
        ["exec", "web"],
        ["run", "--rm", "--network", "none", "busybox", "true"],
        ["run", "-d", "--name", "web", "-p", "8080:80", "-e", "A=1", "-v", "/a:/b", "busybox",
         "httpd", "-f", "--", "-x"],
        ["run", "-it", "--rm", "busybox"], ["run", "-dit", "--net=none", "busybox", "sh"],
        ["run", "--memory", "64m", "--pids-limit", "10", "-w", "/tmp", "-u", "1:2", "busybox",
         "--rm"],
        ["create", "--name", "c", "--restart", "on-failure:3", "busybox", "true"],
        ["run", "--rm", "--network", "app", "--ip", "10.87.0.9", "--dns", "10.0.0.1", "--dns",
         "10.0.0.2", "--dns-search=example.com", "--dns-option", "ndots:2", "--dns-opt=rotate",
         "busybox", "true"],
        ["create", "--ip=10.87.0.9", "--network=app", "busybox"],
    ],
)  # fmt: skip
def test_plain_forms_parse_as_argparse_does(args: list[str]) -> None:
    from corral.cli.main import PLAIN, build_parser, command_word, parse_plain

    plain = parse_plain(args)
    assert plain is not None
    parsed = vars(build_parser().parse_args(args))
    # the same attributes and values; ps and images print from the views the same columns as
    # the full commands (tests/e2e/test_engine_views.py)
    assert {**vars(plain), "func": None} == {**parsed, "func": None}
    word = command_word(args)
    assert word is not None and plain.func.__module__ == PLAIN[word].module
    assert plain.func.__name__ == PLAIN[word].function


@pytest.mark.parametrize(
    "args",
    [["ps", "--format", "x"], ["ps", "-a", "extra"], ["images", "busybox"],
     ["--root"], ["--root", "/r"], ["--version"], ["rm", "-f"], ["rm", "a", "-f"],
     ["rm", "--", "a"], ["exec"], ["exec", "-x", "web", "true"], ["exec", "-e"],
     ["exec", "--privileged", "web", "true"], ["--root", "/r", "-v", "ps"],
     ["run", "--health-retries", "3", "busybox"], ["run", "--tls-verify", "busybox"],
     ["run", "--memory-swap", "-1", "busybox"], ["run", "-d", "--", "busybox"], ["run"],
     ["run", "--rm", "-eX=1", "busybox"], ["create", "-d", "busybox"]],
)  # fmt: skip
def test_other_forms_go_to_argparse(args: list[str]) -> None:
    from corral.cli.main import parse_plain

    assert parse_plain(args) is None
