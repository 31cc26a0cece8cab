"""corral.spec stays cheap to import: it is on ``corral-runc``'s start-up path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

# Modules that cost milliseconds each; the runtime's start-up path must not load them.
HEAVY = {
    "typing",
    "dataclasses",
    "enum",
    "re",
    "json",
    "signal",
    "socket",
    "argparse",
    "pathlib",
    "ctypes",
    "inspect",
    "functools",
    "collections",
    "importlib.metadata",
}

RUNTIME_MODULES = [
    "corral.spec",
    "corral.spec.load",
    "corral.spec.validate",
    "corral.spec.tables",
    "corral.spec.signals",
    "corral.spec.defaults",
    "corral.spec.features",
]


def loaded_after(imports: str) -> set[str]:
    code = f"import sys; sys.path.insert(0, {str(SRC)!r}); {imports}; print(*sys.modules)"
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True
    )
    return set(out.stdout.split())


def test_runtime_modules_import_nothing_heavy() -> None:
    baseline = loaded_after("pass")
    loaded = loaded_after("import " + ", ".join(RUNTIME_MODULES))
    assert (loaded - baseline) & HEAVY == set()


def test_validating_and_loading_import_nothing_heavy(tmp_path: Path) -> None:
    (tmp_path / "rootfs").mkdir()
    code = (
        "from corral.spec.defaults import default_spec; from corral import _json;"
        f"open({str(tmp_path / 'config.json')!r}, 'w').write(_json.dumps(default_spec()));"
        "from corral.spec.load import load_bundle;"
        f"load_bundle({str(tmp_path)!r});"
        "from corral.spec.signals import parse_signal; parse_signal('TERM');"
        "from corral.spec.tables import mount_flags; mount_flags(['ro', 'mode=755'])"
    )
    baseline = loaded_after("pass")
    assert (loaded_after(code) - baseline) & HEAVY == set()
