"""``.dockerignore`` / ``.containerignore``: which files of the context a build may see (pure).

The file is a list of patterns, one a line, matched against paths relative to the context
root (moby's ``patternmatcher``, the rules docker and podman share)::

    # comments and blank lines are skipped
    *.log              Go's filepath.Match per path: * and ? never cross a /
    build/             a trailing / is dropped; a directory excludes everything below it
    **/tmp             ** matches any number of directories (zero included)
    !important.log     ! re-includes what an earlier pattern excluded: the LAST match wins

Patterns are cleaned first (``./a//b/`` is ``a/b``; a leading ``/`` is dropped). A path is
excluded when the last pattern that matches it, or one of its parent directories, is not a
``!`` pattern. ``.containerignore`` is read when present, else ``.dockerignore``
(podman's order). The Containerfile and the ignore file themselves are always sent, as
docker does, but a build cannot COPY them if they are excluded.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

IGNORE_FILES = (".containerignore", ".dockerignore")


@dataclass(frozen=True)
class Pattern:
    text: str
    exclusion: bool  # a "!" pattern: re-include
    regex: re.Pattern[str]


def _clean(path: str) -> str:
    cleaned = posixpath.normpath(path.strip())
    cleaned = cleaned.lstrip("/")
    return "" if cleaned == "." else cleaned


def _translate(pattern: str) -> re.Pattern[str]:
    """A dockerignore pattern -> a regex over slash-separated paths."""
    out = ["^"]
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if pattern[i : i + 2] == "**":
                i += 2
                if pattern[i : i + 1] == "/":
                    out.append("(?:.*/)?")  # "**/" : zero or more directories
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!") or body.startswith("^"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end
        elif ch == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 1
        else:
            out.append(re.escape(ch))
        i += 1
    out.append("$")
    return re.compile("".join(out))


def parse_patterns(text: str) -> list[Pattern]:
    patterns: list[Pattern] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclusion = line.startswith("!")
        if exclusion:
            line = line[1:].strip()
        cleaned = _clean(line)
        if not cleaned:
            continue
        patterns.append(Pattern(cleaned, exclusion, _translate(cleaned)))
    return patterns


class Ignore:
    """The context's ignore rules; ``excluded("a/b.log")``."""

    def __init__(self, patterns: list[Pattern], source: str | None = None) -> None:
        self.patterns = patterns
        self.source = source

    @classmethod
    def load(cls, context: Path) -> Ignore:
        for name in IGNORE_FILES:
            path = context / name
            if path.is_file():
                return cls(parse_patterns(path.read_text(errors="replace")), name)
        return cls([])

    def excluded(self, path: str) -> bool:
        """Whether the context-relative ``path`` is left out of the build."""
        if not self.patterns:
            return False
        rel = _clean(path)
        if not rel:
            return False
        parts = rel.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        result = False
        for pattern in self.patterns:
            if any(pattern.regex.match(p) for p in prefixes):
                result = not pattern.exclusion
        return result

    def may_hold_included(self, directory: str) -> bool:
        """Whether an excluded directory may still hold re-included paths (a ``!`` pattern
        could match below it): the walk must go inside instead of skipping it."""
        rel = _clean(directory)
        return any(p.exclusion and (p.text.startswith(rel + "/") or "*" in p.text)
                   for p in self.patterns)  # fmt: skip
