"""``delete``'s light path over a cgroup record (corral.cgroups.has_processes and
remove_if_empty), on directory trees standing for the hierarchies."""

from __future__ import annotations

from pathlib import Path

from corral import cgroups


def _v1_record(tmp_path: Path) -> dict[str, object]:
    mounts = [tmp_path / "memory", tmp_path / "pids"]
    for mount in mounts:
        (mount / "corral" / "c1" / "sub").mkdir(parents=True)
        (mount / "corral" / "other").mkdir()
    return {
        "mode": "v1",
        "path": "/corral/c1",
        "hierarchies": [[str(m), m.name] for m in mounts],
        "unified": None,
    }


def test_empty_cgroups_go_and_the_parent_stays_while_used(tmp_path: Path) -> None:
    record = _v1_record(tmp_path)
    assert cgroups.has_processes(record) is False
    assert cgroups.remove_if_empty(record) is True
    for name in ("memory", "pids"):
        assert not (tmp_path / name / "corral" / "c1").exists()
        assert (tmp_path / name / "corral" / "other").is_dir()  # another container's
    (tmp_path / "memory" / "corral" / "other").rmdir()
    (tmp_path / "pids" / "corral" / "other").rmdir()
    assert cgroups.remove_if_empty(record) is True  # gone already is fine; parent now empty
    assert not (tmp_path / "memory" / "corral").exists()


def test_a_cgroup_with_a_process_is_left_to_the_manager(tmp_path: Path) -> None:
    record = _v1_record(tmp_path)
    (tmp_path / "pids" / "corral" / "c1" / "sub" / "cgroup.procs").write_text("4242\n")
    assert cgroups.has_processes(record) is True
    assert cgroups.remove_if_empty(record) is False  # rmdir refused: the manager's way
    assert (tmp_path / "pids" / "corral" / "c1" / "sub").is_dir()


def test_systemd_records_always_take_the_managers_way(tmp_path: Path) -> None:
    record = {"mode": "systemd", "slice": "s", "unit": "u", "inner": _v1_record(tmp_path)}
    assert cgroups.has_processes(record) is None
    assert cgroups.remove_if_empty(record) is False
    assert (tmp_path / "memory" / "corral" / "c1").is_dir()


def test_v2_record(tmp_path: Path) -> None:
    (tmp_path / "corral" / "c2").mkdir(parents=True)
    record = {"mode": "v2", "path": "/corral/c2", "root": str(tmp_path)}
    assert cgroups.remove_if_empty(record) is True
    assert not (tmp_path / "corral").exists()
