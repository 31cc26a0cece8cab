"""linux.uidMappings / gidMappings: what the kernel would refuse is refused up front, naming the
line (issue 4). Pure: corral.spec.validate and corral.runtime.rootless's decisions."""

from __future__ import annotations

from typing import Any

import pytest

from corral.errors import SpecError
from corral.spec.defaults import default_spec
from corral.spec.validate import validate_config

USERNS = [{"type": t} for t in ("pid", "ipc", "uts", "mount", "user")]


def m(container: int, host: int, size: int) -> dict[str, int]:
    return {"containerID": container, "hostID": host, "size": size}


def cfg(uids: list[Any], gids: list[Any] | None = None, **user: int) -> dict[str, Any]:
    spec: dict[str, Any] = default_spec()
    spec["linux"]["namespaces"] = [dict(ns) for ns in USERNS]
    spec["linux"]["uidMappings"] = uids
    spec["linux"]["gidMappings"] = gids if gids is not None else [m(0, 100000, 65536)]
    spec["process"]["user"].update(user)
    return spec


def error(spec: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as info:
        validate_config(spec)
    text = str(info.value)
    assert "\n" not in text
    return text


def test_good_mappings_pass() -> None:
    validate_config(cfg([m(0, 100000, 1000), m(1000, 1000, 1), m(1001, 101001, 64535)]))


def test_overlapping_container_ranges() -> None:
    text = error(cfg([m(0, 100000, 1000), m(500, 200000, 10)]))
    assert text == (
        "linux.uidMappings[1]: container IDs 500-509 overlap linux.uidMappings[0] (0-999)"
    )


def test_overlapping_host_ranges() -> None:
    text = error(cfg([m(0, 100000, 1000), m(1000, 100999, 10)]))
    assert text == (
        "linux.uidMappings[1]: host IDs 100999-101008 overlap linux.uidMappings[0] (100000-100999)"
    )


def test_gid_overlap_is_named_too() -> None:
    text = error(cfg([m(0, 100000, 10)], [m(0, 100000, 10), m(5, 300000, 10)]))
    assert text.startswith("linux.gidMappings[1]: container IDs 5-14 overlap")


def test_adjacent_ranges_do_not_overlap() -> None:
    validate_config(cfg([m(0, 100000, 10), m(10, 100010, 10)]))


@pytest.mark.parametrize("key", ["containerID", "hostID"])
def test_range_past_the_last_id(key: str) -> None:
    line = m(0, 0, 10)
    line[key] = 0xFFFF_FFF8
    maps = [m(0, 1, 1), line] if key == "containerID" else [line]
    text = error(cfg(maps))
    index = 1 if key == "containerID" else 0
    assert text.startswith(f"linux.uidMappings[{index}]: {key} 4294967288 + size 10 runs past")


def test_every_id_but_the_last_is_fine_one_more_is_not() -> None:
    validate_config(cfg([m(0, 0, 0xFFFF_FFFF)]))  # the initial namespace's own map
    assert error(cfg([m(0, 1, 0xFFFF_FFFF)])).startswith("linux.uidMappings[0]: hostID 1 + size")


def test_root_must_be_mapped() -> None:
    text = error(cfg([m(1, 100000, 65536)]))
    assert text == (
        "linux.uidMappings: must map container ID 0 (the container's root), none of its ranges does"
    )


def test_process_user_must_be_mapped() -> None:
    assert error(cfg([m(0, 100000, 1000)], uid=1000)) == (
        "process.user.uid: 1000 is not mapped by linux.uidMappings"
    )
    assert error(cfg([m(0, 100000, 2000)], [m(0, 100000, 10)], gid=10)) == (
        "process.user.gid: 10 is not mapped by linux.gidMappings"
    )


def test_mappings_without_a_user_namespace() -> None:
    spec = cfg([m(0, 100000, 10)])
    spec["linux"]["namespaces"] = [ns for ns in USERNS if ns["type"] != "user"]
    assert error(spec) == (
        'linux.uidMappings: requires a new user namespace (linux.namespaces type "user")'
    )


def test_a_new_user_namespace_without_mappings() -> None:
    spec = cfg([])
    del spec["linux"]["uidMappings"]
    assert error(spec) == (
        'linux.uidMappings: is required when linux.namespaces creates a "user" namespace'
    )


def test_too_many_lines() -> None:
    maps = [m(i * 2, 100000 + i * 2, 1) for i in range(341)]
    assert error(cfg(maps)) == "linux.uidMappings: has 341 entries; the kernel takes at most 340"
