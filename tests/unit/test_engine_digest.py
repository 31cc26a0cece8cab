"""Chain IDs, as containerd and the OCI image spec define them."""

from __future__ import annotations

import hashlib

import pytest

from corral.engine.images.digest import DigestError, chain_id, chain_ids, check_digest, short_id

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
C = "sha256:" + "c" * 64


def test_first_chain_id_is_the_diff_id() -> None:
    assert chain_id(None, A) == A


def test_chain_id_formula() -> None:
    ab = "sha256:" + hashlib.sha256(f"{A} {B}".encode()).hexdigest()
    abc = "sha256:" + hashlib.sha256(f"{ab} {C}".encode()).hexdigest()
    assert chain_id(A, B) == ab
    assert chain_ids([A, B, C]) == [A, ab, abc]


def test_chain_ids_depend_on_order() -> None:
    assert chain_ids([A, B])[-1] != chain_ids([B, A])[-1]


def test_known_value() -> None:
    # Two layers of docker.io/library/... are not needed: the formula pinned by hand.
    assert chain_id(A, B) == (
        "sha256:" + hashlib.sha256(b"sha256:" + b"a" * 64 + b" sha256:" + b"b" * 64).hexdigest()
    )


def test_invalid_digests() -> None:
    with pytest.raises(DigestError, match="diff_id"):
        chain_id(None, "sha256:short")
    with pytest.raises(DigestError):
        check_digest("sha512:" + "a" * 128)
    assert short_id(A) == "a" * 12
