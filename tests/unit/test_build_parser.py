"""The Containerfile parser and docker's word rules (corral.engine.build.parser, .words)."""

from __future__ import annotations

import pytest

from corral.engine.build.parser import ContainerfileError, parse
from corral.engine.build.words import ExpansionError, expand, key_values, split_words


def test_directives_continuations_comments_and_forms() -> None:
    text = (
        "# syntax=docker/dockerfile:1\n"
        "# escape=\\\n"
        "# a comment ends the directives\n"
        "from busybox AS Build\n"
        "RUN echo one && \\\n"
        "    # dropped inside a continuation\n"
        "\n"
        "    echo two\n"
        'CMD ["sh", "-c", "echo hi"]\n'
        "COPY --from=build --chown=1:2 a b /dst/\n"
        "HEALTHCHECK --interval=5s CMD true\n"
        "ONBUILD RUN make\n"
    )
    df = parse(text)
    assert df.directives == {"syntax": "docker/dockerfile:1", "escape": "\\"}
    kinds = [(i.keyword, i.line) for i in df.instructions]
    assert kinds == [("FROM", 4), ("RUN", 5), ("CMD", 9), ("COPY", 10), ("HEALTHCHECK", 11),
                     ("ONBUILD", 12)]  # fmt: skip
    assert df.instructions[0].args == ["busybox", "AS", "Build"]
    assert df.instructions[1].args == ["echo one &&     echo two"]
    assert df.instructions[2].json and df.instructions[2].args == ["sh", "-c", "echo hi"]
    assert df.instructions[3].flags == {"from": "build", "chown": "1:2"}
    assert df.instructions[3].args == ["a", "b", "/dst/"]
    assert df.instructions[4].args == ["CMD-SHELL", "true"]
    assert df.instructions[4].flags == {"interval": "5s"}
    assert df.instructions[5].args == ["RUN make"]


def test_escape_backtick_keeps_backslashes() -> None:
    df = parse("# escape=`\nFROM x\nRUN dir c:\\ `\n  && echo\nENV P=C:\\tools\n")
    assert df.escape == "`"
    assert df.instructions[1].args == ["dir c:\\   && echo"]
    env = df.instructions[2].args
    assert [expand(w, {}, "`") for w in env] == ["P=C:\\tools"]
    # with the default escape, the backslash escapes the next character (docker's rule)
    assert expand("P=C:\\tools", {}) == "P=C:tools"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("FROM a\nRUNN x\n", 2, "unknown instruction: RUNN"),
        ('FROM a\n\nCMD ["a",\n', 3, "CMD: bad JSON array"),
        ("FROM a\nCMD [1, 2]\n", 2, "only strings"),
        ("FROM a\nSHELL sh -c\n", 2, "SHELL requires a JSON array"),
        ("FROM a\nCOPY --frm=x a b\n", 2, "unknown flag: --frm"),
        ("FROM a\nCOPY a\n", 2, "COPY requires at least 2 arguments"),
        ("FROM a b c\n", 1, "expected AS"),
        ("FROM a\nONBUILD FROM b\n", 2, "FROM isn't allowed as an ONBUILD trigger"),
        ("# escape=x\nFROM a\n", 1, "invalid escape token"),
        ("FROM a\nHEALTHCHECK CMD\n", 2, "missing command"),
    ],
)
def test_errors_name_file_and_line(text: str, line: int, message: str) -> None:
    with pytest.raises(ContainerfileError) as caught:
        parse(text, "Dockerfile.dev")
    assert caught.value.line == line
    assert str(caught.value).startswith(f"Dockerfile.dev:{line}: ")
    assert message in str(caught.value)


def test_split_words_keeps_quotes_for_expansion() -> None:
    words = split_words('a=1 b=\'two words\' c="x \\" y" d=e\\ f')
    assert words == ["a=1", "b='two words'", 'c="x \\" y"', "d=e\\ f"]
    env = {"HOME": "/root"}
    pairs = key_values(words, env, "\\", "ENV")
    assert pairs == [("a", "1"), ("b", "two words"), ("c", 'x " y'), ("d", "e f")]


@pytest.mark.parametrize(
    ("word", "out"),
    [
        ("$A/${A}", "a/a"),
        ("${UNSET:-dflt}", "dflt"),
        ("${EMPTY:-dflt}", "dflt"),
        ("${EMPTY-dflt}", ""),
        ("${A:+set}", "set"),
        ("${UNSET:+set}", ""),
        ("'$A'", "$A"),
        ('"$A b"', "a b"),
        ("\\$A", "$A"),
        ("$", "$"),
        ("a$", "a$"),
        ("${A:-${B}}", "a"),
        ("${UNSET:-${B}}", "b"),
    ],
)
def test_expand(word: str, out: str) -> None:
    assert expand(word, {"A": "a", "B": "b", "EMPTY": ""}) == out


def test_expand_errors() -> None:
    with pytest.raises(ExpansionError, match="X: must be set"):
        expand("${X:?must be set}", {})
    with pytest.raises(ExpansionError, match="missing"):
        expand("${X", {})
    with pytest.raises(ExpansionError, match="looking for"):
        expand("'open", {})
