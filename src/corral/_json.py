"""JSON without the cost of ``import json``.

``import json`` pulls in ``re`` and ``enum`` (about 6 ms here), which is as much as the
interpreter's own start-up. containerd runs ``corral-runc`` several times per container, so the
runtime reads and writes JSON through the C accelerators in ``_json`` directly: the same parser
and string escaper the standard library uses, minus the pure-Python wrapping.

Only the error path imports the real ``json`` module, to produce its exact message.
"""

import _json

TYPE_CHECKING = False  # typing costs 8 ms to import; mypy still reads these blocks
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_WS = " \t\n\r"


class _ScanContext:
    """The attributes ``_json.make_scanner`` reads (what ``json.JSONDecoder`` would carry)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict[str, str] = {}

    @staticmethod
    def parse_constant(name: str) -> float:
        return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


_scan: "Callable[[str, int], tuple[Any, int]]" = _json.make_scanner(
    _ScanContext()  # type: ignore[arg-type]  # typeshed wants a JSONDecoder; any object will do
)


class JSONError(ValueError):
    """Malformed JSON. The message has the reason, line and column, as ``json`` gives them."""


def loads(text: str | bytes) -> "Any":
    """Parse one JSON document; raise JSONError with line and column when it is malformed."""
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8")
    start = len(text) - len(text.lstrip(_WS))
    try:
        value, end = _scan(text, start)
    except RecursionError:
        raise _too_deep(text) from None
    except (StopIteration, ValueError, SystemError):
        # SystemError: some of the scanner's messages need ``json.decoder`` in sys.modules
        # (it builds a JSONDecodeError from there); without it the C code fails without an
        # exception set. The detailed pass below imports json, and says what is wrong.
        value, end = None, -1
    if end < 0 or text[end:].strip(_WS):
        _raise_detailed(text)
    return value


def _raise_detailed(text: str) -> None:
    import json  # error path only: its messages say what is wrong and where

    try:
        json.loads(text)
    except json.JSONDecodeError as err:
        raise JSONError(f"{err.msg}: line {err.lineno} column {err.colno}") from None
    except RecursionError:
        raise _too_deep(text) from None
    raise JSONError("malformed JSON")  # pragma: no cover - our scan and json's always agree


def _too_deep(text: str) -> JSONError:
    """The scanner ran out of stack: say how deep the document goes, and where."""
    depth = deepest = where = 0
    in_string = escaped = False
    for i, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest, where = depth, i
        elif char in "]}":
            depth -= 1
    line = text.count("\n", 0, where) + 1
    column = where - text.rfind("\n", 0, where)
    return JSONError(f"nested too deeply ({deepest} levels): line {line} column {column}")


def _default(obj: object) -> "Any":
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


_encode_compact: "Callable[[Any, int], list[str]]" = _json.make_encoder(
    None, _default, _json.encode_basestring, None, ":", ",", False, False, True
)
_encode_spaced: "Callable[[Any, int], list[str]]" = _json.make_encoder(
    None, _default, _json.encode_basestring, None, ": ", ", ", False, False, True
)


def dumps(obj: "Any", indent: int | str | None = None) -> str:
    """Serialize like ``json.dumps(obj, ensure_ascii=False, indent=indent)``."""
    if indent is None:
        return "".join(_encode_compact(obj, 0))
    parts: list[str] = []
    _pretty(obj, indent if isinstance(indent, str) else " " * indent, "", parts)
    return "".join(parts)


def _pretty(obj: "Any", step: str, pad: str, out: list[str]) -> None:
    inner = pad + step
    if isinstance(obj, dict) and obj:
        out.append("{")
        for i, (key, value) in enumerate(obj.items()):
            out.append(("," if i else "") + "\n" + inner + _json.encode_basestring(str(key)) + ": ")
            _pretty(value, step, inner, out)
        out.append("\n" + pad + "}")
    elif isinstance(obj, list | tuple) and obj:
        out.append("[")
        for i, value in enumerate(obj):
            out.append(("," if i else "") + "\n" + inner)
            _pretty(value, step, inner, out)
        out.append("\n" + pad + "]")
    else:
        out.append("".join(_encode_spaced(obj, 0)))
