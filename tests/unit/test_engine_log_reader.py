"""``logs --tail N``: the start of the last N lines, read backwards in blocks."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from corral.engine.containers import logs
from corral.engine.containers.logs import read_log, tail_offset


@pytest.mark.parametrize(
    ("text", "lines", "shown"),
    [
        (b"a\nb\nc\n", 2, b"b\nc\n"),
        (b"a\nb\nc\n", 3, b"a\nb\nc\n"),
        (b"a\nb\nc\n", 9, b"a\nb\nc\n"),
        (b"a\nb\nc\n", 0, b""),
        (b"a\nb\nc", 1, b"c"),  # an unterminated last line counts
        (b"a\nb\nc", 2, b"b\nc"),
        (b"a\n\n\nb\n", 3, b"\n\nb\n"),  # empty lines count
        (b"", 2, b""),
        (b"\n", 1, b"\n"),
    ],
)
def test_tail_offset(text: bytes, lines: int, shown: bytes) -> None:
    f = io.BytesIO(text)
    assert text[tail_offset(f, lines) :] == shown


def test_tail_offset_across_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "_BLOCK", 3)
    text = b"".join(b"line %d\n" % i for i in range(100))
    for n in (1, 2, 7, 99, 100, 101):
        expected = b"".join(b"line %d\n" % i for i in range(max(100 - n, 0), 100))
        assert text[tail_offset(io.BytesIO(text), n) :] == expected


def test_read_log_follows_until_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "container.log"
    path.write_bytes(b"1\n2\n")
    monkeypatch.setattr(logs, "_FOLLOW_POLL", 0)
    checks = []

    def running() -> bool:  # the program writes twice more, then ends
        checks.append(1)
        with open(path, "ab") as f:
            f.write(b"%d\n" % (len(checks) + 2))
        return len(checks) < 2

    assert b"".join(read_log(str(path), 1, running)) == b"2\n3\n4\n"
    assert b"".join(read_log(str(path))) == b"1\n2\n3\n4\n"
    assert list(read_log(str(tmp_path / "none"))) == []
