"""The lean launchers scripts/install.sh writes (``python3 -IS``, no site): the engine's
optional imports (pyroute2 for a bridge network, zstandard for zstd layers) must still load.
The README's first command runs ``corral`` through such a launcher, not pip's wrapper."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

from helpers.paths import REPO


def test_launcher_runs_a_container_on_a_bridge_network(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "CI": "true",
        "CORRAL_LAUNCHER_DIR": str(bin_dir),
        "CORRAL_BUNDLE_DIR": str(tmp_path / "bundle"),
    }
    done = subprocess.run(["bash", str(REPO / "scripts/install.sh")], env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr
    launcher = bin_dir / "corral"
    assert launcher.read_text().startswith("#!") and "-IS" in launcher.read_text().splitlines()[0]
    netns = f"corral-t-{secrets.token_hex(4)}"  # the bridge and its rules stay in here
    subprocess.run(["ip", "netns", "add", netns], check=True)
    root = tmp_path / "root"
    try:
        cmd = ["nsenter", f"--net=/run/netns/{netns}", str(launcher), "--root", str(root)]
        run = subprocess.run([*cmd, "run", "--rm", "--network", "bridge", "busybox", "sh", "-c",
                              "ip -4 -o addr show eth0 | grep -c 10.86."],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
        assert (run.returncode, run.stdout) == (0, "1\n"), run.stderr
        prune = subprocess.run([*cmd, "network", "prune", "-f"], capture_output=True, text=True)
        assert prune.returncode == 0, prune.stderr
    finally:
        subprocess.run(["ip", "netns", "delete", netns], check=False)
