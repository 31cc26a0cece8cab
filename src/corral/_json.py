"""JSON without the cost of ``import json``.

``import json`` pulls in ``re`` and ``enum`` (about 6 ms here), which is as much as the
interpreter's own start-up. containerd runs ``corral-runc`` several times per container, so the
runtime reads and writes JSON through the C accelerators in ``_json`` directly: the same parser
and string escaper the standard library uses, minus the pure-Python wrapping.

Only the error path imports the real ``json`` module, to produce its exact message.
"""

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


# The C scanner, made on first use: loading ``_json`` (a shared library) costs 0.3 ms, and only
# reading config.json and process.json needs it (the writer below is Python).
_scan: "Callable[[str, int], tuple[Any, int]] | None" = None


class JSONError(ValueError):
    """Malformed JSON. The message has the reason, line and column, as ``json`` gives them."""


def loads(text: str | bytes) -> "Any":
    """Parse one JSON document; raise JSONError with line and column when it is malformed."""
    global _scan
    if _scan is None:
        import _json

        _scan = _json.make_scanner(
            _ScanContext()  # type: ignore[arg-type]  # typeshed wants a JSONDecoder; any will do
        )
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


def dumps(obj: "Any", indent: int | str | None = None) -> str:
    """Serialize like ``json.dumps(obj, ensure_ascii=False, indent=indent)``; without
    ``indent``, compact (``separators=(",", ":")``).

    Written in Python, without ``_json``'s C encoder: what the runtime writes is small (the
    state it prints, hook and log lines), and the C module would cost 0.3 ms to load, and could
    not be loaded at all where a hook's state is written from inside a container (after
    pivot_root the host's files, the shared library included, are out of reach).
    """
    parts: list[str] = []
    if indent is None:
        _compact(obj, parts)
    else:
        _pretty(obj, indent if isinstance(indent, str) else " " * indent, "", parts)
    return "".join(parts)


def _compact(obj: "Any", out: list[str]) -> None:
    if isinstance(obj, dict) and obj:
        out.append("{")
        for i, (key, value) in enumerate(obj.items()):
            out.append(("," if i else "") + _string(_key(key)) + ":")
            _compact(value, out)
        out.append("}")
    elif isinstance(obj, list | tuple) and obj:
        out.append("[")
        for i, value in enumerate(obj):
            if i:
                out.append(",")
            _compact(value, out)
        out.append("]")
    else:
        out.append(_scalar(obj))


def _pretty(obj: "Any", step: str, pad: str, out: list[str]) -> None:
    inner = pad + step
    if isinstance(obj, dict) and obj:
        out.append("{")
        for i, (key, value) in enumerate(obj.items()):
            out.append(("," if i else "") + "\n" + inner + _string(_key(key)) + ": ")
            _pretty(value, step, inner, out)
        out.append("\n" + pad + "}")
    elif isinstance(obj, list | tuple) and obj:
        out.append("[")
        for i, value in enumerate(obj):
            out.append(("," if i else "") + "\n" + inner)
            _pretty(value, step, inner, out)
        out.append("\n" + pad + "]")
    else:
        out.append(_scalar(obj))


# What json's encode_basestring escapes (ensure_ascii=False): the quote, the backslash and the
# control characters, these five by their short names.
_ESCAPES = {i: f"\\u{i:04x}" for i in range(0x20)}
_ESCAPES.update({0x22: '\\"', 0x5C: "\\\\", 0x08: "\\b", 0x0C: "\\f", 0x0A: "\\n", 0x0D: "\\r"})
_ESCAPES.update({0x09: "\\t"})


def _string(text: str) -> str:
    return '"' + text.translate(_ESCAPES) + '"'


def _key(key: object) -> str:
    """A dict key as json writes it: strings as they are, numbers, booleans and null spelled."""
    return key if isinstance(key, str) else _scalar(key).strip('"')


def _scalar(obj: object) -> str:
    """A value that is not a non-empty container, as json writes it."""
    if isinstance(obj, str):
        return _string(obj)
    if obj is None or obj is True or obj is False:
        return {None: "null", True: "true", False: "false"}[obj]
    if isinstance(obj, int):
        return int.__repr__(obj)
    if isinstance(obj, float):
        if obj != obj:
            return "NaN"
        if obj in (float("inf"), float("-inf")):
            return "Infinity" if obj > 0 else "-Infinity"
        return float.__repr__(obj)
    if isinstance(obj, dict):
        return "{}"
    if isinstance(obj, list | tuple):
        return "[]"
    return _default(obj)  # type: ignore[no-any-return]


def _default(obj: object) -> "Any":
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")
