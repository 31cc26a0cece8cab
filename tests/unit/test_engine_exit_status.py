"""docker's exit status for a ``run`` that failed: 127 not found, 126 cannot invoke, else 125."""

from __future__ import annotations

import pytest

from corral.engine.containers.exit_status import start_failure_status
from corral.errors import ContainerInitError, NotFoundError, SpecError, UsageError


@pytest.mark.parametrize(
    ("err", "status"),
    [
        (SpecError("process.args[0]", 'exec: "nope": executable file not found in $PATH'), 127),
        (ContainerInitError('process.args[0]: exec: "nope": executable file not found'), 127),
        (SpecError("process.args[0]", 'exec: "/etc": permission denied'), 126),
        (ContainerInitError('process.args[0]: exec: "/x": Permission denied'), 126),
        (ContainerInitError("process.args[0]: exec: /etc: is a directory"), 126),
        (NotFoundError("No such image: nope"), 125),
        (UsageError("--name 'a b': use letters, digits and _ . -"), 125),
        (ContainerInitError("mounts[2]: /src: no such file or directory"), 125),  # not the program
        (OSError(13, "Permission denied"), 125),
        (RuntimeError("a bug"), 125),
    ],
)
def test_start_failure_status(err: BaseException, status: int) -> None:
    assert start_failure_status(err) == status
