"""``corral images | image ... | history | tag | rmi | inspect | load | save``: the image nouns.

Thin (DESIGN.md): parse, call ``Engine.images``, print as docker prints. ``image`` has every
verb; docker's top-level shortcuts (``images``, ``rmi``, ``history``...) are the same commands.
"""

from __future__ import annotations

import os
import sys

from corral.cli.common import confirm, engine, format_rows, go_template, prunable
from corral.errors import CorralError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from corral.cli.common import Commands


#: ``images``' columns (header -> field) and every ``--format`` field (field -> header).
IMAGE_FIELDS = {
    "Repository": "REPOSITORY",
    "Tag": "TAG",
    "ID": "IMAGE ID",
    "Digest": "DIGEST",
    "CreatedSince": "CREATED",
    "CreatedAt": "CREATED AT",
    "Size": "SIZE",
}


def cmd_images(ns: argparse.Namespace) -> int:
    import time

    from corral.engine import filters
    from corral.engine.format import parse_time
    from corral.engine.images.listing import select
    from corral.engine.views import IMAGE_COLUMNS, image_fields

    chosen = filters.parse(ns.filter or [], filters.IMAGE_KEYS)
    rows: list[dict[str, str]] = []
    ids: list[str] = []
    now = time.time()
    for image, repo, tag in select(engine(ns).images, chosen, getattr(ns, "reference", None)):
        # the default columns as plain ``images`` prints them (engine.views), and the rest
        fields = image_fields((repo, tag, image.id, parse_time(image.created), image.size), now)
        image_id = image.id if ns.no_trunc else fields["ID"]
        rows.append(
            {
                "Repository": repo,
                "Tag": tag,
                "ID": image_id,
                "Digest": image.manifest,
                "CreatedSince": fields["CreatedSince"],
                "CreatedAt": image.created,
                "Size": fields["Size"],
            }
        )
        if image_id not in ids:
            ids.append(image_id)
    if ns.quiet:
        for image_id in ids:
            print(image_id)
        return 0
    sys.stdout.write(format_rows(ns.format, rows, IMAGE_COLUMNS, IMAGE_FIELDS))
    return 0


def cmd_import(ns: argparse.Namespace) -> int:
    """``import FILE|- [REF]``: ``-`` reads the tarball from stdin (docker's form)."""
    the_engine = engine(ns)
    cmd = ns.cmd.split() if ns.cmd else None
    if ns.file == "-":
        if sys.stdin.isatty():
            raise UsageError("import -: stdin is a terminal; pipe a tarball into it")
        with the_engine.spooled(sys.stdin.buffer, "import -") as path:
            image = the_engine.images.import_rootfs(
                path, ns.reference, comment=ns.message or "", cmd=cmd,
                created_by="corral import -",
            )  # fmt: skip
    else:
        if not os.path.exists(ns.file):
            raise UsageError(f"{ns.file}: no such file")
        image = the_engine.images.import_rootfs(
            ns.file, ns.reference, comment=ns.message or "", cmd=cmd
        )
    print(image.id)
    return 0


def cmd_from_host(ns: argparse.Namespace) -> int:
    store = engine(ns).images
    image = store.from_host(
        ns.reference, ns.programs, ns.add or [], cmd=ns.cmd.split() if ns.cmd else None
    )
    print(image.id)
    return 0


def cmd_busybox(ns: argparse.Namespace) -> int:
    image = engine(ns).images.busybox(ns.reference, ns.busybox)
    print(image.id)
    return 0


def cmd_inspect(ns: argparse.Namespace) -> int:
    import json

    out = [_inspect_one(ns, ref) for ref in ns.references]
    if ns.format:
        for item in out:
            print(go_template(ns.format, item))
        return 0
    print(json.dumps(out, indent=4))
    return 0


def _inspect_one(ns: argparse.Namespace, ref: str) -> Any:
    """Top-level ``inspect``, as docker's: a container by that name or id, else an image
    (``--type`` picks one)."""
    from corral.errors import NotFoundError

    kind = getattr(ns, "type", None)
    if kind != "image" and ns.command == "inspect":
        try:
            return engine(ns).containers.inspect(ref)
        except NotFoundError:
            if kind == "container":
                raise
    return engine(ns).images.inspect(ref)


def cmd_history(ns: argparse.Namespace) -> int:
    from corral.engine.format import ago, human_size, table, truncate
    from corral.engine.images.digest import short_id

    rows = []
    for step in engine(ns).images.history(ns.reference):
        image_id = step["id"]
        if image_id != "<missing>" and not ns.no_trunc:
            image_id = short_id(image_id)
        by = step["created_by"] if ns.no_trunc else truncate(step["created_by"], 45)
        rows.append(
            [image_id, ago(step["created"]), by, human_size(step["size"], 3), step["comment"]]
        )
    if ns.quiet:
        for row in rows:
            print(row[0])
        return 0
    sys.stdout.write(table(["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], rows))
    return 0


def cmd_tag(ns: argparse.Namespace) -> int:
    engine(ns).images.tag(ns.source, ns.target)
    return 0


def cmd_rmi(ns: argparse.Namespace) -> int:
    store = engine(ns).images
    failed = None
    for ref in ns.references:
        try:
            for line in store.remove(ref, force=ns.force):
                print(line)
        except CorralError as err:  # docker goes on with the others, then fails
            print(f"Error: {err}", file=sys.stderr)
            failed = err
    return 0 if failed is None else failed.exit_code


def cmd_prune(ns: argparse.Namespace) -> int:
    from corral.engine.format import human_size

    if not ns.force and not confirm(f"WARNING! This will remove {prunable(ns.all)}.\n"):
        return 0
    lines, reclaimed = engine(ns).images.prune(all_images=ns.all)
    if lines:
        print("Deleted Images:")
        for line in lines:
            print(line)
        print()
    print(f"Total reclaimed space: {human_size(reclaimed)}")
    return 0


def cmd_load(ns: argparse.Namespace) -> int:
    from corral.engine.images.archive import load

    source = ns.input or getattr(ns, "source", None)
    the_engine = engine(ns)
    if source:
        results = load(the_engine.images, source)
    elif sys.stdin is None or sys.stdin.isatty():
        raise UsageError("load: give -i FILE|DIR (or oci:DIR[:tag]), or pipe an archive in")
    else:
        with the_engine.spooled(sys.stdin.buffer, "load") as path:
            results = load(the_engine.images, str(path))
    for loaded in results:
        if ns.quiet:
            continue
        if loaded.tags:
            for tag in loaded.tags:
                print(f"Loaded image: {tag}")
        else:
            print(f"Loaded image ID: {loaded.id}")
    return 0


def cmd_save(ns: argparse.Namespace) -> int:
    from corral.engine.images.archive import save

    out = None if ns.output else sys.stdout.buffer
    if out is not None and sys.stdout.isatty():
        raise UsageError("save: refusing to write an archive to a terminal; use -o FILE")
    save(engine(ns).images, ns.images, ns.output, ns.format, stdout=out)
    return 0


# -- the parser ------------------------------------------------------------------------------------


def _image_commands(sub: Any, top: bool) -> None:
    """The ``image`` subcommands; with ``top`` the docker shortcuts (``images``, ``rmi``...)."""
    if top:
        p = sub.add_parser("images", help="list images")
    else:
        p = sub.add_parser("ls", aliases=["list"], help="list images")
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")
    p.add_argument("-q", "--quiet", action="store_true", help="only image IDs")
    p.add_argument("--no-trunc", action="store_true", help="full image IDs")
    p.add_argument(
        "-f", "--filter", action="append", metavar="KEY=VALUE",
        help="dangling=true|false, reference=PATTERN, label=K[=V], before=IMAGE, since=IMAGE",
    )  # fmt: skip
    p.add_argument(
        "--format", metavar="TEMPLATE",
        help="'table {{.Repository}}\\t{{.Tag}}', '{{.ID}}', 'json' (fields: Repository, Tag, "
        "ID, Digest, CreatedSince, CreatedAt, Size)",
    )  # fmt: skip
    p.set_defaults(func=cmd_images)

    p = sub.add_parser("history", help="show the history of an image")
    p.add_argument("reference", metavar="IMAGE")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("tag", help="create a tag TARGET that refers to SOURCE")
    p.add_argument("source", metavar="SOURCE_IMAGE[:TAG]")
    p.add_argument("target", metavar="TARGET_IMAGE[:TAG]")
    p.set_defaults(func=cmd_tag)

    p = sub.add_parser(
        "rmi" if top else "rm", aliases=[] if top else ["remove"], help="remove images"
    )
    p.add_argument("references", nargs="+", metavar="IMAGE")
    p.add_argument("-f", "--force", action="store_true", help="even if containers use it")
    p.set_defaults(func=cmd_rmi)

    p = sub.add_parser("inspect", help="image (top level: or container) details as JSON")
    p.add_argument("references", nargs="+", metavar="IMAGE")
    p.add_argument("-f", "--format", help="a Go-template subset: '{{.Id}}', '{{json .Config}}'")
    if top:
        p.add_argument("--type", choices=["container", "image"], help="only this kind")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("import", help="a root filesystem tarball becomes a one-layer image")
    p.add_argument("file", metavar="ROOTFS.tar[.gz|.xz|.zst]|-")
    p.add_argument("reference", nargs="?", metavar="NAME[:TAG]")
    p.add_argument("-m", "--message", help="a comment for the image's history")
    p.add_argument("--cmd", help="the default command, split on spaces (e.g. 'sh -c true')")
    p.set_defaults(func=cmd_import)

    if top:
        return

    p = sub.add_parser("prune", help="remove unused images")
    p.add_argument("-a", "--all", action="store_true", help="all unused images, not just dangling")
    p.add_argument("-f", "--force", action="store_true", help="do not ask")
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("from-host", help="an image of host programs and the libraries they need")
    p.add_argument("reference", metavar="NAME[:TAG]")
    p.add_argument("programs", nargs="+", metavar="PROGRAM")
    p.add_argument("--add", action="append", metavar="PATH", help="also copy PATH (recursively)")
    p.add_argument("--cmd", help="the default command (default: the first PROGRAM)")
    p.set_defaults(func=cmd_from_host)

    p = sub.add_parser("busybox", help="the busybox image, from the host's static busybox")
    p.add_argument("reference", nargs="?", default="busybox:latest", metavar="NAME[:TAG]")
    p.add_argument("--busybox", default="/bin/busybox", metavar="PATH")
    p.set_defaults(func=cmd_busybox)


def register(commands: Commands) -> None:
    """``image`` and its verbs; the top-level shortcuts; ``load``/``save`` in both places."""
    sub, image_sub = commands.top, commands.group("image", "manage images")
    _image_commands(image_sub, top=False)
    _image_commands(sub, top=True)
    for parent in (sub, image_sub):
        p = parent.add_parser("load", help="load images from a docker/OCI archive or OCI layout")
        p.add_argument("-i", "--input", metavar="FILE|DIR", help="archive file or layout dir")
        p.add_argument(
            "source", nargs="?", metavar="oci:DIR[:tag]", help="or a transport reference"
        )
        p.add_argument("-q", "--quiet", action="store_true")
        p.set_defaults(func=cmd_load)

        p = parent.add_parser("save", help="save images to a docker-archive or oci-archive")
        p.add_argument("images", nargs="+", metavar="IMAGE")
        p.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
        p.add_argument(
            "--format", choices=["docker-archive", "oci-archive"], default="docker-archive"
        )
        p.set_defaults(func=cmd_save)
