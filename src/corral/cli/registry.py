"""``corral pull | push | login | logout`` (and ``image pull | push``): thin, like main.py.

The work is in ``corral.engine.distribution``; this module only parses flags (podman's names:
``--tls-verify[=false]``, ``--cert-dir``, ``--authfile``, ``--creds``, ``--platform``,
``--format``) and prints. Progress goes to stderr, drawn by ``cli.progress`` from the engine's
events (bars on a terminal, lines otherwise; nothing with ``-q``); stdout gets what a script
wants: the image ID after a pull, the manifest digest after a push.
"""

from __future__ import annotations

import sys

from corral.cli.common import engine
from corral.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from corral.cli.common import Commands
    from corral.engine.distribution import Options
    from corral.engine.distribution.events import ProgressCallback


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise UsageError(f"--tls-verify: want true or false, not {text!r}")


def _options(ns: argparse.Namespace) -> Options:
    from corral.engine.distribution import Credentials, Options, default_auth_file

    options = Options(
        tls_verify=ns.tls_verify,
        cert_dir=ns.cert_dir,
        auth_file=ns.authfile or default_auth_file(engine(ns).layout),
        platform=getattr(ns, "platform", None),
    )
    if getattr(ns, "creds", None):
        user, sep, password = ns.creds.partition(":")
        if not user:
            raise UsageError("--creds: want USERNAME[:PASSWORD]")
        if not sep:
            import getpass

            password = getpass.getpass("Password: ")
        options.credentials = Credentials(user, password)
    return options


def _progress(ns: argparse.Namespace) -> ProgressCallback | None:
    """Bars or lines on stderr, or nothing with ``-q``."""
    if ns.quiet:
        return None
    from corral.cli.progress import Progress

    return Progress(sys.stderr)


def cmd_pull(ns: argparse.Namespace) -> int:
    from corral.engine.distribution import pull

    image = pull(engine(ns).images, ns.reference, _options(ns), _progress(ns))
    print(image.id)
    return 0


def cmd_push(ns: argparse.Namespace) -> int:
    from corral.engine.distribution import push

    digest, _ = push(
        engine(ns).images, ns.source, ns.destination, _options(ns), ns.format, _progress(ns)
    )
    if ns.digestfile:
        with open(ns.digestfile, "w", encoding="utf-8") as f:
            f.write(digest)
    print(digest)
    return 0


def cmd_login(ns: argparse.Namespace) -> int:
    from corral.engine.distribution import (
        Credentials,
        Options,
        default_auth_file,
        login,
        read_password,
    )

    username = ns.username
    if ns.password is not None and ns.password_stdin:
        raise UsageError("--password and --password-stdin are mutually exclusive")
    if ns.password_stdin:
        if not username:
            raise UsageError("--password-stdin needs --username")
        password = read_password(sys.stdin)
    elif ns.password is not None:
        password = ns.password
    elif sys.stdin.isatty():
        import getpass

        if not username:
            username = input("Username: ").strip()
        password = getpass.getpass("Password: ")
    else:
        raise UsageError("no password: use --password-stdin (or run on a terminal)")
    if not username:
        raise UsageError("--username: must not be empty")
    options = Options(tls_verify=ns.tls_verify, cert_dir=ns.cert_dir)
    auth_file = ns.authfile or default_auth_file(engine(ns).layout)
    login(ns.registry, Credentials(username, password), auth_file, options)
    print("Login Succeeded!")
    return 0


def cmd_logout(ns: argparse.Namespace) -> int:
    from corral.engine.distribution import default_auth_file, logout

    if ns.all == bool(ns.registry):
        raise UsageError("logout: give a REGISTRY or --all")
    auth_file = ns.authfile or default_auth_file(engine(ns).layout)
    key = logout(None if ns.all else ns.registry, auth_file)
    print(f"Removed login credentials for {key}")
    return 0


def _transport(p: Any) -> None:
    p.add_argument(
        "--tls-verify",
        type=_bool,
        nargs="?",
        const=True,
        default=True,
        metavar="BOOL",
        help="verify the registry's certificate (false: accept any, and allow plain HTTP)",
    )
    p.add_argument("--cert-dir", metavar="DIR", help="CA certificates (*.crt) to trust")
    p.add_argument("--authfile", metavar="PATH", help="credentials file (default <root>/auth.json)")


def register(commands: Commands) -> None:
    """pull/push/login/logout at the top level, and pull/push under ``image``."""
    sub, image_sub = commands.top, commands.group("image", "manage images")
    for parent in (sub, image_sub):
        p = parent.add_parser("pull", help="pull an image from a registry")
        p.add_argument("reference", metavar="NAME[:TAG|@DIGEST]")
        p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="default: this machine's")
        p.add_argument("--creds", metavar="USER[:PASSWORD]", help="instead of the auth file")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
        _transport(p)
        p.set_defaults(func=cmd_pull)

        p = parent.add_parser("push", help="push an image to a registry")
        p.add_argument("source", metavar="IMAGE")
        p.add_argument("destination", nargs="?", metavar="DESTINATION")
        p.add_argument(
            "--format",
            "-f",
            choices=["oci", "v2s2", "docker"],
            help="manifest type (default: as stored, OCI for images made here)",
        )
        p.add_argument("--creds", metavar="USER[:PASSWORD]", help="instead of the auth file")
        p.add_argument("--digestfile", metavar="PATH", help="write the manifest digest there")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
        _transport(p)
        p.set_defaults(func=cmd_push)

    p = sub.add_parser("login", help="log in to a registry")
    p.add_argument("registry", metavar="REGISTRY")
    p.add_argument("-u", "--username")
    p.add_argument("-p", "--password", help="prefer --password-stdin")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    _transport(p)
    p.set_defaults(func=cmd_login)

    p = sub.add_parser("logout", help="log out of a registry")
    p.add_argument("registry", nargs="?", metavar="REGISTRY")
    p.add_argument("-a", "--all", action="store_true", help="all registries")
    p.add_argument("--authfile", metavar="PATH", help="credentials file (default <root>/auth.json)")
    p.set_defaults(func=cmd_logout)
