"""docker's sizes, ages and tables."""

from __future__ import annotations

from corral.engine.format import ago, human_duration, human_size, parse_time, rfc3339, table


def test_human_size() -> None:
    assert human_size(0) == "0B"
    assert human_size(999) == "999B"
    assert human_size(4_270_000, 3) == "4.27MB"
    assert human_size(1_982_433) == "1.982MB"
    assert human_size(123_456, 3) == "123kB"


def test_human_duration() -> None:
    assert human_duration(0.5) == "Less than a second"
    assert human_duration(30) == "30 seconds"
    assert human_duration(90) == "About a minute"
    assert human_duration(3600) == "About an hour"
    assert human_duration(3 * 86400) == "3 days"
    assert human_duration(21 * 86400) == "3 weeks"


def test_times_round_trip() -> None:
    assert abs(parse_time(rfc3339(1_700_000_000.25)) - 1_700_000_000.25) < 1e-6
    assert parse_time("2024-01-02T03:04:05.123456789Z") == parse_time("2024-01-02T03:04:05.123456Z")
    assert ago(rfc3339(1000.0), now=1000.0 + 7200) == "2 hours ago"


def test_table_like_docker() -> None:
    text = table(["REPOSITORY", "TAG", "SIZE"], [["busybox", "latest", "1.98MB"]])
    assert text == "REPOSITORY   TAG       SIZE\nbusybox      latest    1.98MB\n"
