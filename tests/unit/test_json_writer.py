"""corral._json writes what ``json.dumps(ensure_ascii=False)`` writes, without loading ``_json``
for indented output (``corral-runc state`` prints its state that way, on its start-up path)."""

import json
import subprocess
import sys

import pytest

from corral import _json
from helpers import SRC

VALUES = [
    {
        "a": 'x"y\\z\n\t\r\b\f\x01\x1f\x7f\u2028é\U0001f600',
        "b": [1, 2.5, -0.0, 1e300, float("inf"), float("-inf"), None, True, False, {}, []],
        3: {"k": [[], {}]},
        None: 1,
        1.5: "f",
        True: 0,
    },
    [],
    {},
    "",
    -7,
    [[[1]]],
]


@pytest.mark.parametrize("indent", [None, 0, 2, 4, "\t"])
@pytest.mark.parametrize("value", VALUES)
def test_same_text_as_json(value: object, indent: int | str | None) -> None:
    separators = (",", ":") if indent is None else None
    expected = json.dumps(value, ensure_ascii=False, indent=indent, separators=separators)
    assert _json.dumps(value, indent=indent) == expected


def test_every_code_point_below_0x800_is_written_as_json_does() -> None:
    text = "".join(chr(i) for i in range(0x800))
    assert _json.dumps([text], indent=1) == json.dumps([text], ensure_ascii=False, indent=1)


def test_not_serializable_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="set is not JSON serializable"):
        _json.dumps({"a": {1}}, indent=2)


def test_writing_does_not_load_the_c_module() -> None:
    code = (
        f"import sys; sys.path.insert(0, {str(SRC)!r}); from corral import _json;"
        "_json.dumps({'a': [1, 'b']}, indent=2); _json.dumps([{'c': None}]);"
        "print('_json' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"
