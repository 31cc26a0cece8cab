"""Docker's ways of printing sizes, ages and tables, so ``corral images`` reads like docker's.

Pure functions; the CLI uses them and tests compare them with docker's own output.
"""

import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # datetime (1 ms) is imported where used: plain ``ps`` needs none of it, nor
    # ``__future__`` (see engine.roots)
    from collections.abc import Sequence

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def human_size(size: float, precision: int = 4) -> str:
    """go-units ``HumanSizeWithPrecision``: decimal units, ``precision`` significant digits.

    ``human_size(4_270_000, 3) == "4.27MB"``; docker's ``images`` uses 3, ``system df`` 4.
    """
    i = 0
    while size >= 1000 and i < len(_UNITS) - 1:
        size /= 1000
        i += 1
    return f"{size:.{precision}g}{_UNITS[i]}"


def human_duration(seconds: float) -> str:
    """go-units ``HumanDuration``: "Less than a second", "About a minute", "3 weeks"..."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(s / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def parse_time(text: str) -> float:
    """An RFC 3339 timestamp (nanoseconds allowed, as Go writes them) as a Unix time."""
    from datetime import UTC, datetime

    if not text:
        return 0.0
    value = text.strip().replace("Z", "+00:00")
    if "." in value:  # Python takes at most 6 fractional digits
        head, _, rest = value.partition(".")
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        value = f"{head}.{digits[:6].ljust(6, '0')}{rest}"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return 0.0
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def rfc3339(when: "float | None" = None) -> str:
    """A UTC timestamp as the image spec writes ``created``: ``2024-05-01T12:00:00.123456Z``."""
    from datetime import UTC, datetime

    moment = datetime.fromtimestamp(time.time() if when is None else when, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ago(created: str, now: "float | None" = None) -> str:
    """``"2 weeks ago"`` for an RFC 3339 time, as docker's CREATED column."""
    return since(parse_time(created), now)


def since(when: float, now: "float | None" = None) -> str:
    """``"2 weeks ago"`` for a Unix time; ``"N/A"`` for none (0)."""
    if when == 0.0:
        return "N/A"
    return human_duration((time.time() if now is None else now) - when) + " ago"


def table(header: "Sequence[str]", rows: "Sequence[Sequence[str]]") -> str:
    """Go's tabwriter as docker configures it (minwidth 10, padding 3): columns, no borders."""
    widths = [len(h) for h in header]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [list(header), *[list(r) for r in rows]]:
        cells = [
            cell if i == len(row) - 1 else cell.ljust(max(widths[i] + 3, 10))
            for i, cell in enumerate(row)
        ]
        lines.append("".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def truncate(text: str, width: int) -> str:
    """Cut ``text`` to ``width`` characters with an ellipsis, as docker's history does."""
    return text if len(text) <= width else text[: width - 1] + "…"
