"""``corral info | system info | system df | system prune``: what spans images and containers.

Thin (DESIGN.md): the work is in ``Engine.info``, ``Engine.df`` and ``Engine.prune``.
"""

from __future__ import annotations

import sys

from corral.cli.common import confirm, engine, prunable

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from corral.cli.common import Commands


def cmd_system_prune(ns: argparse.Namespace) -> int:
    """docker's ``system prune``: asks first (unless -f), then ``Engine.prune``."""
    from corral.engine.format import human_size

    warning = f"WARNING! This will remove:\n  - all stopped containers\n  - {prunable(ns.all)}\n\n"
    if not ns.force and not confirm(warning):
        return 0
    report = engine(ns).prune(all_images=ns.all)
    if report.containers:
        print("Deleted Containers:")
        print("\n".join(report.containers) + "\n")
    if report.images:
        print("Deleted Images:")
        print("\n".join(report.images) + "\n")
    print(f"Total reclaimed space: {human_size(report.reclaimed)}")
    return 0


def cmd_info(ns: argparse.Namespace) -> int:
    import json

    info = engine(ns).info()
    if ns.format == "json":
        print(json.dumps(info.to_json(), indent=2))
        return 0
    print(f"""Storage root:    {info.root}
 Database:       {info.database}
 Blobs:          {info.blobs} ({info.blob_count} blobs)
 Snapshots:      {info.snapshots} ({info.layers} layers, {info.active_snapshots} active)
 Containers:     {info.containers_dir}
 Temporary:      {info.tmp}
Runtime root:    {info.runtime_root}
Snapshotter:     {info.snapshotter}
Cgroups:         {info.cgroups}
Architecture:    {info.architecture}
Images:          {info.images} ({info.tags} tags)
Containers:      {info.containers}""")
    return 0


def cmd_df(ns: argparse.Namespace) -> int:
    from corral.engine.format import ago, human_size, table
    from corral.engine.images.digest import short_id

    usage = engine(ns).df()

    def reclaim(row: Any) -> str:
        if row.size > 0:
            return f"{human_size(row.reclaimable)} ({row.reclaimable * 100 // row.size}%)"
        return human_size(row.reclaimable)

    if not ns.verbose:
        rows = [
            [r.kind, str(r.total), str(r.active), human_size(r.size), reclaim(r)]
            for r in usage.rows
        ]
        sys.stdout.write(table(["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], rows))
        return 0
    image_rows = []
    for image in usage.images:
        tags = [t.rsplit(":", 1) for t in image["tags"]] or [["<none>", "<none>"]]
        for repo, tag in tags:
            image_rows.append(
                [
                    repo,
                    tag,
                    short_id(image["id"]),
                    ago(image["created"]),
                    human_size(image["size"]),
                    human_size(image["shared"]),
                    human_size(image["unique"]),
                    str(image["containers"]),
                ]
            )
    print("Images space usage:\n")
    sys.stdout.write(
        table(
            [
                "REPOSITORY",
                "TAG",
                "IMAGE ID",
                "CREATED",
                "SIZE",
                "SHARED SIZE",
                "UNIQUE SIZE",
                "CONTAINERS",
            ],
            image_rows,
        )
    )
    print("\nContainers space usage:\n")
    container_rows = [
        [
            c["id"][:12],
            short_id(c["image"]),
            "0",
            human_size(c["size"]),
            "running" if c["active"] else "created",
            c["name"],
        ]
        for c in usage.containers
    ]
    sys.stdout.write(
        table(["CONTAINER ID", "IMAGE", "LOCAL VOLUMES", "SIZE", "STATUS", "NAMES"], container_rows)
    )
    print("\nLocal Volumes space usage:\n")
    volumes = engine(ns).volumes.usage()
    volume_rows = [[name, str(links), human_size(size)] for name, links, size in volumes]
    sys.stdout.write(table(["VOLUME NAME", "LINKS", "SIZE"], volume_rows))
    cache = next((r for r in usage.rows if r.kind == "Build Cache"), None)
    print(f"\nBuild cache usage: {human_size(cache.size if cache else 0)}\n")
    sys.stdout.write(
        table(["CACHE ID", "CACHE TYPE", "SIZE", "CREATED", "LAST USED", "USAGE", "SHARED"], [])
    )
    print(
        f"\nContent store (compressed layer blobs, manifests, configs): "
        f"{human_size(usage.blob_bytes)}"
    )
    return 0


# -- the parser ------------------------------------------------------------------------------------


def register(commands: Commands) -> None:
    p = commands.top.add_parser("info", help="where corral keeps everything")
    p.add_argument("-f", "--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_info)

    system_sub = commands.group("system", "manage corral")
    p = system_sub.add_parser("df", help="disk usage")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_df)
    p = system_sub.add_parser("prune", help="remove stopped containers and unused images")
    p.add_argument("-a", "--all", action="store_true", help="all unused images, not just dangling")
    p.add_argument("-f", "--force", action="store_true", help="do not ask")
    p.set_defaults(func=cmd_system_prune)
    p = system_sub.add_parser("info", help="same as corral info")
    p.add_argument("-f", "--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_info)
