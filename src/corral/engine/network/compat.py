"""Living beside dockerd: the one rule docker's firewall needs from corral.

dockerd sets the policy of iptables' ``filter FORWARD`` chain to DROP. In netfilter every base
chain on a hook sees each packet and a drop in any of them is final, so an ``accept`` in corral's
own table cannot save a forwarded packet that docker's chain drops: with dockerd running,
containers on corral's bridges could neither get out nor be reached through published ports.
Docker documents the way for other software to pass traffic: ACCEPT rules in its ``DOCKER-USER``
chain, which dockerd creates, never flushes, and evaluates first. So, only when that chain
exists, corral inserts there::

    -i <bridge> -j ACCEPT    -o <bridge> -j ACCEPT     (each with --comment corral:<bridge>)

and deletes exactly those when the network goes. These rules are in docker's iptables table, so
they are written with ``iptables`` (the iptables-nft tool that owns that table; an nft-native rule
there would make ``iptables`` refuse to list it and break dockerd). corral's drops (internal
networks, isolation) still win: they are in corral's table, and a drop anywhere is final.

They are (re)checked at every container start, so a dockerd started after corral's network came
up is caught at the next ``run``. Podman's CNI chains need nothing: they do not change a policy.
"""

from __future__ import annotations

import shutil
import subprocess

CHAIN = "DOCKER-USER"


def _iptables(*args: str) -> subprocess.CompletedProcess[str]:
    path = shutil.which("iptables") or "/usr/sbin/iptables"
    return subprocess.run(
        [path, "-w", "5", *args], capture_output=True, text=True, timeout=30, check=False
    )


def _rules(bridge: str) -> list[list[str]]:
    comment = ["-m", "comment", "--comment", f"corral:{bridge}"]
    return [["-i", bridge, *comment, "-j", "ACCEPT"], ["-o", bridge, *comment, "-j", "ACCEPT"]]


def docker_present() -> bool:
    try:
        return _iptables("-t", "filter", "-S", CHAIN).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def ensure(bridge: str) -> bool:
    """Insert the ACCEPT rules for ``bridge`` in DOCKER-USER if that chain exists; whether it
    does."""
    if not docker_present():
        return False
    for rule in _rules(bridge):
        if _iptables("-t", "filter", "-C", CHAIN, *rule).returncode != 0:
            _iptables("-t", "filter", "-I", CHAIN, "1", *rule)
    return True


def remove(bridge: str) -> None:
    if not docker_present():
        return
    for rule in _rules(bridge):
        while _iptables("-t", "filter", "-D", CHAIN, *rule).returncode == 0:
            pass
