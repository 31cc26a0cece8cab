"""``import corral``: the runtime as a Python object, no subprocess per call."""

from __future__ import annotations

import pytest

import corral


def test_run_returns_the_exit_code_and_leaves_nothing(make_bundle, runc_root, cid) -> None:
    bundle = make_bundle(["sh", "-c", "test $$ = 1 && exit 7"])
    rt = corral.Runtime(root=str(runc_root))
    assert rt.run(cid, str(bundle)) == 7
    assert rt.list() == []


def test_lifecycle_exec_pause_and_errors(make_bundle, runc_root, cid) -> None:
    bundle = make_bundle(["sleep", "1000"])
    rt = corral.Runtime(root=str(runc_root))
    pid = rt.create(cid, str(bundle))
    assert rt.state(cid)["status"] == "created" and rt.state(cid)["pid"] == pid
    rt.start(cid)
    assert rt.state(cid)["status"] == "running"
    assert rt.exec(cid, ["sh", "-c", "test $(cat /proc/1/comm) = sleep"]) == 0
    assert rt.exec(cid, ["sh", "-c", "exit 3"]) == 3
    rt.pause(cid)
    assert rt.state(cid)["status"] == "paused"
    rt.resume(cid)
    assert pid in rt.pids(cid)
    with pytest.raises(corral.ExistsError):
        rt.create(cid, str(bundle))
    with pytest.raises(corral.StateError, match="not stopped"):
        rt.delete(cid)
    rt.kill(cid, 9)
    with pytest.raises(corral.NotFoundError):
        rt.state("no-such-container")
    rt.delete(cid, force=True)
    assert rt.list() == []


def test_bad_config_raises_spec_error_naming_the_field(make_bundle, runc_root, cid) -> None:
    bundle = make_bundle(["true"], cwd="relative")
    rt = corral.Runtime(root=str(runc_root))
    with pytest.raises(corral.SpecError) as err:
        rt.create(cid, str(bundle))
    assert err.value.path == "process.cwd"
    assert rt.list() == []
