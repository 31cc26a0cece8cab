"""`corral system prune`: stopped containers, then unused images; shared layers counted once."""

from __future__ import annotations

from pathlib import Path

from test_engine_run import root  # noqa: F401  (the fixture)

from helpers.engine import corral


def test_system_prune_keeps_what_runs_and_what_it_uses(root: Path) -> None:  # noqa: F811
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
