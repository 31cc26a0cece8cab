"""corral.spec.signals: the names and numbers ``kill`` accepts, without ``import signal``."""

from __future__ import annotations

import signal

import pytest

from corral.errors import UsageError
from corral.spec.signals import SIGNALS, parse_signal, signal_name


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("TERM", 15),
        ("SIGTERM", 15),
        ("term", 15),
        ("sigterm", 15),
        ("SigKill", 9),
        ("KILL", 9),
        ("HUP", 1),
        ("SIGSYS", 31),
        ("WINCH", 28),
        ("IOT", 6),
        ("SIGCLD", 17),
        ("POLL", 29),
        ("15", 15),
        ("1", 1),
        ("9", 9),
        ("64", 64),
        ("SIGRTMIN", 34),
        ("RTMIN", 34),
        ("SIGRTMIN+3", 37),
        ("rtmin+1", 35),
        ("SIGRTMIN+30", 64),
        ("SIGRTMAX", 64),
        ("SIGRTMAX-2", 62),
        ("RTMAX-30", 34),
    ],
)
def test_parse(text: str, number: int) -> None:
    assert parse_signal(text) == number


@pytest.mark.parametrize(
    "text",
    [
        "FOO",
        "SIGFOO",
        "",
        "0",
        "65",
        "-9",
        " 9",
        "1_5",
        "\u0661",  # ARABIC-INDIC DIGIT ONE: int() takes it, kill should not
        "SIG",
        "SIGRTMIN+31",
        "SIGRTMAX-31",
        "SIGRTMIN-1",
        "SIGRTMAX+1",
        "SIGRTMIN+",
        "SIGRTMIN+x",
        "TERM ",
    ],
)
def test_unknown(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_signal(text)
    assert str(info.value) == f'unknown signal "{text}"'


def test_table_matches_this_platform() -> None:
    # The hard-coded table is Linux's generic one; check it against the running interpreter.
    for name, number in SIGNALS.items():
        assert getattr(signal, name) == number, name
    assert int(signal.SIGRTMIN) == 34
    assert int(signal.SIGRTMAX) == 64


@pytest.mark.parametrize(
    ("number", "name"),
    [
        (1, "SIGHUP"),
        (9, "SIGKILL"),
        (15, "SIGTERM"),
        (6, "SIGABRT"),
        (17, "SIGCHLD"),
        (29, "SIGIO"),
        (31, "SIGSYS"),
        (34, "SIGRTMIN"),
        (35, "SIGRTMIN+1"),
        (49, "SIGRTMIN+15"),
        (50, "SIGRTMAX-14"),
        (63, "SIGRTMAX-1"),
        (64, "SIGRTMAX"),
        (32, "signal 32"),
        (33, "signal 33"),
        (0, "signal 0"),
        (65, "signal 65"),
    ],
)
def test_signal_name(number: int, name: str) -> None:
    assert signal_name(number) == name


@pytest.mark.parametrize("number", [n for n in range(1, 65) if n not in (32, 33)])
def test_name_round_trips(number: int) -> None:
    assert parse_signal(signal_name(number)) == number
