"""Plain ``ps`` and ``images`` (``-a`` and ``-q`` at most), printed from the engine's views.

cli/main.py's PLAIN sends those command lines here without argparse; engine.views answers from
the rows it keeps while they are current, without the database or the engine's modules, and
through the full engine otherwise. Any other flag goes to cli.containers/cli.images, which
print the same columns with the same functions. Like the views, this path imports neither
``os`` nor ``__future__`` (see engine.roots).
"""

import sys

from corral.engine import views

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse


def ps(ns: "argparse.Namespace") -> int:
    """``ps [-a] [-q]``."""
    rows = views.containers(ns.root, ns.runroot)
    sys.stdout.write(views.ps_text(rows, ns.all, ns.quiet))
    return 0


def images(ns: "argparse.Namespace") -> int:
    """``images [-q]``."""
    sys.stdout.write(views.images_text(views.images(ns.root, ns.runroot), ns.quiet))
    return 0
