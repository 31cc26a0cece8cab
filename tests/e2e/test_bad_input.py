"""Bad input to ``corral-runc``: one line naming the field or flag, a non-zero exit, nothing left.

Every case checks the same contract (DESIGN.md, "Errors"):

- a non-zero exit status;
- exactly one line on stderr, naming the field (as a JSON path such as ``process.user.uid``),
  the flag or the argument at fault, and never a Python traceback;
- nothing left behind: no state directory in ``--root``, no cgroup directory named after the
  container, no mount, no process (the autouse leak check covers mounts and processes; the
  state and cgroup directories are asserted here explicitly).
"""

from __future__ import annotations

import glob
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers import Bundle, Runc

Config = dict[str, Any]


def cgroup_dirs(cid: str) -> list[str]:
    """Every cgroup directory (v1 controllers, the hybrid unified tree, v2) named ``cid``."""
    return glob.glob(f"/sys/fs/cgroup/*/corral/{cid}") + glob.glob(f"/sys/fs/cgroup/corral/{cid}")


def assert_one_line_error(done: Any, *fragments: str) -> str:
    """The command failed with one stderr line containing every fragment, and no traceback."""
    err: str = done.stderr
    assert done.returncode != 0, f"expected a failure, got exit 0\n{err}"
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def assert_nothing_left(root: Path, cid: str) -> None:
    leftover = sorted(p.name for p in root.iterdir()) if root.exists() else []
    assert leftover == [], f"state left in --root: {leftover}"
    assert cgroup_dirs(cid) == [], cgroup_dirs(cid)
    pids = [
        p for p in os.listdir("/proc") if p.isdigit() and _cmdline_mentions(int(p), str(root))
    ]
    assert pids == [], f"processes left: {pids}"


def _cmdline_mentions(pid: int, text: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return text.encode() in f.read()
    except OSError:
        return False


# -- config.json ----------------------------------------------------------------------------------


def _set(path: str, value: Any) -> Callable[[Config], None]:
    """An edit that sets the dotted ``path`` of the config to ``value``."""

    def edit(config: Config) -> None:
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return edit


def _del_root_path(config: Config) -> None:
    del config["root"]["path"]


def _namespace_path(config: Config) -> None:
    for ns in config["linux"]["namespaces"]:
        if ns["type"] == "network":
            ns["path"] = "/nonexistent/ns/net"


def _unknown_namespace(config: Config) -> None:
    config["linux"]["namespaces"][0]["type"] = "bogus"


def _duplicate_namespace(config: Config) -> None:
    first = config["linux"]["namespaces"][0]
    config["linux"]["namespaces"].append(dict(first))


def _unknown_capability(config: Config) -> None:
    config["process"]["capabilities"]["bounding"].append("CAP_BOGUS")


def _rlimit(rtype: str, soft: int, hard: int) -> Callable[[Config], None]:
    def edit(config: Config) -> None:
        config["process"]["rlimits"] = [{"type": rtype, "soft": soft, "hard": hard}]

    return edit


def _hook(kind: str, path: str, args: list[str]) -> Callable[[Config], None]:
    def edit(config: Config) -> None:
        config.setdefault("hooks", {})[kind] = [{"path": path, "args": args}]

    return edit


def _mount_destination(destination: str) -> Callable[[Config], None]:
    # A plain relative destination ("run/x") is accepted, as runc 1.1 accepts it (with a
    # warning) and resolves it from "/"; one that climbs out of the rootfs or is empty is not.
    def edit(config: Config) -> None:
        config["mounts"].append({"destination": destination, "type": "tmpfs", "source": "tmpfs"})

    return edit


def _device_type(config: Config) -> None:
    config["linux"]["devices"] = [
        {"path": "/dev/weird", "type": "x", "major": 1, "minor": 3, "fileMode": 438}
    ]


CONFIG_CASES: list[tuple[str, Callable[[Config], None], tuple[str, ...]]] = [
    ("missing root.path", _del_root_path, ("root.path",)),
    ("rootfs does not exist", _set("root.path", "no-such-rootfs"), ("no-such-rootfs",)),
    ("unknown namespace type", _unknown_namespace, ("linux.namespaces[0].type", "bogus")),
    ("duplicate namespace", _duplicate_namespace, ("linux.namespaces",)),
    (
        "bad namespace path",
        _namespace_path,
        ("linux.namespaces", "/nonexistent/ns/net"),
    ),
    ("negative uid", _set("process.user.uid", -1), ("process.user.uid",)),
    ("string uid", _set("process.user.uid", "0"), ("process.user.uid",)),
    ("relative cwd", _set("process.cwd", "tmp"), ("process.cwd",)),
    ("cwd missing in rootfs", _set("process.cwd", "/no/such/dir"), ("process.cwd",)),
    ("empty args", _set("process.args", []), ("process.args",)),
    (
        "args[0] not in PATH",
        _set("process.args", ["no-such-program-xyz"]),
        ("process.args[0]", "no-such-program-xyz"),
    ),
    ("unknown capability", _unknown_capability, ("process.capabilities", "CAP_BOGUS")),
    ("unknown rlimit", _rlimit("RLIMIT_BOGUS", 1, 1), ("process.rlimits[0]", "RLIMIT_BOGUS")),
    ("rlimit soft > hard", _rlimit("RLIMIT_NOFILE", 2048, 1024), ("process.rlimits[0]",)),
    ("hook with relative path", _hook("prestart", "bin/true", ["true"]), ("hooks.prestart[0]",)),
    ("prestart hook exits 1", _hook("prestart", "/bin/false", ["false"]), ("prestart",)),
    (
        "mount destination escaping the rootfs",
        _mount_destination("../../../escape"),
        ("mounts[", "].destination", "../../../escape"),
    ),
    ("mount with empty destination", _mount_destination(""), ("mounts[", "].destination")),
    ("unknown device type", _device_type, ("linux.devices[0].type",)),
    # Found by the fuzz test: an args[0] holding a newline made a two-line message.
    (
        "missing program with a newline in its name",
        lambda c: c["process"].__setitem__("args", ["a\nb"]),
        ("process.args[0]", '"a\\nb"', "not found"),
    ),
]


@pytest.mark.parametrize(
    ("edit", "fragments"),
    [pytest.param(e, f, id=name) for name, e, f in CONFIG_CASES],
)
def test_bad_config(
    corral_runc: Runc,
    runc_root: Path,
    bundle: Bundle,
    cid: str,
    edit: Callable[[Config], None],
    fragments: tuple[str, ...],
) -> None:
    bundle.set(args=["true"], edit=edit)
    done = corral_runc("create", "--bundle", bundle, cid)
    assert_one_line_error(done, *fragments)
    assert_nothing_left(runc_root, cid)


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        pytest.param(None, ("config.json",), id="missing config.json"),
        pytest.param(
            '{"ociVersion": "1.0.2",\n  "process": }', ("config.json", "line 2", "column"),
            id="malformed JSON",
        ),
        pytest.param("[1, 2]", ("config.json", "object"), id="config not an object"),
        # These three were "internal error: SystemError/RecursionError" from the JSON scanner.
        pytest.param("{", ("config.json", "line 1 column 2"), id="truncated object"),
        pytest.param(
            '{"ociVersion": "1.0.2",}', ("config.json", "line 1 column 24"), id="trailing comma"
        ),
        pytest.param(
            '{"a":' * 1000 + "1" + "}" * 1000,
            ("config.json", "nested too deeply", "line 1 column"),
            id="nested 1000 deep",
        ),
    ],
)
def test_bad_config_file(
    corral_runc: Runc,
    runc_root: Path,
    bundle: Bundle,
    cid: str,
    content: str | None,
    fragments: tuple[str, ...],
) -> None:
    if content is None:
        bundle.config_path.unlink()
    else:
        bundle.config_path.write_text(content)
    done = corral_runc("create", "--bundle", bundle, cid)
    assert_one_line_error(done, *fragments)
    assert_nothing_left(runc_root, cid)


# -- arguments and flags --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        pytest.param(["frobnicate"], ("frobnicate",), id="unknown command"),
        pytest.param(["--bogus", "list"], ("flag provided but not defined", "bogus"),
                     id="unknown global flag"),
        pytest.param(["list", "--bogus"], ("flag provided but not defined", "bogus"),
                     id="unknown command flag"),
        pytest.param(["--log-format", "xml", "list"], ("--log-format", "xml"),
                     id="log-format xml"),
        pytest.param(["--log-format=xml", "list"], ("--log-format", "xml"),
                     id="log-format=xml"),
        pytest.param(["create", "--bundle", "{bundle}", "--preserve-fds", "-1", "{cid}"],
                     ("--preserve-fds",), id="preserve-fds -1"),
        pytest.param(["create", "--bundle", "{bundle}", "--preserve-fds", "two", "{cid}"],
                     ("preserve-fds", "two"), id="preserve-fds not a number"),
        pytest.param(["create", "--bundle", "{bundle}", "../x"], ("invalid container id",),
                     id="invalid container id"),
        pytest.param(["create", "--bundle", "{bundle}"], ("create",), id="create without id"),
        pytest.param(["start", "{cid}"], ("container does not exist",), id="start unknown id"),
        pytest.param(["state", "{cid}"], ("container does not exist",), id="state unknown id"),
        pytest.param(["kill", "{cid}", "9"], ("container does not exist",),
                     id="kill unknown id"),
        pytest.param(["delete", "{cid}"], ("container does not exist",),
                     id="delete unknown id"),
        pytest.param(["ps", "{cid}"], ("container does not exist",), id="ps unknown id"),
        pytest.param(["pause", "{cid}"], ("container does not exist",), id="pause unknown id"),
        pytest.param(["exec", "{cid}", "true"], ("container does not exist",),
                     id="exec unknown id"),
        pytest.param(["events", "--interval", "soon", "{cid}"], ("--interval", "soon"),
                     id="events bad interval"),
        pytest.param(["events", "--interval", "-5s", "{cid}"], ("--interval",),
                     id="events negative interval"),
        pytest.param(["list", "--format", "yaml"], ("format", "yaml"), id="list bad format"),
    ],
)
def test_bad_arguments(
    corral_runc: Runc,
    runc_root: Path,
    bundle: Bundle,
    cid: str,
    argv: list[str],
    fragments: tuple[str, ...],
) -> None:
    bundle.set(args=["true"])
    args = [a.replace("{bundle}", str(bundle)).replace("{cid}", cid) for a in argv]
    done = corral_runc(*args)
    assert_one_line_error(done, *fragments)
    assert_nothing_left(runc_root, cid)
    assert not (runc_root.parent / "x").exists()


def test_console_socket_missing(
    corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str, tmp_path: Path
) -> None:
    bundle.set(args=["true"], terminal=True)
    missing = tmp_path / "no-such.sock"
    done = corral_runc("create", "--bundle", bundle, "--console-socket", missing, cid)
    assert_one_line_error(done, "--console-socket", str(missing))
    assert_nothing_left(runc_root, cid)


def test_terminal_without_console_socket(
    corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str
) -> None:
    bundle.set(args=["true"], terminal=True)
    done = corral_runc("create", "--bundle", bundle, cid)
    assert_one_line_error(done, "console socket")
    assert_nothing_left(runc_root, cid)


def test_console_socket_without_terminal(
    corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str, tmp_path: Path
) -> None:
    bundle.set(args=["true"], terminal=False)
    path = str(tmp_path / "console.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(1)
        done = corral_runc("create", "--bundle", bundle, "--console-socket", path, cid)
    assert_one_line_error(done, "console socket")
    assert_nothing_left(runc_root, cid)


# -- errors against a live container: it must be left exactly as it was ---------------------------


@pytest.fixture
def created(corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str) -> str:
    bundle.set(args=["sleep", "100"])
    corral_runc("create", "--bundle", bundle, cid, check=True)
    return cid


def _status(corral_runc: Runc, cid: str) -> str:
    status: str = json.loads(corral_runc("state", cid, check=True).stdout)["status"]
    return status


def test_duplicate_id(
    corral_runc: Runc, runc_root: Path, make_bundle: Any, created: str
) -> None:
    before = json.loads(corral_runc("state", created, check=True).stdout)
    other = make_bundle(["true"], name="other")
    done = corral_runc("create", "--bundle", other, created)
    assert_one_line_error(done, f"container with id exists: {created}")
    after = json.loads(corral_runc("state", created, check=True).stdout)
    assert after == before  # the first container is untouched
    assert sorted(p.name for p in runc_root.iterdir()) == [created]


@pytest.mark.parametrize("signal", ["FOO", "99", "0x9", ""])
def test_kill_bad_signal(corral_runc: Runc, created: str, signal: str) -> None:
    done = corral_runc("kill", created, signal)
    assert_one_line_error(done, "signal")
    assert _status(corral_runc, created) == "created"


def test_exec_into_stopped(
    corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str
) -> None:
    bundle.set(args=["true"])
    corral_runc("create", "--bundle", bundle, cid, check=True)
    corral_runc("start", cid, check=True)
    deadline = time.monotonic() + 10
    while _status(corral_runc, cid) != "stopped":
        assert time.monotonic() < deadline, "container did not stop"
        time.sleep(0.02)
    done = corral_runc("exec", cid, "true")
    assert_one_line_error(done, "stopped")
    corral_runc("delete", cid, check=True)
    assert_nothing_left(runc_root, cid)


def test_exec_bad_process_json(corral_runc: Runc, created: str, tmp_path: Path) -> None:
    corral_runc("start", created, check=True)
    process = tmp_path / "process.json"
    process.write_text(json.dumps({"args": ["true"], "cwd": "/", "user": {"uid": "root"}}))
    done = corral_runc("exec", "--process", process, created)
    assert_one_line_error(done, "user.uid")
    assert _status(corral_runc, created) == "running"


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        pytest.param("{", ("process.json", "line 1 column 2"), id="truncated object"),
        pytest.param('{"args": ["true"],}', ("process.json", "column 19"), id="trailing comma"),
        pytest.param("[" * 1000 + "]" * 1000, ("process.json", "nested too deeply"), id="deep"),
    ],
)
def test_exec_malformed_process_json(
    corral_runc: Runc, created: str, tmp_path: Path, content: str, fragments: tuple[str, ...]
) -> None:
    process = tmp_path / "process.json"
    process.write_text(content)
    done = corral_runc("exec", "--process", process, created)
    assert_one_line_error(done, *fragments)
    assert _status(corral_runc, created) == "created"


@pytest.mark.parametrize(
    ("payload", "fragments"),
    [
        pytest.param('{"memory": {"limit": ', ("--resources", "JSON"), id="malformed JSON"),
        pytest.param("[]", ("object",), id="not an object"),
    ],
)
def test_update_bad_json(
    corral_runc: Runc, created: str, payload: str, fragments: tuple[str, ...]
) -> None:
    done = corral_runc("update", "--resources", "-", created, input=payload)
    assert_one_line_error(done, *fragments)
    assert _status(corral_runc, created) == "created"


def test_start_twice(corral_runc: Runc, created: str) -> None:
    corral_runc("start", created, check=True)
    done = corral_runc("start", created)
    assert_one_line_error(done, "running")
    assert _status(corral_runc, created) == "running"


def test_delete_running_without_force(corral_runc: Runc, created: str) -> None:
    corral_runc("start", created, check=True)
    done = corral_runc("delete", created)
    assert_one_line_error(done, created, "not stopped")
    assert _status(corral_runc, created) == "running"
