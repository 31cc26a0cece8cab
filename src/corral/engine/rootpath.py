"""A path inside a root filesystem, resolved as a process chrooted there would see it.

Every symlink on the way is followed *inside* ``root``: an absolute link starts again at
``root``, and ``..`` stops there. Build (COPY destinations), volumes (seeding from the image)
and the container's working directory all resolve image paths this one way. It reads the tree
by path, so it is for trees no container process is changing (an image's unpacked layers, a
container not yet started); ``corral cp`` into a running container uses openat2 instead.
"""

from __future__ import annotations

import os

from corral.errors import UserError

#: As the kernel's limit on symlinks followed in one path walk.
MAX_LINKS = 40


def resolve_in_root(root: str, path: str, follow_last: bool = True) -> str:
    """The host path of ``path`` with every symlink resolved inside ``root``; missing
    components are fine (the result names where they would be). ``follow_last``: resolve the
    last component too, when it is a link. A loop is a UserError naming ``path``."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    links = 0
    while parts:
        comp = parts.pop(0)
        if comp == "..":
            if done:
                done.pop()
            continue
        current = os.path.join(root, *done, comp)
        if (parts or follow_last) and os.path.islink(current):
            links += 1
            if links > MAX_LINKS:
                raise UserError(f"{path}: too many levels of symbolic links")
            target = os.readlink(current)
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        done.append(comp)
    return os.path.join(root, *done)


def existing_in_root(root: str, path: str) -> str | None:
    """``resolve_in_root``, or None when the path (or a link on it) leads nowhere."""
    try:
        resolved = resolve_in_root(root, path)
    except UserError:
        return None
    return resolved if os.path.lexists(resolved) else None
