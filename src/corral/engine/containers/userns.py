"""``--userns``, ``--uidmap``, ``--gidmap``: a container whose root is not the host's root.

A user namespace maps the container's ids onto host ids (``linux.uidMappings``: CONTAINER,
HOST, SIZE); the runtime makes it and writes the maps. What the engine decides is *which*
mapping, and it must make the image's files look right through it::

    --userns=host (default)   no user namespace: the container's root is the host's root
    --uidmap 0:100000:65536   podman's explicit ranges (--gidmap; either one alone is used for
                              both); root may map any host range
    --userns=auto[:size=N]    podman's: a free block of the subordinate ids that /etc/subuid and
                              /etc/subgid give the user ``containers`` (N: at least 1024, or the
                              highest id in the image's /etc/passwd and /etc/group plus one)
    --userns=keep-id[:uid=U,gid=G]
                              podman's: the caller's own uid and gid appear inside as U and G
                              (default: unchanged) and the process runs as them. Run by root,
                              as here, that is 0 -> 0: the container still has its own user
                              namespace (its capabilities hold over what it maps, not over the
                              host's kernel), but its root *is* the host's root for files.
                              The ids around U come from the caller's /etc/subuid range when it
                              has one; without one only U is mapped (other owners show as
                              nobody, 65534).

Ranges in use are those in the containers' config.json files: ``create`` picks a block under
the store's lock, so two creates cannot pick the same; a removed container frees its block.

**The image's files through the mapping.** Layers are unpacked once, owned by the ids the
image says (root = 0), and shared by every container. Inside a user namespace that maps 0 to
host 100000, a file owned by host 0 would show as nobody. Two ways out:

- *idmapped mounts* (used here): each lower layer is bind-mounted with the container's mapping
  (open_tree + mount_setattr(MOUNT_ATTR_IDMAP), Linux 5.12; overlay accepts idmapped layers
  since 5.19) and the overlay is stacked on those, so on-disk 0 reads as 100000 on the host
  and as 0 inside; nothing is copied and the layers stay shared. The upper dir cannot be
  idmapped: overlay creates its work dir as the mounter (the host's root, whom the mapping
  does not cover: EOVERFLOW). So the upper dir holds *host* ids: its root is chowned to the
  mapped root, and what the container writes lands as 100000+N (containerd 2.0 and podman do
  the same). Named and anonymous volumes are idmapped too (a volume shared with a container
  of another mapping, or none, shows the same owners to each); bind mounts (``-v /host:...``)
  are not: host files keep their host owners, so a root-only host file is out of reach of the
  container's root (docker and podman do the same).
- *a chowned copy* (podman's fallback without idmapped mounts: a copy of the image per
  mapping, every file's owner shifted). Not done: a host whose kernel or filesystem cannot
  idmap gets a clear error naming the option (this host runs 6.18 on ext4, which can).

The container's path must be reachable by its root: the runtime mounts the rootfs from inside
the namespace, as host uid 100000, so the engine makes its own directories searchable (0711,
as docker's /var/lib/docker with userns-remap) and says so when a parent of the store is not.
"""

from __future__ import annotations

import itertools
import json
import os
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from corral._record import datarecord
from corral.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: podman's user for --userns=auto ranges (containers.conf root-auto-userns-user).
AUTO_USER = "containers"
#: podman's smallest and largest --userns=auto block (auto_userns_min_size / max_size).
AUTO_MIN = 1024
AUTO_MAX = 65536
SUBUID = "/etc/subuid"
SUBGID = "/etc/subgid"
#: Where a container's idmapped volume mounts are attached, in its directory.
IDMAP_DIR = "idmapped"
IDMAP_FILE = "idmapped.json"


@datarecord(frozen=True)
class IdMap:
    """One line of a uid_map/gid_map: ``size`` ids from ``container`` appear as ``host``."""

    container: int
    host: int
    size: int

    def oci(self) -> dict[str, int]:
        return {"containerID": self.container, "hostID": self.host, "size": self.size}


@datarecord(frozen=True)
class Mapping:
    """A container's user namespace: its uid and gid maps."""

    uids: tuple[IdMap, ...]
    gids: tuple[IdMap, ...]

    @property
    def identity(self) -> bool:
        """Every mapped id is itself on the host: files need no idmapping."""
        return all(m.container == m.host for m in (*self.uids, *self.gids))

    def host_uid(self, uid: int) -> int | None:
        return _to_host(self.uids, uid)

    def host_gid(self, gid: int) -> int | None:
        return _to_host(self.gids, gid)

    def container_uid(self, uid: int) -> int | None:
        return _to_container(self.uids, uid)

    def container_gid(self, gid: int) -> int | None:
        return _to_container(self.gids, gid)


def _to_host(maps: Sequence[IdMap], value: int) -> int | None:
    for m in maps:
        if m.container <= value < m.container + m.size:
            return m.host + value - m.container
    return None


def _to_container(maps: Sequence[IdMap], value: int) -> int | None:
    for m in maps:
        if m.host <= value < m.host + m.size:
            return m.container + value - m.host
    return None


@datarecord(frozen=True)
class UsernsRequest:
    """What ``--userns``/``--uidmap``/``--gidmap`` asked for (run_flags parses them)."""

    mode: str = "host"  # host | keep-id | auto | map
    size: int | None = None  # auto:size=N
    keep_uid: int | None = None  # keep-id:uid=U
    keep_gid: int | None = None
    uids: tuple[IdMap, ...] = ()
    gids: tuple[IdMap, ...] = ()


# -- parsing -------------------------------------------------------------------------------------


def parse_idmap(value: str, flag: str) -> IdMap:
    """``CONTAINER:HOST:SIZE`` (podman's --uidmap/--gidmap)."""
    parts = value.split(":")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise UsageError(f"{flag} {value!r}: expected CONTAINER:HOST:SIZE (three numbers)")
    container, host, size = (int(p) for p in parts)
    if size < 1:
        raise UsageError(f"{flag} {value!r}: the size must be at least 1")
    if max(container, host) + size - 1 > 2**32 - 2:
        raise UsageError(f"{flag} {value!r}: ids must stay below 4294967295")
    return IdMap(container, host, size)


def parse_request(
    userns: str | None, uidmap: Sequence[str], gidmap: Sequence[str]
) -> UsernsRequest:
    """The typed request for ``--userns VALUE`` and the ``--uidmap``/``--gidmap`` lists."""
    uids = tuple(parse_idmap(v, "--uidmap") for v in uidmap)
    gids = tuple(parse_idmap(v, "--gidmap") for v in gidmap)
    for flag, maps in (("--uidmap", uids), ("--gidmap", gids)):
        _check_disjoint(flag, maps)
    if uids or gids:
        if userns not in (None, "", "private"):
            raise UsageError(f"--userns={userns} and --uidmap/--gidmap cannot be used together")
        return UsernsRequest("map", uids=uids or gids, gids=gids or uids)
    value = userns or "host"
    mode, _, options = value.partition(":")
    opts: dict[str, int] = {}
    for item in (o for o in options.split(",") if o):
        key, eq, number = item.partition("=")
        if not eq or not number.isdigit():
            raise UsageError(f"--userns={value}: option {item!r} is not KEY=NUMBER")
        opts[key] = int(number)
    allowed = {"host": set(), "auto": {"size"}, "keep-id": {"uid", "gid"}}
    if mode not in allowed:
        raise UsageError(
            f"--userns={value}: unsupported (use host, keep-id[:uid=U,gid=G], auto[:size=N], "
            "or --uidmap/--gidmap)"
        )
    unknown = sorted(set(opts) - allowed[mode])
    if unknown:
        raise UsageError(f"--userns={value}: unknown option {unknown[0]!r}")
    if mode == "auto" and "size" in opts and not 1 <= opts["size"] <= AUTO_MAX:
        raise UsageError(f"--userns={value}: size must be 1 to {AUTO_MAX}")
    return UsernsRequest(mode, size=opts.get("size"), keep_uid=opts.get("uid"),
                         keep_gid=opts.get("gid"))  # fmt: skip


def _check_disjoint(flag: str, maps: Sequence[IdMap]) -> None:
    for side in ("container", "host"):
        spans = sorted((getattr(m, side), getattr(m, side) + m.size) for m in maps)
        for (_, end), (start, _) in itertools.pairwise(spans):
            if start < end:
                raise UsageError(f"{flag}: the {side} ranges overlap")


# -- /etc/subuid, /etc/subgid --------------------------------------------------------------------


def read_subids(path: str, user: str, uid: int | None = None) -> list[tuple[int, int]]:
    """The (start, count) ranges ``path`` gives ``user`` (by name, or by ``uid`` as a number)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        fields = line.strip().split(":")
        if len(fields) != 3 or line.startswith("#"):
            continue
        if fields[0] != user and (uid is None or fields[0] != str(uid)):
            continue
        if fields[1].isdigit() and fields[2].isdigit() and int(fields[2]) > 0:
            out.append((int(fields[1]), int(fields[2])))
    return out


def used_ranges(containers_dir: Path, skip: str = "") -> tuple[list[IdMap], list[IdMap]]:
    """The uid and gid host ranges of every container's config.json (the blocks in use)."""
    uids: list[IdMap] = []
    gids: list[IdMap] = []
    try:
        names = os.listdir(containers_dir)
    except FileNotFoundError:
        return uids, gids
    for name in names:
        if name == skip:
            continue
        found = mapping_of(containers_dir / name / "config.json")
        if found is not None:
            uids += found.uids
            gids += found.gids
    return uids, gids


def _free_block(ranges: list[tuple[int, int]], used: list[IdMap], size: int) -> int | None:
    """The lowest host id of ``size`` free ids inside ``ranges`` not overlapping ``used``."""
    taken = sorted((m.host, m.host + m.size) for m in used)
    for start, count in sorted(ranges):
        candidate, end = start, start + count
        for lo, hi in taken:
            if candidate + size <= lo:
                break
            if hi > candidate:
                candidate = hi
        if candidate + size <= end:
            return candidate
    return None


# -- the mapping for a container -----------------------------------------------------------------


def resolve(
    request: UsernsRequest,
    *,
    containers_dir: Path,
    container_id: str,
    image_ids: Sequence[int] = (),
) -> Mapping | None:
    """The mapping a request gives this container (None: the host's user namespace).

    ``image_ids``: the uids and gids the image's /etc/passwd and /etc/group name (auto's size).
    """
    if request.mode == "host":
        return None
    if request.mode == "map":
        return Mapping(request.uids, request.gids)
    if request.mode == "keep-id":
        return Mapping(
            _keep_id(SUBUID, os.getuid(), request.keep_uid),
            _keep_id(SUBGID, os.getgid(), request.keep_gid),
        )
    size = request.size or min(AUTO_MAX, max([AUTO_MIN, *(i + 1 for i in image_ids)]))
    used_uids, used_gids = used_ranges(containers_dir, skip=container_id)
    out: list[tuple[IdMap, ...]] = []
    for path, used in ((SUBUID, used_uids), (SUBGID, used_gids)):
        ranges = read_subids(path, AUTO_USER)
        if not ranges:
            raise UsageError(
                f"--userns=auto: {path} gives the user {AUTO_USER!r} no ids "
                f"(add a line such as {AUTO_USER}:2147483647:2147483648)"
            )
        start = _free_block(ranges, used, size)
        if start is None:
            raise UsageError(
                f"--userns=auto: no free block of {size} ids left in {path} for {AUTO_USER!r}"
            )
        out.append((IdMap(0, start, size),))
    return Mapping(out[0], out[1])


def _keep_id(path: str, own: int, inside: int | None) -> tuple[IdMap, ...]:
    """keep-id for one kind of id: ``own`` appears as ``inside``; the caller's subordinate
    range (if any) fills the ids below and above it, up to 65536."""
    from pwd import getpwuid

    inside = own if inside is None else inside
    try:
        user = getpwuid(os.getuid()).pw_name
    except KeyError:
        user = str(os.getuid())
    maps = [IdMap(inside, own, 1)]
    ranges = read_subids(path, user, os.getuid())
    wanted = [(0, inside), (inside + 1, AUTO_MAX - inside - 1)]
    for start, count in ranges:
        for container, size in wanted:
            if size <= 0 or count <= 0:
                continue
            take = min(size, count)
            maps.append(IdMap(container, start, take))
            start, count = start + take, count - take
        wanted = []
    if _to_host(maps, 0) is None:
        raise UsageError(
            f"--userns=keep-id:uid={inside}: the container's root needs an id too; {path} "
            f"gives {user!r} no range to map it from"
        )
    return tuple(maps)


def mapping_of(config_path: Path) -> Mapping | None:
    """The user-namespace mapping a container's config.json asks for (None: none)."""
    try:
        spec = json.loads(config_path.read_text())
    except (OSError, ValueError):
        return None
    return spec_mapping(spec)


def spec_mapping(spec: dict[str, Any]) -> Mapping | None:
    linux = spec.get("linux") or {}
    if not any(ns.get("type") == "user" for ns in linux.get("namespaces") or []):
        return None

    def maps(key: str) -> tuple[IdMap, ...]:
        return tuple(
            IdMap(int(m["containerID"]), int(m["hostID"]), int(m["size"]))
            for m in linux.get(key) or []
        )

    return Mapping(maps("uidMappings"), maps("gidMappings"))


def check_identity(mapping: Mapping, uid: int, gid: int, extra: Sequence[int]) -> None:
    """The process's user and groups must be mapped, or the runtime cannot become them."""
    if mapping.host_uid(uid) is None:
        raise UsageError(f"user {uid}: the container's user namespace does not map uid {uid}")
    for g in (gid, *extra):
        if mapping.host_gid(g) is None:
            raise UsageError(f"group {g}: the container's user namespace does not map gid {g}")


def open_path(store_root: Path, container_dir: Path) -> None:
    """Let the container's root (an unprivileged host id) reach its directory: the store's
    own directories get o+x; a parent above the store that others cannot search is an error."""
    for parent in reversed(store_root.resolve().parents):
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            raise UsageError(
                f"--userns: {parent} is not searchable by other users, so the container's "
                f"root cannot reach its files under {store_root} (chmod o+x {parent})"
            )
    path = container_dir.resolve()
    for directory in [path, *path.parents]:
        if directory == store_root.resolve().parent:
            break
        mode = os.stat(directory).st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(directory, stat.S_IMODE(mode) | 0o011)


# -- the kernel side -----------------------------------------------------------------------------


@contextmanager
def namespace_fd(mapping: Mapping) -> Iterator[int]:
    """An fd of a new user namespace with ``mapping`` (what an idmapped mount takes).

    A forked child unshares it and waits; we write its maps, open /proc/CHILD/ns/user, and let
    the child go: the fd keeps the namespace alive until it is closed.
    """
    from corral import sys as csys

    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(ready_r)
            os.close(go_w)
            csys.unshare(csys.CLONE_NEWUSER)
            os.write(ready_w, b"1")
            os.read(go_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(go_r)
    fd = -1
    try:
        if os.read(ready_r, 1) != b"1":
            raise OSError("the user-namespace helper died")
        _write(f"/proc/{pid}/uid_map", mapping.uids)
        _write(f"/proc/{pid}/gid_map", mapping.gids)
        fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(go_w)
        os.waitpid(pid, 0)
    try:
        yield fd
    finally:
        os.close(fd)


def _write(path: str, maps: Sequence[IdMap]) -> None:
    with open(path, "w") as f:
        f.write("".join(f"{m.container} {m.host} {m.size}\n" for m in maps))


def idmapped_tree(path: str, userns_fd: int) -> int:
    """A detached bind mount of ``path`` that shows its owners through the namespace's map."""
    from corral import sys as csys
    from corral.errors import KernelError

    fd = csys.open_tree(path)
    try:
        csys.mount_setattr(fd, csys.MOUNT_ATTR_IDMAP, userns_fd=userns_fd, flags=0)
    except KernelError as err:
        os.close(fd)
        raise UsageError(
            f"--userns: this kernel cannot make an idmapped mount of {path} ({err}); "
            "idmapped mounts need Linux 5.12 and a filesystem that supports them"
        ) from None
    return fd


def mount_rootfs(
    mounts: Sequence[Any], rootfs: str, container_dir: Path, mapping: Mapping,
    volumes: bool = True,
) -> None:
    """Mount the overlay of ``mounts`` (the snapshotter's, as data) on ``rootfs`` with its
    lower layers idmapped by ``mapping``, and attach the idmapped volumes listed at create
    (unless not ``volumes``: ``cp`` and ``export`` of a stopped container)."""
    from corral import sys as csys

    with namespace_fd(mapping) as ns:
        fds: list[int] = []
        try:
            for m in mounts:
                if m.type != "overlay":  # an image without layers: a bind of the upper dir
                    _own_root(m.source, mapping)
                    csys.mount(m.source, rootfs, None, csys.MS_BIND | csys.MS_REC, None)
                    continue
                options = []
                for option in m.options:
                    key, _, value = option.partition("=")
                    if key == "lowerdir":
                        layers = []
                        for layer in value.split(":"):
                            fds.append(idmapped_tree(layer, ns))
                            layers.append(csys.fd_path(fds[-1]))
                        option = "lowerdir=" + ":".join(layers)
                    elif key == "upperdir":
                        _own_root(value, mapping)
                    options.append(option)
                csys.mount("overlay", rootfs, "overlay", 0, ",".join(options))
        finally:
            for fd in fds:
                os.close(fd)  # overlay keeps its own clones of the layers
        for i, source in enumerate(_idmapped_volumes(container_dir) if volumes else []):
            target = container_dir / IDMAP_DIR / str(i)
            target.mkdir(parents=True, exist_ok=True)
            fd = idmapped_tree(source, ns)
            try:
                csys.move_mount(fd, str(target))
            finally:
                os.close(fd)


def _own_root(path: str, mapping: Mapping) -> None:
    """The upper dir's root is the container's "/": owned by its root."""
    uid, gid = mapping.host_uid(0), mapping.host_gid(0)
    st = os.stat(path)
    if uid is not None and gid is not None and (st.st_uid, st.st_gid) != (uid, gid):
        os.chown(path, uid, gid)


def _idmapped_volumes(container_dir: Path) -> list[str]:
    try:
        return [str(s) for s in json.loads((container_dir / IDMAP_FILE).read_text())]
    except (OSError, ValueError):
        return []


def volume_source(container_dir: Path, volume_path: str) -> str:
    """At create: where the idmapped mount of a volume will be (the OCI mount's source)."""
    listed = _idmapped_volumes(container_dir)
    listed.append(volume_path)
    (container_dir / IDMAP_FILE).write_text(json.dumps(listed))
    return str(container_dir / IDMAP_DIR / str(len(listed) - 1))


def unmount_volumes(container_dir: Path) -> None:
    """At teardown: detach the idmapped volume mounts ``mount_rootfs`` attached."""
    from corral import sys as csys
    from corral.errors import KernelError

    base = container_dir / IDMAP_DIR
    for i in range(len(_idmapped_volumes(container_dir))):
        try:  # (os.path.ismount cannot see a bind mount from the same filesystem)
            csys.umount2(str(base / str(i)), csys.MNT_DETACH)
        except KernelError:
            pass  # not mounted


def unshift_tree(path: Path, mapping: Mapping) -> None:
    """Owners under ``path`` from host ids back to the container's ids (a seeded volume,
    copied from the rootfs as the host sees it, is stored in the container's ids)."""
    for top, dirs, files in os.walk(path):
        for name in [*dirs, *files, None]:
            full = top if name is None else os.path.join(top, name)
            st = os.lstat(full)
            uid, gid = mapping.container_uid(st.st_uid), mapping.container_gid(st.st_gid)
            if uid is not None or gid is not None:
                os.chown(full, st.st_uid if uid is None else uid,
                         st.st_gid if gid is None else gid, follow_symlinks=False)  # fmt: skip
