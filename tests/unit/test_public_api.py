"""The public faces: ``import corral`` is free, ``__all__`` is true, the CLIs start lean.

containerd runs ``corral-runc`` several times per container, and the launchers start Python with
``-I -S``; what is imported on that path is the start-up cost. These tests run a fresh
interpreter the way the launchers do and look at ``sys.modules`` afterwards.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

import corral
from corral.cli.main import main as engine_main
from helpers import SRC, VENV_PYTHON

# typing ~8 ms, re+enum ~6 ms, dataclasses pulls inspect (~10 ms), json pulls re, ctypes ~3 ms.
HEAVY = ("typing", "json", "re", "enum", "dataclasses", "ctypes")
# The runtime CLI's budget is stricter: it parses its own flags and talks to the kernel via os.
NOT_FOR_THE_RUNTIME_CLI = (*HEAVY, "argparse", "signal", "socket")


def _fresh_import(module: str) -> tuple[set[str], list[str]]:
    """Import ``module`` in ``python -I -S -X importtime``; return sys.modules and the timings."""
    code = (
        f"import sys; sys.path.insert(0, {str(SRC)!r}); import {module}; "
        "print('\\n'.join(sorted(sys.modules)))"
    )
    done = subprocess.run(
        [str(VENV_PYTHON), "-I", "-S", "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
    )
    timings = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    errors = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    assert done.returncode == 0, f"import {module} failed:\n" + "\n".join(errors)
    return set(done.stdout.split()), timings


def _who_imported(timings: list[str], name: str) -> str:
    """The chain of imports that led to ``name``, from ``-X importtime``'s nested output."""
    rows = []
    for line in timings[1:]:  # the first line is the header
        label = line.rsplit("|", 1)[-1]
        rows.append((len(label) - len(label.lstrip()), label.strip()))
    for i, (depth, module) in enumerate(rows):
        if module == name:
            chain = [module]
            for later_depth, later in rows[i + 1 :]:  # a parent finishes after its children
                if later_depth < depth:
                    chain.append(later)
                    depth = later_depth
            return " <- ".join(chain)
    return name


def _assert_not_imported(module: str, forbidden: tuple[str, ...]) -> None:
    modules, timings = _fresh_import(module)
    found = [name for name in forbidden if name in modules]
    assert not found, f"import {module} pulls in heavy modules:\n  " + "\n  ".join(
        _who_imported(timings, name) for name in found
    )


def test_import_corral_is_cheap() -> None:
    _assert_not_imported("corral", HEAVY)


def test_import_corral_cli_runc_is_lean() -> None:
    _assert_not_imported("corral.cli.runc", NOT_FOR_THE_RUNTIME_CLI)


def test_import_corral_cli_main_is_cheap() -> None:
    _assert_not_imported("corral.cli.main", HEAVY)


def test_all_is_sorted_and_unique() -> None:
    assert list(corral.__all__) == sorted(set(corral.__all__))


@pytest.mark.parametrize("name", corral.__all__)
def test_every_name_in_all_resolves(name: str) -> None:
    value = getattr(corral, name)
    if isinstance(value, type):
        assert value.__name__ == name
        assert value.__module__.startswith("corral.")


def test_star_import_gives_all() -> None:
    namespace: dict[str, object] = {}
    exec("from corral import *", namespace)
    assert set(corral.__all__) <= set(namespace)


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        corral.no_such_thing  # noqa: B018


def test_exceptions_share_one_root() -> None:
    for name in corral.__all__:
        value = getattr(corral, name)
        if isinstance(value, type) and issubclass(value, BaseException):
            assert issubclass(value, corral.CorralError), name


def test_engine_cli_unknown_command_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert engine_main(["no-such-command"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert "no-such-command" in err


def test_engine_cli_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert engine_main(["--version"]) == 0
    assert capsys.readouterr().out == f"corral version {corral.__version__}\n"


def test_engine_cli_as_the_launcher_runs_it() -> None:
    code = (
        f"import sys; sys.path.insert(0, {str(SRC)!r}); "
        "from corral.cli.main import main; sys.exit(main())"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (0, f"corral version {corral.__version__}\n")
