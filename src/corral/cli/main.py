"""``corral``: the docker/podman-style engine CLI. A placeholder until the engine exists.

It answers ``--version`` and ``--help``; every other command says the engine is not built yet
and exits with status 2, so no script mistakes it for a working engine.
"""

from __future__ import annotations

import sys

USAGE = """\
usage: corral [--version] [--help] COMMAND [ARGS...]

The corral engine (images, containers, networks) is not implemented yet.
The OCI runtime is: see `corral-runc --help`.
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] in (["--version"], ["-v"], ["version"]):
        from corral import __version__

        print(f"corral version {__version__}")
        return 0
    if args[:1] in (["--help"], ["-h"], ["help"]):
        sys.stdout.write(USAGE)
        return 0
    print("corral: the engine is not implemented yet (see issue 5)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
