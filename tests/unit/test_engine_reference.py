"""The one image-reference grammar (engine.images.reference): docker's, familiar names local."""

from __future__ import annotations

import pytest

from corral.engine.images.reference import normalize, parse, split_local
from corral.errors import UsageError

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("ref", "local"),
    [
        ("busybox", "busybox:latest"),
        ("busybox:1.36", "busybox:1.36"),
        ("docker.io/library/busybox", "busybox:latest"),
        ("docker.io/library/busybox:1", "busybox:1"),
        ("index.docker.io/library/busybox", "busybox:latest"),
        ("docker.io/alice/app:2", "alice/app:2"),
        ("docker://quay.io/x/y", "quay.io/x/y:latest"),
        ("localhost:5000/x:y", "localhost:5000/x:y"),
        ("127.0.0.1:5000/a/b", "127.0.0.1:5000/a/b:latest"),
    ],
)
def test_every_spelling_names_one_local_tag(ref: str, local: str) -> None:
    assert normalize(ref) == local


@pytest.mark.parametrize(
    ("ref", "fragment"),
    [
        ("", "must not be empty"),
        ("Busybox", "invalid repository name"),
        ("busybox:bad/tag", "invalid"),
        ("busybox@sha256:12", "invalid digest"),
        (f"busybox@{DIGEST}", "digest reference cannot be used as a tag"),
    ],
)
def test_bad_references_name_the_argument(ref: str, fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment) as info:
        normalize(ref, "target image")
    assert str(info.value).startswith("target image")


def test_digest_references_parse() -> None:
    parsed = parse(f"127.0.0.1:5000/a@{DIGEST}")
    assert (parsed.domain, parsed.path, parsed.tag, parsed.digest) == (
        "127.0.0.1:5000",
        "a",
        None,
        DIGEST,
    )


def test_split_local_keeps_whether_a_tag_was_given() -> None:
    assert split_local("docker.io/library/busybox") == ("busybox", None)
    assert split_local("busybox:1") == ("busybox", "1")
    assert split_local("localhost:5000/x") == ("localhost:5000/x", None)
