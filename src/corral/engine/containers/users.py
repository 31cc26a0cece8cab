"""``-u name|uid[:group|gid]`` and ``--group-add`` looked up in the image's /etc/passwd and
/etc/group, as docker (runc's libcontainer/user, ``GetExecUser``) does it.

::

    -u app            passwd "app:x:1000:1000::/home/app:/bin/sh"   -> uid 1000, gid 1000,
                      group "dev:x:50:app" lists app as a member    -> additional gids [50],
                                                                       HOME=/home/app
    -u 1000           no passwd line for 1000                      -> uid 1000, gid 0, HOME=/
    -u app:staff      the group by name (or a number as is); no supplementary groups then
    --group-add dev   one more group, by name (must exist) or number (need not)

A name that is not in the file is an error (docker's words: ``unable to find user NAME: no
matching entries in passwd file``); a number never is. The files are read from the image's
layers without mounting anything (:func:`read_layered`), so ``create`` fails before it makes a
thing.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence

from corral._record import datarecord
from corral.engine.containers.spec import Identity
from corral.errors import UsageError

MAX_ID = 2**31 - 1


@datarecord(frozen=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str


@datarecord(frozen=True)
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


def parse_passwd(text: str) -> list[PasswdEntry]:
    """The well-formed lines of an /etc/passwd (others are skipped, as libc does)."""
    out = []
    for line in text.splitlines():
        fields = line.strip().split(":")
        if len(fields) < 4 or line.startswith("#"):
            continue
        try:
            uid, gid = int(fields[2]), int(fields[3])
        except ValueError:
            continue
        out.append(PasswdEntry(fields[0], uid, gid, fields[5] if len(fields) > 5 else ""))
    return out


def parse_group(text: str) -> list[GroupEntry]:
    """The well-formed lines of an /etc/group."""
    out = []
    for line in text.splitlines():
        fields = line.strip().split(":")
        if len(fields) < 3 or line.startswith("#"):
            continue
        try:
            gid = int(fields[2])
        except ValueError:
            continue
        members = tuple(m for m in (fields[3] if len(fields) > 3 else "").split(",") if m)
        out.append(GroupEntry(fields[0], gid, members))
    return out


def _number(text: str) -> int | None:
    if not text.isdigit():
        return None
    value = int(text)
    if value > MAX_ID:
        raise UsageError(f"uids and gids must be in range 0-{MAX_ID}")
    return value


def resolve(
    spec: str, passwd: str | None, group: str | None, group_add: Sequence[str] = ()
) -> Identity:
    """The identity ``spec`` (``-u``'s value, or the image's User) names in this image."""
    users = parse_passwd(passwd or "")
    groups = parse_group(group or "")
    user_text, has_group, group_text = spec.strip().partition(":")
    if not user_text or (user_text == "root" and not any(u.name == "root" for u in users)):
        user_text = "0"  # an image without /etc/passwd (scratch): root is still uid 0
    uid_number = _number(user_text)
    found = next(
        (
            u
            for u in users
            if (u.uid == uid_number if uid_number is not None else u.name == user_text)
        ),
        None,
    )
    if found is None and uid_number is None:
        raise UsageError(f"unable to find user {user_text}: no matching entries in passwd file")
    uid = found.uid if found else int(user_text)
    gid = found.gid if found else 0
    home = (found.home or "/") if found else "/"
    name = found.name if found else ""
    extra: list[int] = []
    if has_group and group_text:
        gid_number = _number(group_text)
        if gid_number is not None:
            gid = gid_number
        else:
            match = next((g for g in groups if g.name == group_text), None)
            if match is None:
                raise UsageError(
                    f"unable to find group {group_text}: no matching entries in group file"
                )
            gid = match.gid
    elif name:
        extra = [g.gid for g in groups if name in g.members]
    for item in group_add:
        number = _number(item)
        if number is None:
            match = next((g for g in groups if g.name == item), None)
            if match is None:
                raise UsageError(f"--group-add {item}: Unable to find group {item}")
            number = match.gid
        extra.append(number)
    seen: list[int] = []
    for g in extra:
        if g not in seen:
            seen.append(g)
    return Identity(uid, gid, tuple(seen), home)


# -- reading a file from an image's layers ------------------------------------------------------


def read_layered(
    layers_top_first: Sequence[str], path: str, limit: int = 1 << 20, _hops: int = 0
) -> str | None:
    """The text of ``path`` as the overlay of ``layers_top_first`` shows it, or None.

    Each layer dir holds what its layer changed, with overlay's whiteouts: a character device
    0:0 hides the name below, an ``trusted.overlay.opaque`` directory hides everything below it.
    A symlink at ``path`` itself is followed within the image (up to 8 hops).
    """
    parts = [p for p in path.split("/") if p]
    for layer in layers_top_first:
        current, hidden_below = layer, False
        for i, part in enumerate(parts):
            current = os.path.join(current, part)
            try:
                st = os.lstat(current)
            except OSError:
                break
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                return None  # whited out in this layer
            if i < len(parts) - 1:
                if not stat.S_ISDIR(st.st_mode):
                    break
                hidden_below = hidden_below or _opaque(current)
                continue
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(current)
                if not target.startswith("/"):
                    target = "/".join([*parts[:-1], target])
                if _hops >= 8:
                    return None
                return read_layered(layers_top_first, target, limit, _hops + 1)
            if not stat.S_ISREG(st.st_mode):
                return None
            with open(current, "rb") as f:
                return f.read(limit).decode("utf-8", errors="replace")
        if hidden_below:
            return None
    return None


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False
