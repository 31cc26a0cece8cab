"""images/diff.py on a real overlay: a container's upper dir becomes a layer tar whose
whiteouts and opaque directories, unpacked and stacked, give back the same merged view; and
the diff of an unpacked layer is the same tar again (the build cache relies on that)."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from corral.engine.images.diff import DiffError, write_diff
from corral.engine.images.layers import apply_layer

pytestmark = pytest.mark.integration


def _tree(top: Path) -> dict[str, tuple[str, int, str]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            rel = str(path.relative_to(top))
            st = path.lstat()
            kind = "l" if path.is_symlink() else "d" if path.is_dir() else "f"
            data = os.readlink(path) if kind == "l" else path.read_text() if kind == "f" else ""
            out[rel] = (kind, st.st_mode & 0o7777, data)
    return out


@pytest.fixture
def overlay(tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    lower, upper, work, merged = (tmp_path / n for n in ("lower", "upper", "work", "merged"))
    for d in (lower, upper, work, merged):
        d.mkdir()
    (lower / "etc").mkdir()
    (lower / "etc" / "motd").write_text("old\n")
    (lower / "etc" / "gone").write_text("x\n")
    (lower / "cache" / "a").mkdir(parents=True)
    (lower / "cache" / "a" / "f").write_text("f\n")
    subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o",
         f"lowerdir={lower},upperdir={upper},workdir={work}", str(merged)],
        check=True,
    )  # fmt: skip
    try:
        yield lower, upper, merged
    finally:
        subprocess.run(["umount", str(merged)], check=True)


def test_upper_dir_to_layer_and_back(overlay: tuple[Path, Path, Path], tmp_path: Path) -> None:
    lower, upper, merged = overlay
    (merged / "etc" / "motd").write_text("new\n")
    (merged / "etc" / "gone").unlink()
    subprocess.run(["rm", "-rf", str(merged / "cache")], check=True)
    (merged / "cache").mkdir()
    (merged / "cache" / "fresh").write_text("fresh\n")
    (merged / "bin").mkdir()
    (merged / "bin" / "tool").write_text("#!/bin/sh\n")
    os.chmod(merged / "bin" / "tool", 0o755)
    os.link(merged / "bin" / "tool", merged / "bin" / "tool2")
    os.symlink("tool", merged / "bin" / "link")
    expected = _tree(merged)

    buf = io.BytesIO()
    stats = write_diff(upper, buf)
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert "etc/.wh.gone" in members
    assert "cache/.wh..wh..opq" in members
    assert members["bin/tool2"].islnk() and members["bin/tool2"].linkname == "bin/tool"
    assert members["bin/link"].issym()
    assert "etc/gone" not in members and "cache/a" not in members
    assert all(m.uname == "" for m in members.values())

    # unpack it as a layer, stack it on the lower one: the same view
    layer = tmp_path / "layer"
    layer.mkdir()
    applied = apply_layer(io.BytesIO(buf.getvalue()), str(layer))
    assert applied.diff_id == stats.diff_id
    again = io.BytesIO()
    assert write_diff(layer, again).diff_id == stats.diff_id  # deterministic
    view = tmp_path / "view"
    view.mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={layer}:{lower}",
                    str(view)], check=True)  # fmt: skip
    try:
        assert _tree(view) == expected
    finally:
        subprocess.run(["umount", str(view)], check=True)


def test_redirect_xattr_is_refused(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "d").mkdir(parents=True)
    os.setxattr(upper / "d", "trusted.overlay.redirect", b"/elsewhere")
    with pytest.raises(DiffError, match="redirect"):
        write_diff(upper, io.BytesIO())


@pytest.mark.parametrize("swapped", ["file", "dir"])
def test_an_entry_swapped_for_a_symlink_mid_walk_does_not_lead_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, swapped: str
) -> None:
    """``commit --pause=false`` reads a running container's upper dir: the container may swap
    a file or directory for a symlink to the host between the walk's listing and its reading
    (CVE-2018-15664's shape). The host's files must never reach the layer."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "shadow").write_text("HOST SECRET\n")
    upper = tmp_path / "upper"
    upper.mkdir()
    (upper / "kept").write_text("mine\n")
    target = upper / "victim"
    if swapped == "file":
        target.write_text("harmless\n")
    else:
        target.mkdir()
        (target / "inner").write_text("harmless\n")
    done: list[bool] = []

    def then_swap(real: Callable[..., os.stat_result]) -> Callable[..., os.stat_result]:
        def stat(path: object, *args: object, **kwargs: object) -> os.stat_result:
            st = real(path, *args, **kwargs)
            if str(path).endswith("victim") and not done:
                done.append(True)
                subprocess.run(["rm", "-rf", str(target)], check=True)  # the container's move
                target.symlink_to(host / "shadow" if swapped == "file" else host)
            return st

        return stat

    monkeypatch.setattr(os, "stat", then_swap(os.stat))  # the walk's listing, then the swap
    monkeypatch.setattr(os, "lstat", then_swap(os.lstat))
    out = io.BytesIO()
    write_diff(upper, out)
    monkeypatch.undo()
    assert done, "the walk never looked at the victim"
    assert b"HOST SECRET" not in out.getvalue()
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        names = tar.getnames()
    assert "kept" in names and not any(n.startswith("victim/") for n in names)
