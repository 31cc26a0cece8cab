"""``corral``: the docker/podman-style engine CLI (images for now; containers come next).

Thin by design (DESIGN.md, "Every CLI is thin"): parse the command line with argparse, call
``corral.engine``, print the result the way docker prints it. Every failure is one line on
stderr (``Error: ...``) naming the argument or file at fault, with no traceback (set
``CORRAL_DEBUG=1`` to see one), and docker's exit status: 125 for a flag that does not parse;
``run``/``create`` 125 when the engine fails, 126/127 when the container's command cannot be
invoked / is not found, else the container's own; 1 for other failures. The engine is imported
inside each command, so ``corral --help`` costs an interpreter and argparse, nothing more.

::

    corral [--root DIR] images | image import|ls|inspect|history|tag|rm|prune|from-host|busybox
                        history | tag | rmi | inspect | info | system df [-v] | system info
"""

from __future__ import annotations

import os
import sys

from corral.errors import CorralError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:  # importing typing costs ~8 ms; argparse pulls in re: both only when needed
    import argparse
    from typing import Any, NoReturn

PROG = "corral"
#: docker's status for a flag it cannot parse (unknown, missing its value, a bad value).
USAGE_STATUS = 125


def _parser_class() -> type[argparse.ArgumentParser]:
    import argparse

    class Parser(argparse.ArgumentParser):
        """argparse, but a usage mistake is a UsageError (one line), not usage + exit 2.

        Its status is docker's: 125 for a flag (unknown, without its value, a bad value), 1
        for a wrong number of arguments or an unknown command.
        """

        def error(self, message: str) -> NoReturn:
            err = UsageError(f"{self.prog}: {message}")
            if _about_a_flag(message):
                err.exit_code = USAGE_STATUS
            raise err

    return Parser


def _about_a_flag(message: str) -> bool:
    """Whether an argparse error ``message`` is about an option, not a positional."""
    if message.startswith("argument -"):
        return True
    unknown = message.partition("unrecognized arguments: ")[2]
    return any(word.startswith("-") for word in unknown.split())


def _store(ns: argparse.Namespace) -> Any:
    from corral.engine.images.store import open_store

    return open_store(ns.root)


# -- images ----------------------------------------------------------------------------------------


def cmd_images(ns: argparse.Namespace) -> int:
    from corral.engine.format import ago, human_size, table
    from corral.engine.images.digest import short_id
    from corral.engine.images.store import parse_reference

    store = _store(ns)
    wanted: tuple[str, str | None] | None = None
    if getattr(ns, "reference", None):
        name, tag = parse_reference(ns.reference)
        wanted = (name, tag if ":" in ns.reference.rsplit("/", 1)[-1] else None)
    rows: list[list[str]] = []
    ids: list[str] = []
    for image in store.images():
        tags = [t.rsplit(":", 1) for t in image.tags] or [["<none>", "<none>"]]
        for repo, tag in tags:
            if wanted is not None and (repo != wanted[0] or wanted[1] not in (None, tag)):
                continue
            image_id = image.id if ns.no_trunc else short_id(image.id)
            rows.append([repo, tag, image_id, ago(image.created), human_size(image.size, 3)])
            if image_id not in ids:
                ids.append(image_id)
    if ns.quiet:
        for image_id in ids:
            print(image_id)
    else:
        sys.stdout.write(table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], rows))
    return 0


def cmd_import(ns: argparse.Namespace) -> int:
    store = _store(ns)
    if not os.path.exists(ns.file):
        raise UsageError(f"{ns.file}: no such file")
    image = store.import_rootfs(
        ns.file, ns.reference, comment=ns.message or "", cmd=ns.cmd.split() if ns.cmd else None
    )
    print(image.id)
    return 0


def cmd_from_host(ns: argparse.Namespace) -> int:
    store = _store(ns)
    image = store.from_host(
        ns.reference, ns.programs, ns.add or [], cmd=ns.cmd.split() if ns.cmd else None
    )
    print(image.id)
    return 0


def cmd_busybox(ns: argparse.Namespace) -> int:
    image = _store(ns).busybox(ns.reference, ns.busybox)
    print(image.id)
    return 0


def cmd_inspect(ns: argparse.Namespace) -> int:
    import json

    store = _store(ns)
    out = [store.inspect(ref) for ref in ns.references]
    if ns.format:
        for item in out:
            print(_format(ns.format, item))
        return 0
    print(json.dumps(out, indent=4))
    return 0


def _format(template: str, data: dict[str, Any]) -> str:
    """A tiny subset of Go templates: ``{{.Id}}``, ``{{.Config.Cmd}}``, ``{{json .RootFS}}``."""
    import json
    import re

    def value(match: re.Match[str]) -> str:
        expr = match.group(1).strip()
        as_json = expr.startswith("json ")
        path = expr[5:].strip() if as_json else expr
        current: Any = data
        for key in [k for k in path.split(".") if k]:
            if not isinstance(current, dict) or key not in current:
                raise UsageError(f"--format: no field {path!r}")
            current = current[key]
        if as_json or isinstance(current, dict | list):
            return json.dumps(current)
        return str(current)

    return re.sub(r"\{\{(.*?)\}\}", value, template)


def cmd_history(ns: argparse.Namespace) -> int:
    from corral.engine.format import ago, human_size, table, truncate
    from corral.engine.images.digest import short_id

    rows = []
    for step in _store(ns).history(ns.reference):
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
    _store(ns).tag(ns.source, ns.target)
    return 0


def cmd_rmi(ns: argparse.Namespace) -> int:
    store = _store(ns)
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

    if not ns.force and not _confirm(f"WARNING! This will remove {_prunable(ns.all)}.\n"):
        return 0
    lines, reclaimed = _store(ns).prune(all_images=ns.all)
    if lines:
        print("Deleted Images:")
        for line in lines:
            print(line)
        print()
    print(f"Total reclaimed space: {human_size(reclaimed)}")
    return 0


def _prunable(all_images: bool) -> str:
    if all_images:
        return "all images without at least one container associated to them"
    return "all dangling images"


def _confirm(warning: str) -> bool:
    """docker's prompt: ``warning`` and "[y/N]" on stdout, one line read from stdin whatever
    it is (a pipe too); only y or yes goes on, anything else or the end of input aborts."""
    sys.stdout.write(warning + "Are you sure you want to continue? [y/N] ")
    sys.stdout.flush()
    answer = sys.stdin.readline() if sys.stdin is not None else ""  # None: fd 0 was closed
    return answer.strip().lower() in ("y", "yes")


# -- system ----------------------------------------------------------------------------------------


def cmd_system_prune(ns: argparse.Namespace) -> int:
    """docker's `system prune`: stopped containers, then dangling (with -a: unused) images."""
    from corral.engine.containers import Containers
    from corral.engine.format import human_size

    warning = f"WARNING! This will remove:\n  - all stopped containers\n  - {_prunable(ns.all)}\n\n"
    if not ns.force and not _confirm(warning):
        return 0
    store = _store(ns)
    containers = Containers(store)
    removed, reclaimed = [], 0
    for status in containers.list(all_containers=True):
        if status.state == "running":
            continue
        reclaimed += _tree_size(containers.dir(status.record.id))
        containers.remove(status.record.id)
        removed.append(status.record.id)
    if removed:
        print("Deleted Containers:")
        print("\n".join(removed) + "\n")
    lines, freed = store.prune(all_images=ns.all)
    if lines:
        print("Deleted Images:")
        print("\n".join(lines) + "\n")
    print(f"Total reclaimed space: {human_size(reclaimed + freed)}")
    return 0


def _tree_size(path: Any) -> int:
    """Bytes in the files under ``path`` (a container's upper dir and logs), not following links."""
    import os

    total = 0
    for top, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(top, name)).st_size
            except OSError:
                pass
    return total


def cmd_info(ns: argparse.Namespace) -> int:
    import json

    info = _store(ns).info()
    if ns.format == "json":
        print(json.dumps(info, indent=2))
        return 0
    print(f"""Storage root:    {info["root"]}
 Database:       {info["database"]}
 Blobs:          {info["blobs"]} ({info["blob_count"]} blobs)
 Snapshots:      {info["snapshots"]} ({info["layers"]} layers, \
{info["active_snapshots"]} active)
 Temporary:      {info["tmp"]}
Snapshotter:     {info["snapshotter"]}
Runtime root:    {info["runtime_root"]}
Architecture:    {info["architecture"]}
Images:          {info["images"]} ({info["tags"]} tags)
Containers:      {info["containers"]}""")
    return 0


def cmd_df(ns: argparse.Namespace) -> int:
    from corral.engine.format import ago, human_size, table
    from corral.engine.images.digest import short_id

    usage = _store(ns).disk_usage()

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
    sys.stdout.write(table(["VOLUME NAME", "LINKS", "SIZE"], []))
    print("\nBuild cache usage: 0B\n")
    sys.stdout.write(
        table(["CACHE ID", "CACHE TYPE", "SIZE", "CREATED", "LAST USED", "USAGE", "SHARED"], [])
    )
    print(
        f"\nContent store (compressed layer blobs, manifests, configs): "
        f"{human_size(usage.blob_bytes)}"
    )
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

    p = sub.add_parser("inspect", help="image details as JSON")
    p.add_argument("references", nargs="+", metavar="IMAGE")
    p.add_argument("-f", "--format", help="a Go-template subset: '{{.Id}}', '{{json .Config}}'")
    p.set_defaults(func=cmd_inspect)
    if top:
        return

    p = sub.add_parser("import", help="a root filesystem tarball becomes a one-layer image")
    p.add_argument("file", metavar="ROOTFS.tar[.gz|.xz|.zst]")
    p.add_argument("reference", nargs="?", metavar="NAME[:TAG]")
    p.add_argument("-m", "--message", help="a comment for the image's history")
    p.add_argument("--cmd", help="the default command, split on spaces (e.g. 'sh -c true')")
    p.set_defaults(func=cmd_import)

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


def build_parser() -> argparse.ArgumentParser:
    _Parser = _parser_class()
    parser = _Parser(prog=PROG, description="corral: containers and images, docker-style.")
    parser.add_argument(
        "--root", metavar="DIR", help="storage root (default $CORRAL_ROOT or /var/lib/corral)"
    )
    parser.add_argument("-v", "--version", action="store_true", help="print the version")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    image = sub.add_parser("image", help="manage images")
    image_sub = image.add_subparsers(dest="subcommand", metavar="COMMAND", parser_class=_Parser)
    image_sub.required = True
    _image_commands(image_sub, top=False)
    _image_commands(sub, top=True)
    from corral.cli.registry import add_registry_commands

    add_registry_commands(sub, image_sub)
    from corral.cli.engine_cmds import add_engine_commands

    add_engine_commands(sub, image_sub)

    p = sub.add_parser("info", help="where corral keeps everything")
    p.add_argument("-f", "--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_info)

    system = sub.add_parser("system", help="manage corral")
    system_sub = system.add_subparsers(dest="subcommand", metavar="COMMAND", parser_class=_Parser)
    system_sub.required = True
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
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit status.

    As docker: 125 for a flag that does not parse (1 for a missing argument or an unknown
    command); ``run`` and ``create`` exit 125
    when the engine fails, ``run`` 126/127 when the container's command cannot be invoked or
    is not found (``error_status`` in the command's defaults decides), else the container's
    status; other commands 1 on error.
    """
    args = sys.argv[1:] if argv is None else argv
    ns = None
    try:
        parser = build_parser()
        ns = parser.parse_args(args)
        if ns.version:
            from corral import __version__

            print(f"corral version {__version__}")
            return 0
        if getattr(ns, "func", None) is None:
            parser.print_help()
            return 0 if ns.command is None and not args else 1
        return int(ns.func(ns) or 0)
    except CorralError as err:
        _debug()
        print(f"Error: {err}", file=sys.stderr)
        return _error_status(ns, err, err.exit_code)
    except OSError as err:
        _debug()
        where = f"{err.filename}: " if err.filename else ""
        print(f"Error: {where}{err.strerror or err}", file=sys.stderr)
        return _error_status(ns, err, 1)
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # a bug; still one line unless debugging
        _debug()
        print(f"Error: internal error: {type(err).__name__}: {err}", file=sys.stderr)
        return _error_status(ns, err, 1)


def _error_status(ns: argparse.Namespace | None, err: BaseException, default: int) -> int:
    """The exit status for ``err``: the command's own ``error_status`` rule, or ``default``."""
    rule = getattr(ns, "error_status", None)
    return int(rule(err)) if rule is not None else default


def _debug() -> None:
    if os.environ.get("CORRAL_DEBUG"):
        import traceback

        traceback.print_exc()


if __name__ == "__main__":
    sys.exit(main())
