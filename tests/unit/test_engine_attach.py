"""The attach client's pure parts: docker's --detach-keys grammar, and holding back what may
be the detach keys while passing everything else on."""

from __future__ import annotations

import socket

import pytest

from corral.engine.monitor.attach import STDIN, Session, parse_detach_keys
from corral.errors import UsageError


def test_detach_keys_grammar() -> None:
    assert parse_detach_keys(None) == b"\x10\x11"
    assert parse_detach_keys("") == b"\x10\x11"
    assert parse_detach_keys("ctrl-x,x") == b"\x18x"
    assert parse_detach_keys("ctrl-@,ctrl-[,ctrl-_") == b"\x00\x1b\x1f"
    for bad in ("ctrl-", "ctrl-1", "alt-x", "ab"):
        with pytest.raises(UsageError, match="--detach-keys"):
            parse_detach_keys(bad)


def _session(keys: bytes) -> tuple[Session, socket.socket]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    session = Session(ours.detach(), stdin=True, tty=True, detach_keys=keys, forward=None)
    theirs.setblocking(False)
    return session, theirs


def _sent(peer: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            message = peer.recv(1 << 17)
        except BlockingIOError:
            return out
        assert message[:1] == STDIN
        out += message[1:]


def test_detach_keys_are_held_back_and_a_broken_prefix_passes_on() -> None:
    session, peer = _session(b"\x10\x11")
    try:
        assert session._typed(b"ls\r\x10") is False
        assert _sent(peer) == b"ls\r"  # ctrl-p held: it may start the sequence
        assert session._typed(b"a") is False
        assert _sent(peer) == b"\x10a"  # it did not: both go on, in order
        assert session._typed(b"\x10\x10") is False
        assert _sent(peer) == b"\x10"  # the second ctrl-p may start it again
        assert session._typed(b"\x11") is True  # ctrl-p ctrl-q across reads: detach
        assert _sent(peer) == b""
        assert session._typed(b"x\x10\x11y") is True
        assert _sent(peer) == b"x"  # what came before the keys, nothing after
    finally:
        session.close()
        peer.close()
