"""Fuzz config.json and ``exec --process`` JSON through the real ``corral-runc`` (issue 8, point 6).

Each example starts from the busybox bundle's valid config (or process), applies a few
mutations (a field set to the wrong type, a huge or negative number, an unknown name, deep
nesting, a NUL byte, an empty string, a field removed, an optional section added with odd
values) and runs it. Every outcome must be one of:

- exit 0: the container ran (``run`` deleted it again);
- a non-zero exit with exactly one line on stderr that is no ``internal error`` and no
  traceback (the program itself may also fail, killed by its own seccomp profile, say: a
  non-zero exit with nothing on stderr is the program's status, not the runtime's);

and nothing may be left behind: no state in ``--root`` and no cgroup after each example, and
the autouse leak check (mounts, cgroups, processes) over the whole test.

The budget is bounded for CI: ``derandomize`` makes the same examples each run (about 150
configs and 60 processes, well under a minute here). ``CORRAL_FUZZ_EXAMPLES=N`` runs N fresh
random examples of each instead, for a longer hunt.
"""

from __future__ import annotations

import copy
import glob
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import Bundle, Runc, new_cid

_LONG_RUN = int(os.environ.get("CORRAL_FUZZ_EXAMPLES", "0"))


def _settings(examples: int) -> settings:
    return settings(
        max_examples=_LONG_RUN or examples,
        derandomize=not _LONG_RUN,
        database=None,  # no .hypothesis/ directory in the checkout
        deadline=timedelta(seconds=20),
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        print_blob=True,
    )


# -- values and mutations -------------------------------------------------------------------------


def _nested(depth: int) -> Any:
    value: Any = 1
    for i in range(depth):
        value = [value] if i % 2 else {"a": value}
    return value


ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2**31,
    2**32,
    2**63,
    2**64,
    -(2**63) - 1,
    10**30,
    1.5,
    -0.0,
    "",
    "x",
    "\0",
    "/etc\0/x",
    "/",
    "..",
    "../../..",
    "a\nb",
    "\ud800",
    "SCMP_ACT_BOGUS",
    "CAP_BOGUS",
    [],
    [""],
    [None],
    [1],
    {},
    {"": ""},
    _nested(50),
    _nested(400),
]

NAMES = [
    "pid",
    "network",
    "mount",
    "user",
    "cgroup",
    "time",
    "bogus",
    "RLIMIT_NOFILE",
    "RLIMIT_BOGUS",
    "CAP_SYS_ADMIN",
    "CAP_BOGUS",
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
    "SCMP_ACT_BOGUS",
    "SCMP_ARCH_X86_64",
    "SCMP_CMP_EQ",
    "read",
    "mkdir",
    "nosuchcall",
]

values = st.one_of(
    st.sampled_from(ODD_VALUES),
    st.sampled_from(NAMES),
    st.integers(min_value=-(2**65), max_value=2**65),
    st.text(max_size=8),
    st.lists(st.sampled_from([*NAMES, "", "\0"]), max_size=3),
)

# Optional sections a mutation may add, each as (JSON path, value).
SECTIONS: list[tuple[tuple[Any, ...], Any]] = [
    (("linux", "seccomp"), {"defaultAction": "SCMP_ACT_ALLOW"}),
    (("linux", "seccomp"), {"defaultAction": "SCMP_ACT_ERRNO"}),
    (
        ("linux", "seccomp"),
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [
                {
                    "names": ["mkdir", "mkdirat"],
                    "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}],
                }
            ],
        },
    ),
    (("linux", "sysctl"), {"net.ipv4.ip_forward": "1"}),
    (("linux", "sysctl"), {"kernel.shmmax": "4096"}),
    (("linux", "resources", "memory"), {"limit": 64 << 20, "swap": 64 << 20}),
    (("linux", "resources", "pids"), {"limit": 64}),
    (("linux", "resources", "cpu"), {"shares": 512, "quota": 50000, "period": 100000}),
    (("linux", "resources", "blockIO"), {"weight": 100}),
    (("linux", "cgroupsPath"), "/corral/fuzz"),
    (("linux", "devices"), [{"path": "/dev/fuzz", "type": "c", "major": 1, "minor": 3}]),
    (("linux", "uidMappings"), [{"containerID": 0, "hostID": 100000, "size": 65536}]),
    (("linux", "rootfsPropagation"), "rslave"),
    (("linux", "timeOffsets"), {"monotonic": {"secs": 1}}),
    (("linux", "personality"), {"domain": "LINUX"}),
    (("process", "rlimits"), [{"type": "RLIMIT_NPROC", "soft": 100, "hard": 100}]),
    (("process", "user"), {"uid": 1000, "gid": 1000, "additionalGids": [5]}),
    (("process", "oomScoreAdj"), 100),
    (("process", "consoleSize"), {"height": 24, "width": 80}),
    (("process", "env"), ["A=1", "PATH=/bin"]),
    (("hooks",), {"prestart": [{"path": "/bin/true", "args": ["true"]}]}),
    (("hooks",), {"poststop": [{"path": "/bin/true", "timeout": 5}]}),
    (("mounts",), [{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}]),
    (("annotations",), {"a": "b"}),
    (("domainname",), "example.org"),
]


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every JSON path in ``doc`` (objects by key, lists by index), parents before children."""
    found: list[tuple[Any, ...]] = [prefix] if prefix else []
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            found += _paths(value, (*prefix, i))
    return found


def _put(doc: Any, path: tuple[Any, ...], value: Any, delete: bool = False) -> None:
    """Set (or remove) ``path`` in ``doc``; missing objects on the way are made."""
    node = doc
    for key in path[:-1]:
        if isinstance(node, dict):
            node = node.setdefault(key, {})
        elif isinstance(node, list) and isinstance(key, int) and key < len(node):
            node = node[key]
        else:
            return  # an earlier mutation changed the shape: nothing to do here
        if not isinstance(node, dict | list):
            return
    last = path[-1]
    if isinstance(node, dict):
        if delete:
            node.pop(last, None)
        else:
            node[last] = value
    elif isinstance(node, list) and isinstance(last, int) and last < len(node):
        if delete:
            del node[last]
        else:
            node[last] = value


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any], sections: bool) -> dict[str, Any]:
    """``base`` with 1 to 3 mutations; ``sections``: optional config sections may be added."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        kinds = ["set", "delete", "section"] if sections else ["set", "delete"]
        kind = draw(st.sampled_from(kinds))
        if kind == "section":
            path, value = draw(st.sampled_from(SECTIONS))
            _put(doc, path, copy.deepcopy(value))
            continue
        paths = _paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        if kind == "delete":
            _put(doc, path, None, delete=True)
        else:
            # A copy: a later mutation may write inside it, and ODD_VALUES must stay as it is
            # (a changed one makes hypothesis see "inconsistent data generation").
            _put(doc, path, copy.deepcopy(draw(values)))
    return doc


# -- the contract ---------------------------------------------------------------------------------


def _cgroups(cid: str) -> list[str]:
    return glob.glob(f"/sys/fs/cgroup/*/corral/{cid}") + glob.glob(f"/sys/fs/cgroup/corral/{cid}")


def _write(path: Path, doc: Any) -> None:
    # ensure_ascii keeps lone surrogates writable; json.dumps never fails on the depths above.
    path.write_text(json.dumps(doc), encoding="utf-8")


def check_outcome(done: Any, doc: Any) -> None:
    """Exit 0, or a non-zero exit with one clean line on stderr (or none: see the top)."""
    shown = json.dumps(doc)[:2000]
    err: str = done.stderr
    assert "Traceback" not in err, f"{err}\nconfig: {shown}"
    assert "internal error" not in err, f"{err}\nconfig: {shown}"
    if done.returncode == 0:
        return
    lines = err.strip().splitlines()
    assert len(lines) <= 1, f"exit {done.returncode}, {len(lines)} lines:\n{err}\nconfig: {shown}"


# -- config.json ----------------------------------------------------------------------------------


def test_fuzz_config(corral_runc: Runc, runc_root: Path, bundle: Bundle) -> None:
    bundle.set(args=["true"], terminal=False)
    base = bundle.read_config()

    @_settings(150)
    @given(config=mutated(base, sections=True))
    def run_one(config: dict[str, Any]) -> None:
        _write(bundle.config_path, config)
        cid = new_cid()
        done = corral_runc("run", "--bundle", bundle, cid, timeout=20)
        check_outcome(done, config)
        left = sorted(p.name for p in runc_root.iterdir())
        if left:  # clean up for the next example, then fail this one
            corral_runc("delete", "--force", cid)
        assert left == [], f"state left in --root: {left}\nconfig: {json.dumps(config)[:2000]}"
        assert _cgroups(cid) == [], f"cgroups left\nconfig: {json.dumps(config)[:2000]}"

    run_one()


# -- exec --process -------------------------------------------------------------------------------


def test_fuzz_process(corral_runc: Runc, bundle: Bundle, cid: str, tmp_path: Path) -> None:
    bundle.set(args=["sleep", "1000"], terminal=False)
    base = bundle.read_config()["process"]
    base["args"] = ["true"]
    process_file = tmp_path / "process.json"

    def status() -> str:
        done = corral_runc("state", cid)
        return str(json.loads(done.stdout)["status"]) if done.returncode == 0 else "gone"

    def fresh_container() -> None:
        corral_runc("delete", "--force", cid)
        corral_runc("run", "-d", "--bundle", bundle, cid, check=True)

    def exec_(process: dict[str, Any]) -> Any:
        _write(process_file, process)
        done = corral_runc("exec", "--process", process_file, cid, timeout=20)
        check_outcome(done, process)
        return done

    fresh_container()

    @_settings(60)
    @given(process=mutated(base, sections=False))
    def exec_one(process: dict[str, Any]) -> None:
        done = exec_(process)
        if status() == "running":
            return
        # Another test run's leak check may kill any t-* container on this host: try once more
        # on a fresh container before blaming this process.
        fresh_container()
        done = exec_(process)
        after = status()
        assert after == "running", (
            f"exec left the container {after} (exit {done.returncode}: {done.stderr.strip()})"
            f"\nprocess: {json.dumps(process)[:2000]}"
        )

    exec_one()
    corral_runc("delete", "--force", cid, check=True)


@pytest.mark.parametrize(
    "text",
    ["{", '{"ociVersion": "1.0.2",}', "[" * 1000 + "]" * 1000, '{"a":' * 1000 + "1" + "}" * 1000],
    ids=["truncated", "trailing comma", "1000 deep list", "1000 deep object"],
)
def test_malformed_json_is_one_line(
    corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str, text: str
) -> None:
    """The three that the fuzzing of issue 8 found as internal errors, as fixed cases."""
    bundle.config_path.write_text(text)
    done = corral_runc("run", "--bundle", bundle, cid)
    check_outcome(done, text)
    assert done.returncode == 1 and "config.json" in done.stderr and "line 1" in done.stderr
    assert sorted(runc_root.iterdir()) == []
