"""linux.seccomp: checking and compiling a profile (no filter is loaded here).

compile_profile resolves names through libseccomp.so.2 (installed wherever corral runs
seccomp); the rule-splitting logic is pure and needs nothing.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from corral.errors import SpecError
from corral.runtime import seccomp as rt
from corral.sys import seccomp as sc

SRC = Path(__file__).resolve().parents[2] / "src"
MACHINE = os.uname().machine
# x86_64 numbers from the kernel's syscall table, written out so the test does not trust ours.
X86_64 = {"mkdir": 83, "mkdirat": 258, "socket": 41, "uname": 63, "write": 1}


def profile(**fields: Any) -> dict[str, Any]:
    return {"defaultAction": "SCMP_ACT_ALLOW", **fields}


def rule(**fields: Any) -> dict[str, Any]:
    return {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", **fields}


def error_of(seccomp: Any) -> str:
    with pytest.raises(SpecError) as info:
        sc.compile_profile(seccomp)
    return str(info.value)


# -- validation: every mistake names its JSON path ----------------------------------------------


@pytest.mark.parametrize(
    ("seccomp", "message"),
    [
        ({}, "linux.seccomp.defaultAction: is required"),
        (
            {"defaultAction": "SCMP_ACT_FOO"},
            'linux.seccomp.defaultAction: unknown action "SCMP_ACT_FOO"',
        ),
        (
            {"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/x"},
            "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default action",
        ),
        (
            {"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1},
            "linux.seccomp.defaultErrnoRet: only SCMP_ACT_ERRNO and SCMP_ACT_TRACE return an "
            "errno, not SCMP_ACT_ALLOW",
        ),
        (
            {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000},
            "linux.seccomp.defaultErrnoRet: expected an errno number from 0 to 65535, got 70000",
        ),
        (
            profile(architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_VAX"]),
            'linux.seccomp.architectures[1]: unknown architecture "SCMP_ARCH_VAX"',
        ),
        (
            profile(architectures=["x86_64"]),
            'linux.seccomp.architectures[0]: unknown architecture "x86_64"',
        ),
        (
            profile(flags=["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_FOO"]),
            'linux.seccomp.flags[1]: unknown flag "SECCOMP_FILTER_FLAG_FOO" (one of '
            "SECCOMP_FILTER_FLAG_TSYNC, SECCOMP_FILTER_FLAG_LOG, SECCOMP_FILTER_FLAG_SPEC_ALLOW)",
        ),
        (
            profile(flags=["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]),
            'linux.seccomp.flags[0]: seccomp flag "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" is '
            "not supported",
        ),
        (
            profile(syscalls=[rule(), rule(), rule(), rule(action="SCMP_ACT_FOO")]),
            'linux.seccomp.syscalls[3].action: unknown action "SCMP_ACT_FOO"',
        ),
        (profile(syscalls=[{"names": ["mkdir"]}]), "linux.seccomp.syscalls[0].action: is required"),
        (
            profile(syscalls=[rule(action="SCMP_ACT_KILL_PROCESS", errnoRet=1)]),
            "linux.seccomp.syscalls[0].errnoRet: only SCMP_ACT_ERRNO and SCMP_ACT_TRACE return "
            "an errno, not SCMP_ACT_KILL_PROCESS",
        ),
        (
            profile(syscalls=[rule(errnoRet=-1)]),
            "linux.seccomp.syscalls[0].errnoRet: expected an errno number from 0 to 65535, got -1",
        ),
        (
            profile(syscalls=[rule(names=[])]),
            "linux.seccomp.syscalls[0].names: needs at least one syscall name",
        ),
        (
            profile(syscalls=[rule(names=["mkdir", ""])]),
            "linux.seccomp.syscalls[0].names[1]: expected a syscall name",
        ),
        (
            profile(syscalls=[rule(args=[{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}])]),
            "linux.seccomp.syscalls[0].args[0].index: 6 is not a syscall argument (0 to 5)",
        ),
        (
            profile(syscalls=[rule(args=[{"value": 1, "op": "SCMP_CMP_EQ"}])]),
            "linux.seccomp.syscalls[0].args[0].index: is required",
        ),
        (
            profile(
                syscalls=[
                    rule(
                        args=[
                            {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                            {"index": 1, "value": 1, "op": "SCMP_CMP_ABOUT"},
                        ]
                    )
                ]
            ),
            'linux.seccomp.syscalls[0].args[1].op: unknown operator "SCMP_CMP_ABOUT"',
        ),
        (
            profile(syscalls=[rule(args=[{"index": 0, "value": 1}])]),
            "linux.seccomp.syscalls[0].args[0].op: is required",
        ),
        (
            profile(syscalls=[rule(args=[{"index": 0, "value": 1 << 64, "op": "SCMP_CMP_EQ"}])]),
            "linux.seccomp.syscalls[0].args[0].value: expected a 64-bit unsigned integer, got "
            "18446744073709551616",
        ),
        (
            profile(syscalls=[rule(args=["x"])]),
            "linux.seccomp.syscalls[0].args[0]: expected an object",
        ),
        (
            profile(syscalls=[rule(action="SCMP_ACT_NOTIFY")]),
            "linux.seccomp.listenerPath: is required when a rule uses SCMP_ACT_NOTIFY",
        ),
        (
            # Even when no rule is left (unknown name): the profile asks for a listener.
            profile(syscalls=[rule(names=["no_such_call"], action="SCMP_ACT_NOTIFY")]),
            "linux.seccomp.listenerPath: is required when a rule uses SCMP_ACT_NOTIFY",
        ),
        (
            profile(
                listenerPath="/l",
                syscalls=[rule(names=["read", "write"], action="SCMP_ACT_NOTIFY")],
            ),
            "linux.seccomp.syscalls[0].names[1]: SCMP_ACT_NOTIFY cannot be used for the write "
            "syscall",
        ),
        (
            profile(
                listenerPath="/l", syscalls=[rule(names=["sendmsg"], action="SCMP_ACT_NOTIFY")]
            ),
            "linux.seccomp.syscalls[0].names[0]: SCMP_ACT_NOTIFY cannot be used for the sendmsg "
            "syscall",
        ),
        ("allow", "linux.seccomp: expected an object"),
    ],
)
def test_mistakes_name_their_field(seccomp: Any, message: str) -> None:
    assert error_of(seccomp) == message


def test_error_path_prefix_is_the_callers() -> None:
    with pytest.raises(SpecError) as info:
        sc.compile_profile({"defaultAction": "SCMP_ACT_NOPE"}, "process.seccomp")
    assert info.value.path == "process.seccomp.defaultAction"


def test_spec_error_carries_path_and_detail() -> None:
    with pytest.raises(SpecError) as info:
        sc.compile_profile(profile(syscalls=[rule(), rule(action="SCMP_ACT_FOO")]))
    assert info.value.path == "linux.seccomp.syscalls[1].action"
    assert info.value.detail == 'unknown action "SCMP_ACT_FOO"'


# -- actions --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "errno_ret", "value"),
    [
        ("SCMP_ACT_KILL", None, 0x00000000),
        ("SCMP_ACT_KILL_THREAD", None, 0x00000000),
        ("SCMP_ACT_KILL_PROCESS", None, 0x80000000),
        ("SCMP_ACT_TRAP", None, 0x00030000),
        ("SCMP_ACT_ERRNO", None, 0x00050001),  # EPERM unless errnoRet says otherwise
        ("SCMP_ACT_ERRNO", 38, 0x00050026),
        ("SCMP_ACT_ERRNO", 0, 0x00050000),
        ("SCMP_ACT_TRACE", None, 0x7FF00001),
        ("SCMP_ACT_TRACE", 7, 0x7FF00007),
        ("SCMP_ACT_LOG", None, 0x7FFC0000),
    ],
)
def test_action_values(action: str, errno_ret: int | None, value: int) -> None:
    entry = rule(action=action) if errno_ret is None else rule(action=action, errnoRet=errno_ret)
    compiled = sc.compile_profile(profile(syscalls=[entry]))
    assert [r.action for r in compiled.rules] == [value]


def test_default_action_and_default_errno() -> None:
    assert sc.compile_profile({"defaultAction": "SCMP_ACT_ERRNO"}).default_action == 0x00050001
    compiled = sc.compile_profile({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38})
    assert compiled.default_action == 0x00050026
    assert sc.compile_profile({"defaultAction": "SCMP_ACT_ALLOW"}).default_action == 0x7FFF0000


def test_notify_action_wants_a_listener_and_is_marked() -> None:
    compiled = sc.compile_profile(
        profile(
            listenerPath="/run/agent.sock",
            listenerMetadata="meta",
            syscalls=[rule(names=["mkdir"], action="SCMP_ACT_NOTIFY")],
        )
    )
    assert compiled.notify
    assert [r.action for r in compiled.rules] == [0x7FC00000]
    assert (compiled.listener_path, compiled.listener_metadata) == ("/run/agent.sock", "meta")
    assert not sc.compile_profile(profile(syscalls=[rule()])).notify


# -- names, architectures, flags ------------------------------------------------------------------


@pytest.mark.skipif(MACHINE != "x86_64", reason="syscall numbers are x86_64's")
def test_syscall_names_resolve_for_the_native_architecture() -> None:
    compiled = sc.compile_profile(profile(syscalls=[rule(names=["mkdir", "mkdirat", "uname"])]))
    assert [(r.name, r.nr) for r in compiled.rules] == [
        (name, X86_64[name]) for name in ("mkdir", "mkdirat", "uname")
    ]


def test_unknown_syscall_names_are_skipped_as_runc_does() -> None:
    compiled = sc.compile_profile(profile(syscalls=[rule(names=["no_such_call", "mkdir"])]))
    assert [r.name for r in compiled.rules] == ["mkdir"]


def test_rules_with_the_default_action_are_skipped() -> None:
    compiled = sc.compile_profile(
        profile(syscalls=[rule(action="SCMP_ACT_ALLOW", names=["read"]), rule()])
    )
    assert [r.name for r in compiled.rules] == ["mkdir"]
    # ERRNO with another errno is a different action, so it stays.
    compiled = sc.compile_profile(
        {
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [rule(), rule(names=["uname"], errnoRet=38)],
        }
    )
    assert [r.name for r in compiled.rules] == ["uname"]


@pytest.mark.parametrize(
    ("name", "token"),
    [
        # AUDIT_ARCH_* (linux/audit.h): machine | 64-bit | little-endian bits.
        ("SCMP_ARCH_X86_64", 0xC000003E),
        ("SCMP_ARCH_X86", 0x40000003),
        ("SCMP_ARCH_X32", 0x4000003E),
        ("SCMP_ARCH_AARCH64", 0xC00000B7),
        ("SCMP_ARCH_ARM", 0x40000028),
        ("SCMP_ARCH_S390X", 0x80000016),
        ("SCMP_ARCH_PPC64LE", 0xC0000015),
        ("SCMP_ARCH_RISCV64", 0xC00000F3),
    ],
)
def test_architectures_resolve_to_audit_tokens(name: str, token: int) -> None:
    assert sc.compile_profile(profile(architectures=[name])).architectures == [token]


def test_flags_set_filter_attributes_and_no_new_privs_is_off() -> None:
    compiled = sc.compile_profile(
        profile(
            flags=[
                "SECCOMP_FILTER_FLAG_TSYNC",
                "SECCOMP_FILTER_FLAG_LOG",
                "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
            ]
        )
    )
    # SCMP_FLTATR_CTL_NNP=3 off; CTL_LOG=6 and CTL_SSB=7 on; TSYNC needs nothing (one thread).
    assert compiled.attributes == [(3, 0), (6, 1), (7, 1)]


def test_every_oci_name_is_known() -> None:
    """The tables cover what corral's features document announces."""
    from corral.spec import features

    assert set(features.SECCOMP_ACTIONS) == set(sc.ACTIONS)
    assert set(features.SECCOMP_OPERATORS) == set(sc.OPERATORS)
    assert set(features.SECCOMP_ARCHS) <= set(sc.ARCHITECTURES)
    assert set(features.SECCOMP_SUPPORTED_FLAGS) <= set(sc.FLAGS)


# -- splitting args into rules (pure) -------------------------------------------------------------


def arg(
    index: int, value: int, op: str = "SCMP_CMP_EQ", value_two: int | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"index": index, "value": value, "op": op}
    if value_two is not None:
        out["valueTwo"] = value_two
    return out


def test_no_args_is_one_unconditional_rule() -> None:
    assert sc.split_conditions([], "a") == [()]


def test_distinct_indexes_are_anded_in_one_rule() -> None:
    got = sc.split_conditions([arg(0, 2), arg(1, 1, "SCMP_CMP_NE"), arg(2, 9, "SCMP_CMP_GT")], "a")
    assert got == [((0, 4, 2, 0), (1, 1, 1, 0), (2, 6, 9, 0))]


def test_a_repeated_index_splits_every_condition_into_its_own_rule() -> None:
    """runc's rule: arg0 == 1 AND arg0 == 2 could never match, so each becomes a rule (OR),
    and then so do the other conditions of that entry."""
    got = sc.split_conditions([arg(0, 1), arg(0, 2), arg(1, 5)], "a")
    assert got == [((0, 4, 1, 0),), ((0, 4, 2, 0),), ((1, 4, 5, 0),)]


def test_masked_eq_carries_mask_and_value() -> None:
    got = sc.split_conditions([arg(1, 0xFF00, "SCMP_CMP_MASKED_EQ", 0x100)], "a")
    assert got == [((1, 7, 0xFF00, 0x100),)]
    # valueTwo means nothing to the other operators: not passed on.
    assert sc.split_conditions([arg(1, 3, "SCMP_CMP_LT", 9)], "a") == [((1, 2, 3, 0),)]


@pytest.mark.parametrize(
    ("op", "code"),
    [
        ("SCMP_CMP_NE", 1),
        ("SCMP_CMP_LT", 2),
        ("SCMP_CMP_LE", 3),
        ("SCMP_CMP_EQ", 4),
        ("SCMP_CMP_GE", 5),
        ("SCMP_CMP_GT", 6),
        ("SCMP_CMP_MASKED_EQ", 7),
    ],
)
def test_operator_codes_are_libseccomps(op: str, code: int) -> None:
    assert sc.split_conditions([arg(0, 1, op)], "a")[0][0][1] == code


def test_value_defaults_to_zero() -> None:
    assert sc.split_conditions([{"index": 3, "op": "SCMP_CMP_EQ"}], "a") == [((3, 4, 0, 0),)]


def test_each_name_gets_each_rule() -> None:
    compiled = sc.compile_profile(
        profile(
            syscalls=[
                rule(
                    names=["mkdir", "mkdirat"],
                    args=[arg(0, 1), arg(0, 2)],
                )
            ]
        )
    )
    assert [(r.name, r.conditions) for r in compiled.rules] == [
        ("mkdir", ((0, 4, 1, 0),)),
        ("mkdir", ((0, 4, 2, 0),)),
        ("mkdirat", ((0, 4, 1, 0),)),
        ("mkdirat", ((0, 4, 2, 0),)),
    ]


# -- the runtime side -----------------------------------------------------------------------------


def test_prepare_is_none_without_seccomp_and_checks_with_it() -> None:
    assert rt.prepare({"linux": {}}) is None
    assert rt.prepare({}) is None
    assert rt.prepare({"linux": {"seccomp": profile()}}) is not None
    with pytest.raises(SpecError, match=r"^linux\.seccomp\.defaultAction: unknown action"):
        rt.prepare({"linux": {"seccomp": {"defaultAction": "x"}}})


def test_process_state_shape() -> None:
    state = {"ociVersion": "1.0.2", "id": "c", "status": "creating", "pid": 7, "bundle": "/b"}
    doc = rt.process_state(state, 7, "m=1")
    assert doc == {
        "ociVersion": doc["ociVersion"],
        "fds": ["seccompFd"],
        "pid": 7,
        "metadata": "m=1",
        "state": state,
    }
    assert "metadata" not in rt.process_state(state, 7, "")


def test_send_to_listener_passes_the_fd_and_state(tmp_path: Path) -> None:
    path = str(tmp_path / "listener.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    got: dict[str, Any] = {}

    def accept() -> None:
        conn, _ = server.accept()
        msg, fds, _flags, _addr = socket.recv_fds(conn, 65536, 1)
        got["msg"], got["fds"] = msg, fds
        conn.close()

    thread = threading.Thread(target=accept)
    thread.start()
    r, w = os.pipe()
    try:
        rt.send_to_listener(path, w, "meta", {"id": "c", "status": "creating"}, 42)
        thread.join(10)
        import json

        doc = json.loads(got["msg"])
        assert doc["fds"] == ["seccompFd"] and doc["pid"] == 42 and doc["metadata"] == "meta"
        assert doc["state"] == {"id": "c", "status": "creating"}
        (fd,) = got["fds"]
        os.write(fd, b"hi")  # the listener's fd is the same pipe
        assert os.read(r, 2) == b"hi"
        os.close(fd)
    finally:
        os.close(r)
        os.close(w)
        server.close()


def test_send_to_listener_names_the_path_when_nobody_listens(tmp_path: Path) -> None:
    from corral.errors import KernelError

    path = str(tmp_path / "nobody.sock")
    with pytest.raises(KernelError) as info:
        rt.send_to_listener(path, 0, "", {}, 1)
    assert path in str(info.value) and "seccomp listener" in str(info.value)


def test_fd_from_message() -> None:
    assert rt.fd_from_message([(1, 1, (9).to_bytes(4, sys.byteorder))]) == 9
    assert rt.fd_from_message([]) == -1


def test_importing_costs_nothing_heavy() -> None:
    """Both modules are on the runtime's path: no ctypes (until used), typing, json, socket."""
    heavy = {"typing", "dataclasses", "enum", "re", "json", "signal", "socket", "ctypes"}
    code = (
        f"import sys; sys.path.insert(0, {str(SRC)!r}); base = set(sys.modules);"
        "import corral.runtime.seccomp, corral.sys.seccomp; print(*(set(sys.modules) - base))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True
    )
    assert set(out.stdout.split()) & heavy == set()
