"""corral.cgroups.dbus: the D-Bus wire format against known bytes, and the connection's
handshake and message loop against a fake peer over a socket."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from corral.cgroups import dbus
from corral.cgroups.dbus import (
    Connection,
    DBusError,
    Message,
    Variant,
    decode_message,
    encode_message,
    marshal,
    message_size,
    split_signature,
    unmarshal,
)
from corral.errors import CgroupError

# Both produced by jeepney 0.9.0 (new_method_call(...).serialise(serial=7 / 8)) with the same
# arguments as below; the first also matches the D-Bus specification worked by hand.
START_TRANSIENT_UNIT = bytes.fromhex(
    "6c010001c000000007000000b600000001016f00190000002f6f72672f667265656465736b746f702f737973"
    "74656d64310000000000000002017300200000006f72672e667265656465736b746f702e73797374656d6431"
    "2e4d616e616765720000000000000000030173001200000053746172745472616e7369656e74556e69740000"
    "0000000006017300180000006f72672e667265656465736b746f702e73797374656d64310000000000000000"
    "08016700107373612873762961287361287376292900000010000000636f7272616c2d6162632e73636f7065"
    "00000000070000007265706c616365009100000005000000536c696365000173000000000c00000073797374"
    "656d2e736c69636500000000000000000800000044656c656761746500016200010000000000000004000000"
    "5049447300026175000000000400000092100000090000004d656d6f72794d61780001740000000000000000"
    "00000010000000000b000000416c6c6f776564435055730002617900010000000300000000000000"
)
SET_UNIT_PROPERTIES = bytes.fromhex(
    "6c0100018f00000008000000ad00000001016f00190000002f6f72672f667265656465736b746f702f737973"
    "74656d64310000000000000002017300200000006f72672e667265656465736b746f702e73797374656d6431"
    "2e4d616e6167657200000000000000000301730011000000536574556e697450726f70657274696573000000"
    "0000000006017300180000006f72672e667265656465736b746f702e73797374656d64310000000000000000"
    "0801670007736261287376290000000010000000636f7272616c2d6162632e73636f70650000000001000000"
    "6f000000080000005461736b734d6178000174000a000000000000000b000000446576696365416c6c6f7700"
    "056128737329000037000000000000000d0000002f6465762f636861722f313a330000000300000072776d00"
    "0000000008000000636861722d7074730000000002000000727700"
)
PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
DESTINATION = "org.freedesktop.systemd1"


def start_message() -> Message:
    props = [
        ("Slice", Variant("s", "system.slice")),
        ("Delegate", Variant("b", True)),
        ("PIDs", Variant("au", [4242])),
        ("MemoryMax", Variant("t", 268435456)),
        ("AllowedCPUs", Variant("ay", b"\x03")),
    ]
    return Message(
        dbus.METHOD_CALL,
        serial=7,
        member="StartTransientUnit",
        signature="ssa(sv)a(sa(sv))",
        body=["corral-abc.scope", "replace", list(props), []],
        path=PATH,
        interface=MANAGER,
        destination=DESTINATION,
    )


def test_start_transient_unit_encodes_as_jeepney_does() -> None:
    assert encode_message(start_message()) == START_TRANSIENT_UNIT


def test_set_unit_properties_encodes_as_jeepney_does() -> None:
    props = [
        ("TasksMax", Variant("t", 10)),
        ("DeviceAllow", Variant("a(ss)", [("/dev/char/1:3", "rwm"), ("char-pts", "rw")])),
    ]
    m = Message(
        dbus.METHOD_CALL,
        serial=8,
        member="SetUnitProperties",
        signature="sba(sv)",
        body=["corral-abc.scope", True, list(props)],
        path=PATH,
        interface=MANAGER,
        destination=DESTINATION,
    )
    assert encode_message(m) == SET_UNIT_PROPERTIES


def test_decode_gives_back_the_message() -> None:
    assert message_size(START_TRANSIENT_UNIT[:16]) == len(START_TRANSIENT_UNIT)
    m = decode_message(START_TRANSIENT_UNIT)
    want = start_message()
    for name in ("kind", "serial", "path", "interface", "member", "destination", "signature"):
        assert getattr(m, name) == getattr(want, name), name
    assert m.body == want.body


@pytest.mark.parametrize(
    ("signature", "values", "hexed"),
    [
        ("y", [7], "07"),
        ("b", [True], "01000000"),
        ("u", [1], "01000000"),
        ("i", [-1], "ffffffff"),
        ("t", [(1 << 64) - 1], "ffffffffffffffff"),
        ("x", [-2], "feffffffffffffff"),
        ("q", [258], "0201"),
        ("s", ["ab"], "020000006162" + "00"),
        ("o", ["/"], "010000002f00"),
        ("g", ["s"], "017300"),
        ("ys", [1, "a"], "01000000" + "010000006100"),  # the string's length aligns to 4
        ("yt", [1, 2], "01" + "00" * 7 + "0200000000000000"),
        ("as", [["a", "b"]], "0e000000" + "010000006100" + "0000" + "010000006200"),
        ("at", [[]], "00000000" + "00000000"),  # empty: the padding to 8 is still there
        ("ay", [b"\x01\x02"], "020000000102"),
        ("(yu)", [(1, 2)], "01000000" + "02000000"),
        (
            "a{sv}",
            [[("k", Variant("u", 5))]],
            # length, pad to 8, key "k", variant signature "u", pad to 4, 5
            "10000000" + "00000000" + "010000006b00" + "017500" + "000000" + "05000000",
        ),
        ("v", [Variant("as", ["x"])], "02617300" + "06000000" + "010000007800"),
    ],
)
def test_marshal_known_bytes(signature: str, values: list[dbus.Value], hexed: str) -> None:
    assert marshal(signature, values).hex() == hexed
    assert unmarshal(signature, bytes.fromhex(hexed)) == values


def test_big_endian() -> None:
    assert marshal("u", [1], "big").hex() == "00000001"
    m = start_message()
    wire = encode_message(m, "big")
    assert wire[:1] == b"B"
    assert decode_message(wire).body == m.body


def test_signatures() -> None:
    assert split_signature("ssa(sv)a(sa(sv))") == ["s", "s", "a(sv)", "a(sa(sv))"]
    assert split_signature("a{sa{sv}}u") == ["a{sa{sv}}", "u"]
    for bad in ("a", "(", "()", "(s", "z"):
        with pytest.raises(ValueError):
            split_signature(bad)


def test_marshal_refuses_wrong_values() -> None:
    with pytest.raises(TypeError):
        marshal("u", ["1"])
    with pytest.raises(TypeError):
        marshal("b", [1])
    with pytest.raises(TypeError):
        marshal("u", [True])
    with pytest.raises(ValueError):
        marshal("ss", ["a"])
    with pytest.raises(ValueError):
        marshal("v", [Variant("ss", "a")])
    with pytest.raises(ValueError):
        marshal("(ss)", [("a",)])


def test_truncated_message_is_an_error() -> None:
    with pytest.raises(ValueError):
        decode_message(START_TRANSIENT_UNIT[:-3])
    with pytest.raises(ValueError):
        message_size(b"X" * 16)


# -- the connection -------------------------------------------------------------------------


def reply(to: Message, signature: str = "", body: list[dbus.Value] | None = None) -> bytes:
    return encode_message(
        Message(
            dbus.METHOD_RETURN,
            serial=100 + to.serial,
            reply_serial=to.serial,
            signature=signature,
            body=body or [],
        )
    )


def read_message(sock: socket.socket, buffered: bytearray) -> Message:
    while len(buffered) < 16 or len(buffered) < message_size(bytes(buffered[:16])):
        chunk = sock.recv(65536)
        assert chunk, "the client closed the connection"
        buffered += chunk
    size = message_size(bytes(buffered[:16]))
    data = bytes(buffered[:size])
    del buffered[:size]
    return decode_message(data)


def test_call_returns_the_body_and_keeps_signals() -> None:
    ours, theirs = socket.socketpair()
    conn = Connection(ours, bus=False)
    done: list[Message] = []

    def peer() -> None:
        buf = bytearray()
        m = read_message(theirs, buf)
        done.append(m)
        # A signal first, then an unrelated reply, then ours.
        theirs.sendall(
            encode_message(
                Message(
                    dbus.SIGNAL,
                    serial=1,
                    path="/x",
                    interface="a.B",
                    member="Sig",
                    signature="s",
                    body=["early"],
                )
            )
        )
        theirs.sendall(encode_message(Message(dbus.METHOD_RETURN, serial=2, reply_serial=999)))
        theirs.sendall(reply(m, "o", ["/job/1"]))

    t = threading.Thread(target=peer)
    t.start()
    assert conn.call("d.e", "/p", "i.f", "M", "su", ["x", 3]) == ["/job/1"]
    t.join()
    assert done[0].member == "M" and done[0].body == ["x", 3] and done[0].destination == "d.e"
    early = conn.signal("a.B", "Sig")
    assert early is not None and early.body == ["early"]
    conn.close()
    theirs.close()


def test_error_reply_raises_dbus_error() -> None:
    ours, theirs = socket.socketpair()
    conn = Connection(ours, bus=False)

    def peer() -> None:
        m = read_message(theirs, bytearray())
        theirs.sendall(
            encode_message(
                Message(
                    dbus.ERROR,
                    serial=5,
                    reply_serial=m.serial,
                    error_name="org.x.NoSuchUnit",
                    signature="s",
                    body=["Unit x.scope not loaded."],
                )
            )
        )

    t = threading.Thread(target=peer)
    t.start()
    with pytest.raises(DBusError) as caught:
        conn.call("d.e", "/p", "i.f", "M")
    t.join()
    assert caught.value.name == "org.x.NoSuchUnit"
    assert "Unit x.scope not loaded." in str(caught.value)
    conn.close()
    theirs.close()


def test_a_closed_peer_is_a_cgroup_error() -> None:
    ours, theirs = socket.socketpair()
    theirs.close()
    conn = Connection(ours, bus=False)
    with pytest.raises(CgroupError, match="D-Bus"):
        conn.call("d.e", "/p", "i.f", "M")
    conn.close()


@pytest.mark.parametrize("bus", [False, True])
def test_open_authenticates_with_external(tmp_path: Path, bus: bool) -> None:
    path = str(tmp_path / "bus")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    seen: list[bytes] = []

    def peer() -> None:
        conn, _ = server.accept()
        data = b""
        while not data.endswith(b"\r\n"):
            data += conn.recv(100)
        seen.append(data)
        conn.sendall(b"OK 0123456789abcdef0123456789abcdef\r\n")
        data = b""
        while b"BEGIN\r\n" not in data:
            data += conn.recv(100)
        if bus:
            buf = bytearray(data.split(b"BEGIN\r\n", 1)[1])
            hello = read_message(conn, buf)
            seen.append(hello.member.encode())
            conn.sendall(reply(hello, "s", [":1.42"]))
        conn.close()

    t = threading.Thread(target=peer)
    t.start()
    conn = Connection.open(path, bus=bus, timeout=5)
    t.join()
    conn.close()
    server.close()
    assert seen[0] == b"\0AUTH EXTERNAL " + str(os.geteuid()).encode().hex().encode() + b"\r\n"
    assert seen[1:] == ([b"Hello"] if bus else [])


def test_open_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "bus")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)

    def peer() -> None:
        conn, _ = server.accept()
        conn.recv(100)
        conn.sendall(b"REJECTED EXTERNAL\r\n")
        conn.close()

    t = threading.Thread(target=peer)
    t.start()
    with pytest.raises(CgroupError, match="authentication refused"):
        Connection.open(path, bus=False, timeout=5)
    t.join()
    server.close()
    with pytest.raises(CgroupError, match="D-Bus"):
        Connection.open(str(tmp_path / "missing"), bus=False, timeout=5)


def test_signal_with_a_timeout_returns_none() -> None:
    ours, theirs = socket.socketpair()
    conn = Connection(ours, bus=False)
    ours.settimeout(5)
    nothing = conn.signal("a.B", "Sig", 0.05)
    assert nothing is None
    assert ours.gettimeout() == 5  # the connection's own timeout is back
    theirs.sendall(
        encode_message(Message(dbus.SIGNAL, serial=1, path="/x", interface="a.B", member="Sig"))
    )
    got = conn.signal("a.B", "Sig", 5)
    assert got is not None and got.member == "Sig"
    conn.close()
    theirs.close()
