"""docker's ``--filter KEY=VALUE`` for ``ps`` and ``images``: parsed once, matched per row.

Filters with the same key are alternatives (``-f status=exited -f status=created``: either);
different keys must all match. An unknown key, or a value a key cannot take, is a one-line
error naming the filter, as docker's ``invalid filter`` is.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from corral.errors import UsageError

CONTAINER_KEYS = frozenset(
    {"id", "name", "status", "exited", "ancestor", "label", "before", "since", "health"}
)
CONTAINER_STATES = frozenset(
    {"created", "restarting", "running", "removing", "paused", "exited", "dead"}
)
IMAGE_KEYS = frozenset({"dangling", "reference", "before", "since", "label"})


@dataclass
class Filters:
    """The ``--filter`` values given, by key."""

    by_key: dict[str, list[str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.by_key)

    def get(self, key: str) -> list[str]:
        return self.by_key.get(key, [])

    def any_of(self, key: str, test: Callable[[str], bool]) -> bool:
        """True when ``key`` was not given, or one of its values passes ``test``."""
        values = self.by_key.get(key)
        return values is None or any(test(v) for v in values)


def parse(items: Iterable[str], keys: frozenset[str]) -> Filters:
    """``["status=exited", "name=web"]`` -> Filters; an unknown key is a UsageError."""
    out = Filters()
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or not key:
            raise UsageError(f"--filter {item!r}: bad format of filter (expected name=value)")
        if key not in keys:
            raise UsageError(f"--filter {item!r}: invalid filter '{key}'")
        if key == "status" and value not in CONTAINER_STATES:
            choices = ", ".join(sorted(CONTAINER_STATES))
            raise UsageError(f"--filter {item!r}: invalid filter 'status={value}' ({choices})")
        if key == "exited" and not value.lstrip("-").isdigit():
            raise UsageError(f"--filter {item!r}: exited= wants an exit code")
        if key == "dangling" and value.lower() not in ("true", "false", "1", "0"):
            raise UsageError(f"--filter {item!r}: invalid filter 'dangling={value}'")
        out.by_key.setdefault(key, []).append(value)
    return out


def label_matches(labels: dict[str, str], wanted: str) -> bool:
    """``label=KEY`` (present) or ``label=KEY=VALUE`` (equal)."""
    key, sep, value = wanted.partition("=")
    if key not in labels:
        return False
    return not sep or labels[key] == value


def reference_matches(repository: str, tag: str, pattern: str) -> bool:
    """``reference=busybox`` or ``reference=busy*:1*`` (shell patterns, as docker's)."""
    if ":" in pattern.rsplit("/", 1)[-1]:
        return fnmatch.fnmatchcase(f"{repository}:{tag}", pattern)
    return fnmatch.fnmatchcase(repository, pattern)
