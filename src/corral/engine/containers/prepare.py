"""What ``create`` looks up and makes for the run options, and what the first start finishes.

``config(...)`` runs at ``create``, in the container's new directory (removed again if anything
fails), and returns the OCI config:

1. the user: ``-u`` or the image's User, looked up in the image's /etc/passwd and /etc/group,
   read from its layers (users.py); an unknown name fails here, before anything else is made;
2. the mounts: binds checked (``-v`` makes a missing host directory, ``--mount`` refuses it),
   named volumes created on first use, anonymous ones for ``-v /path`` and for every image
   ``VOLUME`` no other mount covers, tmpfs with docker's ``nosuid,nodev,noexec``; sorted so a
   parent is mounted before what goes inside it;
3. ``--device`` nodes stat()ed on the host (``--privileged``: all of /dev);
4. the generated /etc/hosts, /etc/hostname, /etc/resolv.conf (etc_files.py);
5. build_spec (spec.py) puts it together.

``after_mount(container_dir, rootfs)`` runs when the root filesystem is mounted for a start:
it makes the working directory when the image lacks it (docker does), and on the first start
seeds each fresh volume with what the image holds at its target (volumes.seed).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from corral.engine.containers import etc_files, users
from corral.engine.containers.spec import (
    INIT_BINARIES,
    DeviceOption,
    Identity,
    Resolved,
    RunOptions,
    build_spec,
    image_user,
)
from corral.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from corral.engine.containers.manager import Containers
    from corral.engine.containers.userns import Mapping
    from corral.engine.snapshots.overlay import Mount
    from corral.engine.volumes import Volumes

#: The file in the container's directory that lists volumes to seed on the first start.
SEED_FILE = "volumes.json"
#: What ``--privileged`` does not copy from the host's /dev: the runtime makes these itself.
_DEV_SKIP = {
    "/dev/pts", "/dev/shm", "/dev/mqueue", "/dev/hugepages", "/dev/console", "/dev/ptmx",
    "/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty",
}  # fmt: skip


def config(
    image_config: dict[str, Any],
    layers_top_first: list[str],
    opts: RunOptions,
    *,
    container_id: str,
    container_dir: Path,
    volumes: Volumes,
) -> dict[str, Any]:
    """The container's OCI config; volumes it uses are created and attached to it."""
    spec_text, what = image_user(image_config, opts)
    try:
        identity = users.resolve(
            spec_text,
            users.read_layered(layers_top_first, "etc/passwd"),
            users.read_layered(layers_top_first, "etc/group"),
            opts.group_add,
        )
    except UsageError as err:
        raise UsageError(f"{err}" if what == "-u" else f"{what}: {err}") from None
    resolved = Resolved(identity=identity)
    if opts.userns is not None:
        resolved.mapping, resolved.identity = _user_namespace(
            opts, identity, layers_top_first, container_id, container_dir
        )
    resolved.devices = devices(opts.devices, opts.privileged)
    if opts.init:
        resolved.init_binary = next((b for b in INIT_BINARIES if os.path.isfile(b)), None)
        if resolved.init_binary is None:
            raise UsageError("--init: no init binary on this host (apt-get install tini)")
    mounts, seeds = _mounts(image_config, opts, container_id, volumes)
    if resolved.mapping is not None and not resolved.mapping.identity:
        from corral.engine.containers.userns import volume_source

        for m in mounts:  # a volume's idmapped mount is the source (attached at start)
            if m["type"] == "bind" and str(m["source"]).startswith(str(volumes.root)):
                m["source"] = volume_source(container_dir, str(m["source"]))
    hostname = opts.hostname or container_id[:12]
    covered = {m["destination"] for m in mounts}
    dns = etc_files.Dns(opts.dns, opts.dns_search, opts.dns_options)
    etc = [m for m in etc_files.write(container_dir, hostname, opts.add_hosts, dns=dns)]
    resolved.mounts = mounts + [m for m in etc if m["destination"] not in covered]
    if seeds:
        (container_dir / SEED_FILE).write_text(json.dumps(seeds))
    return build_spec(
        image_config,
        opts,
        container_id=container_id,
        netns=str(container_dir / "netns"),
        resolved=resolved,
    )


def _user_namespace(
    opts: RunOptions,
    identity: Identity,
    layers_top_first: list[str],
    container_id: str,
    container_dir: Path,
) -> tuple[Mapping | None, Identity]:
    """``--userns``/``--uidmap``: the mapping (userns.py), and the identity (keep-id runs as
    the caller's ids unless ``-u`` says otherwise); the user must be mapped."""
    from corral._record import replace
    from corral.engine.containers import userns

    assert opts.userns is not None
    ids: list[int] = []
    for name, parse in (("etc/passwd", users.parse_passwd), ("etc/group", users.parse_group)):
        for entry in parse(users.read_layered(layers_top_first, name) or ""):
            ids += [entry.uid, entry.gid] if isinstance(entry, users.PasswdEntry) else [entry.gid]
    mapping = userns.resolve(
        opts.userns, containers_dir=container_dir.parent, container_id=container_id,
        image_ids=[i for i in ids if i < userns.AUTO_MAX],
    )  # fmt: skip
    if mapping is None:
        return None, identity
    if opts.userns.mode == "keep-id" and opts.user is None:
        uid = os.getuid() if opts.userns.keep_uid is None else opts.userns.keep_uid
        gid = os.getgid() if opts.userns.keep_gid is None else opts.userns.keep_gid
        identity = replace(identity, uid=uid, gid=gid)
    userns.check_identity(mapping, identity.uid, identity.gid, identity.additional_gids)
    userns.open_path(container_dir.parent.parent, container_dir)
    return mapping, identity


def _mounts(
    image_config: dict[str, Any], opts: RunOptions, container_id: str, volumes: Volumes
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """OCI mounts for the options and the image's VOLUMEs; the volumes to seed at first start."""
    out: list[dict[str, Any]] = []
    seeds: list[dict[str, Any]] = []
    used: list[str] = []
    wanted = list(opts.mounts)
    targets = {m.target for m in wanted}
    from corral.engine.containers.spec import MountOption

    for target in sorted((image_config.get("config") or {}).get("Volumes") or {}):
        path = os.path.normpath(target)
        if path not in targets:
            wanted.append(MountOption("volume", path))
    for m in wanted:
        ro = ["ro"] if m.readonly else []
        if m.type == "bind":
            if not os.path.exists(m.source):
                if not m.create:
                    raise UsageError(
                        'invalid mount config for type "bind": bind source path does not exist: '
                        f"{m.source}"
                    )
                os.makedirs(m.source, mode=0o755, exist_ok=True)
            propagation = list(m.options) or ["rprivate"]
            out.append(_bind(m.target, m.source, ["rbind", *propagation, *ro]))
        elif m.type == "volume":
            volume = volumes.create(m.source or None)
            used.append(volume.name)
            volumes.attach(container_id, [volume.name])
            out.append(_bind(m.target, str(volume.path), ["rbind", "rprivate", *ro]))
            if not m.nocopy:
                seeds.append({"volume": str(volume.path), "target": m.target})
        else:
            options = ["nosuid", "nodev"]
            if "exec" not in m.options:
                options.append("noexec")
            options += [o for o in m.options if o not in options]
            if m.size is not None:
                options.append(f"size={m.size}")
            if m.mode is not None:
                options.append(f"mode={m.mode:o}")
            out.append({"destination": m.target, "type": "tmpfs", "source": "tmpfs",
                        "options": [*options, *ro]})  # fmt: skip
    out.sort(key=lambda m: len([p for p in str(m["destination"]).split("/") if p]))
    return out, seeds


def _bind(target: str, source: str, options: list[str]) -> dict[str, Any]:
    return {"destination": target, "type": "bind", "source": source, "options": options}


def devices(wanted: list[DeviceOption], privileged: bool) -> list[dict[str, Any]]:
    """OCI linux.devices for ``--device`` (and all of the host's /dev for ``--privileged``)."""
    out: dict[str, dict[str, Any]] = {}
    if privileged:
        for top, dirs, files in os.walk("/dev"):
            dirs[:] = [d for d in dirs if os.path.join(top, d) not in _DEV_SKIP]
            for name in files:
                path = os.path.join(top, name)
                if path in _DEV_SKIP:
                    continue
                entry = _device(path, path, "rwm")
                if entry is not None:
                    out[path] = entry
    for d in wanted:
        entry = _device(d.host, d.container, d.perms)
        if entry is None:
            raise UsageError(f"--device {d.host}: error gathering device information: not a device")
        out[d.container] = entry
    return list(out.values())


def _device(host: str, container: str, perms: str) -> dict[str, Any] | None:
    try:
        st = os.stat(host)
    except OSError as err:
        if not os.path.lexists(host):
            raise UsageError(
                f"--device {host}: error gathering device information while adding custom "
                f'device "{host}": no such file or directory'
            ) from None
        raise UsageError(f"--device {host}: {err.strerror}") from None
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        return None
    return {
        "path": container,
        "type": kind,
        "major": os.major(st.st_rdev),
        "minor": os.minor(st.st_rdev),
        "fileMode": stat.S_IMODE(st.st_mode),
        "uid": st.st_uid,
        "gid": st.st_gid,
        "access": perms,
    }


def after_mount(container_dir: Path, rootfs: str) -> None:
    """At start, the rootfs mounted: make the working directory; seed fresh volumes (once)."""
    from corral.engine.rootpath import existing_in_root
    from corral.engine.volumes import seed

    spec: dict[str, Any] = {}
    try:
        spec = json.loads((container_dir / "config.json").read_text())
        cwd = str(spec["process"].get("cwd") or "/")
    except (OSError, ValueError, KeyError):
        cwd = "/"
    seeds_path = container_dir / SEED_FILE
    try:
        seeds = json.loads(seeds_path.read_text())
    except (OSError, ValueError):
        seeds = []
    from corral.engine.containers.userns import spec_mapping, unshift_tree

    mapping = spec_mapping(spec) if spec else None
    if mapping is not None and mapping.identity:
        mapping = None
    for item in seeds:
        # copied as the host sees the rootfs; a volume keeps the container's ids (it is
        # idmapped for the container, as the layers are)
        if seed(Path(item["volume"]), rootfs, item["target"]) and mapping is not None:
            unshift_tree(Path(item["volume"]), mapping)
    if seeds:
        seeds_path.unlink()
    if cwd != "/" and existing_in_root(rootfs, cwd) is None:
        _mkdir_in_root(rootfs, cwd, mapping)


def mount_rootfs(
    container_dir: Path, mounts: list[Mount], rootfs: Path, volumes: bool = True
) -> None:
    """Mount the snapshot's ``mounts`` on ``rootfs``: as they are, or, for a container with a
    user namespace, with the layers (and ``volumes``) idmapped (userns.py says why)."""
    from corral.engine.containers.userns import mapping_of
    from corral.engine.containers.userns import mount_rootfs as mount_idmapped
    from corral.engine.snapshots.overlay import mount

    mapping = mapping_of(container_dir / "config.json")
    if mapping is None or mapping.identity:
        mount(mounts, rootfs)
    else:
        mount_idmapped(mounts, str(rootfs), container_dir, mapping, volumes)


def _mkdir_in_root(rootfs: str, path: str, mapping: Mapping | None = None) -> None:
    """``mkdir -p`` of ``path`` inside ``rootfs``, links on the way resolved inside it (owned
    by the container's root when it has a user namespace)."""
    from corral.engine.rootpath import existing_in_root

    parts = [p for p in path.split("/") if p]
    for i in range(1, len(parts) + 1):
        sub = "/" + "/".join(parts[:i])
        real = existing_in_root(rootfs, sub)
        if real is not None:
            if not os.path.isdir(real):
                raise UsageError(f"-w {path}: {sub} is not a directory in the container")
            continue
        parent = existing_in_root(rootfs, "/" + "/".join(parts[: i - 1]))
        if parent is None:  # pragma: no cover - the loop made it
            raise UsageError(f"-w {path}: cannot create it")
        os.mkdir(os.path.join(parent, parts[i - 1]), 0o755)
        owner = (mapping.host_uid(0), mapping.host_gid(0)) if mapping is not None else None
        if owner is not None and owner[0] is not None and owner[1] is not None:
            os.chown(os.path.join(parent, parts[i - 1]), owner[0], owner[1])


def stop_settings(container_dir: Path) -> tuple[int, float]:
    """The signal ``stop`` sends and the seconds it waits before SIGKILL, from the config."""
    from corral.engine.containers.spec import STOP_SIGNAL, STOP_TIMEOUT
    from corral.spec.signals import parse_signal

    try:
        annotations = json.loads((container_dir / "config.json").read_text()).get("annotations")
    except (OSError, ValueError):
        annotations = None
    annotations = annotations if isinstance(annotations, dict) else {}
    signal, timeout = 15, 10.0
    try:
        signal = parse_signal(str(annotations.get(STOP_SIGNAL) or "SIGTERM"))
    except UsageError:
        pass
    try:
        timeout = float(annotations.get(STOP_TIMEOUT, 10))
    except ValueError:
        pass
    if timeout < 0:
        timeout = float(1 << 30)  # -1: wait for ever, as docker
    return signal, timeout


def update(containers: Containers, ref: str, opts: RunOptions) -> str:
    """``corral update``: new limits for a container, running or not (docker's verb).

    A running container gets them in its cgroups at once (the runtime's ``update``); either way
    its config.json keeps them, so the next start has them too. The container's id.
    """
    from corral.engine.containers.spec import resources

    record = containers.record(ref)
    wanted = resources(opts)
    if opts.memory is not None and opts.memory_swap is None:
        wanted.get("memory", {}).pop("swap", None)  # leave the swap limit as it is
    if not wanted:
        raise UsageError("update: give at least one limit (-m, --cpus, --pids-limit...)")
    if containers.status(record).state == "running":
        containers.runtime_api().update(record.id, dict(wanted))
    path = containers.dir(record.id) / "config.json"
    spec = json.loads(path.read_text())
    current = spec.setdefault("linux", {}).setdefault("resources", {})
    for key, value in wanted.items():
        if isinstance(value, dict) and isinstance(current.get(key), dict):
            current[key].update(value)
        else:
            current[key] = value
    tmp = path.with_name("config.json.tmp")
    tmp.write_text(json.dumps(spec, indent=1))
    os.rename(tmp, path)
    return record.id
