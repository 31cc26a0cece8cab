"""`corral system prune`: stopped containers, then unused images; shared layers counted once."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.engine import corral


def test_system_prune_keeps_what_runs_and_what_it_uses(root: Path) -> None:
    corral(root, "run", "--name", "done", "busybox", "sh", "-c", "echo x > /made")
    corral(root, "run", "-d", "--name", "up", "busybox", "sleep", "60")
    out = corral(root, "system", "prune", "-a", "-f").stdout
    assert "Deleted Containers:" in out and "Total reclaimed space:" in out
    listed = corral(root, "ps", "-a").stdout.split("\n")[1:]
    assert [line.split()[-1] for line in listed if line.strip()] == ["up"]
    assert "busybox" in corral(root, "images").stdout  # in use by "up"
    corral(root, "rm", "-f", "up")
    again = corral(root, "system", "prune", "-a", "-f").stdout
    assert "Deleted Images:" in again
    assert "busybox" not in corral(root, "images").stdout
    assert corral(root, "ps", "-aq").stdout.strip() == ""


SYSTEM_WARNING = (
    "WARNING! This will remove:\n  - all stopped containers\n"
    "  - all images without at least one container associated to them\n\n"
    "Are you sure you want to continue? [y/N] "
)


def names(root: Path) -> list[str]:
    return [line.split()[-1] for line in corral(root, "ps", "-a").stdout.splitlines()[1:]]


@pytest.mark.parametrize("answer", ["n\n", "", "nope\n", "\n"])
def test_system_prune_asks_and_anything_but_yes_aborts(root: Path, answer: str) -> None:
    """As docker: the question is asked whatever stdin is; no, an empty line or the end of
    input (also /dev/null) remove nothing and exit 0."""
    corral(root, "run", "--name", "done", "busybox", "true")
    done = corral(root, "system", "prune", "-a", input=answer)
    assert (done.stdout, done.stderr) == (SYSTEM_WARNING, "")
    done = corral(root, "system", "prune", "-a")  # stdin is /dev/null: the end of input
    assert (done.stdout, done.stderr) == (SYSTEM_WARNING, "")
    assert names(root) == ["done"]
    assert "busybox" in corral(root, "images").stdout
    corral(root, "rm", "done")


def test_system_prune_yes_removes(root: Path) -> None:
    corral(root, "run", "--name", "done", "busybox", "true")
    done = corral(root, "system", "prune", "-a", input="y\n")
    assert done.stdout.startswith(SYSTEM_WARNING + "Deleted Containers:\n")
    assert "Total reclaimed space:" in done.stdout
    assert names(root) == []
    assert "busybox" not in corral(root, "images").stdout


def test_image_prune_asks(root: Path) -> None:
    corral(root, "image", "busybox")
    warning = (
        "WARNING! This will remove all images without at least one container associated to"
        " them.\nAre you sure you want to continue? [y/N] "
    )
    for answer in ("N\n", None):  # None: stdin is /dev/null
        done = corral(root, "image", "prune", "-a", input=answer)
        assert (done.stdout, done.stderr) == (warning, "")
        assert "busybox" in corral(root, "images").stdout
    done = corral(root, "image", "prune", input="n\n")
    assert done.stdout == (
        "WARNING! This will remove all dangling images.\nAre you sure you want to continue? [y/N] "
    )
    done = corral(root, "image", "prune", "-a", input="YES\n")
    assert done.stdout.startswith(warning + "Deleted Images:\n")
    assert "busybox" not in corral(root, "images").stdout
    done = corral(root, "image", "prune", "-a", "-f")  # --force: no question
    assert done.stdout == "Total reclaimed space: 0B\n"
