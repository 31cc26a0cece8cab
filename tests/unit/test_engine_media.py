"""Media types and manifests (corral.engine.images.media): parsing, checking, platform choice."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from corral.engine.images import media
from corral.engine.images.media import Descriptor
from corral.errors import NotFoundError, UsageError, UserError

D = ["sha256:" + hashlib.sha256(str(i).encode()).hexdigest() for i in range(8)]


def manifest(layer_types: list[str], media_type: str | None = media.OCI_MANIFEST) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "config": {"mediaType": media.OCI_CONFIG, "digest": D[0], "size": 10},
        "layers": [
            {"mediaType": mt, "digest": D[i + 1], "size": 100 + i}
            for i, mt in enumerate(layer_types)
        ],
    }
    if media_type is not None:
        doc["mediaType"] = media_type
    return doc


def raw(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def entry(digest: str, os_: str, arch: str, variant: str = "", mt: str = "") -> Descriptor:
    platform = {"os": os_, "architecture": arch, **({"variant": variant} if variant else {})}
    return Descriptor(mt or media.OCI_MANIFEST, digest, 500, platform)


# -- documents ------------------------------------------------------------------------------------


def test_media_type_from_field_then_header_then_shape() -> None:
    doc = manifest([media.OCI_LAYER_GZIP])
    assert media.parse_document(raw(doc), media.DOCKER_MANIFEST, "x")[0] == media.OCI_MANIFEST
    bare = manifest([media.DOCKER_LAYER_GZIP], media_type=None)
    header = f"{media.DOCKER_MANIFEST}; charset=utf-8"
    assert media.parse_document(raw(bare), header, "x")[0] == media.DOCKER_MANIFEST
    assert media.parse_document(raw(bare), None, "x")[0] == media.OCI_MANIFEST
    index = {"schemaVersion": 2, "manifests": []}
    assert media.parse_document(raw(index), "text/plain", "x")[0] == media.OCI_INDEX
    listed = {"schemaVersion": 2, "mediaType": media.DOCKER_LIST, "manifests": []}
    assert media.parse_document(raw(listed), None, "x")[0] == media.DOCKER_LIST


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "x: manifest is not JSON"),
        (b"[1]", "x: manifest is not a JSON object"),
        (raw({"schemaVersion": 1, "fsLayers": []}), "schema 1 manifests are not supported"),
        (
            raw({"schemaVersion": 2, "mediaType": "application/x-evil"}),
            "x: unsupported manifest media type 'application/x-evil'",
        ),
        (raw({**manifest([]), "schemaVersion": 3}), "x: schemaVersion must be 2"),
    ],
)
def test_bad_documents(data: bytes, message: str) -> None:
    with pytest.raises(UserError, match=message):
        media.parse_document(data, None, "x")


def test_image_manifest_checks_every_layer_type() -> None:
    types = [media.OCI_LAYER_GZIP, media.DOCKER_LAYER_TAR, media.OCI_LAYER_ZSTD]
    m = media.image_manifest(media.OCI_MANIFEST, manifest(types), "x")
    assert m.config.digest == D[0] and [x.media_type for x in m.layers] == types
    assert [x.size for x in m.layers] == [100, 101, 102]


def test_unknown_layer_media_type_names_the_field() -> None:
    doc = manifest([media.OCI_LAYER_GZIP, "application/x-evil"])
    with pytest.raises(UserError) as err:
        media.image_manifest(media.OCI_MANIFEST, doc, "reg/app:1")
    assert str(err.value) == "reg/app:1: layers[1]: unsupported media type 'application/x-evil'"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["layers"][0].update(digest="md5:abc"), r"x: layers\[0\]: invalid or unsup"),
        (lambda d: d["layers"][0].update(size=-1), r"x: layers\[0\]: invalid size -1"),
        (lambda d: d["layers"][0].update(size=True), r"x: layers\[0\]: invalid size True"),
        (lambda d: d["config"].update(mediaType=7), "x: config: invalid mediaType"),
        (lambda d: d.pop("config"), "x: config: not a descriptor object"),
        (lambda d: d.update(layers={}), "x: manifest has no layers list"),
    ],
)
def test_bad_descriptors_name_the_field(change: Any, message: str) -> None:
    doc = manifest([media.OCI_LAYER_GZIP])
    change(doc)
    with pytest.raises(UserError, match=message):
        media.image_manifest(media.OCI_MANIFEST, doc, "x")


def test_index_entries_name_the_entry() -> None:
    index = {"manifests": [{"mediaType": media.OCI_MANIFEST, "digest": D[1], "size": 1}, "x"]}
    with pytest.raises(UserError, match=r"^i: manifests\[1\]: not a descriptor object$"):
        media.index_entries(index, "i")


# -- platforms ------------------------------------------------------------------------------------

INDEX = [
    entry(D[1], "linux", "arm", "v7"),
    entry(D[2], "linux", "arm64", "v8"),
    entry(D[3], "windows", "amd64"),
    entry(D[4], "linux", "amd64"),
    entry(D[5], "linux", "amd64", mt="application/vnd.in-toto+json"),  # an attestation
    entry(D[6], "linux", "s390x"),
]


@pytest.mark.parametrize(
    ("text", "digest"),
    [
        ("linux/amd64", D[4]),
        ("linux/x86_64", D[4]),
        ("linux/arm64", D[2]),
        ("linux/aarch64/v8", D[2]),
        ("linux/arm/v7", D[1]),
        ("linux/arm", D[1]),  # no variant asked: the first arm
        ("windows/amd64", D[3]),
        ("linux/s390x", D[6]),
    ],
)
def test_choose_platform(text: str, digest: str) -> None:
    assert media.choose_platform(INDEX, media.parse_platform(text), "x").digest == digest


def test_arm64_v8_is_arm64_without_variant() -> None:
    plain = [entry(D[1], "linux", "arm64")]
    assert media.choose_platform(plain, ("linux", "arm64", "v8"), "x").digest == D[1]


def test_attestations_are_skipped_and_missing_platform_lists_the_index() -> None:
    only = [entry(D[5], "linux", "riscv64", mt="application/vnd.in-toto+json")]
    with pytest.raises(NotFoundError, match=r"the index has linux/riscv64\)"):
        media.choose_platform(only, ("linux", "riscv64", ""), "x")
    with pytest.raises(NotFoundError) as err:
        media.choose_platform(INDEX, ("linux", "ppc64le", ""), "reg/app")
    assert str(err.value) == (
        "reg/app: no image for platform linux/ppc64le (the index has linux/amd64, linux/amd64,"
        " linux/arm/v7, linux/arm64/v8, linux/s390x, windows/amd64)"
    )


def test_parse_platform() -> None:
    assert media.parse_platform("linux/arm64/v8") == ("linux", "arm64", "v8")
    assert media.parse_platform(None)[0] == "linux"
    for bad in ("linux", "linux//v8", "a/b/c/d"):
        with pytest.raises(UsageError, match="--platform"):
            media.parse_platform(bad)


# -- writing and converting -----------------------------------------------------------------------


def test_oci_manifest_bytes_are_stable() -> None:
    data = media.oci_manifest(D[0], 10, [(D[1], media.OCI_LAYER_GZIP, 100)])
    assert data == (
        b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
        b'"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"'
        + D[0].encode()
        + b'","size":10},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip",'
        b'"digest":"' + D[1].encode() + b'","size":100}]}'
    )


def test_convert_manifest_both_ways() -> None:
    oci = manifest([media.OCI_LAYER_GZIP, media.OCI_LAYER_TAR])
    docker = media.convert_manifest(oci, media.OCI_MANIFEST, "v2s2", "x")
    assert docker["mediaType"] == media.DOCKER_MANIFEST
    assert docker["config"]["mediaType"] == media.DOCKER_CONFIG
    assert [x["mediaType"] for x in docker["layers"]] == [
        media.DOCKER_LAYER_GZIP,
        media.DOCKER_LAYER_TAR,
    ]
    back = media.convert_manifest(docker, media.DOCKER_MANIFEST, "oci", "x")
    assert back == oci
    assert media.convert_manifest(oci, media.OCI_MANIFEST, "oci", "x") is oci
    with pytest.raises(UserError, match=r"x: layers\[0\] media type .*zstd.* has no v2s2"):
        media.convert_manifest(manifest([media.OCI_LAYER_ZSTD]), media.OCI_MANIFEST, "v2s2", "x")


def test_every_layer_type_is_known_once() -> None:
    assert set(media.OCI_LAYER_TYPE.values()) <= set(media.LAYER_MEDIA_TYPES)
    assert set(media.TO_DOCKER.values()) - {media.DOCKER_MANIFEST, media.DOCKER_CONFIG} <= set(
        media.LAYER_MEDIA_TYPES
    )
    for kind, oci in media.OCI_LAYER_TYPE.items():
        assert media.LAYER_MEDIA_TYPES[oci] == kind
