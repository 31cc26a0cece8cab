"""The content store: a blob's digest is checked while it is written, never trusted."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from corral.engine.images.content import ContentStore, DigestMismatch
from corral.engine.images.digest import DigestError


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    (tmp_path / "blobs").mkdir()
    (tmp_path / "tmp").mkdir()
    return ContentStore(tmp_path / "blobs", tmp_path / "tmp")


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_streamed_blob_lands_under_its_digest(store: ContentStore) -> None:
    with store.writer() as w:
        for chunk in (b"hello ", b"world"):
            w.write(chunk)
        digest = w.commit()
    assert digest == sha(b"hello world")
    assert store.read_bytes(digest) == b"hello world"
    assert store.verify(digest)
    assert os.listdir(store.tmp) == []


def test_expected_digest_matches(store: ContentStore) -> None:
    assert store.write_bytes(b"abc", expected=sha(b"abc")) == sha(b"abc")


def test_mismatch_is_refused_and_leaves_nothing(store: ContentStore) -> None:
    wrong = sha(b"something else")
    with pytest.raises(DigestMismatch, match="digest mismatch"):
        store.write_bytes(b"abc", expected=wrong, what="layer x")
    assert os.listdir(store.blobs) == []
    assert os.listdir(store.tmp) == []
    assert not store.exists(wrong)


def test_size_mismatch_is_refused(store: ContentStore) -> None:
    with store.writer(size=2) as w, pytest.raises(DigestMismatch, match="more than the 2 bytes"):
        w.write(b"abc")
    with store.writer(size=10) as w:
        w.write(b"abc")
        with pytest.raises(DigestMismatch, match="got 3 bytes, expected 10"):
            w.commit()
    assert os.listdir(store.blobs) == [] and os.listdir(store.tmp) == []


def test_exception_while_writing_drops_temp_file(store: ContentStore) -> None:
    with pytest.raises(RuntimeError), store.writer() as w:
        w.write(b"partial")
        raise RuntimeError("download failed")
    assert os.listdir(store.tmp) == [] and os.listdir(store.blobs) == []


def test_malformed_digest_names_are_refused(store: ContentStore) -> None:
    for bad in ("sha256:xyz", "md5:" + "0" * 32, "sha256:" + "A" * 64, "../../etc/passwd"):
        with pytest.raises(DigestError, match="invalid digest"):
            store.writer(expected=bad)
        with pytest.raises(DigestError):
            store.path(bad)


def test_tampered_blob_fails_verify(store: ContentStore) -> None:
    digest = store.write_bytes(b"abc")
    path = store.path(digest)
    os.chmod(path, 0o644)
    path.write_bytes(b"abd")
    assert not store.verify(digest)
