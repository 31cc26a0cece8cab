"""What this host cannot do is refused in one line, never ignored in silence.

Neither AppArmor nor SELinux runs on the CI host. The v2 lane's guest (Debian's kernel) runs
AppArmor, where a refusal "AppArmor is not enabled" cannot be tested: those cases are skipped
there, with the reason, and the SELinux ones still run.
"""

from __future__ import annotations

import os

import pytest

from corral.runtime import lsm


def _without(name: str) -> None:
    """Skip unless the host lacks the LSM ``name`` ("AppArmor" or "SELinux")."""
    enabled = lsm.apparmor_enabled() if name == "AppArmor" else lsm.selinux_enabled()
    if enabled:
        pytest.skip(f"{name} is enabled on this host: its absence cannot be tested here")


@pytest.mark.parametrize(
    ("where", "key", "value", "field"),
    [
        ("process", "apparmorProfile", "corral-default", "process.apparmorProfile"),
        ("process", "selinuxLabel", "system_u:system_r:container_t:s0", "process.selinuxLabel"),
        ("linux", "mountLabel", "system_u:object_r:container_file_t:s0", "linux.mountLabel"),
    ],
)
def test_create_refuses_an_lsm_the_host_does_not_run(
    corral_runc, bundle, runc_root, cid, where, key, value, field
) -> None:
    _without("AppArmor" if key == "apparmorProfile" else "SELinux")
    with bundle.edit() as config:
        config[where][key] = value
    res = corral_runc("create", "--bundle", bundle, cid)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and field in lines[0] and "not enabled" in lines[0], res.stderr
    assert os.listdir(runc_root) == []


def test_exec_refuses_apparmor_flag_without_apparmor(corral_runc, bundle, cid) -> None:
    _without("AppArmor")
    bundle.set(args=["sleep", "100"])
    corral_runc("run", "-d", "--bundle", bundle, cid, check=True)
    res = corral_runc("exec", "--apparmor", "x", cid, "true")
    assert res.returncode == 1
    assert res.stderr.strip() == "process.apparmorProfile: AppArmor is not enabled on this host"
    corral_runc("delete", "--force", cid, check=True)


@pytest.mark.parametrize("flag", ["--l3-cache-schema", "--mem-bw-schema"])
def test_update_intel_rdt_flags_are_refused(corral_runc, bundle, cid, flag) -> None:
    bundle.set(args=["sleep", "100"])
    corral_runc("run", "-d", "--bundle", bundle, cid, check=True)
    res = corral_runc("update", flag, "L3:0=ff", cid)
    assert res.returncode == 1
    assert res.stderr.strip() == f"{flag}: Intel RDT (resctrl) is not supported by corral"
    corral_runc("delete", "--force", cid, check=True)
