"""dockerd 20.10 (Debian's docker.io) running containers with the runtime under test.

One private dockerd for the module (tests/helpers/clients.py: roots, sockets, pid file and key
in a tmp dir, its bridge and iptables rules in a network namespace of its own), with the runtime
added as ``--add-runtime corral=/usr/local/bin/corral-runc`` and chosen per container with
``docker run --runtime corral``. ``CORRAL_CLIENT_RUNTIME=runc`` runs the same scenarios on runc:
they must all pass there. The scenarios are shared with podman's (tests/helpers/clients.py).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator, Sequence

import pytest

from helpers import clients, new_cid
from helpers.clients import Cli, inspect, wait_for

RUNTIME = clients.runtime_under_test()
RUN = ("--runtime", RUNTIME.name, "--pull", "never")
FETCH = ("import sys, urllib.request as u; "
         "sys.stdout.write(u.urlopen(sys.argv[1], timeout=5).read().decode())")


@pytest.fixture(scope="module")
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[clients.Dockerd]:
    with clients.dockerd(tmp_path_factory.mktemp("dockerd"), [RUNTIME]) as daemon:
        yield daemon


@pytest.fixture
def docker(dockerd: clients.Dockerd) -> Iterator[Cli]:
    with dockerd.checked():
        yield dockerd.docker


@pytest.fixture
def image(dockerd: clients.Dockerd) -> str:
    return dockerd.image


@pytest.mark.parametrize("scenario", clients.SHARED_SCENARIOS, ids=lambda f: f.__name__)
def test_scenario(scenario: Callable[[Cli, Sequence[str], str], None], docker: Cli,
                  image: str) -> None:
    """run --rm; detached + exec (with and without -t) + logs + stop + rm; stop escalating to
    KILL; -it on a pty; pause and resume; --pids-limit; --restart on-failure:2."""
    scenario(docker, RUN, image)


def test_memory_limit_oom_kill_is_reported(docker: Cli, image: str) -> None:
    clients.oom_kill_is_reported(docker, RUN, image)


def test_update(docker: Cli, image: str) -> None:
    clients.update(docker, RUN, image, pids=True)


def answers(fetch: Cli, url: str) -> bool:
    return fetch(url).returncode == 0


def test_default_bridge_and_published_port(dockerd: clients.Dockerd, docker: Cli,
                                           image: str) -> None:
    """The default bridge (docker0, a veth, an address) is set up by dockerd's prestart hook,
    which the runtime runs; -p maps a port. All inside dockerd's network namespace."""
    name = new_cid()
    docker.ok("run", "--detach", "--name", name, "--hostname", name, "--publish",
              "127.0.0.1:8080:80", *RUN, image,
              "sh", "-c", "echo hello from $(hostname) > /index.html; exec httpd -f -p 80 -h /")
    address = inspect(docker, name, "{{.NetworkSettings.IPAddress}}")
    assert address.startswith("172.17."), address
    # The host's busybox-static wget crashes (static glibc), hence Python's urllib.
    fetch = Cli([*dockerd.netns.enter, sys.executable, "-c", FETCH])
    for url in (f"http://{address}/", "http://127.0.0.1:8080/"):
        wait_for(f"{url} to answer", functools.partial(answers, fetch, url))
        assert fetch.ok(url) == f"hello from {name}\n"
