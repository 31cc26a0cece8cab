"""podman 4.3 (Debian's) running containers with the runtime under test (``--runtime PATH``).

Every podman command runs with private storage, run root, tmp dir, events log and
configuration (tests/helpers/clients.py), inside a network namespace of the module's; containers
get no network (``netns = "none"``): podman's networks are tested by corral's engine, not here.
podman's default rlimits (nofile and nproc 1048576) cannot be set by any runtime without
CAP_SYS_RESOURCE, so containers.conf sets lower ones, as a podman user on such a host would.
``CORRAL_CLIENT_RUNTIME=runc`` runs the same scenarios on runc: they must all pass there.
The scenarios are shared with docker's (tests/helpers/clients.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pytest

from helpers import clients, new_cid
from helpers.clients import Cli, cgroup_file, inspect, wait_for

RUNTIME = clients.runtime_under_test()
RUN = ("--pull", "never", "--cgroup-parent", clients.PODMAN_CGROUP_PARENT)


@pytest.fixture(scope="module")
def podman_roots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[clients.Podman]:
    with clients.podman(tmp_path_factory.mktemp("podman")) as roots:
        yield roots


@pytest.fixture
def podman(podman_roots: clients.Podman) -> Iterator[Cli]:
    with podman_roots.checked():
        yield podman_roots.cli(RUNTIME)


@pytest.fixture
def image(podman_roots: clients.Podman) -> str:
    return podman_roots.image


@pytest.mark.parametrize("scenario", clients.SHARED_SCENARIOS, ids=lambda f: f.__name__)
def test_scenario(scenario: Callable[[Cli, Sequence[str], str], None], podman: Cli,
                  image: str) -> None:
    """run --rm; detached + exec (with and without -t) + logs + stop + rm; stop escalating to
    KILL; -it on a pty; pause and resume; --pids-limit; --restart on-failure:2."""
    scenario(podman, RUN, image)


def test_memory_limit_oom_kill(podman: Cli, image: str) -> None:
    """podman 4.3 with conmon 2.1.6 says ``OOMKilled false`` whatever the runtime: conmon sees
    the OOM kill, but podman gives it no --persist-dir, so it writes its "oom" file into its
    working directory, where podman never looks. So the kill is read from the container's
    memory cgroup: a child of the init is OOM-killed there, and the init goes on."""
    name = new_cid()
    podman.ok("run", "--detach", "--name", name, "--memory", "32m", "--memory-swap", "32m",
              *RUN, image, "sh", "-c", "tail /dev/zero; echo tail $?; exec sleep 100")
    wait_for("tail to be killed", lambda: "tail 137" in podman.ok("logs", name))
    pid = int(inspect(podman, name, "{{.State.Pid}}"))
    assert "oom_kill 1" in cgroup_file(pid, "memory", "memory.oom_control").splitlines()
    assert cgroup_file(pid, "memory", "memory.limit_in_bytes") == str(32 << 20)


def test_update(podman: Cli, image: str) -> None:
    clients.update(podman, RUN, image, pids=False)  # podman 4.3's update has no --pids-limit
