"""Words and variables in a Containerfile, as docker's shell lexer treats them (pure).

Two steps, as in moby/buildkit's ``frontend/dockerfile/shell``:

``split_words("a=1 b='two words' c=\\"x y\\"")``
    splits on unquoted whitespace and *keeps* the quotes and escapes in each word:
    ``["a=1", "b='two words'", 'c="x y"']`` (ENV, LABEL and ARG need the ``=`` first).

``expand(word, env)``
    removes quotes and escapes and substitutes variables:

    ============  =====================================================
    ``$X ${X}``   X's value, or nothing when X is unset
    ``${X:-w}``   X if set and not empty, else w (``${X-w}``: if set)
    ``${X:+w}``   w if X is set and not empty, else nothing (``${X+w}``)
    ``${X:?m}``   X, or an error with message m when unset or empty
    ``'...'``     literally, no expansion, no escapes
    ``"..."``     expanded; the escape character escapes ``"``, ``$`` and itself only
    ``\\$X``       a literal ``$X`` (the escape character, ``\\`` or `````)
    ============  =====================================================

Which instructions expand: ADD, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME,
WORKDIR (and ARG's default). RUN, CMD and ENTRYPOINT do not: their shell does it when it runs.
"""

from __future__ import annotations

from collections.abc import Mapping

from corral.errors import UserError


class ExpansionError(UserError):
    """``${X:?message}`` with X unset, or a malformed ``${...}``."""


def split_words(text: str, escape: str = "\\") -> list[str]:
    """Split on unquoted whitespace; quotes and escape characters stay in the words."""
    words: list[str] = []
    current: list[str] = []
    quote = ""
    in_word = False
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            current.append(ch)
            if ch == escape and quote == '"' and i + 1 < len(text):
                current.append(text[i + 1])
                i += 1
            elif ch == quote:
                quote = ""
        elif ch.isspace():
            if in_word:
                words.append("".join(current))
                current = []
                in_word = False
        else:
            in_word = True
            current.append(ch)
            if ch in ("'", '"'):
                quote = ch
            elif ch == escape and i + 1 < len(text):
                current.append(text[i + 1])
                i += 1
        i += 1
    if in_word:
        words.append("".join(current))
    return words


def expand(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """``word`` with quotes and escapes removed and variables substituted from ``env``."""
    out: list[str] = []
    i = 0
    n = len(word)
    while i < n:
        ch = word[i]
        if ch == escape:
            if i + 1 < n:
                out.append(word[i + 1])
                i += 2
            else:
                out.append(ch)
                i += 1
        elif ch == "'":
            end = word.find("'", i + 1)
            if end < 0:
                raise ExpansionError(f"unexpected end of statement while looking for ' in {word!r}")
            out.append(word[i + 1 : end])
            i = end + 1
        elif ch == '"':
            i += 1
            while i < n and word[i] != '"':
                c = word[i]
                if c == escape and i + 1 < n and word[i + 1] in ('"', "$", escape):
                    out.append(word[i + 1])
                    i += 2
                elif c == "$":
                    text, i = _variable(word, i, env, escape)
                    out.append(text)
                else:
                    out.append(c)
                    i += 1
            if i >= n:
                raise ExpansionError(f'unexpected end of statement while looking for " in {word!r}')
            i += 1
        elif ch == "$":
            text, i = _variable(word, i, env, escape)
            out.append(text)
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _name_end(word: str, i: int) -> int:
    while i < len(word) and (word[i].isalnum() or word[i] == "_"):
        i += 1
    return i


def _variable(word: str, i: int, env: Mapping[str, str], escape: str) -> tuple[str, int]:
    """Expand the ``$...`` at ``word[i]``; (its value, the index after it)."""
    if i + 1 >= len(word):
        return "$", i + 1
    nxt = word[i + 1]
    if nxt != "{":
        end = _name_end(word, i + 1)
        if end == i + 1:
            return "$", i + 1  # a lone $ stays
        return env.get(word[i + 1 : end], ""), end
    close = _matching_brace(word, i + 2)
    if close < 0:
        raise ExpansionError(f"missing '}}' in {word!r}")
    inner = word[i + 2 : close]
    end = _name_end(inner, 0)
    name, rest = inner[:end], inner[end:]
    if not name:
        raise ExpansionError(f"bad substitution ${{{inner}}} in {word!r}")
    value = env.get(name)
    if not rest:
        return value or "", close + 1
    colon = rest.startswith(":")
    op = rest[1:2] if colon else rest[:1]
    arg = rest[2:] if colon else rest[1:]
    empty = value is None or (colon and value == "")
    if op == "-":
        return (expand(arg, env, escape) if empty else value or ""), close + 1
    if op == "+":
        return ("" if empty else expand(arg, env, escape)), close + 1
    if op == "?":
        if empty:
            message = expand(arg, env, escape) or "is not allowed to be unset"
            raise ExpansionError(f"{name}: {message}")
        return value or "", close + 1
    raise ExpansionError(f"unsupported modifier {rest[:2]!r} in ${{{inner}}}")


def _matching_brace(word: str, i: int) -> int:
    depth = 1
    while i < len(word):
        if word[i] == "{":
            depth += 1
        elif word[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def key_values(
    words: list[str], env: Mapping[str, str], escape: str, what: str
) -> list[tuple[str, str]]:
    """ENV / LABEL ``k=v`` words -> pairs, expanded; ``what`` names the instruction in errors."""
    pairs: list[tuple[str, str]] = []
    for word in words:
        key, eq, value = word.partition("=")
        if not eq:
            raise UserError(f"{what}: {word!r} is not KEY=VALUE")
        name = expand(key, env, escape)
        if not name:
            raise UserError(f"{what}: the name before '=' is empty in {word!r}")
        pairs.append((name, expand(value, env, escape)))
    return pairs
