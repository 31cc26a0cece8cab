"""`corral run` confines containers with podman's default seccomp profile (issue 4)."""

from __future__ import annotations

from pathlib import Path

from helpers.engine import corral


def _status(text: str, key: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith(key))


def test_run_loads_the_default_filter(root: Path) -> None:
    done = corral(root, "run", "--rm", "busybox", "cat", "/proc/self/status")
    assert _status(done.stdout, "Seccomp:") == "2"  # SECCOMP_MODE_FILTER
    assert int(_status(done.stdout, "Seccomp_filters:")) >= 1


def test_the_filter_blocks_what_podman_blocks(root: Path) -> None:
    """personality(ADDR_NO_RANDOMIZE) is outside the profile's allowed arguments: ENOSYS with
    the default filter, allowed with --security-opt seccomp=unconfined (the control)."""
    probe = ["busybox", "sh", "-c", "linux64 -R true 2>&1; echo personality=$?"]
    confined = corral(root, "run", "--rm", *probe)
    free = corral(root, "run", "--rm", "--security-opt", "seccomp=unconfined", *probe)
    assert "personality=1" in confined.stdout and "Function not implemented" in confined.stdout
    assert "personality=0" in free.stdout, free.stdout


def test_unknown_security_opt_is_one_line(root: Path) -> None:
    done = corral(
        root, "run", "--rm", "--security-opt", "apparmor=x", "busybox", "true", check=False
    )
    assert done.returncode == 125  # docker run's status when the engine refuses
    assert len(done.stderr.strip().splitlines()) == 1
    assert "--security-opt" in done.stderr
