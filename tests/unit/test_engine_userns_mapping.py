"""--userns/--uidmap parsing and --userns=auto's block choice (pure; the kernel side is in
tests/e2e/test_engine_userns.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corral.engine.containers import userns
from corral.engine.containers.userns import IdMap, Mapping, UsernsRequest, parse_request
from corral.errors import UsageError


def test_parse_requests() -> None:
    assert parse_request(None, [], []) == UsernsRequest("host")
    assert parse_request("auto:size=2000", [], []) == UsernsRequest("auto", size=2000)
    assert parse_request("keep-id:uid=1000,gid=100", [], []) == UsernsRequest(
        "keep-id", keep_uid=1000, keep_gid=100
    )
    only_uids = parse_request(None, ["0:100000:65536"], [])
    assert only_uids.gids == only_uids.uids == (IdMap(0, 100000, 65536),)
    with pytest.raises(UsageError, match="unknown option 'uid'"):
        parse_request("auto:uid=1", [], [])
    with pytest.raises(UsageError, match="host ranges overlap"):
        parse_request(None, ["0:100:10", "10:105:10"], [])


def test_mapping_translates_both_ways() -> None:
    m = Mapping((IdMap(0, 100000, 10), IdMap(10, 500, 1)), (IdMap(0, 100000, 11),))
    assert (m.host_uid(3), m.host_uid(10), m.host_uid(11)) == (100003, 500, None)
    assert (m.container_uid(100009), m.container_uid(500), m.container_uid(0)) == (9, 10, None)
    assert not m.identity
    assert Mapping((IdMap(0, 0, 1),), (IdMap(0, 0, 1),)).identity


def test_auto_takes_the_lowest_free_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("subuid", "subgid"):
        (tmp_path / name).write_text("other:1:5\ncontainers:1000:300\ncontainers:5000:1000\n")
    monkeypatch.setattr(userns, "SUBUID", str(tmp_path / "subuid"))
    monkeypatch.setattr(userns, "SUBGID", str(tmp_path / "subgid"))
    containers = tmp_path / "containers"
    (containers / "a").mkdir(parents=True)
    linux = {
        "namespaces": [{"type": "user"}],
        "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 100}],
        "gidMappings": [{"containerID": 0, "hostID": 1100, "size": 100}],
    }
    spec = {"linux": linux}
    (containers / "a" / "config.json").write_text(json.dumps(spec))

    def auto(size: int) -> Mapping | None:
        return userns.resolve(UsernsRequest("auto", size=size), containers_dir=containers,
                              container_id="b")  # fmt: skip

    got = auto(150)
    assert got is not None
    assert got.uids == (IdMap(0, 1100, 150),) and got.gids == (IdMap(0, 5000, 150),)
    got = auto(250)
    assert got is not None and got.uids == (IdMap(0, 5000, 250),)
    with pytest.raises(UsageError, match="no free block of 1001 ids"):
        auto(1001)
