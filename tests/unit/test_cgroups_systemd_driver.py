"""The systemd cgroup driver (corral.cgroups.systemd): names, the resources -> unit properties
table, and the manager against a fake systemd (a thread answering D-Bus over a socketpair) on
a fake v2 cgroupfs (corral.cgroups.testing). The real thing runs in the VM lane:
tests/integration/test_cgroups_systemd.py."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import corral.cgroups as cgroups
from corral.cgroups import _base, dbus, systemd, v2
from corral.cgroups.dbus import Connection, Message, Variant, decode_message, encode_message
from corral.cgroups.systemd import (
    INFINITY,
    SystemdManager,
    cpu_mask,
    device_properties,
    expand_slice,
    parse_path,
    resource_properties,
)
from corral.cgroups.testing import FakeCgroupfs
from corral.errors import CgroupError, SpecError, UsageError

MiB = 1 << 20

# -- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("system.slice", "/system.slice"),
        ("a-b-c.slice", "/a.slice/a-b.slice/a-b-c.slice"),
        ("-.slice", ""),
        (
            "kubepods-besteffort-pod1.slice",
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice",
        ),
    ],
)
def test_expand_slice(name: str, path: str) -> None:
    assert expand_slice(name) == path


@pytest.mark.parametrize(
    "name", ["system", "a/b.slice", "-a.slice", "a-.slice", "a--b.slice", ".slice"]
)
def test_bad_slices(name: str) -> None:
    with pytest.raises(SpecError, match=r"linux\.cgroupsPath"):
        expand_slice(name)


def test_parse_path() -> None:
    assert parse_path("system.slice:corral:abc") == (
        "system.slice",
        "corral-abc.scope",
        "/system.slice/corral-abc.scope",
    )
    assert parse_path(":corral:abc")[0] == "system.slice"
    assert parse_path("user-1000.slice::abc") == (
        "user-1000.slice",
        "abc.scope",
        "/user.slice/user-1000.slice/abc.scope",
    )
    for bad in ("a:b", "system.slice:corral:", "system.slice:x:y.slice", "s.slice:a b:c"):
        with pytest.raises(SpecError, match=r"linux\.cgroupsPath"):
            parse_path(bad)


def test_resolve_path_with_systemd() -> None:
    assert cgroups.resolve_path(None, "c1", systemd=True) == "system.slice:corral:c1"
    with pytest.raises(SpecError, match=r"linux\.cgroupsPath.*slice:prefix:name"):
        cgroups.resolve_path("/corral/c1", "c1", systemd=True)


# -- properties -----------------------------------------------------------------------------


def props(res: dict[str, object], **kw: object) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, variant in resource_properties(res, **kw):  # type: ignore[arg-type]
        out[name] = (variant.signature, variant.value)
    return out


def test_memory_pids_cpu_weight() -> None:
    got = props(
        {
            "memory": {"limit": 256 * MiB, "swap": 512 * MiB, "reservation": 128 * MiB},
            "pids": {"limit": 10},
            "cpu": {"shares": 1024},
        }
    )
    assert got == {
        "MemoryMax": ("t", 256 * MiB),
        "MemoryLow": ("t", 128 * MiB),
        "MemorySwapMax": ("t", 256 * MiB),  # v2's swap alone: memory+swap - memory
        "TasksMax": ("t", 10),
        "CPUWeight": ("t", 39),  # 1 + (1024 - 2) * 9999 // 262142, as on cgroupfs
    }


def test_unlimited_is_infinity() -> None:
    got = props({"memory": {"limit": -1}, "pids": {"limit": -1}, "cpu": {"quota": -1}})
    assert got["MemoryMax"] == ("t", INFINITY)
    assert got["MemorySwapMax"] == ("t", INFINITY)
    assert got["TasksMax"] == ("t", INFINITY)
    assert got["CPUQuotaPerSecUSec"] == ("t", INFINITY)


@pytest.mark.parametrize(
    ("cpu", "per_sec", "period"),
    [
        ({"quota": 50000, "period": 100000}, 500000, 100000),
        ({"quota": 1234, "period": 100000}, 20000, 100000),  # rounded up to 10 ms, as runc
        ({"quota": 20000}, 200000, None),  # the default period
        ({"quota": 100000, "period": 50000}, 2000000, 50000),
    ],
)
def test_cpu_quota(cpu: dict[str, int], per_sec: int, period: int | None) -> None:
    got = props({"cpu": cpu})
    assert got["CPUQuotaPerSecUSec"] == ("t", per_sec)
    assert got.get("CPUQuotaPeriodUSec") == (("t", period) if period else None)


def test_period_alone_keeps_the_quota() -> None:
    got = props({"cpu": {"period": 200000}}, current_quota=lambda: "50000")
    assert got["CPUQuotaPerSecUSec"] == ("t", 250000)


def test_cpu_masks() -> None:
    assert cpu_mask("f", "0") == b"\x01"
    assert cpu_mask("f", "0-2,9") == b"\x07\x02"
    assert cpu_mask("f", "16") == b"\x00\x00\x01"
    assert cpu_mask("f", "") is None
    got = props({"cpu": {"cpus": "1", "mems": "0"}})
    assert got["AllowedCPUs"] == ("ay", b"\x02")
    assert got["AllowedMemoryNodes"] == ("ay", b"\x01")


def test_unified_entries() -> None:
    got = props({"unified": {"memory.high": "1048576", "pids.max": "max", "io.weight": "5"}})
    assert got == {"MemoryHigh": ("t", 1048576), "TasksMax": ("t", INFINITY)}


def test_v1_names() -> None:
    got = props(
        {"memory": {"limit": 4 * MiB}, "cpu": {"shares": 512}, "blockIO": {"weight": 500}},
        v2=False,
    )
    assert got == {
        "MemoryLimit": ("t", 4 * MiB),
        "CPUShares": ("t", 512),
        "BlockIOWeight": ("t", 500),
    }


def test_only_what_is_set() -> None:
    assert props({}) == {}
    assert props({"pids": {"limit": 3}}) == {"TasksMax": ("t", 3)}


def test_devices(tmp_path: Path) -> None:
    proc = tmp_path / "devices"
    proc.write_text("Character devices:\n  1 mem\n136 pts\n\nBlock devices:\n  8 sd\n")
    rules = [
        {"allow": False, "access": "rwm"},
        *cgroups.DEFAULT_DEVICE_RULES,
        {"allow": True, "type": "b", "major": 8, "access": "r"},
        {"allow": True, "type": "c", "major": 99, "access": "rw"},  # not in /proc/devices
    ]
    got = device_properties(rules, str(proc))
    assert got[0] == ("DevicePolicy", Variant("s", "strict"))
    assert got[1] == ("DeviceAllow", Variant("a(ss)", []))
    assert got[2][1].value == [
        ("char-*", "m"),
        ("block-*", "m"),
        ("/dev/char/1:3", "rwm"),
        ("/dev/char/1:5", "rwm"),
        ("/dev/char/1:7", "rwm"),
        ("/dev/char/5:0", "rwm"),
        ("/dev/char/1:9", "rwm"),
        ("/dev/char/1:8", "rwm"),
        ("char-pts", "rwm"),
        ("/dev/char/5:2", "rwm"),
        ("/dev/char/10:200", "rwm"),
        ("block-sd", "r"),
    ]
    allow_all = device_properties([{"allow": True, "access": "rwm"}], str(proc))
    assert allow_all[0] == ("DevicePolicy", Variant("s", "auto"))


# -- the manager against a fake systemd -----------------------------------------------------


class FakeSystemd:
    """Answers the systemd manager's D-Bus calls the way systemd does, on a fake cgroupfs."""

    def __init__(self, fake: FakeCgroupfs) -> None:
        self.fake = fake
        self.calls: list[Message] = []
        self.start_errors: list[str] = []  # error names for the next StartTransientUnit calls
        self.job_result = "done"
        self.job_removed = True  # False: jobs end without a JobRemoved signal
        self.stops_when_empty = False  # True: an emptied scope goes by itself (as systemd's)
        self.units: dict[str, str] = {}  # unit -> its cgroup directory
        self.connections = 0
        self._jobs = 0

    def connect(self) -> Connection:
        ours, theirs = socket.socketpair()
        self.connections += 1
        threading.Thread(target=self._serve, args=(theirs,), daemon=True).start()
        return Connection(ours, bus=False)

    def _serve(self, sock: socket.socket) -> None:
        buf = b""
        with sock:
            while True:
                while len(buf) < 16 or len(buf) < dbus.message_size(buf[:16]):
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                size = dbus.message_size(buf[:16])
                m, buf = decode_message(buf[:size]), buf[size:]
                self.calls.append(m)
                for out in self._answer(m):
                    sock.sendall(encode_message(out))

    def _reply(self, m: Message, sig: str = "", body: list[dbus.Value] | None = None) -> Message:
        return Message(dbus.METHOD_RETURN, reply_serial=m.serial, signature=sig, body=body or [])

    def _error(self, m: Message, name: str, text: str) -> Message:
        return Message(
            dbus.ERROR, reply_serial=m.serial, error_name=name, signature="s", body=[text]
        )

    def _job(self, m: Message, unit: str) -> list[Message]:
        self._jobs += 1
        job = f"/org/freedesktop/systemd1/job/{self._jobs}"
        removed = Message(
            dbus.SIGNAL,
            path=systemd.SYSTEMD_PATH,
            interface=systemd.SYSTEMD_MANAGER,
            member="JobRemoved",
            signature="uoss",
            body=[self._jobs, job, unit, self.job_result],
        )
        return [self._reply(m, "o", [job]), *([removed] if self.job_removed else [])]

    def _answer(self, m: Message) -> list[Message]:
        if m.member == "Get" and m.path.startswith("/org/freedesktop/systemd1/job/"):
            return [self._error(m, "org.freedesktop.DBus.Error.UnknownObject", "no such job")]
        assert m.path == systemd.SYSTEMD_PATH and m.interface == systemd.SYSTEMD_MANAGER
        if m.member == "StartTransientUnit":
            unit = str(m.body[0])
            if self.start_errors:
                name = self.start_errors.pop(0)
                return [self._error(m, name, f"Unit {unit} was already loaded or has a fragment")]
            given = property_map(m.body[2])
            slice_dir = self.fake.root + expand_slice(str(given["Slice"].value))
            for d in (self.fake.root, slice_dir):
                if not os.path.isdir(d):
                    _base.mkdir(d)
                v2._enable_controllers(d)
            if not os.path.isdir(f"{slice_dir}/{unit}"):  # corral may have made it first
                _base.mkdir(f"{slice_dir}/{unit}")
            pids = given["PIDs"].value
            assert isinstance(pids, list)
            for pid in pids:
                _base.raw_write(f"{slice_dir}/{unit}/cgroup.procs", str(pid))
            self.units[unit] = f"{slice_dir}/{unit}"
            return self._job(m, unit)
        if m.member == "SetUnitProperties":
            return [self._reply(m)]
        if m.member == "StopUnit":
            unit = str(m.body[0])
            if unit not in self.units:
                return [self._error(m, "org.freedesktop.systemd1.NoSuchUnit", f"{unit} not loaded")]
            directory = self.units.pop(unit)
            _base.raw_write(directory + "/cgroup.kill", "1")
            _base.rmdir(directory)
            return self._job(m, unit)
        if m.member == "GetUnit":
            unit = str(m.body[0])
            if unit not in self.units:
                return [self._error(m, "org.freedesktop.systemd1.NoSuchUnit", f"{unit} not loaded")]
            if self.stops_when_empty and not _base.read_pids(self.units[unit]):
                directory = self.units.pop(unit)  # the empty-cgroup notification, acted on
                _base.rmdir(directory)
            return [self._reply(m, "o", ["/org/freedesktop/systemd1/unit/x"])]
        if m.member == "ResetFailedUnit":
            return [self._reply(m)]
        return [self._error(m, "org.freedesktop.DBus.Error.UnknownMethod", m.member)]

    def members(self) -> list[str]:
        return [m.member for m in self.calls]

    def properties(self, member: str) -> dict[str, dbus.Value]:
        m = next(m for m in reversed(self.calls) if m.member == member)
        return {name: variant.value for name, variant in property_map(m.body[2]).items()}


def property_map(entries: dbus.Value) -> dict[str, Variant]:
    """An a(sv) as name -> variant (the last one for a name given twice)."""
    out: dict[str, Variant] = {}
    assert isinstance(entries, list)
    for entry in entries:
        assert isinstance(entry, tuple) and len(entry) == 2
        name, variant = entry
        assert isinstance(name, str) and isinstance(variant, Variant)
        out[name] = variant
    return out


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeCgroupfs]:
    with FakeCgroupfs(str(tmp_path), "v2") as fake:
        yield fake


@pytest.fixture
def bus(fake: FakeCgroupfs, monkeypatch: pytest.MonkeyPatch) -> FakeSystemd:
    fake_systemd = FakeSystemd(fake)
    monkeypatch.setattr(systemd, "connect", fake_systemd.connect)
    monkeypatch.setattr(systemd, "EMPTY_GRACE", 0.05)
    return fake_systemd


def open_systemd(fake: FakeCgroupfs, tmp_path: Path) -> SystemdManager:
    running = tmp_path / "run-systemd-system"
    running.mkdir(exist_ok=True)
    mgr = cgroups.open_manager(
        "system.slice:corral:c1",
        root=fake.root,
        mountinfo=fake.mountinfo,
        systemd=True,
        systemd_running=str(running),
    )
    assert isinstance(mgr, SystemdManager)
    return mgr


def test_open_manager_needs_systemd(fake: FakeCgroupfs, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="systemd is not running"):
        cgroups.open_manager(
            "system.slice:corral:c1",
            root=fake.root,
            mountinfo=fake.mountinfo,
            systemd=True,
            systemd_running=str(tmp_path / "nothing"),
        )


def test_create_waits_for_the_init(
    fake: FakeCgroupfs, bus: FakeSystemd, tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    mgr = open_systemd(fake, tmp_path)
    assert mgr.path == "/system.slice/corral-c1.scope"
    mgr.create()
    mgr.set({"memory": {"limit": 64 * MiB}, "pids": {"limit": 10}, "devices": []})
    assert bus.calls == []  # nothing before the init exists
    scope = fake.root + "/system.slice/corral-c1.scope"
    assert mgr.join_plan() == ([scope + "/cgroup.procs"], [])  # the parent adopts, nothing opened

    mgr.adopt(sleeper.pid)
    assert bus.members() == ["StartTransientUnit"]
    start = bus.calls[0]
    assert start.body[:2] == ["corral-c1.scope", "replace"]
    got = bus.properties("StartTransientUnit")
    assert got["Slice"] == "system.slice"
    assert got["PIDs"] == [sleeper.pid]
    assert got["Delegate"] is True and got["DefaultDependencies"] is False
    for name in ("MemoryAccounting", "CPUAccounting", "TasksAccounting", "IOAccounting"):
        assert got[name] is True
    assert got["MemoryMax"] == 64 * MiB and got["TasksMax"] == 10
    assert got["DevicePolicy"] == "strict"
    # and then the files, as runc's driver writes them after systemd's
    assert fake.read("system.slice/corral-c1.scope/memory.max") == str(64 * MiB)
    assert fake.read("system.slice/corral-c1.scope/pids.max") == "10"
    assert "system.slice/corral-c1.scope" in fake.device_programs
    assert mgr.pids() == [sleeper.pid]
    assert mgr.join_plan() == ([], [scope + "/cgroup.procs"])  # an exec joins as on v2


def test_update_and_delete(
    fake: FakeCgroupfs, bus: FakeSystemd, tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    mgr = open_systemd(fake, tmp_path)
    mgr.create()
    mgr.set({})
    mgr.adopt(sleeper.pid)
    state = mgr.to_state()
    assert state["mode"] == "systemd" and state["inner"]["mode"] == "v2"

    again = cgroups.from_state(state)
    assert isinstance(again, SystemdManager) and again.unit == "corral-c1.scope"
    again.set({"pids": {"limit": 5}, "cpu": {"quota": 50000, "period": 100000}})
    assert bus.members()[-1] == "SetUnitProperties"
    assert bus.calls[-1].body[:2] == ["corral-c1.scope", True]
    assert bus.properties("SetUnitProperties") == {
        "TasksMax": 5,
        "CPUQuotaPerSecUSec": 500000,
        "CPUQuotaPeriodUSec": 100000,
    }
    assert fake.read("system.slice/corral-c1.scope/pids.max") == "5"
    assert fake.read("system.slice/corral-c1.scope/cpu.max") == "50000 100000"

    again.kill(9)
    again.destroy()
    assert bus.members()[-2:] == ["StopUnit", "ResetFailedUnit"]
    assert not again.exists()
    again.destroy()  # gone already: NoSuchUnit is fine


def test_a_leftover_unit_is_reset_and_retried(
    fake: FakeCgroupfs, bus: FakeSystemd, tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    bus.start_errors = ["org.freedesktop.systemd1.UnitExists"]
    mgr = open_systemd(fake, tmp_path)
    mgr.set({})
    mgr.adopt(sleeper.pid)
    assert bus.members() == ["StartTransientUnit", "ResetFailedUnit", "StartTransientUnit"]


def test_errors(
    fake: FakeCgroupfs, bus: FakeSystemd, tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    bus.start_errors = ["org.freedesktop.systemd1.UnitExists"] * 2
    mgr = open_systemd(fake, tmp_path)
    mgr.set({})
    with pytest.raises(CgroupError, match=r"starting corral-c1\.scope.*UnitExists"):
        mgr.adopt(sleeper.pid)
    bus.job_result = "failed"
    with pytest.raises(CgroupError, match="the job ended with 'failed'"):
        mgr.adopt(sleeper.pid)


def test_a_dead_init_is_its_own_error(fake: FakeCgroupfs, bus: FakeSystemd, tmp_path: Path) -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    bus.start_errors = ["org.freedesktop.DBus.Error.UnixProcessIdUnknown"]
    mgr = open_systemd(fake, tmp_path)
    mgr.set({})
    with pytest.raises(ProcessLookupError):
        mgr.adopt(proc.pid)


def killed_and_destroyed(fake: FakeCgroupfs, tmp_path: Path, pid: int) -> SystemdManager:
    """A scope made with ``pid``, its processes killed, then destroyed (as delete does)."""
    mgr = open_systemd(fake, tmp_path)
    mgr.create()
    mgr.set({})
    mgr.adopt(pid)
    mgr.kill(9)
    mgr.destroy()
    return mgr


def test_a_job_that_ends_without_its_signal(
    fake: FakeCgroupfs,
    bus: FakeSystemd,
    tmp_path: Path,
    sleeper: subprocess.Popen[bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stop of a scope whose processes were just killed may end with no JobRemoved that
    reaches us: the job object is asked for, and gone means done."""
    monkeypatch.setattr(systemd, "POLL_INTERVAL", 0.05)
    bus.job_removed = False
    mgr = killed_and_destroyed(fake, tmp_path, sleeper.pid)
    assert bus.members().count("Get") >= 2  # for the start job, and for the stop job
    assert not mgr.exists()


def test_an_emptied_scope_is_not_stopped(
    fake: FakeCgroupfs, bus: FakeSystemd, tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    """The runtime kills the processes first; systemd then stops the scope by itself, and
    destroy only waits for that (no StopUnit whose job could wait for a notification)."""
    bus.stops_when_empty = True
    mgr = killed_and_destroyed(fake, tmp_path, sleeper.pid)
    assert "StopUnit" not in bus.members()
    assert bus.members()[-2:] == ["GetUnit", "ResetFailedUnit"]
    assert not mgr.exists()
