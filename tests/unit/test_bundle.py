"""corral.bundle: the busybox bundle used by the demo and the tests."""

from __future__ import annotations

import json
import os
import stat
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from corral.bundle import main, make_busybox_bundle
from corral.spec.defaults import default_spec

BUSYBOX = "/bin/busybox"


def _config(path: Path) -> dict[str, Any]:
    with open(path / "config.json", encoding="utf-8") as f:
        config: dict[str, Any] = json.load(f)
    return config


def _applets() -> list[str]:
    out = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout
    return [a for a in out.split() if a != "busybox"]


def _has_interpreter(path: Path) -> bool:
    """True if the ELF file asks for a dynamic loader (a PT_INTERP program header)."""
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, "expected ELF64 LSB"
    phoff = struct.unpack_from("<Q", data, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    types = [struct.unpack_from("<I", data, phoff + i * phentsize)[0] for i in range(phnum)]
    return 3 in types  # PT_INTERP


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bundle") / "b"
    out = make_busybox_bundle(str(path), ["echo", "hi"], hostname="box", terminal=True)
    assert out == str(path)
    return path


def test_config_is_the_default_spec_with_args_terminal_and_hostname(made: Path) -> None:
    expected: dict[str, Any] = default_spec()
    expected["process"]["args"] = ["echo", "hi"]
    expected["process"]["terminal"] = True
    expected["hostname"] = "box"
    assert _config(made) == expected
    assert (made / "config.json").read_text().endswith("}\n")


def test_rootfs_has_a_static_busybox_and_one_link_per_applet(made: Path) -> None:
    binary = made / "rootfs" / "bin" / "busybox"
    st = binary.lstat()
    assert stat.S_ISREG(st.st_mode) and st.st_mode & 0o111
    assert binary.read_bytes() == Path(BUSYBOX).read_bytes()
    assert not _has_interpreter(binary), "the rootfs has no libraries: busybox must be static"
    applets = _applets()
    assert {"sh", "ls", "ps", "ip", "hostname", "cat"} <= set(applets)
    for applet in applets:
        link = made / "rootfs" / "bin" / applet
        assert os.readlink(link) == "busybox", applet


def test_rootfs_has_the_usual_directories_and_files(made: Path) -> None:
    rootfs = made / "rootfs"
    for name in ("bin", "dev", "etc", "proc", "sys", "tmp", "root", "home", "run", "var"):
        assert (rootfs / name).is_dir(), name
    assert stat.S_IMODE((rootfs / "tmp").stat().st_mode) == 0o1777
    assert "root:x:0:0:root:/root:/bin/sh" in (rootfs / "etc/passwd").read_text().splitlines()
    assert "root:x:0:" in (rootfs / "etc/group").read_text().splitlines()
    assert (rootfs / "etc/hostname").read_text() == "box\n"
    assert not list(made.rglob("*.tmp-*")), "temporary files left behind"


def test_busybox_in_the_rootfs_runs(made: Path) -> None:
    sh = made / "rootfs" / "bin" / "sh"
    out = subprocess.run([sh, "-c", "echo $((6 * 7))"], capture_output=True, text=True, env={})
    assert (out.returncode, out.stdout) == (0, "42\n")


@pytest.mark.parametrize("args", [None, []])
def test_args_default_to_sh(tmp_path: Path, args: list[str] | None) -> None:
    make_busybox_bundle(str(tmp_path), args)
    config = _config(tmp_path)
    assert config["process"]["args"] == ["sh"]
    assert config["process"]["terminal"] is False
    assert config["hostname"] == "corral"


def test_making_it_again_refreshes_it_in_place(tmp_path: Path) -> None:
    make_busybox_bundle(str(tmp_path), ["true"], hostname="one")
    binary = tmp_path / "rootfs/bin/busybox"
    (tmp_path / "rootfs/bin/ls").unlink()
    (tmp_path / "rootfs/bin/cat").unlink()
    os.symlink("/nowhere", tmp_path / "rootfs/bin/cat")
    (tmp_path / "rootfs/tmp").chmod(0o700)
    (tmp_path / "rootfs/etc/passwd").write_text("")
    before = binary.stat().st_ino

    make_busybox_bundle(str(tmp_path), ["false"], hostname="two")

    assert _config(tmp_path)["process"]["args"] == ["false"]
    assert (tmp_path / "rootfs/etc/hostname").read_text() == "two\n"
    assert os.readlink(tmp_path / "rootfs/bin/ls") == "busybox"
    assert os.readlink(tmp_path / "rootfs/bin/cat") == "busybox"
    assert stat.S_IMODE((tmp_path / "rootfs/tmp").stat().st_mode) == 0o1777
    assert (tmp_path / "rootfs/etc/passwd").read_text().startswith("root:")
    # replaced by rename, never rewritten in place: a running container keeps its binary
    assert binary.stat().st_ino != before
    assert not list(tmp_path.rglob("*.tmp-*"))


def test_a_missing_busybox_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        make_busybox_bundle(str(tmp_path / "b"), busybox=str(tmp_path / "no-busybox"))


@pytest.mark.parametrize(
    "argv",
    [["--", "ls", "-l", "/"], ["ls", "-l", "/"]],
    ids=["with-dashdash", "without"],
)
def test_main_takes_the_command_after_the_path(
    tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--hostname", "h", "-t", str(tmp_path), *argv]) == 0
    assert capsys.readouterr().out == f"{tmp_path}\n"
    config = _config(tmp_path)
    assert config["process"]["args"] == ["ls", "-l", "/"]
    assert config["process"]["terminal"] is True
    assert config["hostname"] == "h"


def test_main_reports_errors_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--busybox", str(tmp_path / "nope"), str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("corral.bundle: ") and err.count("\n") == 1


def test_python_dash_m(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "corral.bundle", str(tmp_path), "--", "sh", "-c", "echo hi"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (out.returncode, out.stdout, out.stderr) == (0, f"{tmp_path}\n", "")
    assert _config(tmp_path)["process"]["args"] == ["sh", "-c", "echo hi"]
