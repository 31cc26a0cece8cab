"""corral.spec.load: bundles and process files on disk, and every way they can be wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from corral.errors import SpecError, UserError
from corral.spec.defaults import default_spec
from corral.spec.load import load_bundle, load_process


def make_bundle(path: Path, cfg: Any = None, rootfs: bool = True) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    text = cfg if isinstance(cfg, str | bytes) else json.dumps(cfg or default_spec())
    mode = "wb" if isinstance(text, bytes) else "w"
    with open(path / "config.json", mode) as file:
        file.write(text)
    if rootfs:
        (path / "rootfs").mkdir()
    return path


def error_of(bundle: Path | str) -> str:
    with pytest.raises(SpecError) as info:
        load_bundle(str(bundle))
    assert isinstance(info.value, UserError)
    assert "\n" not in str(info.value)
    return str(info.value)


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    """tmp_path without symlinks in it, so expected paths compare equal."""
    return Path(os.path.realpath(tmp_path))


def test_loads_bundle_and_resolves_rootfs(tmp: Path) -> None:
    bundle = make_bundle(tmp / "b")
    spec, rootfs = load_bundle(str(bundle))
    assert spec["ociVersion"] == "1.0.2-dev"
    assert spec["process"]["args"] == ["sh"]
    assert rootfs == str(bundle / "rootfs")


def test_relative_bundle_path(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_bundle(tmp / "b")
    monkeypatch.chdir(tmp)
    _, rootfs = load_bundle("b")
    assert rootfs == str(tmp / "b" / "rootfs")


def test_absolute_root_path(tmp: Path) -> None:
    elsewhere = tmp / "images" / "alpine"
    elsewhere.mkdir(parents=True)
    cfg = default_spec()
    cfg["root"] = {"path": str(elsewhere)}
    _, rootfs = load_bundle(str(make_bundle(tmp / "b", cfg, rootfs=False)))
    assert rootfs == str(elsewhere)


def test_root_path_is_normalized(tmp: Path) -> None:
    cfg = default_spec()
    cfg["root"] = {"path": "./x/../rootfs/"}
    _, rootfs = load_bundle(str(make_bundle(tmp / "b", cfg)))
    assert rootfs == str(tmp / "b" / "rootfs")


def test_bundle_through_symlink_is_resolved(tmp: Path) -> None:
    make_bundle(tmp / "real")
    (tmp / "link").symlink_to(tmp / "real")
    _, rootfs = load_bundle(str(tmp / "link"))
    assert rootfs == str(tmp / "real" / "rootfs")


def test_bundle_missing(tmp: Path) -> None:
    assert error_of(tmp / "nope") == f"bundle {tmp}/nope: no such directory"


def test_bundle_not_a_directory(tmp: Path) -> None:
    (tmp / "file").write_text("")
    assert error_of(tmp / "file") == f"bundle {tmp}/file: not a directory"


def test_config_missing(tmp: Path) -> None:
    (tmp / "b").mkdir()
    assert error_of(tmp / "b") == f"{tmp}/b/config.json: no such file"


def test_config_is_a_directory(tmp: Path) -> None:
    (tmp / "b" / "config.json").mkdir(parents=True)
    assert error_of(tmp / "b") == f"{tmp}/b/config.json: cannot read: Is a directory"


def test_config_unreadable(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # chmod 000 does not stop root (CI runs as root), so make open() fail as it would for a user.
    def denied(path: str, mode: str = "r") -> None:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr("corral.spec.load.open", denied, raising=False)
    bundle = make_bundle(tmp / "b")
    assert error_of(bundle) == f"{bundle}/config.json: cannot read: Permission denied"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{\n  "ociVersion":\n    ,\n}', "Expecting value: line 3 column 5"),
        ("", "Expecting value: line 1 column 1"),
        ('{"a": 1} x', "Extra data: line 1 column 10"),
        ("{'a': 1}", "Expecting property name enclosed in double quotes: line 1 column 2"),
    ],
)
def test_invalid_json(tmp: Path, text: str, reason: str) -> None:
    bundle = make_bundle(tmp / "b", text)
    assert error_of(bundle) == f"{bundle}/config.json: invalid JSON: {reason}"


# In a fresh interpreter, as corral-runc runs: ``json.decoder`` is not imported there, and some
# of the C scanner's errors need it (a SystemError without it), deep nesting a RecursionError.
FRESH_CASES = [
    ("{", "Expecting property name enclosed in double quotes: line 1 column 2"),
    ('{"a": 1,}', "Expecting property name enclosed in double quotes: line 1 column 9"),
    ('{"a": "b"', "Expecting ',' delimiter: line 1 column 10"),
    ("[" * 1000 + "]" * 1000, "nested too deeply (1000 levels): line 1 column 1000"),
    ('{\n"a":' + '{"a":' * 999 + "1" + "}" * 1000, "nested too deeply (1000 levels): line 2"),
]


def _fresh_error(call: str, path: Path) -> str:
    """Run ``call(path)`` in a new interpreter (``-I``, as the runtime's script runs)."""
    code = (
        "import sys\n"
        "from corral.errors import SpecError\n"
        f"from corral.spec.load import {call}\n"
        "try:\n"
        f"    {call}(sys.argv[1])\n"
        "except SpecError as err:\n"
        "    print(err)\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", code, str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize(("text", "reason"), FRESH_CASES)
def test_invalid_json_in_a_fresh_interpreter(tmp: Path, text: str, reason: str) -> None:
    bundle = make_bundle(tmp / "b", text)
    error = _fresh_error("load_bundle", bundle)
    assert error.startswith(f"{bundle}/config.json: invalid JSON: {reason}"), error


@pytest.mark.parametrize(("text", "reason"), FRESH_CASES)
def test_invalid_process_json_in_a_fresh_interpreter(tmp: Path, text: str, reason: str) -> None:
    path = tmp / "process.json"
    path.write_text(text)
    error = _fresh_error("load_process", path)
    assert error.startswith(f"{path}: invalid JSON: {reason}"), error


def test_not_utf8(tmp: Path) -> None:
    bundle = make_bundle(tmp / "b", b'{"ociVersion": "\xff"}')
    assert error_of(bundle) == f"{bundle}/config.json: invalid JSON: not UTF-8 text"


def test_not_an_object(tmp: Path) -> None:
    bundle = make_bundle(tmp / "b", "[1, 2]")
    assert error_of(bundle) == f"{bundle}/config.json: must be a JSON object, got [1,2]"


def test_bad_field_names_file_and_path(tmp: Path) -> None:
    cfg = default_spec()
    cfg["process"]["user"]["uid"] = "abc"  # type: ignore[index]
    bundle = make_bundle(tmp / "b", cfg)
    assert error_of(bundle) == (
        f'{bundle}/config.json: process.user.uid: must be a non-negative integer, got "abc"'
    )


def test_rootfs_missing(tmp: Path) -> None:
    bundle = make_bundle(tmp / "b", rootfs=False)
    assert error_of(bundle) == (
        f"{bundle}/config.json: root.path: rootfs {bundle}/rootfs does not exist"
    )


def test_rootfs_not_a_directory(tmp: Path) -> None:
    bundle = make_bundle(tmp / "b", rootfs=False)
    (bundle / "rootfs").write_text("")
    assert error_of(bundle) == (
        f"{bundle}/config.json: root.path: rootfs {bundle}/rootfs is not a directory"
    )


def test_rootfs_symlink_is_refused(tmp: Path) -> None:
    bundle = make_bundle(tmp / "b", rootfs=False)
    (tmp / "real").mkdir()
    (bundle / "rootfs").symlink_to(tmp / "real")
    assert error_of(bundle) == (
        f"{bundle}/config.json: root.path: rootfs {bundle}/rootfs is or goes through a symlink;"
        f" use the real path {tmp}/real"
    )


@pytest.mark.parametrize("name", ["proc", "sys", "dev"])
def test_rootfs_system_dir_symlink_is_refused(tmp: Path, name: str) -> None:
    bundle = make_bundle(tmp / "b")
    (bundle / "rootfs" / "tmp").mkdir()
    (bundle / "rootfs" / name).symlink_to("tmp")
    assert error_of(bundle) == (
        f"{bundle}/config.json: root.path: {bundle}/rootfs/{name} cannot be a symlink"
        f" (/{name} is mounted there)"
    )


def test_rootfs_system_dir_must_be_a_directory(tmp: Path) -> None:
    bundle = make_bundle(tmp / "b")
    (bundle / "rootfs" / "proc").write_text("")
    assert error_of(bundle) == (
        f"{bundle}/config.json: root.path: {bundle}/rootfs/proc must be a directory"
        " (/proc is mounted there)"
    )


def test_rootfs_path_with_a_newline_stays_on_one_line(tmp: Path) -> None:
    cfg = default_spec()
    cfg["root"] = {"path": "a\nb"}
    bundle = make_bundle(tmp / "b", cfg)
    assert error_of(bundle) == (
        f'{bundle}/config.json: root.path: rootfs "{bundle}/a\\nb" does not exist'
    )


def _net_sysctl_in(netns: str) -> dict[str, Any]:
    cfg: dict[str, Any] = default_spec()
    for ns in cfg["linux"]["namespaces"]:
        if ns["type"] == "network":
            ns["path"] = netns
    cfg["linux"]["sysctl"] = {"kernel.shmmax": "1", "net.ipv4.ip_forward": "1"}
    return cfg


def test_net_sysctl_in_our_own_network_namespace_is_refused(tmp: Path) -> None:
    cfg = _net_sysctl_in("/proc/self/ns/net")
    index = [ns["type"] for ns in cfg["linux"]["namespaces"]].index("network")
    bundle = make_bundle(tmp / "b", cfg)
    assert error_of(bundle) == (
        f'{bundle}/config.json: linux.sysctl["net.ipv4.ip_forward"]: sysctl'
        ' "net.ipv4.ip_forward" not allowed in the host network namespace'
        f" (linux.namespaces[{index}].path /proc/self/ns/net is the host's)"
    )


@pytest.mark.parametrize("netns", ["/proc/self/ns/uts", "/nonexistent"])
def test_net_sysctl_in_another_network_namespace_is_left_to_the_runtime(
    tmp: Path, netns: str
) -> None:
    """Not our namespace (or not one at all: joining it fails later, saying why)."""
    bundle = make_bundle(tmp / "b", _net_sysctl_in(netns))
    assert load_bundle(str(bundle))[0]["linux"]["sysctl"]["net.ipv4.ip_forward"] == "1"


def test_config_without_process_is_refused(tmp: Path) -> None:
    cfg = default_spec()
    del cfg["process"]
    bundle = make_bundle(tmp / "b", cfg)
    assert error_of(bundle) == (
        f"{bundle}/config.json: process: is required (an object with args and cwd)"
    )


# --- exec --process FILE ------------------------------------------------------------------------


def write(path: Path, data: object) -> str:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def process_error(path: str) -> str:
    with pytest.raises(SpecError) as info:
        load_process(path)
    return str(info.value)


def test_load_process(tmp: Path) -> None:
    proc = {"args": ["ls", "-l"], "cwd": "/", "env": ["A=1"], "terminal": False}
    assert load_process(write(tmp / "p.json", proc)) == proc


def test_load_process_missing(tmp: Path) -> None:
    assert process_error(str(tmp / "p.json")) == f"{tmp}/p.json: no such file"


def test_load_process_invalid_json(tmp: Path) -> None:
    path = write(tmp / "p.json", '{"args": [}')
    assert process_error(path) == f"{path}: invalid JSON: Expecting value: line 1 column 11"


def test_load_process_fields_are_named_from_the_top(tmp: Path) -> None:
    path = write(tmp / "p.json", {"args": ["ls"], "cwd": "home"})
    assert process_error(path) == f'{path}: cwd: must be an absolute path, got "home"'
    path = write(tmp / "p.json", {"cwd": "/"})
    assert process_error(path) == f"{path}: args: is required (a non-empty list of strings)"
