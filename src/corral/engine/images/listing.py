"""``images``' rows: the (image, repository, tag) pairs a reference and ``--filter`` select.

An image with several tags is one row per tag; an untagged one is one ``<none>:<none>`` row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from corral.engine.filters import Filters, label_matches, reference_matches

if TYPE_CHECKING:
    from corral.engine.images.store import Image, ImageStore


def select(
    store: ImageStore, filters: Filters, reference: str | None = None
) -> list[tuple[Image, str, str]]:
    """The rows ``corral images [REFERENCE] [--filter ...]`` lists, newest image first."""
    from corral.engine.images.reference import split_local

    wanted = split_local(reference) if reference else None
    images = store.images()
    created = {image.id: image.created for image in images}

    def created_of(ref: str) -> str:
        return created[store.resolve(ref)]

    def image_matches(image: Image) -> bool:
        labels = (store.config(image.id).get("config") or {}).get("Labels") or {}
        return (
            filters.any_of("dangling", lambda v: (v.lower() in ("true", "1")) == (not image.tags))
            and filters.any_of("label", lambda v: label_matches(labels, v))
            and filters.any_of("before", lambda v: image.created < created_of(v))
            and filters.any_of("since", lambda v: image.created > created_of(v))
        )

    def tag_matches(repo: str, tag: str) -> bool:
        if wanted is not None and (repo != wanted[0] or wanted[1] not in (None, tag)):
            return False
        return filters.any_of("reference", lambda v: reference_matches(repo, tag, v))

    rows = []
    for image in images:
        if not image_matches(image):
            continue
        for repo, tag in [t.rsplit(":", 1) for t in image.tags] or [["<none>", "<none>"]]:
            if tag_matches(repo, tag):
                rows.append((image, repo, tag))
    return rows
