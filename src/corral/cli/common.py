"""What the ``corral`` CLI's noun modules share: the command table, the engine, a prompt.

Each noun module (images, containers, system, registry, and next network, volume, build) has
``register(commands)``, which adds its subcommands to the parser with ``set_defaults(func=...)``;
a command function takes the parsed Namespace, calls ``Engine`` methods only, prints, and
returns its exit status. ``corral.cli.main`` lists the modules and runs the one chosen.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from corral.engine.engine import Engine


class Commands:
    """The parser's command table: top-level commands, and noun groups (``image``, ``system``,
    ``container``...) made on first use, so two modules can add verbs to one noun.

    ``only``: the command on this command line (``ps`` in ``corral --root R ps -a``); the parser
    is then built for it alone, every other command's ``add_parser`` getting a stand-in that
    ignores what is declared on it (argparse spends ~0.2 ms a parser; docker has dozens)."""

    def __init__(
        self, top: Any, parser_class: type[argparse.ArgumentParser], only: str | None = None
    ) -> None:
        self.top = top if only is None else _Only(top, only)
        self._only = only
        self._parser_class = parser_class
        self._groups: dict[str, Any] = {}

    def group(self, noun: str, help: str) -> Any:
        """The subcommands of ``corral NOUN`` (an argparse subparsers action)."""
        if self._only not in (None, noun):
            return _Unused()
        if noun not in self._groups:
            parser = self.top.add_parser(noun, help=help)
            sub = parser.add_subparsers(
                dest="subcommand", metavar="COMMAND", parser_class=self._parser_class
            )
            sub.required = True
            self._groups[noun] = sub
        return self._groups[noun]


class _Only:
    """A subparsers action that makes only the parser of the command ``word``."""

    def __init__(self, sub: Any, word: str) -> None:
        self.sub, self.word = sub, word

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        if self.word == name or self.word in kwargs.get("aliases", ()):
            return self.sub.add_parser(name, **kwargs)
        return _Unused()


class _Unused:
    """Stands in for a parser this command line does not use: every call is ignored."""

    def __getattr__(self, name: str) -> Any:
        return self._ignore

    def _ignore(self, *args: Any, **kwargs: Any) -> Any:
        return self


def engine(ns: argparse.Namespace) -> Engine:
    """The engine the command line names (``--root``, ``--runroot``), one per command."""
    cached: Engine | None = getattr(ns, "_engine", None)
    if cached is None:
        from corral.engine.engine import Engine

        cached = Engine(ns.root, runtime_root=getattr(ns, "runroot", None))
        ns._engine = cached
    return cached


def confirm(warning: str) -> bool:
    """docker's prompt: ``warning`` and "[y/N]" on stdout, one line read from stdin whatever
    it is (a pipe too); only y or yes goes on, anything else or the end of input aborts."""
    sys.stdout.write(warning + "Are you sure you want to continue? [y/N] ")
    sys.stdout.flush()
    answer = sys.stdin.readline() if sys.stdin is not None else ""  # None: fd 0 was closed
    return answer.strip().lower() in ("y", "yes")


def prunable(all_images: bool) -> str:
    """What an image prune removes, in docker's words."""
    if all_images:
        return "all images without at least one container associated to them"
    return "all dangling images"


def format_rows(
    template: str | None, rows: list[dict[str, str]], columns: dict[str, str],
    fields: dict[str, str],
) -> str:
    """docker's ``--format`` for a listing (``ps``, ``images``).

    No template: the default table (``columns``: header -> field). ``table`` alone is that too;
    ``table {{.ID}}\\t{{.Names}}`` is a table of those fields under their headers (``fields``:
    field -> header); ``json`` is one JSON object per row; any other template renders each row
    on its own line. A literal ``\\t`` in a template is a tab, as in docker.
    """
    import json

    from corral.engine.format import table

    if template == "json":
        return "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows)
    if template is None or template.strip() == "table":
        return table(list(columns), [[r[f] for f in columns.values()] for r in rows])
    text = template.replace("\\t", "\t").replace("\\n", "\n")
    if text.startswith("table"):
        text = text[len("table") :].lstrip()
        header = go_template(text, {f: fields.get(f, f.upper()) for f in fields})
        cells = [header.split("\t")] + [go_template(text, r).split("\t") for r in rows]
        return table(cells[0], cells[1:])
    return "".join(go_template(text, r) + "\n" for r in rows)


def go_template(template: str, data: Any) -> str:
    """A tiny subset of Go templates: ``{{.Id}}``, ``{{.Config.Cmd}}``, ``{{json .RootFS}}``,
    ``{{json .}}``, and ``{{range .Field}}...{{end}}`` (not nested) over a list or a map's
    values in key order (``{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}``)."""
    import json
    import re

    from corral.errors import UsageError

    def lookup(path: str) -> Any:
        current: Any = data
        for key in [k for k in path.split(".") if k]:
            if not isinstance(current, dict) or key not in current:
                raise UsageError(f"--format: no field {path!r}")
            current = current[key]
        return current

    def each(match: re.Match[str]) -> str:
        items = lookup(match.group(1))
        if isinstance(items, dict):
            items = [items[k] for k in sorted(items)]
        return "".join(go_template(match.group(2), item) for item in items or [])

    def value(match: re.Match[str]) -> str:
        expr = match.group(1).strip()
        as_json = expr.startswith("json ")
        path = expr[5:].strip() if as_json else expr
        if not path.startswith("."):
            raise UsageError(f"--format: {expr!r}: want {{{{.Field}}}} or {{{{json .Field}}}}")
        current = lookup(path)
        if as_json or isinstance(current, dict | list):
            return json.dumps(current)
        if isinstance(current, bool):  # Go prints true / false
            return "true" if current else "false"
        return str(current)

    if "range" in template:
        template = re.sub(r"\{\{-?\s*range\s+(\.[^}]*?)\s*-?\}\}(.*?)\{\{-?\s*end\s*-?\}\}",
                          each, template, flags=re.S)  # fmt: skip
    return re.sub(r"\{\{(.*?)\}\}", value, template)
