"""Which storage root a command means: ``--root``, else ``$CORRAL_ROOT``, else /var/lib/corral.

Apart from engine.layout, which turns the root into every path the engine uses, because the
fast paths of plain ``ps`` and ``images`` (engine.views) need the root and nothing else. Like
the runtime's verbs (see corral._posix) they do without ``os`` and ``__future__``: layout's
pathlib and dataclasses, or even ``os`` (1 ms), would be a tenth of their time or more.
"""

import posix
import sys

from corral import _posix

TYPE_CHECKING = False
if TYPE_CHECKING:
    import os

DEFAULT_ROOT = "/var/lib/corral"
ENV_ROOT = "CORRAL_ROOT"


def chosen_root(given: "str | os.PathLike[str] | None" = None) -> str:
    """The absolute path of the storage root: ``given``, else ``$CORRAL_ROOT`` if set and not
    empty, else ``/var/lib/corral``."""
    if given is None:
        given = getenv(ENV_ROOT) or DEFAULT_ROOT
    return _posix.abspath(posix.fspath(given))


def getenv(name: str) -> "str | None":
    """``os.environ.get(name)``: from ``os.environ`` once ``os`` is loaded (it follows the
    changes made through it), else from the environment the process started with (nothing
    else can have changed it)."""
    os = sys.modules.get("os")
    if os is not None:
        value: str | None = os.environ.get(name)
        return value
    raw = posix.environ.get(name.encode())
    return None if raw is None else raw.decode("utf-8", "surrogateescape")
