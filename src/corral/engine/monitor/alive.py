"""Whether a root's monitor is alive: it holds ``<root>/monitor.lock`` for as long as it runs.

Apart from engine.monitor.launch, which starts monitors, because plain ``ps`` asks this
(engine.views) and must not pay for launch's imports (nor for ``os``: see engine.roots).
"""

import fcntl
import posix

TYPE_CHECKING = False
if TYPE_CHECKING:
    import os

LOCK_NAME = "monitor.lock"


def monitor_alive(root: "str | os.PathLike[str]") -> bool:
    """Whether a monitor holds the root's lock (a dead one holds nothing)."""
    try:
        fd = posix.open(f"{posix.fspath(root)}/{LOCK_NAME}", posix.O_RDONLY | posix.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        posix.close(fd)
    return False
