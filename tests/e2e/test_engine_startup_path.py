"""What ``corral run --network none``, ``run -d``, ``exec`` and ``rm -f`` load (issue 10: at
most half podman's time; start-up was most of it, bench/README.md engine.py).

Each runs as the lean launcher runs it (``python3 -I -S``, this checkout's src first) under
``-X importtime`` on a real container, and the modules that the command itself (not its
forked children: their lines carry no marker we could tell apart, so the set is a superset)
loaded are checked: nothing of engine.network's manager (pyroute2, nft, socket) for
``--network none``, no dataclasses (its exec per class and inspect, ast, dis: ~17 ms; the
engine's classes are corral._record.datarecord), no typing (~2 ms), no hashlib (secrets),
no tarfile (images.layers: unpacking, not running).
"""

from __future__ import annotations

from pathlib import Path

from helpers.engine import corral
from helpers.startup import loaded_by

FORBIDDEN = {
    "corral.engine.network.manager",
    "corral.engine.network.model",
    "corral.engine.network.netlink",
    "pyroute2",
    "dataclasses",
    "inspect",
    "typing",
    "hashlib",
    "secrets",
    "tarfile",
    "subprocess",
}


def test_run_exec_rm_with_network_none_load_none_of_the_heavy_modules(root: Path) -> None:
    corral(root, "image", "busybox")  # made once (from the host: tarfile, hashlib...), not timed
    seen = {}
    seen["run --rm"], out = loaded_by("corral", root, "run", "--rm", "--network", "none", "busybox",
                                      "echo", "hi")  # fmt: skip
    assert out == "hi\n"
    seen["run -d"], out = loaded_by("corral", root, "run", "-d", "--network", "none",
                                    "busybox", "sleep", "60")  # fmt: skip
    cid = out.strip()
    seen["exec"], out = loaded_by("corral", root, "exec", cid, "cat", "/etc/hostname")
    assert out == f"{cid[:12]}\n"
    seen["rm -f"], out = loaded_by("corral", root, "rm", "-f", cid)
    assert out == f"{cid}\n"
    found = {name: sorted(mods & FORBIDDEN) for name, mods in seen.items() if mods & FORBIDDEN}
    assert found == {}
