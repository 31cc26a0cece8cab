"""Device rules on cgroup v2: v1 semantics replayed (emulate), compiled to eBPF, and the
program's decisions checked with the small interpreter in corral.cgroups.devices."""

from __future__ import annotations

import pytest

from corral.cgroups import DEFAULT_DEVICE_RULES, _base
from corral.cgroups.devices import compile_program, emulate, run_program


def program_for(rules: list[dict[str, object]]) -> bytes:
    return compile_program(*emulate(_base.device_rules(rules)))


DENY_ALL = {"allow": False, "access": "rwm"}


def test_emulate_resets_on_type_a() -> None:
    rules = _base.device_rules(
        [
            {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            DENY_ALL,
            {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "r"},
        ]
    )
    assert emulate(rules) == (False, [("c", 1, 5, 2)])
    assert emulate([]) == (False, [])
    assert emulate([], default_allow=True) == (True, [])


def test_emulate_merges_and_narrows_like_the_v1_kernel() -> None:
    rules = _base.device_rules(
        [
            DENY_ALL,
            {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "r"},
            {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "w"},  # widens
            {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "r"},  # narrows
            {"allow": True, "type": "b", "major": 8, "access": "m"},
            {"allow": False, "type": "b", "major": 8, "access": "m"},  # removes
        ]
    )
    assert emulate(rules) == (False, [("c", 1, 3, 4)])


@pytest.mark.parametrize(
    ("kind", "major", "minor", "access", "allowed"),
    [
        ("c", 1, 3, "rw", True),  # /dev/null
        ("c", 1, 5, "r", True),  # /dev/zero
        ("c", 136, 7, "rw", True),  # /dev/pts/7
        ("c", 5, 2, "rw", True),  # /dev/ptmx
        ("c", 10, 200, "rw", True),  # /dev/net/tun
        ("c", 4, 1, "m", True),  # mknod of any char device
        ("b", 8, 0, "m", True),  # mknod of any block device
        ("b", 8, 0, "r", False),  # reading a disk
        ("c", 4, 1, "rw", False),  # /dev/tty1
        ("c", 1, 1, "r", False),  # /dev/mem
    ],
)
def test_the_usual_container_rules(
    kind: str, major: int, minor: int, access: str, allowed: bool
) -> None:
    program = program_for([DENY_ALL, *DEFAULT_DEVICE_RULES])
    assert run_program(program, kind, major, minor, access) is allowed


def test_allow_list_grants_only_what_is_listed() -> None:
    program = program_for(
        [DENY_ALL, {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "r"}]
    )
    assert run_program(program, "c", 1, 3, "r")
    assert not run_program(program, "c", 1, 3, "w")
    assert not run_program(program, "c", 1, 3, "rw")  # O_RDWR needs both
    assert not run_program(program, "b", 1, 3, "r")  # another type


def test_deny_list_refuses_any_overlap() -> None:
    program = program_for(
        [
            {"allow": True, "access": "rwm"},
            {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"},
            {"allow": False, "type": "b", "access": "rwm"},
        ]
    )
    assert run_program(program, "c", 1, 3, "r")
    assert not run_program(program, "c", 1, 3, "w")
    assert not run_program(program, "c", 1, 3, "rw")  # partly denied is denied (v1 kernel)
    assert run_program(program, "c", 1, 5, "rw")
    assert not run_program(program, "b", 8, 0, "r")


def test_allow_all_and_deny_all() -> None:
    assert run_program(program_for([{"allow": True, "access": "rwm"}]), "b", 8, 0, "rw")
    assert not run_program(program_for([]), "c", 1, 3, "r")  # deny-all first, as on v1
    assert run_program(compile_program(True, []), "c", 1, 3, "r")


def test_program_shape() -> None:
    program = program_for([DENY_ALL])
    assert len(program) % 8 == 0
    assert len(program) == 8 * 8  # prologue (6) + return default (2)
    assert program[-8] == 0x95  # exit
