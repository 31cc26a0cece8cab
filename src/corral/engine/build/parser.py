"""The Containerfile (Dockerfile) parser: text -> a list of ``Instruction``, pure.

The grammar is Docker's, as moby/buildkit's ``frontend/dockerfile/parser`` reads it::

    # syntax=docker/dockerfile:1        parser directives: only at the very top, before any
    # escape=`                          comment, blank line or instruction
    FROM busybox AS build               KEYWORD (any case) and its arguments
    RUN echo one && \\                  the escape character ending a line joins the next one
        # a comment inside is dropped   (comment lines and blank lines inside are skipped)
        echo two
    CMD ["sh", "-c", "echo hi"]         JSON ("exec") form for RUN, CMD, ENTRYPOINT, SHELL,
                                        COPY, ADD, VOLUME; anything else is the shell form
    COPY --from=build --chown=1:1 a b   --flags right after the keyword

A line joined from continuations keeps the whitespace of the lines it joins (the escape and
the newline go), as docker does. The parser does no variable expansion: it needs the build's
state (``ARG``, ``ENV``), so ``corral.engine.build.words`` does it when a step runs.

Every error names the file and line: ``Containerfile:7: unknown instruction: RUNN``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from corral.engine.build.words import split_words
from corral.errors import UserError

#: Every instruction the builder knows, and what it does with it.
INSTRUCTIONS = (
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
)  # fmt: skip
#: Instructions whose arguments may be a JSON array of strings.
JSON_FORMS = ("ADD", "CMD", "COPY", "ENTRYPOINT", "RUN", "SHELL", "VOLUME")
#: The flags each instruction accepts (``--name=value``; ``--name`` alone means "true").
FLAGS: dict[str, tuple[str, ...]] = {
    "FROM": ("platform",),
    "RUN": ("mount", "network", "security"),
    "COPY": ("from", "chown", "chmod", "link", "parents", "exclude"),
    "ADD": ("chown", "chmod", "link", "checksum", "keep-git-dir", "exclude"),
    "HEALTHCHECK": ("interval", "timeout", "start-period", "start-interval", "retries"),
}
DIRECTIVES = ("syntax", "escape", "check")

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_FLAG = re.compile(r"^--([a-z][a-z0-9-]*)(?:=(.*))?$")


class ContainerfileError(UserError):
    """A mistake in the Containerfile; the message starts with ``FILE:LINE:``."""

    def __init__(self, where: str, line: int, message: str) -> None:
        self.file = where
        self.line = line
        super().__init__(f"{where}:{line}: {message}")


@dataclass
class Instruction:
    """One instruction as written (variables not expanded yet).

    ``args`` are the arguments: the JSON array's strings (``json`` true), or for the shell form
    one string for RUN/CMD/ENTRYPOINT/SHELL/HEALTHCHECK CMD and the whitespace-split words for
    the others (ENV, LABEL and ARG keep quotes in their words: expansion removes them).
    ``text`` is the rest of the line after the keyword and the flags.
    """

    keyword: str
    args: list[str]
    line: int
    text: str
    original: str
    json: bool = False
    flags: dict[str, str] = field(default_factory=dict)
    end_line: int = 0

    def flag(self, name: str, default: str | None = None) -> str | None:
        return self.flags.get(name, default)


@dataclass
class Containerfile:
    """A parsed Containerfile: its directives and instructions."""

    name: str
    instructions: list[Instruction]
    escape: str = "\\"
    directives: dict[str, str] = field(default_factory=dict)


def parse(text: str, name: str = "Containerfile") -> Containerfile:
    """Parse ``text``; ``name`` is how errors call the file."""
    lines = text.replace("\r\n", "\n").split("\n")
    directives: dict[str, str] = {}
    escape = "\\"
    i = 0
    # 1. parser directives: "# key=value" lines at the very top
    while i < len(lines):
        match = _DIRECTIVE.match(lines[i].strip()) if lines[i].strip().startswith("#") else None
        if match is None:
            break
        key, value = match.group(1).lower(), match.group(2)
        if key not in DIRECTIVES:
            break  # an ordinary comment ends the directives
        if key in directives:
            raise ContainerfileError(name, i + 1, f"only one {key} parser directive can be used")
        directives[key] = value
        if key == "escape":
            if value not in ("\\", "`"):
                raise ContainerfileError(
                    name, i + 1, f"invalid escape token {value!r}: must be ` or \\"
                )
            escape = value
        i += 1
    # 2. logical lines: comments dropped, continuations joined
    instructions: list[Instruction] = []
    while i < len(lines):
        raw = lines[i]
        start = i
        i += 1
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        body = raw.lstrip()
        parts: list[str] = []
        while True:
            content = body.rstrip()
            if content.endswith(escape) and not _escaped_escape(content, escape):
                parts.append(content[: -len(escape)])
                # the next non-comment, non-blank line continues this one
                while i < len(lines) and (not lines[i].strip() or lines[i].strip().startswith("#")):
                    i += 1
                if i >= len(lines):
                    break  # a file ending on a continuation: docker takes what there is
                body = lines[i]
                i += 1
                continue
            parts.append(content)
            break
        logical = "".join(parts)
        instructions.append(_instruction(logical, start + 1, i, name, escape))
    return Containerfile(name, instructions, escape, directives)


def _escaped_escape(content: str, escape: str) -> bool:
    """``a \\\\`` ends in an escaped escape character: not a continuation."""
    count = len(content) - len(content.rstrip(escape))
    return count % 2 == 0


def _instruction(logical: str, line: int, end: int, name: str, escape: str) -> Instruction:
    keyword_text, _, rest = logical.strip().partition(" ")
    if "\t" in keyword_text:
        keyword_text, _, more = keyword_text.partition("\t")
        rest = more + " " + rest
    keyword = keyword_text.upper()
    if keyword not in INSTRUCTIONS:
        raise ContainerfileError(name, line, f"unknown instruction: {keyword_text}")
    rest = rest.strip()
    flags: dict[str, str] = {}
    if keyword in FLAGS:
        rest = _take_flags(keyword, rest, flags, name, line)
    inst = Instruction(keyword, [], line, rest, logical.strip(), flags=flags, end_line=end)
    if keyword == "ONBUILD":
        if not rest:
            raise ContainerfileError(name, line, "ONBUILD requires an instruction")
        trigger = _instruction(rest, line, end, name, escape)
        if trigger.keyword in ("ONBUILD", "FROM", "MAINTAINER"):
            raise ContainerfileError(
                name, line, f"{trigger.keyword} isn't allowed as an ONBUILD trigger"
            )
        inst.args = [rest]
        return inst
    if keyword in JSON_FORMS and rest.startswith("["):
        inst.args = _json_array(rest, keyword, name, line)
        inst.json = True
    elif keyword == "SHELL":
        raise ContainerfileError(name, line, 'SHELL requires a JSON array: SHELL ["sh", "-c"]')
    elif keyword in ("RUN", "CMD", "ENTRYPOINT"):
        inst.args = [rest] if rest else []
    elif keyword == "HEALTHCHECK":
        inst.args = _healthcheck(rest, name, line)
    elif keyword in ("ENV", "LABEL", "ARG"):
        inst.args = split_words(rest, escape)
    else:
        inst.args = rest.split()
    _check_arity(inst, name)
    return inst


def _take_flags(keyword: str, rest: str, flags: dict[str, str], name: str, line: int) -> str:
    while rest.startswith("--"):
        word, _, after = rest.partition(" ")
        match = _FLAG.match(word)
        if match is None:
            raise ContainerfileError(name, line, f"{keyword}: malformed flag {word!r}")
        flag, value = match.group(1), match.group(2)
        if flag not in FLAGS[keyword]:
            raise ContainerfileError(name, line, f"{keyword}: unknown flag: --{flag}")
        if flag in flags and flag not in ("mount", "exclude"):
            raise ContainerfileError(name, line, f"{keyword}: duplicate flag: --{flag}")
        flags[flag] = "true" if value is None else value
        rest = after.lstrip()
    return rest


def _json_array(text: str, keyword: str, name: str, line: int) -> list[str]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ContainerfileError(name, line, f"{keyword}: bad JSON array {text!r}: {err.msg}")
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ContainerfileError(name, line, f"{keyword}: the JSON array must hold only strings")
    return value


def _healthcheck(rest: str, name: str, line: int) -> list[str]:
    """``NONE`` or ``CMD ...`` (shell or JSON form): returned as ``["NONE"]``, ``["CMD-SHELL",
    text]`` or ``["CMD", *argv]`` -- the image config's ``Healthcheck.Test``."""
    kind, _, cmd = rest.partition(" ")
    kind = kind.upper()
    cmd = cmd.strip()
    if kind == "NONE":
        if cmd:
            raise ContainerfileError(name, line, "HEALTHCHECK NONE takes no arguments")
        return ["NONE"]
    if kind != "CMD":
        raise ContainerfileError(name, line, "HEALTHCHECK: say NONE or CMD <command>")
    if not cmd:
        raise ContainerfileError(name, line, "HEALTHCHECK CMD: missing command")
    if cmd.startswith("["):
        return ["CMD", *_json_array(cmd, "HEALTHCHECK", name, line)]
    return ["CMD-SHELL", cmd]


_MIN_ARGS = {
    "FROM": 1, "RUN": 1, "COPY": 2, "ADD": 2, "ENV": 1, "LABEL": 1, "ARG": 1, "WORKDIR": 1,
    "USER": 1, "EXPOSE": 1, "VOLUME": 1, "STOPSIGNAL": 1, "SHELL": 1, "MAINTAINER": 1,
}  # fmt: skip


def _check_arity(inst: Instruction, name: str) -> None:
    need = _MIN_ARGS.get(inst.keyword, 0)
    if len(inst.args) < need:
        plural = "s" if need > 1 else ""
        raise ContainerfileError(
            name, inst.line, f"{inst.keyword} requires at least {need} argument{plural}"
        )
    if inst.keyword in ("WORKDIR", "USER", "STOPSIGNAL") and len(inst.args) > 1:
        raise ContainerfileError(name, inst.line, f"{inst.keyword} requires exactly one argument")
    if inst.keyword == "FROM" and len(inst.args) not in (1, 3):
        raise ContainerfileError(name, inst.line, "FROM: say FROM IMAGE [AS NAME]")
    if inst.keyword == "FROM" and len(inst.args) == 3 and inst.args[1].lower() != "as":
        raise ContainerfileError(name, inst.line, f"FROM: expected AS, got {inst.args[1]!r}")
