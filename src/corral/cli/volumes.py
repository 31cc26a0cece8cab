"""``corral volume create | ls | inspect | rm | prune``: docker's volume commands.

Thin (DESIGN.md): the work is in ``Engine.volumes`` (corral.engine.volumes).
"""

from __future__ import annotations

import sys

from corral.cli.common import confirm, engine

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from corral.cli.common import Commands


def cmd_create(ns: argparse.Namespace) -> int:
    from corral.cli.run_flags import parse_label

    labels = dict(parse_label(v) for v in ns.label or [])
    if ns.driver not in (None, "local"):
        from corral.errors import UsageError

        raise UsageError(f"--driver {ns.driver}: only the local driver is available")
    print(engine(ns).volumes.create(ns.name, labels=labels).name)
    return 0


def cmd_ls(ns: argparse.Namespace) -> int:
    from corral.engine.format import table

    volumes = engine(ns).volumes.list()
    if ns.quiet:
        for volume in volumes:
            print(volume.name)
        return 0
    sys.stdout.write(table(["DRIVER", "VOLUME NAME"], [["local", v.name] for v in volumes]))
    return 0


def cmd_inspect(ns: argparse.Namespace) -> int:
    import json

    from corral.cli.common import go_template

    store = engine(ns).volumes
    out = [store.get(name).inspect() for name in ns.names]
    if ns.format:
        for item in out:
            print(go_template(ns.format, item))
        return 0
    print(json.dumps(out, indent=4))
    return 0


def cmd_rm(ns: argparse.Namespace) -> int:
    from corral.errors import CorralError

    store = engine(ns).volumes
    failed: CorralError | None = None
    for name in ns.names:
        try:
            store.remove(name, force=ns.force)
            print(name)
        except CorralError as err:  # docker goes on with the others, then fails
            print(f"Error: {err}", file=sys.stderr)
            failed = err
    return 0 if failed is None else failed.exit_code


def cmd_prune(ns: argparse.Namespace) -> int:
    from corral.engine.format import human_size

    what = "all volumes" if ns.all else "all anonymous local volumes"
    if not ns.force and not confirm(
        f"WARNING! This will remove {what} not used by at least one container.\n"
    ):
        return 0
    removed, freed = engine(ns).volumes.prune(all_volumes=ns.all)
    if removed:
        print("Deleted Volumes:")
        print("\n".join(removed) + "\n")
    print(f"Total reclaimed space: {human_size(freed)}")
    return 0


def register(commands: Commands) -> None:
    sub = commands.group("volume", "manage volumes")
    p = sub.add_parser("create", help="create a volume")
    p.add_argument("name", nargs="?", metavar="VOLUME", help="its name (default: random)")
    p.add_argument("-d", "--driver", help="only 'local'")
    p.add_argument("-l", "--label", action="append", metavar="K=V", help="a label")
    p.set_defaults(func=cmd_create)

    p = sub.add_parser("ls", aliases=["list"], help="list volumes")
    p.add_argument("-q", "--quiet", action="store_true", help="only names")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("inspect", help="volume details as JSON")
    p.add_argument("names", nargs="+", metavar="VOLUME")
    p.add_argument("-f", "--format", help="a Go-template subset: '{{.Mountpoint}}'")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("rm", aliases=["remove"], help="remove volumes")
    p.add_argument("names", nargs="+", metavar="VOLUME")
    p.add_argument("-f", "--force", action="store_true", help="no error if it does not exist")
    p.set_defaults(func=cmd_rm)

    p = sub.add_parser("prune", help="remove unused anonymous volumes")
    p.add_argument("-a", "--all", action="store_true", help="named ones too")
    p.add_argument("-f", "--force", action="store_true", help="do not ask")
    p.set_defaults(func=cmd_prune)
