"""``import corral``: the sandbox API over the engine (issue 11): output and exit code, stdin,
a timeout that kills, an OOM reported as oom_killed, limits, read-only with a writable /tmp,
the error tree, ``$CORRAL_ROOT``, and a Container removed after an exception in ``with``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import corral
from corral.engine.engine import Engine


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "root"
    yield root
    engine = Engine(root)
    if (root / "corral.db").exists():
        for status in engine.containers.list(all_containers=True):
            engine.containers.remove(status.record.id, force=True, volumes=True)


def nothing_left(root: Path) -> bool:
    engine = Engine(root)
    return engine.containers.list(all_containers=True) == [] and engine.volumes.list() == []


def test_run_collects_output_stdin_and_exit_code(root: Path) -> None:
    result = corral.run(
        "busybox", ["sh", "-c", "echo out; echo err >&2; cat; echo $GREETING; exit 3"],
        stdin=b"fed\n", env={"GREETING": "hi"}, root=root,
    )  # fmt: skip
    assert (result.exit_code, result.stdout, result.stderr) == (3, b"out\nfed\nhi\n", b"err\n")
    assert not result.timed_out and not result.oom_killed and 0 < result.duration < 30
    assert nothing_left(root)


def test_timeout_kills(root: Path) -> None:
    result = corral.run("busybox", ["sh", "-c", "echo started; sleep 60"], timeout=1, root=root)
    assert result.timed_out and result.exit_code == 137
    assert result.stdout == b"started\n" and 1 <= result.duration < 10
    assert nothing_left(root)


def test_oom_is_reported(root: Path) -> None:
    # busybox sh grows a string until the 16 MiB limit is hit
    script = "x=0123456789; while true; do x=$x$x; done"
    result = corral.run("busybox", ["sh", "-c", script], memory="16m", timeout=60, root=root)
    assert result.oom_killed and result.exit_code == 137 and not result.timed_out
    assert nothing_left(root)


def test_limits_read_only_and_volumes(root: Path, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "code.sh").write_text("echo from the volume\n")
    script = (
        "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpu/cpu.cfs_quota_us "
        "/sys/fs/cgroup/memory/memory.limit_in_bytes; sh /code/code.sh; "
        "touch /x 2>/dev/null || echo read-only; touch /tmp/ok && echo tmp-writable"
    )
    result = corral.run(
        "busybox", ["sh", "-c", script], memory="64m", pids=64, cpus=0.5, read_only=True,
        volumes={str(tmp_path / "in"): "/code:ro"}, root=root,
    )  # fmt: skip
    assert result.stdout.decode().splitlines() == [
        "64", "50000", str(64 << 20), "from the volume", "read-only", "tmp-writable",
    ]  # fmt: skip


def test_errors_are_the_tree(root: Path) -> None:
    with pytest.raises(corral.UsageError, match="invalid size: '12q'"):
        corral.run("busybox", ["true"], memory="12q", root=root)
    with pytest.raises(corral.UsageError, match="unable to find user nosuch"):
        corral.run("busybox", ["true"], user="nosuch", root=root)
    with pytest.raises(corral.NotFoundError):
        corral.run("no-such-image:1", ["true"], root=root)
    with pytest.raises(corral.UsageError, match="cmd: give a list"):
        corral.run("busybox", "echo hi", root=root)  # type: ignore[arg-type]
    assert nothing_left(root)


def test_corral_root_is_honoured(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_ROOT", str(root))
    assert corral.run("busybox", ["echo", "x"]).stdout == b"x\n"
    assert (root / "corral.db").exists()


def test_container_object_and_cleanup_after_an_exception(root: Path) -> None:
    with corral.create("busybox", ["sh", "-c", "echo hello; sleep 60"], name="obj",
                       root=root) as box:  # fmt: skip
        assert box.status == "created"
        box.start()
        assert box.status == "running"
        assert box.exec(["true"]) == 0
        box.stop(timeout=1)
        assert box.wait(timeout=10) in (137, 143)
        assert box.logs() == b"hello\n"
    assert nothing_left(root)

    class Boom(Exception):
        pass

    with pytest.raises(Boom), corral.create("busybox", ["sleep", "60"], root=root) as box:
        box.start()
        raise Boom
    assert nothing_left(root)
    state = json.dumps([s.record.name for s in Engine(root).containers.list(True)])
    assert state == "[]"
