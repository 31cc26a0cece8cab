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
        ["images"], ["--runroot", "/x", "--root", "/r", "images", "-q"],
    ],
)  # fmt: skip
def test_plain_forms_parse_as_argparse_does(args: list[str]) -> None:
    from corral.cli.main import build_parser, parse_plain

    plain = parse_plain(args)
    assert plain is not None
    parsed = vars(build_parser().parse_args(args))
    # the same attributes and values; the function is cli.plain's, which prints from the views
    # what the full command prints (tests/integration/test_engine_views.py)
    assert {**vars(plain), "func": None} == {**parsed, "func": None}
    assert plain.func.__module__ == "corral.cli.plain"


@pytest.mark.parametrize(
    "args",
    [["ps", "-aq"], ["ps", "--format", "x"], ["ps", "-a", "extra"], ["images", "busybox"],
     ["--root"], ["--root", "/r"], ["--version"], ["rm", "-f", "x"], ["--root", "/r", "-v", "ps"]],
)  # fmt: skip
def test_other_forms_go_to_argparse(args: list[str]) -> None:
    from corral.cli.main import parse_plain

    assert parse_plain(args) is None
