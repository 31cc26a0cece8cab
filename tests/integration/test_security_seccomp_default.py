"""The engine's default seccomp profile (podman's) in a container run by corral-runc.

What it blocks is checked against a control run without it, so the filter (not a missing
capability) is what says no. Passes against runc 1.1 too.
"""

from __future__ import annotations

from typing import Any

import pytest

from corral.engine.seccomp_default import default_seccomp

SCRIPT = (
    "linux64 -R true 2>&1; echo personality=$?;"  # personality(ADDR_NO_RANDOMIZE): not allowed
    " unshare -U true 2>&1; echo unshare=$?;"  # podman's profile allows unshare
    " ls / > /dev/null; echo ls=$?; hostname x 2>&1; echo hostname=$?"
)


@pytest.mark.parametrize("profile", [True, False], ids=["podman-default", "control"])
def test_the_default_profile_blocks_what_podman_blocks(
    corral_runc: Any, bundle: Any, cid: str, profile: bool
) -> None:
    def edit(config: dict[str, Any]) -> None:
        if profile:
            caps = config["process"]["capabilities"]["bounding"]
            config["linux"]["seccomp"] = default_seccomp(caps)

    bundle.set(args=["sh", "-c", SCRIPT], edit=edit)
    done = corral_runc("run", "--bundle", bundle, cid)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "ls=0" in out and "unshare=0" in out
    assert "hostname=1" in out  # no CAP_SYS_ADMIN either way (EPERM: profile or kernel)
    if profile:
        assert "personality=1" in out and "Function not implemented" in out  # ENOSYS: default
    else:
        assert "personality=0" in out


def test_with_cap_sys_admin_the_profile_lets_sethostname_through(
    corral_runc: Any, bundle: Any, cid: str
) -> None:
    def edit(config: dict[str, Any]) -> None:
        caps = config["process"]["capabilities"]
        for name in ("bounding", "effective", "permitted"):
            caps[name].append("CAP_SYS_ADMIN")
        config["linux"]["seccomp"] = default_seccomp(caps["bounding"])

    bundle.set(args=["sh", "-c", "hostname inside && hostname"], edit=edit)
    done = corral_runc("run", "--bundle", bundle, cid)
    assert (done.returncode, done.stdout) == (0, "inside\n"), done.stderr
