"""A minimal D-Bus client: the wire format (marshalling) and one blocking connection.

The systemd cgroup driver (:mod:`corral.cgroups.systemd`) makes four calls to systemd's
manager (StartTransientUnit, SetUnitProperties, StopUnit, ResetFailedUnit) and waits for one
signal (JobRemoved). A D-Bus library would cost more to import than those calls cost to make
(see docs/cgroups.md), so this module speaks the protocol itself, using only ``_socket``:

- marshalling (:func:`marshal`, :func:`unmarshal`, :func:`encode_message`,
  :func:`decode_message`) is pure and unit-tested against byte strings;
- :class:`Connection` authenticates with EXTERNAL (our uid) over a unix socket, sends method
  calls and reads replies and signals. As root it talks to systemd directly over
  ``/run/systemd/private`` (no bus daemon, no Hello, and systemd sends its signals to every
  direct connection); otherwise through the system bus, where it says Hello, adds a match rule
  and subscribes.

Values are typed by the signature they are marshalled with: ``y n q i u x t`` are ``int``,
``b`` is ``bool``, ``s o g`` are ``str``, ``ay`` may be ``bytes``, arrays are ``list``, structs
and dict entries are ``tuple``, and ``v`` is a :class:`Variant` (its own signature and value).
Only the little- and big-endian forms of the D-Bus specification's version 1 exist.
"""

from __future__ import annotations

import os

from corral.errors import CgroupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Literal, TypeAlias, Union

    Value: TypeAlias = Union[  # noqa: UP007 (the | form cannot hold the forward references)
        bool, int, str, bytes, list["Value"], tuple["Value", ...], "Variant"
    ]
    Order = Literal["little", "big"]


class Variant:
    """A D-Bus variant: a value with its own (single complete type) signature."""

    __slots__ = ("signature", "value")

    def __init__(self, signature: str, value: Value) -> None:
        self.signature = signature
        self.value = value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Variant):
            return NotImplemented
        return self.signature == other.signature and self.value == other.value

    def __hash__(self) -> int:
        return hash((self.signature, repr(self.value)))

    def __repr__(self) -> str:
        return f"Variant({self.signature!r}, {self.value!r})"


class DBusError(CgroupError):
    """An ERROR reply: its D-Bus error name and its message."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{message} ({name})" if message else name)
        self.name = name
        self.text = message


METHOD_CALL, METHOD_RETURN, ERROR, SIGNAL = 1, 2, 3, 4
NO_REPLY_EXPECTED = 0x1

# Header field codes and their types.
_PATH, _INTERFACE, _MEMBER, _ERROR_NAME, _REPLY_SERIAL = 1, 2, 3, 4, 5
_DESTINATION, _SENDER, _SIGNATURE = 6, 7, 8
_FIELD_TYPES = {1: "o", 2: "s", 3: "s", 4: "s", 5: "u", 6: "s", 7: "s", 8: "g", 9: "u"}

_FIXED = {"y": 1, "b": 4, "n": 2, "q": 2, "i": 4, "u": 4, "x": 8, "t": 8, "h": 4}
_SIGNED = frozenset("nix")
_ALIGN = {**_FIXED, "s": 4, "o": 4, "g": 1, "a": 4, "(": 8, "{": 8, "v": 1}
MAX_MESSAGE = 1 << 27  # the specification's limit (128 MiB)


def type_end(sig: str, i: int) -> int:
    """The index just past the single complete type that starts at ``sig[i]``."""
    if i >= len(sig):
        raise ValueError(f"signature {sig!r} ends inside a type")
    c = sig[i]
    if c == "a":
        return type_end(sig, i + 1)
    if c in "({":
        close = ")" if c == "(" else "}"
        j = i + 1
        while j < len(sig) and sig[j] != close:
            j = type_end(sig, j)
        if j >= len(sig) or j == i + 1:
            raise ValueError(f"signature {sig!r}: unbalanced or empty {c}")
        return j + 1
    if c in _ALIGN:
        return i + 1
    raise ValueError(f"signature {sig!r}: unknown type code {c!r}")


def split_signature(sig: str) -> list[str]:
    """The single complete types of ``sig`` ("sa(sv)" -> ["s", "a(sv)"])."""
    out, i = [], 0
    while i < len(sig):
        j = type_end(sig, i)
        out.append(sig[i:j])
        i = j
    return out


# -- marshalling --------------------------------------------------------------------------


class _Writer:
    __slots__ = ("buf", "order")

    def __init__(self, order: Order = "little") -> None:
        self.buf = bytearray()
        self.order: Order = order

    def pad(self, align: int) -> None:
        self.buf.extend(b"\0" * (-len(self.buf) % align))

    def uint(self, size: int, value: int, signed: bool = False) -> None:
        self.pad(size)
        self.buf.extend(value.to_bytes(size, self.order, signed=signed))

    def write(self, t: str, v: Value) -> None:
        c = t[0]
        if c == "b":
            if not isinstance(v, bool):
                raise TypeError(f"D-Bus type b needs a bool, got {v!r}")
            self.uint(4, int(v))
        elif c in _FIXED:
            if not isinstance(v, int) or isinstance(v, bool):
                raise TypeError(f"D-Bus type {c} needs an int, got {v!r}")
            self.uint(_FIXED[c], v, c in _SIGNED)
        elif c in "so":
            if not isinstance(v, str):
                raise TypeError(f"D-Bus type {c} needs a str, got {v!r}")
            data = v.encode()
            self.uint(4, len(data))
            self.buf.extend(data + b"\0")
        elif c == "g":
            if not isinstance(v, str):
                raise TypeError(f"D-Bus type g needs a str, got {v!r}")
            self.buf.append(len(v))
            self.buf.extend(v.encode() + b"\0")
        elif c == "v":
            if not isinstance(v, Variant):
                raise TypeError(f"D-Bus type v needs a Variant, got {v!r}")
            if type_end(v.signature, 0) != len(v.signature):
                raise ValueError(f"a variant holds one complete type, not {v.signature!r}")
            self.write("g", v.signature)
            self.write(v.signature, v.value)
        elif c == "a":
            self._array(t[1:], v)
        elif c in "({":
            if not isinstance(v, tuple):
                raise TypeError(f"D-Bus type {t} needs a tuple, got {v!r}")
            members = split_signature(t[1:-1])
            if len(members) != len(v):
                raise ValueError(f"D-Bus type {t} needs {len(members)} members, got {v!r}")
            self.pad(8)
            for member, item in zip(members, v, strict=True):
                self.write(member, item)
        else:
            raise ValueError(f"D-Bus type {c!r} is not supported here")

    def _array(self, element: str, v: Value) -> None:
        self.uint(4, 0)
        at = len(self.buf)
        self.pad(_ALIGN[element[0]])
        start = len(self.buf)
        if element == "y" and isinstance(v, bytes | bytearray):
            self.buf.extend(v)
        elif isinstance(v, list):
            for item in v:
                self.write(element, item)
        else:
            raise TypeError(f"D-Bus type a{element} needs a list, got {v!r}")
        size = len(self.buf) - start
        self.buf[at - 4 : at] = size.to_bytes(4, self.order)


def marshal(signature: str, values: Sequence[Value], order: Order = "little") -> bytes:
    """The body for ``values`` under ``signature`` (one value per complete type)."""
    types = split_signature(signature)
    if len(types) != len(values):
        raise ValueError(f"signature {signature!r} needs {len(types)} values, got {len(values)}")
    w = _Writer(order)
    for t, v in zip(types, values, strict=True):
        w.write(t, v)
    return bytes(w.buf)


class _Reader:
    __slots__ = ("data", "order", "pos")

    def __init__(self, data: bytes, order: Order, pos: int = 0) -> None:
        self.data = data
        self.order: Order = order
        self.pos = pos

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("D-Bus message ends early")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def align(self, n: int) -> None:
        self.pos += -self.pos % n

    def uint(self, size: int, signed: bool = False) -> int:
        self.align(size)
        return int.from_bytes(self.take(size), self.order, signed=signed)

    def read(self, t: str) -> Value:
        c = t[0]
        if c == "b":
            return self.uint(4) != 0
        if c in _FIXED:
            return self.uint(_FIXED[c], c in _SIGNED)
        if c in "so":
            size = self.uint(4)
            text = self.take(size + 1)[:-1].decode()
            return text
        if c == "g":
            size = self.take(1)[0]
            return self.take(size + 1)[:-1].decode()
        if c == "v":
            sig = str(self.read("g"))
            return Variant(sig, self.read(sig))
        if c == "a":
            size = self.uint(4)
            self.align(_ALIGN[t[1]])
            end = self.pos + size
            if t == "ay":
                return self.take(size)
            items: list[Value] = []
            while self.pos < end:
                items.append(self.read(t[1:]))
            if self.pos != end:
                raise ValueError("D-Bus array overruns its length")
            return items
        if c in "({":
            self.align(8)
            return tuple(self.read(member) for member in split_signature(t[1:-1]))
        raise ValueError(f"D-Bus type {c!r} is not supported here")


def unmarshal(signature: str, data: bytes, order: Order = "little") -> list[Value]:
    """The values of a body (the reverse of :func:`marshal`)."""
    r = _Reader(data, order)
    out = [r.read(t) for t in split_signature(signature)]
    if r.pos != len(data):
        raise ValueError(f"{len(data) - r.pos} bytes left after the body {signature!r}")
    return out


# -- messages -----------------------------------------------------------------------------


class Message:
    """One D-Bus message: its header fields and its decoded body."""

    __slots__ = (
        "body",
        "destination",
        "error_name",
        "flags",
        "interface",
        "kind",
        "member",
        "path",
        "reply_serial",
        "sender",
        "serial",
        "signature",
    )

    def __init__(
        self,
        kind: int,
        *,
        serial: int = 0,
        flags: int = 0,
        path: str = "",
        interface: str = "",
        member: str = "",
        error_name: str = "",
        reply_serial: int = 0,
        destination: str = "",
        sender: str = "",
        signature: str = "",
        body: Sequence[Value] = (),
    ) -> None:
        self.kind = kind
        self.serial = serial
        self.flags = flags
        self.path = path
        self.interface = interface
        self.member = member
        self.error_name = error_name
        self.reply_serial = reply_serial
        self.destination = destination
        self.sender = sender
        self.signature = signature
        self.body: list[Value] = list(body)

    def __repr__(self) -> str:
        what = self.error_name or f"{self.interface}.{self.member}"
        return f"<Message {self.kind} #{self.serial} {what} {self.signature} {self.body!r}>"


def encode_message(m: Message, order: Order = "little") -> bytes:
    """The wire form of ``m`` (header, padding to 8, body)."""
    body = marshal(m.signature, m.body, order)
    fields: list[Value] = []
    for code, value in (
        (_PATH, m.path),
        (_INTERFACE, m.interface),
        (_MEMBER, m.member),
        (_ERROR_NAME, m.error_name),
        (_REPLY_SERIAL, m.reply_serial),
        (_DESTINATION, m.destination),
        (_SENDER, m.sender),
        (_SIGNATURE, m.signature),
    ):
        if value:
            fields.append((code, Variant(_FIELD_TYPES[code], value)))
    w = _Writer(order)
    w.buf.extend(b"l" if order == "little" else b"B")
    w.buf.extend(bytes((m.kind, m.flags, 1)))
    w.uint(4, len(body))
    w.uint(4, m.serial)
    w.write("a(yv)", fields)
    w.pad(8)
    return bytes(w.buf) + body


def message_size(head: bytes) -> int:
    """The whole message's length from its first 16 bytes."""
    order: Order = "little" if head[:1] == b"l" else "big"
    if head[:1] not in (b"l", b"B") or head[3] != 1:
        raise ValueError(f"not a D-Bus version 1 message: {head[:4]!r}")
    body = int.from_bytes(head[4:8], order)
    fields = int.from_bytes(head[12:16], order)
    size = 16 + fields + (-(16 + fields) % 8) + body
    if size > MAX_MESSAGE:
        raise ValueError(f"D-Bus message of {size} bytes is over the limit")
    return size


def decode_message(data: bytes) -> Message:
    """The message in ``data`` (exactly one message: see :func:`message_size`)."""
    order: Order = "little" if data[:1] == b"l" else "big"
    r = _Reader(data, order, 4)
    body_len = r.uint(4)
    serial = r.uint(4)
    raw = r.read("a(yv)")
    r.align(8)
    fields: dict[int, Value] = {}
    assert isinstance(raw, list)
    for entry in raw:
        assert isinstance(entry, tuple) and isinstance(entry[1], Variant)
        code = entry[0]
        assert isinstance(code, int)
        fields[code] = entry[1].value
    signature = str(fields.get(_SIGNATURE, ""))
    body = data[r.pos : r.pos + body_len]
    if len(body) != body_len:
        raise ValueError("D-Bus message body ends early")
    reply_serial = fields.get(_REPLY_SERIAL, 0)
    return Message(
        data[1],
        serial=serial,
        flags=data[2],
        path=str(fields.get(_PATH, "")),
        interface=str(fields.get(_INTERFACE, "")),
        member=str(fields.get(_MEMBER, "")),
        error_name=str(fields.get(_ERROR_NAME, "")),
        reply_serial=reply_serial if isinstance(reply_serial, int) else 0,
        destination=str(fields.get(_DESTINATION, "")),
        sender=str(fields.get(_SENDER, "")),
        signature=signature,
        body=unmarshal(signature, body, order) if signature else (),
    )


# -- the connection -----------------------------------------------------------------------

SYSTEMD_PRIVATE = "/run/systemd/private"
SYSTEM_BUS = "/run/dbus/system_bus_socket"
BUS_NAME = "org.freedesktop.DBus"


class Connection:
    """A blocking connection to systemd (direct) or to the system bus."""

    __slots__ = ("_buffer", "_pending", "_serial", "bus", "sock")

    def __init__(self, sock: object, bus: bool) -> None:
        import _socket

        assert isinstance(sock, _socket.socket)
        self.sock = sock
        self.bus = bus  # a bus daemon in between (Hello, destinations, match rules)
        self._serial = 0
        self._buffer = b""
        self._pending: list[Message] = []  # signals read while waiting for a reply

    @classmethod
    def open(cls, path: str, bus: bool, timeout: float = 30.0) -> Connection:
        """Connect to the unix socket ``path`` and authenticate (EXTERNAL, our uid)."""
        import _socket

        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
            sock.sendall(b"\0AUTH EXTERNAL " + str(os.geteuid()).encode().hex().encode() + b"\r\n")
            line = b""
            while not line.endswith(b"\r\n"):
                chunk = sock.recv(512)
                if not chunk:
                    raise CgroupError(f"D-Bus {path}: the server closed the connection")
                line += chunk
            if not line.startswith(b"OK "):
                raise CgroupError(f"D-Bus {path}: authentication refused: {line.strip()!r}")
            sock.sendall(b"BEGIN\r\n")
        except OSError as err:
            sock.close()
            raise CgroupError(f"D-Bus {path}: {err.strerror or err}") from None
        except BaseException:
            sock.close()
            raise
        conn = cls(sock, bus)
        if bus:
            conn.call(BUS_NAME, "/org/freedesktop/DBus", BUS_NAME, "Hello")
        return conn

    def close(self) -> None:
        self.sock.close()

    def send(self, m: Message) -> int:
        self._serial += 1
        m.serial = self._serial
        try:
            self.sock.sendall(encode_message(m))
        except OSError as err:
            raise CgroupError(f"D-Bus: sending {m.member}: {err.strerror or err}") from None
        return m.serial

    def receive(self, timeout: float | None = None) -> Message:
        """The next message, waiting up to ``timeout`` seconds (None: the connection's own);
        TimeoutError when none came."""
        while True:
            if len(self._buffer) >= 16:
                size = message_size(self._buffer[:16])
                if len(self._buffer) >= size:
                    data, self._buffer = self._buffer[:size], self._buffer[size:]
                    return decode_message(data)
            previous = self.sock.gettimeout()
            if timeout is not None:
                self.sock.settimeout(max(timeout, 0.001))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                if timeout is not None:
                    raise
                raise CgroupError("D-Bus: no answer from systemd in time") from None
            except OSError as err:
                raise CgroupError(f"D-Bus: {err.strerror or err}") from None
            finally:
                self.sock.settimeout(previous)
            if not chunk:
                raise CgroupError("D-Bus: the connection was closed")
            self._buffer += chunk

    def call(
        self,
        destination: str,
        path: str,
        interface: str,
        member: str,
        signature: str = "",
        body: Sequence[Value] = (),
    ) -> list[Value]:
        """Call a method and return its reply's body; an ERROR reply raises DBusError."""
        serial = self.send(
            Message(
                METHOD_CALL,
                path=path,
                interface=interface,
                member=member,
                destination=destination,
                signature=signature,
                body=body,
            )
        )
        while True:
            m = self.receive()
            if m.kind in (METHOD_RETURN, ERROR) and m.reply_serial == serial:
                if m.kind == ERROR:
                    text = m.body[0] if m.body and isinstance(m.body[0], str) else ""
                    raise DBusError(m.error_name, text)
                return m.body
            if m.kind == SIGNAL:
                self._pending.append(m)

    def signal(self, interface: str, member: str, timeout: float | None = None) -> Message | None:
        """The next signal ``interface.member`` (ones read earlier first); None when none came
        within ``timeout`` seconds (None: the connection's timeout, then CgroupError)."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for i, m in enumerate(self._pending):
                if m.interface == interface and m.member == member:
                    del self._pending[i]
                    return m
            try:
                m = self.receive(None if deadline is None else deadline - time.monotonic())
            except TimeoutError:
                return None
            if m.kind == SIGNAL:
                self._pending.append(m)


__all__ = [
    "Connection",
    "DBusError",
    "Message",
    "Variant",
    "decode_message",
    "encode_message",
    "marshal",
    "unmarshal",
]
