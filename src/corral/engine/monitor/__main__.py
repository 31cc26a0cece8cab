"""``python -S -m corral.engine.monitor ROOT``: the monitor of one engine root (server.py)."""

import sys

from corral.engine.monitor.server import main

sys.exit(main(sys.argv[1:]))
