"""Fixtures shared by corral's tests.

A missing tool or privilege is never a skip: CI runs as root with everything scripts/install.sh
installs, so it is a failure to see. A kernel feature some hosts lack (a cgroup file such as
blkio.bfq.weight, swap accounting) is probed by helpers.host; the test then checks the runtime's
error, or skips naming what is missing (docs/testing.md, "Host features").

Tests under tests/integration/ and tests/e2e/ get the ``integration`` / ``e2e`` marker from their
directory, and with it the leak check: whatever the test leaves in the kernel (mounts, cgroups,
network namespaces, links, container processes) fails it, with the list of what leaked.

Fixtures (all function-scoped unless noted):

``runc_root``    Path: a fresh ``--root`` directory; containers left in it are force-deleted
                 after the test (a failing ``delete --force`` fails the test's teardown).
``corral_runc``  helpers.Runc: ``corral_runc("run", "--bundle", bundle, cid)`` runs
                 ``.venv/bin/corral-runc --root <runc_root> run ...`` (or ``$CORRAL_RUNC``) and
                 returns ``CompletedProcess[str]``; keywords input=, timeout= (30 s), check=,
                 cwd=, env=, stdin=; ``corral_runc.popen(...)`` starts without waiting.
``cid``          str: a unique container id, ``t-<hex>``; ``helpers.new_cid()`` makes more.
``bundle``       helpers.Bundle: a busybox bundle in tmp_path (args ``["sh"]``, hostname
                 ``corral``); ``bundle.set(args=..., hostname=..., terminal=..., cwd=...,
                 env=...)``, ``with bundle.edit() as config: ...``, ``bundle.rootfs``.
``make_bundle``  helpers.BundleFactory: ``make_bundle(args, hostname=, terminal=, cwd=, env=,
                 edit=, name=)`` makes another bundle each call.
``bundle_template`` (session) helpers.BundleTemplate: the one bundle built per session.
``leak_check``   autouse; active for integration and e2e tests only; holds TEST_LOCK (an
                 flock) through the test, so pytest runs side by side take turns per test.
``registry``     (session) str "127.0.0.1:PORT": docker-registry, plain HTTP, anonymous;
                 ``registry_server`` is its helpers.registry.Registry; ``auth_registry``
                 (basic), ``tls_registry`` (HTTPS, ``.ca``), ``token_registry`` (``.tokens``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# Containers get no network unless a test asks (--network): only namespaces a test makes are
# networked (tests/e2e/test_engine_network.py runs corral inside one).
os.environ.setdefault("CORRAL_NETWORK", "none")
# Nor does a missing image send a test to Docker Hub (a DNS query leaves the machine): run and
# create pull only where a test says --pull (tests/e2e/test_engine_pull_missing.py).
os.environ.setdefault("CORRAL_PULL", "never")

from helpers import (
    Bundle,
    BundleFactory,
    BundleTemplate,
    Runc,
    Snapshot,
    cleanup_containers,
    new_cid,
    remove_leaks,
)
from helpers.leaks import wait_for_leaks
from helpers.registry import Registry, TokenServer, start_registry

_TESTS = Path(__file__).resolve().parent
#: One integration or e2e test at a time on this machine, across pytest runs (the leak check).
TEST_LOCK = "/run/corral-tests.lock"
_MARK_BY_DIR = {"integration": pytest.mark.integration, "e2e": pytest.mark.e2e}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by directory: tests/integration/* -> integration, tests/e2e/* -> e2e."""
    for item in items:
        try:
            first = Path(item.path).resolve().relative_to(_TESTS).parts[0]
        except (ValueError, IndexError):
            continue
        mark = _MARK_BY_DIR.get(first)
        if mark is not None and item.get_closest_marker(mark.name) is None:
            item.add_marker(mark)


# -- the runtime CLI -----------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def shim_reaper() -> Iterator[None]:
    """Reap orphaned container processes as containerd-shim does (see helpers/shim.py)."""
    from helpers.shim import start_reaper

    stop = start_reaper()
    yield
    stop.set()


@pytest.fixture
def runc_root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "root"
    root.mkdir(mode=0o700)
    yield root
    problems = cleanup_containers(root)
    if problems:
        pytest.fail(
            "could not clean up containers left in the runtime root:\n  " + "\n  ".join(problems),
            pytrace=False,
        )


@pytest.fixture
def corral_runc(runc_root: Path) -> Runc:
    return Runc(runc_root)


@pytest.fixture
def cid() -> str:
    return new_cid()


# -- bundles -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def bundle_template(tmp_path_factory: pytest.TempPathFactory) -> BundleTemplate:
    return BundleTemplate.build(tmp_path_factory.mktemp("template") / "busybox")


@pytest.fixture
def make_bundle(bundle_template: BundleTemplate, tmp_path: Path) -> BundleFactory:
    return BundleFactory(bundle_template, tmp_path)


@pytest.fixture
def bundle(make_bundle: BundleFactory) -> Bundle:
    return make_bundle()


# -- registries (docker-registry on 127.0.0.1; see helpers/registry.py) --------------------------


@pytest.fixture(scope="session")
def registry_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """An anonymous plain-HTTP docker-registry shared by the session."""
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def registry(registry_server: Registry) -> str:
    """``"127.0.0.1:PORT"`` of the session's anonymous plain-HTTP registry."""
    return registry_server.host


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry with htpasswd basic auth; ``.users`` = {"alice": "wonderland"}."""
    reg = start_registry(tmp_path_factory.mktemp("registry-auth"), users={"alice": "wonderland"})
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """An HTTPS registry with a self-signed certificate (``.ca``, also its CA)."""
    reg = start_registry(tmp_path_factory.mktemp("registry-tls"), tls=True)
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry with ``auth: token``; ``.tokens`` is the TokenServer (user bob / builder)."""
    where = tmp_path_factory.mktemp("registry-token")
    tokens = TokenServer(where / "tokens", users={"bob": "builder"})
    reg = start_registry(where, token=tokens)
    reg.users = dict(tokens.users)
    yield reg
    reg.stop()


# -- the leak check ------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def leak_check(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail an integration or e2e test that leaves kernel objects behind, and remove them.

    Being autouse, it is set up before (and torn down after) ``runc_root``, so containers the
    test left in its root are force-deleted before the check looks.
    """
    node = request.node
    if node.get_closest_marker("integration") is None and node.get_closest_marker("e2e") is None:
        yield
        return
    tmp_path: Path = request.getfixturevalue("tmp_path")
    markers = [str(tmp_path)]
    with _one_test_at_a_time():
        before = Snapshot.take(markers)
        yield
        after, leaks = wait_for_leaks(before, markers)
        if leaks:
            problems = remove_leaks(before, after)
    if leaks:
        text = "the test left these behind (now removed):\n  " + "\n  ".join(leaks)
        if problems:
            text += "\nand could not remove:\n  " + "\n  ".join(problems)
        pytest.fail(text, pytrace=False)


@contextlib.contextmanager
def _one_test_at_a_time() -> Iterator[None]:
    """Hold an flock on ``TEST_LOCK`` for one integration or e2e test.

    The leak check sees every corral-looking object that is new since the test began, whoever
    made it: two pytest runs on one machine (two checkouts, a developer and a helper) would take
    each other's containers for leaks and remove them. With the lock their kernel tests take
    turns, one test at a time; unit tests never wait for it.
    """
    fd = os.open(TEST_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
