"""``corral build`` and ``corral builder prune``: thin, as the rest of the CLI (parse, call
``corral.engine.build``, print).

    corral build -t NAME[:TAG] [-f FILE] [--build-arg K=V] [--target STAGE] [--no-cache]
                 [--pull] [--tls-verify=false] CONTEXT

A FROM image missing from the store is pulled (``--pull``: every FROM image is pulled again).

Progress goes to stdout in podman's plain format (``STEP 2/7: RUN make``), then the image id;
``-q`` prints only the id. A RUN step's stdin is /dev/null, as docker's.
"""

from __future__ import annotations

import os
import sys

from corral.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from corral.cli.common import Commands
    from corral.engine.images.store import Image


def cmd_build(ns: argparse.Namespace) -> int:
    from pathlib import Path

    from corral.cli.common import engine
    from corral.engine.build.executor import BuildOptions

    build_args: dict[str, str] = {}
    for item in ns.build_arg or []:
        key, eq, value = item.partition("=")
        if not key:
            raise UsageError(f"--build-arg {item!r}: say NAME=VALUE")
        if not eq:  # docker: --build-arg NAME takes the caller's environment
            if key not in os.environ:
                continue
            value = os.environ[key]
        build_args[key] = value
    the_engine = engine(ns)

    def puller(ref: str) -> Image:
        from corral.cli.progress import Progress
        from corral.engine.distribution import Options, default_auth_file, pull

        options = Options(tls_verify=ns.tls_verify, auth_file=default_auth_file(the_engine.layout))
        return pull(the_engine.images, ref, options, None if ns.quiet else Progress(sys.stderr))

    opts = BuildOptions(
        context=Path(ns.context),
        file=Path(ns.file) if ns.file else None,
        tags=list(ns.tag or []),
        build_args=build_args,
        target=ns.target,
        no_cache=ns.no_cache,
        pull=ns.pull,
        quiet=ns.quiet,
        # $CORRAL_PULL=never (as for run and create): a missing base is an error, not a pull
        puller=None if os.environ.get("CORRAL_PULL") == "never" and not ns.pull else puller,
    )
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    result = the_engine.builds.build(opts)
    if ns.quiet:
        print(result.image.id)
    return 0


def _bool(text: str) -> bool:
    from corral.cli.registry import _bool as parse

    return parse(text)


def cmd_builder_prune(ns: argparse.Namespace) -> int:
    from corral.cli.common import engine

    dropped = engine(ns).builds.prune()
    print(f"Deleted build cache objects: {dropped}")
    return 0


def register(commands: Commands) -> None:
    """Add ``build`` and ``builder prune`` to the ``corral`` parser."""
    p = commands.top.add_parser("build", help="build an image from a Containerfile")
    p.add_argument("context", metavar="CONTEXT", help="the directory COPY and ADD read from")
    p.add_argument("-t", "--tag", action="append", metavar="NAME[:TAG]", help="name the image")
    p.add_argument(
        "-f", "--file", metavar="FILE", help="default: CONTEXT/Containerfile or CONTEXT/Dockerfile"
    )
    p.add_argument("--build-arg", action="append", metavar="NAME=VALUE", help="set an ARG")
    p.add_argument("--target", metavar="STAGE", help="build up to this stage")
    p.add_argument("--no-cache", action="store_true", help="run every step again")
    p.add_argument("--pull", action="store_true", help="pull every FROM image, even if present")
    p.add_argument(
        "--tls-verify", type=_bool, nargs="?", const=True, default=True, metavar="BOOL",
        help="verify registries' certificates (false: also allow plain HTTP)",
    )  # fmt: skip
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image id")
    p.set_defaults(func=cmd_build)

    p = commands.group("builder", "manage the build cache").add_parser(
        "prune", help="remove the build cache"
    )
    p.add_argument("-a", "--all", action="store_true", help="everything (the only mode)")
    p.add_argument("-f", "--force", action="store_true", help="do not ask")
    p.set_defaults(func=cmd_builder_prune)
